"""`checker merge OUT REPORT...`: the JSON reports of the shards of one list
(`--shard K/N`) made into one report, as if one run had checked it all.

The shards' rows are merged in list order (list, then line), streaming (a
heap of one row per shard), into a journal in OUT, and the reports, the
history database and the run index are written from it as after any run:
the changes are against the previous merged run in OUT. Refused, one line
each: a report that is not a shard's, shards of different lists or counts,
a shard given twice, a shard missing (unless `partial`: then its lines are
read from the lists again and reported "not checked").
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checker.check import failed_result
from checker.reports.journal import Journal, header_line
from checker.reports.recover import RecoverError, publish, read_report_header
from checker.results import INVALID, NOT_CHECKED
from checker.store.index import report_rows
from checker.summary import Stats
from checker.targets import ListError, Shard, Target, read_targets


class MergeError(Exception):
    """The reports cannot be merged (one line for the user, exit code 2)."""


@dataclass
class Merged:
    reports: list[str]
    stats: Stats
    run: dict[str, Any]
    notes: list[str]


async def merge(
    out_dir: str, paths: Sequence[str], formats: Sequence[str], partial: bool
) -> Merged:
    runs = []
    for path in paths:
        try:
            run, _ = read_report_header(path)
        except RecoverError as exc:
            raise MergeError(str(exc)) from None
        text = run.get("shard")
        if not isinstance(text, str):
            raise MergeError(f"{path}: not a shard's report (its run had no --shard)")
        try:
            runs.append((path, run, Shard.parse(text)))
        except ValueError as exc:
            raise MergeError(f"{path}: {exc}") from None
    first_path, first, shard = runs[0]
    of, lists = shard.of, first.get("lists")
    given: dict[int, str] = {}
    for path, run, part in runs:
        if part.of != of:
            raise MergeError(f"{path}: shard {part} of another count than {first_path}'s ({shard})")
        if run.get("lists") != lists:
            raise MergeError(f"{path}: a report of other lists than {first_path}'s")
        if part.number in given:
            raise MergeError(f"shard {part} given twice: {given[part.number]} and {path}")
        given[part.number] = path
    missing = [k for k in range(1, of + 1) if k not in given]
    if missing and not partial:
        names = ", ".join(f"{k}/{of}" for k in missing)
        raise MergeError(f"shard {names} missing (--partial reports their lines as not checked)")
    list_paths = [str(p) for p in lists] if isinstance(lists, list) else []
    options = first.get("options") if isinstance(first.get("options"), dict) else {}
    wanted = options.get("list_format") if isinstance(options, dict) else None

    order = {path: i for i, path in enumerate(list_paths)}
    streams = [_rows(path, order) for path in given.values()]
    streams += [
        _not_checked(list_paths, str(wanted or "auto"), Shard(k, of), order) for k in missing
    ]
    now = datetime.now(UTC)
    started = min(str(run.get("started_at") or "") for _, run, _ in runs)
    finished = max(str(run.get("finished_at") or "") for _, run, _ in runs)
    header = {
        "started_at": started,
        "checker_version": first.get("checker_version"),
        "options": options,
        "lists": list_paths,
        "shard": None,
        "merged": [f"{k}/{of}" for k in sorted(given)],
    }
    from checker.run import report_base  # (run imports the reports, not the other way)

    os.makedirs(out_dir, exist_ok=True)
    base = report_base(out_dir, now)
    journal_path = base + ".journal.jsonl"
    try:
        await asyncio.to_thread(_write_journal, journal_path, header, streams)
    except BaseException:
        # Half a journal would be taken for a killed run's by the next run.
        with contextlib.suppress(OSError):
            os.unlink(journal_path)
        raise
    journal = Journal.reopen(journal_path)
    async with journal:
        pass
    stats = Stats()
    for seq, row in enumerate(journal.results()):
        stats.add_row(seq, row)
    interrupted = bool(missing) or any(run.get("interrupted") for _, run, _ in runs)
    run_info = {
        **header,
        "finished_at": finished,
        "duration_s": round(max(float(run.get("duration_s") or 0) for _, run, _ in runs), 3),
        **stats.totals(),
        "duplicates": sum(int(run.get("duplicates") or 0) for _, run, _ in runs),
        "interrupted": interrupted,
    }
    reports, notes = await publish(journal, run_info, list_paths, base, formats)
    return Merged(reports, stats, run_info, notes)


_Key = tuple[int, int, bytes]  # (list, line, the row's JSON)


def _write_journal(path: str, header: dict[str, Any], streams: list[Iterator[_Key]]) -> None:
    """The merged rows, in list order, as a journal (blocking: in a thread)."""
    with open(path, "wb") as f:
        f.write(header_line(header))
        for seq, (_, _, raw) in enumerate(heapq.merge(*streams)):
            f.write(b'{"seq":%d,"result":' % seq + raw + b"}\n")


def _rows(path: str, order: dict[str, int]) -> Iterator[_Key]:
    for _, line in report_rows(path):
        row = json.loads(line)
        yield order.get(str(row.get("source")), len(order)), int(row.get("line") or 0), line


def _not_checked(
    lists: list[str], wanted: str, shard: Shard, order: dict[str, int]
) -> Iterator[_Key]:
    """The rows of a shard whose report was not given: read from the lists."""
    try:
        for item in read_targets(lists, wanted, shard):
            if isinstance(item, Target):
                detail = f"not checked: shard {shard}'s report was not merged"
                row = (
                    failed_result(item, INVALID, item.error or "")
                    if item.url is None
                    else failed_result(item, NOT_CHECKED, detail)
                )
                yield order.get(item.source, len(order)), item.line, row.to_json().encode("utf-8")
    except ListError as exc:
        raise MergeError(
            f"--partial needs the lists to read shard {shard}'s lines: {exc}"
        ) from None
