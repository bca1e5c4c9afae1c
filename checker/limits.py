"""The process's limits: open files raised to fit the concurrency, how the C
allocator gives memory back, and an exit without the interpreter's teardown."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from typing import NoReturn

# File descriptors a run needs besides one socket per check: stdio, the journal
# and reports, the event loop's own, resolver threads.
RESERVED_FDS = 64
# RLIM_INFINITY cannot be a soft limit on every system; this is plenty.
CEILING = 1 << 20


def fit_open_files(concurrency: int) -> tuple[int, str | None]:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows.

    Returns the concurrency that fits (lowered if the hard limit is too low)
    and a message for the user when something had to give.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = CEILING if hard == resource.RLIM_INFINITY else hard
    want = min(ceiling, max(soft, concurrency + RESERVED_FDS))
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    fits = max(1, soft - RESERVED_FDS)
    if concurrency > fits:
        return fits, (
            f"concurrency {concurrency} needs about {concurrency + RESERVED_FDS} open files "
            f"but the limit is {soft} (hard limit {hard}); running with concurrency {fits}"
        )
    return concurrency, None


# glibc's mallopt parameter: allocations at least this large get pages of
# their own (mmap), given back to the system when freed.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def return_large_blocks() -> bool:
    """Have the C allocator give large freed blocks back to the system.

    What grows during a long run (the dedup shards, the journal's index) is
    replaced by larger copies as it grows. glibc's default raises its mmap
    threshold each time such a block is freed, so later copies come from the
    heap and the freed ones stay as holes in it: at a million URLs that was
    9 MB of a 74 MB peak. Fixing the threshold at 128 KiB (glibc's initial
    value) keeps large blocks separate and returns them on free. Elsewhere
    than glibc this does nothing. Returns whether it took effect.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def open_standard_descriptors() -> None:
    """Point a closed stdin, stdout or stderr (`>&- 2>&-`) at /dev/null, as
    daemons do: left closed, the next file, pipe or socket opened takes its
    number, and what is written to stdout or stderr lands in it. First thing
    in the command, before the reporter's pipes are made (`boot`)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def exit_now(code: int) -> NoReturn:
    """End the process once its work is done and its files are closed,
    without the interpreter's teardown: all it would still do is free what a
    run held, 10-20 ms after 10,000 URLs (the command, and its reporter,
    which the run waits for). Only stderr may still hold a line."""
    if sys.stderr is not None:  # (None when the process was given none)
        with contextlib.suppress(OSError, ValueError):  # (a reader that went away)
            sys.stderr.flush()
    os._exit(code)
