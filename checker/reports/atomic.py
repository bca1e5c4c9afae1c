"""Atomic report files: write a temporary file in the same folder, then rename.

A reader (a person, a dashboard, the next cron run) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedIOBase


def _new_file_mode() -> int:
    # (umask can only be read by setting it: once, as the module loads, in
    # the main thread, before any other thread makes a file.)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


# What a file the user made here would get (0644 with the usual umask 022,
# 0600 with 077): the temporary file is made 0600, and the reports are
# served, shared or kept private as the user's umask says (they were made
# 0644 whatever it said).
FILE_MODE = _new_file_mode()


async def write_atomic(path: str, chunks: AsyncIterator[bytes] | Iterable[bytes]) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    os.close(fd)
    try:
        async with aiofiles.open(tmp, "wb") as f:
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    await f.write(chunk)
            else:
                for chunk in chunks:
                    await f.write(chunk)
            await f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.filename is None:  # name the file (a full disk says only ENOSPC)
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Spool:
    """A temporary file beside the reports, written while rows are read.

    Either it becomes a report as it is (`publish`), or a report is assembled
    from it (`pieces`) and it is thrown away (`discard`).
    """

    def __init__(self, path: str, file: AsyncBufferedIOBase) -> None:
        self.path = path
        self._file = file

    @classmethod
    async def create(cls, beside: str) -> Spool:
        folder = os.path.dirname(beside) or "."
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(beside) + ".", dir=folder)
        os.close(fd)
        return cls(tmp, await aiofiles.open(tmp, "wb"))

    async def write(self, data: bytes) -> None:
        if data:
            try:
                await self._file.write(data)
            except OSError as exc:  # name the file (a full disk says only ENOSPC)
                raise OSError(exc.errno, exc.strerror, self.path) from None

    async def pieces(
        self, size: int = 1 << 20, skip: Sequence[tuple[int, int]] = ()
    ) -> AsyncIterator[bytes]:
        """What was written, in pieces of at most `size` bytes, without the
        byte ranges [start, end) of `skip` (sorted, apart)."""
        await self._file.flush()
        async with aiofiles.open(self.path, "rb") as f:
            position = 0
            for start, end in (*skip, (-1, -1)):
                while start < 0 or position < start:
                    want = size if start < 0 else min(size, start - position)
                    piece = await f.read(want)
                    if not piece:
                        return
                    position += len(piece)
                    yield piece
                await f.seek(end)
                position = end

    async def publish(self, path: str) -> None:
        await self._file.flush()
        os.fsync(self._file.fileno())
        await self._file.close()
        os.chmod(self.path, FILE_MODE)
        os.replace(self.path, path)

    async def discard(self) -> None:
        await self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def publish_latest(path: str, latest: str) -> None:
    """Point `latest` at the finished report `path`, atomically.

    A hard link costs nothing; where the file system has none, copy.
    """
    folder = os.path.dirname(latest) or "."
    tmp = os.path.join(folder, f".{os.path.basename(latest)}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    try:
        os.replace(tmp, latest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
