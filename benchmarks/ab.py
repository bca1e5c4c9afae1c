"""Two versions of checker on one list, A B A B: medians and the paired ratio.

    python3 benchmarks/ab.py LIST [--base REV] [--pairs N] [-- CHECKER OPTIONS...]

A is the checker of git revision REV (default HEAD), checked out into a
temporary worktree; B is the working tree. Both run with the project's venv
(`.venv/bin/python -m checker check LIST ...`), from a neutral directory so
that PYTHONPATH decides which checker is imported. The server is yours to
start (e.g. the nginx of `run.py`, or `python3 -m http.server`), on loopback.
For the step-by-step table in PROFILE.md: a change is kept when B/A is below
1 by more than the spread of the runs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


def run_once(src: Path, lst: str, extra: list[str], out: Path) -> tuple[float, float]:
    """(wall s, CPU s of the child) for one run."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [str(PYTHON), "-m", "checker", "check", lst, "--out", str(out), "-q", *extra],
        cwd=tempfile.gettempdir(),
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list")
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--pairs", type=int, default=5)
    args, rest = parser.parse_known_args()  # after "--": options for checker check
    rest = rest[1:] if rest[:1] == ["--"] else rest
    extra = rest or ["--concurrency", "200", "--per-host", "200", "--retries", "0"]
    work = Path(tempfile.mkdtemp(prefix="checker-ab-"))
    tree = work / "base"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), args.base],
        check=True,
    )
    try:
        runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for i in range(args.pairs):
            for who, src in (("A", tree), ("B", ROOT)):
                wall, cpu = run_once(src, str(Path(args.list).resolve()), extra, work / "out")
                runs[who].append((wall, cpu))
                print(f"pair {i + 1} {who}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
        for who in "AB":
            walls = [w for w, _ in runs[who]]
            cpus = [c for _, c in runs[who]]
            print(
                f"{who} ({args.base if who == 'A' else 'working tree'}): "
                f"wall median {statistics.median(walls):.3f} s "
                f"(min {min(walls):.3f}, max {max(walls):.3f}), "
                f"CPU median {statistics.median(cpus):.3f} s"
            )
        ratios = [b[0] / a[0] for a, b in zip(runs["A"], runs["B"], strict=True)]
        print(f"B/A wall, paired median: {statistics.median(ratios):.3f}")
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
