"""A run's reporter started as the `checker` command starts, before its imports.

A reporter (`reporter.py`) takes about 400 ms on a slow 2-CPU machine before
it can take its first row: an interpreter, its imports, its own reading of
the lists. Started where the run knows it wants one (its journal open, after
the run's own imports, some 300 ms in), it began its rows about 1,200 checks
behind the run, and with a history to keep (a folder run from cron) it did
not catch up by the run's end. Started first thing, from what the command
line says, that time is spent beside the run's own start, on the other CPU.

The guess (`likely`) looks only at the arguments, the environment and the
CPUs: `checker check` with list files of LIST_BYTES or more (or
CHECKER_REPORTER=on), no --shard, no --processes. A wrong guess either way
costs no report: a reporter started for nothing reads the end of its stdin
and exits (`let_go`, or the run's own exit); a run that wants one and has
none started early starts it then, as before.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Iterable, Sequence

from checker.helper import spawn_helper, usable_cpus

# Lists smaller than this are written after the checks: measured on one host,
# 1,000 URLs (29 KB) took 0.20 s with a reporter and 0.19 without, 1,500
# (44 KB) 0.245 and 0.252, 2,000 (59 KB) 0.27 and 0.29.
LIST_BYTES = 40 * 1024
MODULE = "checker.reports.reporter"

_SETTINGS = {
    **dict.fromkeys(("on", "1", "true", "yes"), "on"),
    **dict.fromkeys(("off", "0", "false", "no"), "off"),
    **dict.fromkeys(("auto", ""), "auto"),
}


def setting() -> str:
    """CHECKER_REPORTER as "on", "off" or "auto" (unset); ValueError for
    anything else, which the run refuses before it starts."""
    raw = os.environ.get("CHECKER_REPORTER", "auto")
    value = _SETTINGS.get(raw.strip().lower())
    if value is None:
        raise ValueError(f"CHECKER_REPORTER={raw!r}: use on, off or auto")
    return value


def _names(arg: str, *options: str) -> bool:
    """Whether `arg` gives one of `options` (argparse takes a prefix of an
    option's name, and "--name=value")."""
    name = arg.partition("=")[0]
    return len(name) > 3 and any(option.startswith(name) for option in options)


def by_size(chosen: str, paths: Iterable[str]) -> bool:
    """The rule a run with a reporter follows (`reporter.wanted` and `likely`,
    once a shard is ruled out), for the CHECKER_REPORTER `setting` `chosen`:
    "on" always, "off" never, "auto" with a second CPU and LIST_BYTES of
    files among `paths` (what is not a file counts nothing)."""
    if chosen != "auto":
        return chosen == "on"
    if usable_cpus() < 2:
        return False
    size = 0
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            found = os.stat(path)
            if stat.S_ISREG(found.st_mode):
                size += found.st_size
    return size >= LIST_BYTES


def likely(argv: Sequence[str]) -> bool:
    """Whether `checker ARGV` looks like a run that will want a reporter
    (`reporter.wanted`), told from its arguments alone."""
    if not argv or argv[0] != "check":
        return False
    try:
        chosen = setting()
    except ValueError:
        return False
    if any(_names(arg, "--shard", "--processes") for arg in argv[1:]):
        return False
    # (An option's value is counted too if it is a file: a --config or a
    # --ca-file is a few KB.)
    return by_size(chosen, (arg for arg in argv[1:] if not arg.startswith("-")))


_early: subprocess.Popen[bytes] | None = None


def spawn() -> subprocess.Popen[bytes]:
    """A reporter process, waiting for its run's Start on its stdin. (Its
    stderr is shown with CHECKER_REPORTER_DEBUG=1; its own errors come back
    in its outcome.)"""
    debug = os.environ.get("CHECKER_REPORTER_DEBUG")
    return spawn_helper(MODULE, None if debug else subprocess.DEVNULL)


def prestart(argv: Sequence[str]) -> None:
    """Start the reporter now if the run is likely to want one."""
    global _early
    if _early is None and likely(argv):
        with contextlib.suppress(OSError):  # (then the run starts it, or goes without)
            _early = spawn()


def take() -> subprocess.Popen[bytes] | None:
    """The reporter started early, for the run to use (once); None if none
    was, or it is gone."""
    global _early
    proc, _early = _early, None
    if proc is not None and proc.poll() is not None:
        _close(proc)
        return None
    return proc


def let_go() -> None:
    """The run wants no reporter: the one started early reads the end of its
    stdin and exits."""
    proc = take()
    if proc is not None:
        _close(proc)


# Let go, waited for only at the command's end (`reap`): it exits as soon as
# it reads its stdin's end, and the process object is kept till then
# (collected while the process lives, it warns).
_let_go: list[subprocess.Popen[bytes]] = []


def reap(within: float = 2.0) -> None:
    """At the command's end: the reporter started early and never taken
    (the run ended before, at an argument error or another run's lock) is
    let go, and each one let go is waited for, killed if it is still there
    after `within` seconds. (It exits at its stdin's end, so the wait is
    its start-up's rest at most; left running, its process object warned
    as it was collected, `python -X dev`, and an argument error left a
    process behind for a moment.)"""
    let_go()
    deadline = time.monotonic() + within
    for proc in _let_go:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _let_go.clear()


def _close(proc: subprocess.Popen[bytes]) -> None:
    _let_go.append(proc)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
