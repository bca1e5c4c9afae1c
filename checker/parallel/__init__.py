"""`checker check --processes N`: one machine's cores, as N shard runs of one
list under one command (see coordinator); and what every helper process of a
run shares (the CPUs it may use, dying with its parent)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import sys
from typing import BinaryIO

from checker.helper import helper_command
from checker.helper import usable_cpus as usable_cpus  # (where the run and its tests look)

SHARDS_DIR = ".shards"  # <out>/.shards/<report name>/<K>/: a --processes run's shards


def shard_dirs(work: str) -> list[str]:
    """The shard folders of one --processes run, in shard order."""
    names = [n for n in os.listdir(work) if n.isdigit()]
    return [os.path.join(work, n) for n in sorted(names, key=int)]


def newest_report(folder: str) -> str | None:
    """The JSON report a shard wrote in its folder (the newest, if several)."""
    found = sorted(glob.glob(os.path.join(glob.escape(folder), "status-*.json")))
    return found[-1] if found else None


def close_inherited() -> None:
    """Close every descriptor but stdin, stdout and stderr, first thing in a
    helper. uvloop's subprocesses inherit more than their three (duplicates
    of their own pipes among them): a copy of stdout left open keeps the
    pipe from ending when the helper closes its answer, and the run waited
    for the helper's exit instead (20 ms and more at the end of each run)."""
    # The descriptors open, not every number up to the limit: without the
    # close_range system call (older kernels, some seccomp profiles),
    # closerange closes each number in turn, and limits of a million and
    # more are common in containers.
    try:
        open_now = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in open_now:
        if fd > 2:
            with contextlib.suppress(OSError):  # (the listing's own, closed already)
                os.close(fd)


def answer_pipe() -> BinaryIO:
    """Standard output as a file whose closing ends the pipe (with
    close_inherited): sys.stdout never closes descriptor 1, so it is handed
    over, and descriptor 1 is pointed at stderr for anything printed later."""
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answer


def die_with_parent(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies
    (Linux's PR_SET_PDEATHSIG): a run killed outright must not leave its
    helpers working on their own."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signum)


async def start_helper(module: str, stderr: int | None) -> asyncio.subprocess.Process:
    """`python -m module` (`helper_command`), this interpreter and this checker,
    talked to over its stdin and stdout, in a session of its own: not in the
    terminal's process group, so that Ctrl-C is the run's to handle and to
    pass on."""
    return await asyncio.create_subprocess_exec(
        *helper_command(module),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
