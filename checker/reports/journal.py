"""The run journal: every result goes to disk as it completes.

Results complete out of order; reports must be in input order; and a list may
hold millions of lines. So results are not kept in memory: each is appended to
a JSON Lines file in batches (through aiofiles, off the hot path), and only its
byte offset and length are kept, 12 bytes a row in two `array`s. The reports
then read the rows back in input order with `os.pread`. (Not an mmap: every
page an mmap touches counts in the process's resident memory, which would make
a run's memory grow with its list after all.)

The journal is also the run's crash record: it is written as the run goes, so
a run killed with SIGKILL (or a power cut, minus what the OS had not written)
keeps every result that finished. `checker report JOURNAL`, or the next run in
the same folder, turns it into reports (`checker.reports.recover`). While a run
is live it holds an exclusive `flock` on its journal, so that recovery never
touches the journal of a run that is still going.

Journal format, one JSON object a line:
  {"journal": 1, "run": {...}}                        first line: started_at, options, lists
  {"seq": N, "result": {...}}                         a result
  {"duplicate_of": N, "source": "f", "line": L}      a later line naming the same URL
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import aiofiles
from aiofiles.threadpool.binary import AsyncFileIO

from checker.results import Result
from checker.targets import Duplicate

FLUSH_ROWS = 512  # write once this many rows are waiting...
FLUSH_SECONDS = 0.25  # ...or this long after the first of them arrived
# FLUSH_ROWS while a reporter follows the journal: the rows of the last write
# are what it still has to do after the checks end (the run's wait), and at
# 512 that was 20-30 ms of each run.
FOLLOWED_FLUSH_ROWS = 128
_RESULT_KEY = b',"result":'


class JournalBusy(Exception):
    """The journal is locked: its run is still going."""


class Journal:
    """Append-only result log with an in-memory index of where each row is.

    `Journal(path, header)` starts a new journal; `Journal.reopen(path)` takes
    over one left by a run that died, to complete and report it.
    """

    def __init__(self, path: str, header: dict[str, Any] | None = None) -> None:
        self.path = path
        self.header = header or {}
        self._fd: int | None = None
        self.allow_gaps = False
        # Where each row's line starts (-1: not yet recorded). Its length is
        # not kept: the line runs to its newline (8 bytes a row, not 12).
        self._offsets = array("q")
        self._position = 0
        self._buffer: list[bytes] = []
        self._duplicates: dict[int, list[str]] = {}
        self._file: AsyncFileIO | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self.rows = 0
        # Told each time lines reach the file: how far it now runs (see `followed_by`).
        self.on_flush: Callable[[int], None] | None = None
        self.flush_rows = FLUSH_ROWS

    async def __aenter__(self) -> Journal:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            _lock(self._fd, self.path)
            self._append(header_line(self.header))
        # aiofiles takes the descriptor over (and closes it, dropping the lock).
        # Unbuffered: a batch is one trip to aiofiles' thread, not two (a write
        # and a flush). While the checks keep the event loop busy, a trip's
        # answer waits for the loop's next turn (35 ms a trip at 10,000 HEADs
        # on one host, 200 at once): with two, a reporter got the rows in
        # frames of 400 every 70 ms, and the last frame was the run's wait.
        self._file = await aiofiles.open(self._fd, "ab", buffering=0)
        self._fd = None
        self._flusher = asyncio.create_task(self._flush_loop())
        return self

    @classmethod
    def reopen(cls, path: str) -> Journal:
        """Index a journal that a dead run left, ready to be completed.

        Raises JournalBusy when its run is alive, ValueError when it is no journal.
        A torn last line (the run died mid-write) is cut off.
        """
        fd = os.open(path, os.O_RDWR)
        try:
            _lock(fd, path)
            journal = cls(path)
            with open(fd, "rb", closefd=False) as f:
                first = f.readline()
                header = run_of(first)
                if header is None:
                    raise ValueError(f"{path}: not a checker journal")
                journal.header = header
                position = len(first)
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # torn: the run died while writing it
                    journal._index(line, position)
                    position += len(line)
            os.ftruncate(fd, position)
            os.lseek(fd, position, os.SEEK_SET)
            journal._position = position
        except BaseException:
            os.close(fd)
            raise
        journal._fd = fd
        return journal

    def _index(self, line: bytes, position: int) -> None:
        if line.startswith(b'{"seq":'):
            seq = int(line[7 : line.index(b",")])
            self._place(seq, position)
        elif line.startswith(b'{"duplicate_of":'):
            record = json.loads(line)
            where = f"{record['source']}:{record['line']}"
            self._duplicates.setdefault(int(record["duplicate_of"]), []).append(where)

    def seen(self, seq: int) -> bool:
        return seq < len(self._offsets) and self._offsets[seq] >= 0

    def has_duplicate(self, dup: Duplicate) -> bool:
        return f"{dup.source}:{dup.line}" in self._duplicates.get(dup.of_seq, ())

    def duplicate_lines(self) -> Iterator[str]:
        for where in self._duplicates.values():
            yield from where

    def results(self) -> Iterator[dict[str, Any]]:
        """Every recorded result as a dict (for totals), in input order."""
        for row in self.rows_in_order(allow_gaps=True):
            yield json.loads(row)

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
        self._place(seq, self._position)
        self._append(line)

    def _place(self, seq: int, position: int) -> None:
        offsets = self._offsets
        known = len(offsets)
        if seq == known:  # (the usual: the row after the last one placed)
            offsets.append(position)
        else:
            if seq > known:
                offsets.extend(array("q", [-1]) * (seq + 1 - known))
            if offsets[seq] != -1:
                raise RuntimeError(f"result {seq} recorded twice")
            offsets[seq] = position
        self.rows += 1

    def add_duplicate(self, dup: Duplicate) -> None:
        self._duplicates.setdefault(dup.of_seq, []).append(f"{dup.source}:{dup.line}")
        record = {"duplicate_of": dup.of_seq, "source": dup.source, "line": dup.line}
        self._append(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")

    def _append(self, line: bytes) -> None:
        self._buffer.append(line)
        self._position += len(line)
        if len(self._buffer) == 1 or len(self._buffer) >= self.flush_rows:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing and len(self._buffer) < self.flush_rows:
                # Let a batch gather; a wake-up for a full batch ends the wait early.
                try:
                    async with asyncio.timeout(FLUSH_SECONDS):
                        while len(self._buffer) < self.flush_rows and not self._closing:
                            await self._wake.wait()
                            self._wake.clear()
                except TimeoutError:
                    pass
            await self._write()

    def followed_by(self, on_flush: Callable[[int], None]) -> None:
        """Tell `on_flush` how far the file runs after each write, and write
        smaller batches: a reporter reads the rows as they come
        (checker.reports.reporter)."""
        self.on_flush = on_flush
        self.flush_rows = FOLLOWED_FLUSH_ROWS

    async def flush(self) -> None:
        """Write what is waiting now, rather than when the flusher next wakes."""
        await self._write()

    async def _write(self) -> None:
        # One write at a time, in the order the lines were added: the index
        # holds each line's offset, so batches must land in order.
        async with self._write_lock:
            if not self._buffer or self._file is None:
                return
            batch, self._buffer = self._buffer, []
            end = self._position
            try:
                data = memoryview(b"".join(batch))
                while data:  # (a short write only on a full disk or a signal)
                    written = await self._file.write(data)
                    if not written:  # (never from a regular file: no endless loop)
                        raise OSError(errno.EIO, "the journal took no bytes")
                    data = data[written:]
            except OSError as exc:  # name the file (a full disk says only ENOSPC)
                raise OSError(exc.errno, exc.strerror, self.path) from None
            if self.on_flush is not None:
                self.on_flush(end)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[int], dict[str, Any]]]:
        """A function from a recorded row's seq to its result, over one open file."""
        fd = os.open(self.path, os.O_RDONLY)

        line = BlockReader(fd).line

        def row(seq: int) -> dict[str, Any]:
            record: dict[str, Any] = json.loads(line(self._offsets[seq]))
            return record["result"]  # type: ignore[no-any-return]

        try:
            yield row
        finally:
            os.close(fd)

    def rows_in_order(self, *, allow_gaps: bool | None = None) -> Iterator[bytes]:
        """Each result's JSON object, in input order, duplicates folded in.

        Call after `close()`. Yields the bytes of one JSON object per row. A
        missing row is a bug, unless `allow_gaps` (default: `self.allow_gaps`,
        set when a dead run's lists could not be read again).
        """
        if not (self.allow_gaps if allow_gaps is None else allow_gaps):
            missing = [seq for seq, off in enumerate(self._offsets) if off < 0]
            if missing:
                raise RuntimeError(f"no result for rows {missing[:10]}")
        if not self._offsets:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            read = BlockReader(fd).line
            for seq, off in enumerate(self._offsets):
                if off < 0:
                    continue
                yield unwrap(read(off), self._duplicates.get(seq))
        finally:
            os.close(fd)

    def follow(self, fd: int, upto: int) -> None:
        """Index what a live run's journal (open as `fd`) holds up to byte
        `upto`: the view of a process that reads it as it is written. The
        first line, the header, is passed over as no row."""
        while self._position < upto:
            data = os.pread(fd, min(upto - self._position, 1 << 20), self._position)
            if not data:
                raise ValueError(f"{self.path}: ends at {self._position}, before {upto}")
            end = data.rfind(b"\n") + 1
            if end == 0:  # one line longer than the piece read: read it whole
                end = len(BlockReader(fd).line(self._position))
                data = os.pread(fd, end, self._position)
            start = 0
            while start < end:
                stop = data.index(b"\n", start) + 1
                self._index(data[start:stop], self._position + start)
                start = stop
            self._position += end

    @property
    def size(self) -> int:
        """Where the file ends once every line added is written."""
        return self._position

    def duplicates(self) -> dict[int, list[str]]:
        """Each row's later lines naming the same URL ("file:line")."""
        return self._duplicates

    def offset(self, seq: int) -> int:
        """Where row `seq`'s line starts (-1: not recorded yet)."""
        return self._offsets[seq] if seq < len(self._offsets) else -1

    def remove(self) -> None:
        """Gone once its rows are in the reports (a reporter may have removed
        it already, as it committed the run's history)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class BlockReader:
    """`pread` through a few cached blocks.

    Rows finish in about the order they were read from the list, so reading
    them back in input order walks the journal nearly forwards: a row's
    neighbours in the list sit in the same block. One `pread` per row was a
    system call per row per report; this is one per block. Memory stays
    bounded: at most `blocks` blocks of `size` bytes.
    """

    def __init__(self, fd: int, size: int = 256 * 1024, blocks: int = 8) -> None:
        self.fd = fd
        self.size = size
        self.blocks = blocks
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def line(self, offset: int) -> bytes:
        """The line that starts at `offset`, its newline included."""
        first = offset // self.size
        block = self._cache.get(first)
        if block is None:
            block = os.pread(self.fd, self.size, first * self.size)
            self._cache[first] = block
            if len(self._cache) > self.blocks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(first)
        start = offset - first * self.size
        end = block.find(b"\n", start)
        if end < 0 and len(block) < self.size:
            # A short block is the end of a file that may have grown since (a
            # journal read while its run writes it): read the block again.
            block = os.pread(self.fd, self.size, first * self.size)
            self._cache[first] = block
            end = block.find(b"\n", start)
        if end >= 0:
            return block[start : end + 1]
        # It runs past this block (rare): read on from it until its newline.
        want = self.size
        while True:
            data = os.pread(self.fd, want, offset)
            end = data.find(b"\n")
            if end >= 0:
                return data[: end + 1]
            if len(data) < want:
                return data  # a torn last line: the caller's JSON decoding says so
            want *= 2


def unwrap(line: bytes, duplicates: list[str] | None) -> bytes:
    """A result line {"seq":N,"result":{...}}\\n down to the {...}, with the
    later lines that named the same URL spliced in."""
    row = line[line.index(_RESULT_KEY) + len(_RESULT_KEY) : -2]
    if duplicates:
        # "duplicates" is the last field: splice the list in.
        cut = row.rindex(b'"duplicates":')
        row = row[:cut] + b'"duplicates":' + json.dumps(duplicates).encode() + b"}"
    return row


def header_line(run: dict[str, Any]) -> bytes:
    return json.dumps({"journal": 1, "run": run}, ensure_ascii=False).encode("utf-8") + b"\n"


def run_of(first: bytes) -> dict[str, Any] | None:
    """The run header of a journal's first line (`header_line`), or None:
    the file is not a journal."""
    try:
        header = json.loads(first)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("journal") != 1:
        return None
    run = header.get("run", {})
    return run if isinstance(run, dict) else {}


def held(path: str) -> bool:
    """Whether a live run holds the journal at `path` (its lock, as `reopen`
    tries it). A journal that is not there is held by no one; one that
    cannot be opened or tried is taken for held: nothing is removed on a guess."""
    try:
        fd = os.open(path, os.O_RDWR)  # (for writing: flock over NFS needs it)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        _lock(fd, path)
    except (JournalBusy, OSError):
        return True
    finally:
        os.close(fd)  # (and with it the lock just taken)
    return False


def _lock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalBusy(f"{path}: its run is still going") from None
