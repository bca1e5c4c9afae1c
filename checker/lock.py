"""One run at a time per report folder: an flock on `<out>/.checker.lock`.

Cron starts a run every few minutes whether or not the last one is done; two
runs writing the same `latest.*` and run index would trample each other. The
second one exits at once (exit code 3), or waits up to `--wait-lock` seconds.
The lock is the kernel's: it goes away with the process, however it dies, so a
killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

LOCK_NAME = ".checker.lock"
POLL = 0.1


class LockBusy(Exception):
    """Another run holds the lock (exit code 3)."""


@contextlib.contextmanager
def run_lock(out_dir: str, wait: float = 0.0) -> Iterator[None]:
    path = os.path.join(out_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    waited = f" after waiting {wait:g}s" if wait else ""
                    raise LockBusy(
                        f"another checker run{who} is writing to {out_dir}{waited}; "
                        "use --wait-lock SECONDS to wait for it"
                    ) from None
                time.sleep(POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
