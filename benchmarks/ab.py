"""Two versions of checker on one list, A B A B: medians and the paired ratio.

    python3 benchmarks/ab.py LIST [--base REV] [--head REV] [--pairs N] [--history]
        [-- CHECKER OPTIONS...]

A is the checker of git revision REV (default HEAD), checked out into a
temporary worktree; B is the working tree (or --head's revision, likewise).
Both run with the project's venv
(`.venv/bin/python -m checker check LIST ...`), from a neutral directory so
that PYTHONPATH decides which checker is imported. The server is yours to
start (e.g. the nginx of `run.py`, or `python3 -m http.server`), on loopback.
With --history each side writes into a folder of its own that it keeps,
as a run from cron does (the history's states and trends to work out):
one run of each first, not timed, and each pair adds a run to both.
For the step-by-step table in PROFILE.md: a change is kept when B/A is below
1 by more than the spread of the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


def run_once(
    src: Path, lst: str, extra: list[str], out: Path, keep: bool = False
) -> tuple[float, float]:
    """(wall s, CPU s of the child) for one run.

    Waited for with a blocking os.wait4, as run.py does: subprocess's wait
    with a timeout polls with sleeps of up to 50 ms, and that put steps of
    50 ms into every wall time measured here. A timer kills a run that hangs.
    """
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "checker", "check", lst, "--out", str(out), "-q", *extra],
        cwd=tempfile.gettempdir(),
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
    )
    watchdog = threading.Timer(1800, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list")
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--head", help="B is this revision rather than the working tree")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--history", action="store_true", help="each side keeps its folder")
    args, rest = parser.parse_known_args()  # after "--": options for checker check
    rest = rest[1:] if rest[:1] == ["--"] else rest
    extra = rest or ["--concurrency", "200", "--per-host", "200", "--retries", "0"]
    work = Path(tempfile.mkdtemp(prefix="checker-ab-"))
    trees = {"A": work / "base", "B": work / "head" if args.head else ROOT}
    for who, rev in (("A", args.base), ("B", args.head)):
        if rev:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(trees[who]), rev],
                check=True,
            )
    lst = str(Path(args.list).resolve())

    def out(who: str) -> Path:
        return work / (f"out-{who}" if args.history else "out")

    try:
        if args.history:
            for who, src in trees.items():
                run_once(src, lst, extra, out(who), keep=True)
        runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for i in range(args.pairs):
            for who, src in trees.items():
                wall, cpu = run_once(src, lst, extra, out(who), keep=args.history)
                runs[who].append((wall, cpu))
                print(f"pair {i + 1} {who}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
        for who in "AB":
            walls = [w for w, _ in runs[who]]
            cpus = [c for _, c in runs[who]]
            print(
                f"{who} ({args.base if who == 'A' else args.head or 'working tree'}): "
                f"wall median {statistics.median(walls):.3f} s "
                f"(min {min(walls):.3f}, max {max(walls):.3f}), "
                f"CPU median {statistics.median(cpus):.3f} s"
            )
        ratios = [b[0] / a[0] for a, b in zip(runs["A"], runs["B"], strict=True)]
        print(f"B/A wall, paired median: {statistics.median(ratios):.3f}")
    finally:
        for who in "AB":
            if trees[who] != ROOT:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[who])],
                    check=False,
                )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
