"""Atomic report files: write a temporary file in the same folder, then rename.

A reader (a person, a dashboard, the next cron run) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable

import aiofiles


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
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
