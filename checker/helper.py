"""How a run's helper processes start (its reporter, its shards), and the CPUs
they may use: kept light (os, sys, subprocess) so that the `checker` command
can start its reporter before its own imports (`reports.prestart`)."""

from __future__ import annotations

import os
import subprocess
import sys

# How a helper starts: `python -m module` as this checker would be, but with
# no current folder on sys.path (-P): `-m` puts it first, and run from a
# folder holding one named `checker` (a clone's parent, /srv for
# /srv/checker) that folder was imported instead of checker, and every shard
# died. The folder this checker was imported from is added after the others,
# for a checker run from its source without being installed.
_BOOT = (
    "import runpy, sys\n"
    "root, module = sys.argv[1], sys.argv[2]\n"
    "del sys.argv[1:3]\n"
    "if root not in sys.path:\n"
    "    sys.path.append(root)\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)
# (The folder that holds the checker package: checker/helper.py.)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def helper_command(module: str) -> list[str]:
    """`python -m module` (see `_BOOT`), this interpreter and this checker."""
    return [sys.executable, "-P", "-c", _BOOT, _ROOT, module]


def spawn_helper(module: str, stderr: int | None) -> subprocess.Popen[bytes]:
    """The helper, talked to over its stdin and stdout, in a session of its
    own: not in the terminal's process group, so that Ctrl-C is the run's to
    handle and to pass on. (Blocking, a few milliseconds: for a run's start,
    before its event loop or beside it.)"""
    return subprocess.Popen(
        helper_command(module),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as taskset and
    containers' cpusets set it), not all the machine has."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
