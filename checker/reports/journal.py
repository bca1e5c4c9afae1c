"""The run journal: every result goes to disk as it completes.

Results complete out of order; reports must be in input order; and a list may
hold millions of lines. So results are not kept in memory: each is appended to
a JSON Lines file in batches (through aiofiles, off the hot path), and only its
byte offset and length are kept, 12 bytes a row in two `array`s. The reports
then read the rows back in input order with `os.pread`. (Not an mmap: every
page an mmap touches counts in the process's resident memory, which would make
a run's memory grow with its list after all.)

Journal format, one JSON object a line:
  {"seq": N, "result": {...}}                         a result
  {"duplicate_of": N, "source": "f", "line": L}      a later line naming the same URL
"""

from __future__ import annotations

import asyncio
import json
import os
from array import array
from collections.abc import Iterator
from types import TracebackType

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from checker.results import Result
from checker.targets import Duplicate

FLUSH_ROWS = 512  # write once this many rows are waiting...
FLUSH_SECONDS = 0.25  # ...or this long after the first of them arrived
_RESULT_KEY = b',"result":'


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self._offsets = array("q")
        self._lengths = array("I")
        self._position = 0
        self._buffer: list[bytes] = []
        self._duplicates: dict[int, list[str]] = {}
        self._file: AsyncBufferedIOBase | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self.rows = 0

    async def __aenter__(self) -> Journal:
        self._file = await aiofiles.open(self.path, "wb")
        self._flusher = asyncio.create_task(self._flush_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._file is None:
            return
        self._closing = True
        self._wake.set()
        if self._flusher is not None:
            await self._flusher
        await self._write()
        await self._file.close()
        self._file = None

    def add(self, seq: int, result: Result) -> None:
        line = b'{"seq":%d%s%s}\n' % (seq, _RESULT_KEY, result.to_json().encode("utf-8"))
        if seq >= len(self._offsets):
            grow = seq + 1 - len(self._offsets)
            self._offsets.extend([-1] * grow)
            self._lengths.extend([0] * grow)
        if self._offsets[seq] != -1:
            raise RuntimeError(f"result {seq} recorded twice")
        self._offsets[seq] = self._position
        self._lengths[seq] = len(line)
        self._append(line)
        self.rows += 1

    def add_duplicate(self, dup: Duplicate) -> None:
        self._duplicates.setdefault(dup.of_seq, []).append(f"{dup.source}:{dup.line}")
        record = {"duplicate_of": dup.of_seq, "source": dup.source, "line": dup.line}
        self._append(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")

    def _append(self, line: bytes) -> None:
        self._buffer.append(line)
        self._position += len(line)
        if len(self._buffer) == 1 or len(self._buffer) >= FLUSH_ROWS:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing and len(self._buffer) < FLUSH_ROWS:
                # Let a batch gather; a wake-up for a full batch ends the wait early.
                try:
                    async with asyncio.timeout(FLUSH_SECONDS):
                        while len(self._buffer) < FLUSH_ROWS and not self._closing:
                            await self._wake.wait()
                            self._wake.clear()
                except TimeoutError:
                    pass
            await self._write()

    async def _write(self) -> None:
        if not self._buffer or self._file is None:
            return
        batch, self._buffer = self._buffer, []
        await self._file.write(b"".join(batch))
        await self._file.flush()

    def rows_in_order(self) -> Iterator[bytes]:
        """Each result's JSON object, in input order, duplicates folded in.

        Call after `close()`. Yields the bytes of one JSON object per row.
        """
        missing = [seq for seq, off in enumerate(self._offsets) if off < 0]
        if missing:
            raise RuntimeError(f"no result for rows {missing[:10]}")
        if not self._offsets:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for seq, (off, length) in enumerate(zip(self._offsets, self._lengths, strict=True)):
                line = os.pread(fd, length, off)
                # Unwrap {"seq":N,"result":{...}}\n down to the {...}.
                row = line[line.index(_RESULT_KEY) + len(_RESULT_KEY) : -2]
                dups = self._duplicates.get(seq)
                if dups:
                    # "duplicates" is the last field: splice the list in.
                    cut = row.rindex(b'"duplicates":')
                    row = row[:cut] + b'"duplicates":' + json.dumps(dups).encode() + b"}"
                yield row
        finally:
            os.close(fd)

    def remove(self) -> None:
        os.unlink(self.path)
