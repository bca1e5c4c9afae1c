"""One shard of a --processes run: `python -m checker.parallel.worker`.

It reads its task (the parent's parsed options, its shard, its folder) from
stdin, runs `checker check --shard K/N` in that folder with a JSON report
and no history database (the parent's merge keeps the history), and writes
its running counts on stdout. It is started only by the coordinator.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import signal
import sys
from dataclasses import dataclass

from checker.parallel import close_inherited, die_with_parent
from checker.targets import Shard

# A task's exit codes (the parent reads the report; these only explain a
# shard that left none).
DONE = 0
FAILED = 2  # said on stderr


@dataclass(frozen=True)
class Task:
    args: argparse.Namespace  # the parent's parsed `check` options
    shard: Shard
    out_dir: str
    concurrency: int  # this shard's share of the run's --concurrency
    parent: int  # its pid: a shard whose parent is already gone does nothing


def shard_args(task: Task) -> argparse.Namespace:
    """The parent's options as one shard runs them."""
    args = argparse.Namespace(**vars(task.args))
    args.shard = task.shard
    args.out = task.out_dir
    args.format = ["json"]  # what the merge reads; the parent writes the rest
    args.quiet = True
    args.no_progress = True
    args.processes = 1
    # The global cap is the parent's: each of N processes takes its share.
    args.concurrency = task.concurrency
    # Alerts and pruning are the merged run's (a shard would send none, but
    # would say so on every run).
    args.notify_webhook = args.notify_email = None
    args.keep = args.keep_days = None
    return args


def main() -> int:
    # A parent killed outright must not leave its shards checking on their
    # own: SIGTERM stops a shard as Ctrl-C does, and it writes its report,
    # which the next run merges.
    die_with_parent(signal.SIGTERM)
    close_inherited()
    try:
        try:
            task = pickle.load(sys.stdin.buffer)
        except (EOFError, pickle.UnpicklingError):
            return FAILED  # stopped by its parent before it had its task
        if os.getppid() != task.parent:
            return FAILED  # the parent died before this shard could follow it
        return _run(task)
    except KeyboardInterrupt:
        # Ctrl-C before the run took over its signals: no journal yet, and the
        # parent reports this shard's lines as not checked.
        return 128 + signal.SIGINT


def _run(task: Task) -> int:
    from checker import loops
    from checker.cli import check_config
    from checker.lock import run_lock
    from checker.parallel.counts import CountsPipe
    from checker.run import RunError, run_check

    try:
        config, notes = check_config(shard_args(task))
    except RunError as exc:
        print(f"checker: error: shard {task.shard}: {exc}", file=sys.stderr)
        return FAILED
    for note in notes:
        print(f"checker: {note}", file=sys.stderr)
    # (No history: a shard keeps none, check_config says so from --shard.)
    config = dataclasses.replace(config, counts=lambda stats: CountsPipe(sys.stdout.buffer, stats))
    with run_lock(task.out_dir):
        outcome = loops.run(run_check(config), config.options["loop"])
    for note in outcome.notes:
        print(f"checker: {note}", file=sys.stderr)
    if outcome.interrupted and outcome.signal:
        return 128 + outcome.signal  # (its report is written: the parent says so)
    return DONE


if __name__ == "__main__":
    sys.exit(main())
