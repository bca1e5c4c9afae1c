"""Instructions a check, counted by valgrind: a measure that does not drift.

    python3 benchmarks/instructions.py LIST [--base REV] [--peers]

The wall time of this shared machine varies by 15% from run to run, more
than most steps of the hot path are worth. The number of instructions a
process executes does not: two runs of the same code on the same list
agree to 0.02%. So each contender runs three times under
`valgrind --tool=cachegrind` (no cache simulation): on the list's first
line alone (the start-up: the interpreter, the imports, the reports of one
row), on its first half and on the whole list; the difference between the
last two over the lines added is the instructions a check. (Not from the
first line alone: a list under 40 KiB has no reporter, the run writes its
reports itself, so the start of a long list's run is not the start of a
one-line run.) Only the process itself is counted,
with its threads: not a child (checker's reporter, which runs on the other
CPU), not the kernel (system calls count only their user-space side).

Contenders: the working tree's checker, checker at `--base REV` (checked
out into a temporary worktree, its modules compiled first), and with
`--peers` the minimal streams client and the aiohttp peer of run.py (they
need benchmarks/.venv, which `run.py` makes). The server is yours to start
(run.py's nginx, or any on loopback); the list's URLs all answer 200.
Under valgrind a run is about 30 times slower: a list of 2,000 lines is
enough. Instructions are not time (a system call, a cache miss, the
reporter's CPU are not in them), so a step is still confirmed by
`ab.py`'s wall time; they say which step is worth it, and by how much.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
BENCH_PYTHON = ROOT / "benchmarks" / ".venv" / "bin" / "python"
PEERS = ROOT / "benchmarks" / "peers"
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions of one run of `cmd` (its own process and threads)."""
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *cmd,
        ],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    found = _REFS.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        sys.exit(f"instructions.py: {' '.join(cmd[:4])} ... failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def checker_cmd(src: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """checker of the tree `src`, the list at "{}", its reports into `out`."""
    cmd = [str(PYTHON), "-m", "checker", "check", "{}", "--out", str(out), "-q"]
    return cmd, {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list")
    parser.add_argument("--base", help="a git revision to compare the working tree with")
    parser.add_argument("--peers", action="store_true", help="also the minimal client and aiohttp")
    parser.add_argument("--concurrency", type=int, default=200, help="the peers' (default 200)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py: valgrind is missing (apt-get install valgrind)")
    with open(args.list, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="checker-instr-"))
    one = work / "one.txt"
    one.write_text(lines[0], encoding="utf-8")
    half = work / "half.txt"
    half.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    contenders: list[tuple[str, list[str], dict[str, str]]] = []
    worktree: Path | None = None
    try:
        if args.base:
            worktree = work / "base"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "add",
                    "--detach",
                    "-f",
                    str(worktree),
                    args.base,
                ],
                check=True,
                capture_output=True,
            )
            # (Compiled once here: a tree without .pyc files would count its compiling.)
            subprocess.run(
                [str(PYTHON), "-m", "compileall", "-q", str(worktree / "checker")], check=True
            )
            cmd, env = checker_cmd(worktree, work / "out")
            contenders.append((f"checker {args.base}", cmd, env))
        subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(ROOT / "checker")], check=True)
        cmd, env = checker_cmd(ROOT, work / "out")
        contenders.append(("checker (working tree)", cmd, env))
        if args.peers:
            if not BENCH_PYTHON.exists():
                sys.exit(
                    "instructions.py: --peers needs benchmarks/.venv (run benchmarks/run.py once)"
                )
            plain = {"PATH": "/usr/bin:/bin"}
            conc = str(args.concurrency)
            for name, script in (
                ("minimal streams client", "minimal_client.py"),
                ("aiohttp", "aiohttp_check.py"),
            ):
                contenders.append(
                    (name, [str(BENCH_PYTHON), str(PEERS / script), "{}", conc], plain)
                )
        added = len(lines) - len(lines) // 2
        print(f"{len(lines):,} URLs ({args.list}); instructions of the process, valgrind\n")
        print("| contender | start-up (1 URL) | half the list | whole list | a check |")
        print("|---|---|---|---|---|")
        for name, cmd, env in contenders:
            runs = []
            for lst in (str(one), str(half), args.list):
                if "checker" in name:
                    shutil.rmtree(work / "out", ignore_errors=True)
                runs.append(count([lst if part == "{}" else part for part in cmd], env))
            start, part, whole = runs
            per = (whole - part) / added
            print(
                f"| {name} | {start / 1e6:,.1f} M | {part / 1e6:,.1f} M | {whole / 1e6:,.1f} M"
                f" | {per:,.0f} |",
                flush=True,
            )
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
