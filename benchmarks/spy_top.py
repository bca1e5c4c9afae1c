"""The shares of a py-spy profile, by function: where the samples were.

    pip install py-spy            # into any venv: it is a sampling profiler
    py-spy record -r 1000 -f raw -o spy.txt -- .venv/bin/python -m checker check LIST ...
    python3 benchmarks/spy_top.py spy.txt [--own] [--top N]

Cumulative (default): the share of samples with the function anywhere on the
stack (each function counted once per sample). `--own`: the share with it on
top, by line. Sampling, unlike cProfile, does not inflate small functions, so
these shares are what PROFILE.md quotes.
"""

from __future__ import annotations

import argparse
from collections import Counter


def frame_key(frame: str) -> tuple[str, str]:
    """("function file", "line") of one py-spy raw frame "func (path:line)"."""
    if " (" not in frame:
        return frame, ""
    name, _, where = frame.rpartition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return f"{name} {path.rsplit('/', 1)[-1]}", line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("raw")
    parser.add_argument("--own", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(args.raw, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():  # a process's command line that spans lines
                continue
            n = int(count)
            total += n
            frames = [frame_key(x) for x in stack.split(";")]
            name, lineno = frames[-1]
            own[f"{name} L{lineno}"] += n
            for key in {name for name, _ in frames}:
                cumulative[key] += n
    print(f"{total} samples")
    for key, n in (own if args.own else cumulative).most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
