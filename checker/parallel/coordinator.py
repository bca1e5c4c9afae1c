"""`checker check --processes N`: N shard runs (`--shard K/N`) of the same
lists, each a process with its own event loop, merged into one report.

One Python process keeps one core busy; N shard processes keep N. The parent
holds the report folder's lock, draws the one progress bar from the counts
each shard writes on its stdout (checker.parallel.counts), and passes on each
line a shard says on stderr once (N shards reading one list note the same
things). Ctrl-C reaches every process of the terminal's group; a SIGTERM to
the parent is passed on to the shards. Either way each shard stops as a run
does, writing its report with its unfinished lines as "interrupted", and the
merge keeps every row. A shard that dies without its report is recovered
from its journal, as a killed run is; one that never started has its lines
reported as not checked.

The shards work in <out>/.shards/<report name>/<K>/, removed once merged. A
parent killed outright leaves that folder (its shards stop with it, see
worker): the next run in the folder merges what it holds, as an interrupted
run (leftovers), before its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checker.parallel import SHARDS_DIR, newest_report, shard_dirs, start_helper
from checker.parallel.counts import parse
from checker.parallel.worker import Task
from checker.reports.merge import Expected, MergeError, MergeOptions, merge
from checker.reports.recover import (
    JOURNAL_SUFFIX,
    KILLED,
    RECORDED_BEFORE,
    RecoverError,
    journal_headers,
    recover,
)
from checker.results import iso
from checker.run import (
    RunConfig,
    RunError,
    RunOutcome,
    after_reports,
    make_bar,
    recover_all,
    report_base,
)
from checker.store.index import read_runs
from checker.targets import ListError, Shard, check_lists, list_notes


async def run_processes(config: RunConfig, args: argparse.Namespace) -> RunOutcome:
    """`config` as N shard processes; `args` are the parsed options they run."""
    n = config.processes
    try:
        entries = check_lists(config.lists, count=config.progress, wanted=config.list_format)
        notes = list_notes(config.lists, config.list_format)
    except ListError as exc:
        raise RunError(str(exc)) from None
    notes += await recover_all(config.out_dir, config.formats)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    base = report_base(config.out_dir, started)
    work = os.path.join(config.out_dir, SHARDS_DIR, os.path.basename(base))

    caught: list[int] = []
    procs: list[asyncio.subprocess.Process] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        # The shards are in process groups of their own: Ctrl-C reaches this
        # process only, and is passed on from here.
        if not caught:
            caught.append(signum)
        for k, proc in enumerate(procs, 1):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    # A shard still starting would die half-way through its
                    # imports, saying so at length: it is stopped outright
                    # (it has checked nothing; its lines are "not checked").
                    proc.send_signal(signum if k in follow.ready else signal.SIGKILL)

    # Before the shards' folder is made: a Ctrl-C from here on is the run's
    # (its folder removed at the end), not a KeyboardInterrupt that left
    # the folder for the next run to merge (seen under load, 2 in 20).
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        os.makedirs(work)
        # For a later run to merge these shards if this one is killed (leftovers).
        parent = Parent(iso(started), config.options, list(config.lists), n)
        await asyncio.to_thread(parent.write, work)
        bar = make_bar(entries, config.progress, sys.stderr)
        follow = _Follow(bar, n)
        try:
            async with asyncio.TaskGroup() as group:
                for k in range(1, n + 1):
                    folder = os.path.join(work, str(k))
                    os.mkdir(folder)
                    share = config.pool.concurrency // n + (k <= config.pool.concurrency % n)
                    task = Task(args, Shard(k, n), folder, share, os.getpid())
                    proc = await _start(task)
                    procs.append(proc)
                    if caught:  # a signal while it started: it must not start
                        # (It may be gone already: the loop then knows it has exited.)
                        with contextlib.suppress(ProcessLookupError):
                            proc.send_signal(signal.SIGKILL)
                    group.create_task(follow.shard(k, proc))
        finally:
            if bar is not None:
                bar.set_postfix_str(follow.postfix(), refresh=False)
                bar.close()

        codes = None if caught else {k: p.returncode for k, p in enumerate(procs, 1)}
        shards = await _collect(work, n, codes)
        notes += shards.notes
        notes += [line for line in follow.said if line not in notes]  # the parent's own too
        merged = await merge(
            config.out_dir,
            shards.reports,
            MergeOptions(
                formats=config.formats,
                partial=True,
                alert_after=config.alert_after,
                remind_every=config.remind_every,
                roll_up_days=config.history_days,
                options=config.options,
                started=started,
                duration_s=time.perf_counter() - t0,
                interrupted=bool(caught) or shards.failed,
                missing_detail=(
                    "not checked: the run was stopped first"
                    if caught
                    else "not checked: its shard's process failed (see the notes)"
                ),
                lenient=True,
                trusted=True,
                expected=Expected(list(config.lists), n, config.list_format),
                alert=config.alert,
            ),
        )
    finally:
        # Kept until the reports are written: a second Ctrl-C must not tear them.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if caught and not merged.run["interrupted"]:
        notes.append("stopped once every check was done: the reports were written whole")
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(work))  # .shards, when no other run's is left
    outcome = RunOutcome(
        merged.stats,
        merged.reports,
        time.perf_counter() - t0,
        bool(merged.run["interrupted"]),
        caught[0] if caught else None,
        notes=notes + merged.notes,
        run=merged.run,
        changes=merged.changes,
    )
    await after_reports(config.out_dir, config.channels, config.keep, config.keep_days, outcome)
    return outcome


@dataclass
class _Collected:
    reports: list[str]  # the shards' JSON reports
    failed: bool  # a shard left no report (its lines are not checked)
    notes: list[str]


async def _collect(work: str, n: int, codes: dict[int, int | None] | None) -> _Collected:
    """Each shard's JSON report in `work`, as it wrote it or recovered from
    its journal. `codes`: how each shard process ended, to say of those that
    were stopped or failed; None when there is nothing to say of them (a
    stopped run's shards, or a killed run's left over)."""
    found = _Collected([], False, [])
    for folder in shard_dirs(work):
        k = int(os.path.basename(folder))
        for journal in sorted(os.listdir(folder)):
            if journal.endswith(JOURNAL_SUFFIX):
                with contextlib.suppress(RecoverError):
                    done = await recover(os.path.join(folder, journal), ["json"])
                    found.notes.append(f"shard {k}/{n} stopped before its report: recovered")
                    if done.note:
                        found.notes.append(f"shard {k}/{n}: {done.note}")
        report = newest_report(folder)
        code = codes.get(k) if codes is not None else None
        if report is None:
            found.failed = True
            if codes is not None:
                found.notes.append(
                    f"shard {k}/{n} left no report (it {_exit(code)}):"
                    " its lines are reported as not checked"
                )
        else:
            found.reports.append(report)
            if code is not None and (code < 0 or code >= 128):
                found.notes.append(
                    f"shard {k}/{n} was {_exit(code)}: its unfinished lines"
                    " are reported as not checked"
                )
    return found


async def _start(task: Task) -> asyncio.subprocess.Process:
    # (A process group of its own: see on_signal.)
    proc = await start_helper("checker.parallel.worker", asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    # A shard stopped as it starts (an early Ctrl-C) has closed its end:
    # it then has no task, and no report, which is said where it ends.
    with contextlib.suppress(ConnectionError, RuntimeError):
        proc.stdin.write(pickle.dumps(task))
        await proc.stdin.drain()
    proc.stdin.close()
    return proc


class _Follow:
    """Reads the shards' counts (for the bar) and what they say (once each)."""

    def __init__(self, bar: Any, n: int) -> None:
        self.bar = bar
        self.rows = [0] * n
        self.up = [0] * n
        self.down = [0] * n
        self.said: list[str] = []
        self.ready: set[int] = set()  # shards whose first counts came: their run has begun
        self._seen: set[str] = set()
        self._postfix = 0.0

    async def shard(self, k: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.TaskGroup() as group:
            group.create_task(self._counts(k - 1, proc.stdout))
            group.create_task(self._notes(proc.stderr))
        await proc.wait()

    async def _counts(self, i: int, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            counts = parse(line)
            if counts is None:
                continue
            self.ready.add(i + 1)
            rows, self.up[i], self.down[i] = counts
            if self.bar is not None and rows > self.rows[i]:
                self.bar.update(rows - self.rows[i])
                now = time.monotonic()
                if now - self._postfix > 0.5:
                    self._postfix = now
                    self.bar.set_postfix_str(self.postfix(), refresh=False)
            self.rows[i] = max(rows, self.rows[i])

    def postfix(self) -> str:
        return f"up {sum(self.up)} down {sum(self.down)}"

    async def _notes(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line not in self._seen:
                self._seen.add(line)
                # Said as the shard said it, after the bar (in the notes).
                self.said.append(line.removeprefix("checker: "))


async def merge_leftovers(out_dir: str, formats: Sequence[str]) -> list[str]:
    """Merge the shards a killed --processes run left in `out_dir` (marked
    interrupted: it never moves a state), once none of them still runs."""
    from checker.lock import LockBusy, run_lock

    notes = []
    root = os.path.join(out_dir, SHARDS_DIR)
    for work in await asyncio.to_thread(_runs_in, root):
        parent = await asyncio.to_thread(Parent.read, work)
        if parent is None:
            # Killed before its shards started: no row was ever recorded.
            await asyncio.to_thread(shutil.rmtree, work, True)
            continue
        options = parent.options
        folders = shard_dirs(work)
        with contextlib.ExitStack() as held:
            try:
                for folder in folders:
                    held.enter_context(run_lock(folder))
            except LockBusy:
                continue  # its shards are still stopping: a later run merges them
            # Killed as it merged: once its reports were published, the merge
            # is done (the folder was all that was left); before, its merged
            # journal is remade from the shards, which have every row.
            if any(r.started_at == parent.started_at for r in read_runs(out_dir)):
                await asyncio.to_thread(shutil.rmtree, work, True)
                continue
            for stale in await asyncio.to_thread(_merged_journals, out_dir, parent.started_at):
                os.unlink(stale)
            shards = await _collect(work, parent.processes, None)
            notes += shards.notes
            how = MergeOptions(
                formats=formats,
                partial=True,
                options=options,
                started=datetime.fromisoformat(parent.started_at.replace("Z", "+00:00")),
                interrupted=True,
                missing_detail=KILLED,
                recovered=True,
                lenient=True,
                trusted=True,
                expected=Expected(
                    parent.lists, parent.processes, str(options.get("list_format") or "auto")
                ),
            )
            try:
                merged = await merge(out_dir, shards.reports, how)
            except MergeError as exc:
                # Never in the way of the runs to come: set aside, and said.
                aside = os.path.join(out_dir, SHARDS_DIR + "-unmerged", os.path.basename(work))
                await asyncio.to_thread(shutil.move, work, aside)
                notes.append(
                    f"could not merge a killed --processes run's shards ({exc}): in {aside}"
                )
                continue
        await asyncio.to_thread(shutil.rmtree, work, True)
        reports = ", ".join(merged.reports)
        if merged.recorded_before:
            # Killed after its merge was published: only its index line and
            # its folder were left (publish's note would say it once more).
            notes.append(f"a killed --processes run, at its very end, was completed: {reports}")
            notes += [n for n in merged.notes if not n.endswith(RECORDED_BEFORE)]
        else:
            notes.append(f"a killed --processes run's shards became {reports}")
            notes += merged.notes
    with contextlib.suppress(OSError):
        os.rmdir(root)
    return notes


def _exit(code: int | None) -> str:
    """How a shard ended, in words: a signal by its name."""
    if code is None:
        return "still running"
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum:
        with contextlib.suppress(ValueError):
            return f"stopped by {signal.Signals(signum).name}"
    return f"ended with exit code {code}"


def _merged_journals(out_dir: str, started_at: str) -> list[str]:
    """The journal a parent started merging into `out_dir` (its header says
    when the run started, and which shards it merged)."""
    return [
        path
        for path, head in journal_headers(out_dir)
        if head.get("started_at") == started_at and "merged" in head
    ]


def _runs_in(root: str) -> list[str]:
    return [os.path.join(root, n) for n in sorted(os.listdir(root))] if os.path.isdir(root) else []


@dataclass(frozen=True)
class Parent:
    """What a later run needs to merge the shards of a killed --processes
    run: `parent.json` in its work folder."""

    started_at: str
    options: dict[str, Any]
    lists: list[str]
    processes: int

    def write(self, work: str) -> None:
        with open(os.path.join(work, "parent.json"), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f)

    @classmethod
    def read(cls, work: str) -> Parent | None:
        try:
            with open(os.path.join(work, "parent.json"), encoding="utf-8") as f:
                data = json.load(f)
            parent = cls(
                str(data["started_at"]),
                dict(data["options"]),
                [str(p) for p in data["lists"]],
                int(data["processes"]),
            )
            datetime.fromisoformat(parent.started_at.replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return parent
