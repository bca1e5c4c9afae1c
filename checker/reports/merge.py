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
import dataclasses
import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checker import __version__
from checker.check import failed_result
from checker.reports import json_report
from checker.reports.journal import Journal, header_line, held
from checker.reports.recover import (
    RecoverError,
    journal_headers,
    policy_of,
    publish,
    read_report_header,
    remove_spools,
    seconds_between,
)
from checker.results import INVALID, NOT_CHECKED, iso, row_problem
from checker.store.db import HISTORY_DAYS
from checker.store.index import read_runs, report_rows
from checker.store.model import Change
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
    changes: list[Change]
    # The history had this merge's run already (killed at its very end):
    # its reports were in place and kept (recover.publish).
    recorded_before: bool = False


@dataclass(frozen=True)
class Expected:
    """What the shards must be (a --processes run knows; `checker merge`
    takes it from the first report)."""

    lists: list[str]
    of: int
    list_format: str


@dataclass(frozen=True)
class MergeOptions:
    formats: Sequence[str]
    partial: bool = False  # missing (or stale) shards' lines become "not checked"
    max_age: float | None = None  # seconds: an older shard report counts as missing
    alert_after: int | None = None  # the alert policy (default: as the shards ran)
    remind_every: float | None = None
    roll_up_days: int | None = HISTORY_DAYS  # roll up a share of old history, as a run does
    # For `check --processes`: the parent run's own options, start and duration
    # (a merge of reports from elsewhere takes them from the shards).
    options: dict[str, Any] | None = None
    started: datetime | None = None
    duration_s: float | None = None
    interrupted: bool = False  # the run was stopped (or killed) whatever the shards say
    # What the missing shards' rows say (default: why their report was not
    # taken), and whether the run is a killed one's, recovered.
    missing_detail: str | None = None
    recovered: bool = False
    lenient: bool = False  # lists gone for the missing shards' lines: said, not refused
    trusted: bool = False  # reports its own shards just wrote (--processes): not re-read
    expected: Expected | None = None
    # The alert channels that will send the merge's changes (after_reports):
    # queued for them with the states, as a run's are (run.send_alerts).
    alert: tuple[str, ...] = ()


async def merge(out_dir: str, paths: Sequence[str], how: MergeOptions) -> Merged:
    runs = [_shard_report(path, out_dir) for path in paths]
    if how.expected is not None:
        expected = how.expected
        ref, version, shard_options = "this run's", __version__, how.options or {}
    elif runs:
        first_path, first, shard = runs[0]
        shard_options = _options(first)
        lists = first.get("lists")
        expected = Expected(
            [str(p) for p in lists] if isinstance(lists, list) else [],
            shard.of,
            str(shard_options.get("list_format") or "auto"),
        )
        ref, version = f"{first_path}'s ({shard})", str(first.get("checker_version") or "")
    else:
        raise MergeError("no shard reports to merge")
    of, list_paths, wanted = expected.of, expected.lists, expected.list_format
    given: dict[int, str] = {}
    notes: list[str] = []
    for path, run, part in runs:
        if part.of != of:
            raise MergeError(f"{path}: shard {part} of another count than {ref}")
        if run.get("lists") != list_paths:
            raise MergeError(
                f"{path}: a report of other lists ({_shown(run.get('lists'))}) than {ref}"
                f" ({_shown(list_paths)})"
            )
        theirs = str(_options(run).get("list_format") or "auto")
        if theirs != wanted:
            raise MergeError(
                f"{path}: its lists were read as --list-format {theirs}, {ref} as {wanted}"
            )
        if part.number in given:
            raise MergeError(f"shard {part} given twice: {given[part.number]} and {path}")
        given[part.number] = path
    notes += _other_options(runs)
    now = datetime.now(UTC)
    stale = _stale(runs, now, how.max_age)
    if stale and not how.partial:
        said = "; ".join(f"{path} started at {when}" for path, when in stale.values())
        raise MergeError(
            f"older than --max-age: {said} (--partial reports their lines as not checked)"
        )
    again = _merged_before(out_dir, runs)
    if again and not how.partial:
        said = "; ".join(f"{path} (into {into})" for path, into in again.values())
        its = "its shard has" if len(again) == 1 else "their shards have"
        raise MergeError(
            f"merged already: {said}; {its} not run since"
            " (--partial reports their lines as not checked)"
        )
    for number in {**stale, **again}:
        del given[number]
    if runs and not given:
        raise MergeError("nothing new to merge: every report given was merged already or stale")
    runs = [r for r in runs if r[2].number in given]
    missing = [k for k in range(1, of + 1) if k not in given]
    if missing and not how.partial:
        names = ", ".join(f"{k}/{of}" for k in missing)
        its = "its lines" if len(missing) == 1 else "their lines"
        raise MergeError(f"shard {names} missing (--partial reports {its} as not checked)")
    order = {path: i for i, path in enumerate(list_paths)}
    totals_of = {path: run.get("total") for path, run, _ in runs}
    streams = [_rows(path, order, how.trusted, totals_of.get(path)) for path in given.values()]
    unchecked: Counter[str] = Counter()  # totals of the rows made for missing shards
    unreadable: list[str] = []  # lists that could not be read for them (lenient)
    for k in missing:
        detail = how.missing_detail or (
            f"not checked: shard {k}/{of}'s report {_why(k, stale, again)}"
        )
        lenient = unreadable if how.lenient else None
        streams.append(
            _not_checked(list_paths, wanted, Shard(k, of), order, detail, unchecked, lenient)
        )
    started = (
        iso(how.started)
        if how.started
        else min((str(r.get("started_at") or "") for _, r, _ in runs), default=iso(now))
    )
    finished = max((str(run.get("finished_at") or "") for _, run, _ in runs), default=iso(now))
    shard_runs = [f"{part}@{run.get('started_at')}" for _, run, part in runs]
    header = {
        "started_at": started,
        "checker_version": version,
        # The options the shards ran with, but for the one that made them shards.
        "options": {**(how.options if how.options is not None else shard_options), "shard": None},
        "lists": list_paths,
        "shard": None,
        "merged": [f"{k}/{of}" for k in sorted(given)],
        "shard_runs": shard_runs,
    }
    from checker.run import report_base  # (run imports the reports, not the other way)

    os.makedirs(out_dir, exist_ok=True)
    base = report_base(out_dir, how.started or now)
    journal_path = base + ".journal.jsonl"
    try:
        await asyncio.to_thread(_write_journal, journal_path, header, streams)
    except BaseException:
        # Half a journal would be taken for a killed run's by the next run.
        with contextlib.suppress(OSError):
            os.unlink(journal_path)
        raise
    notes += [f"{why}: the lines of the missing shards are not in the report" for why in unreadable]
    journal = Journal.reopen(journal_path)
    async with journal:
        pass
    # The totals, before the reports (their heads and the database's run row
    # carry them): the shards' own, and the rows made for missing shards.
    totals = Counter(unchecked)
    for _, run, _ in runs:
        totals.update({k: int(run.get(k) or 0) for k in _TOTALS})
    interrupted = (
        how.interrupted or bool(missing) or any(run.get("interrupted") for _, run, _ in runs)
    )
    durations = [float(run.get("duration_s") or 0) for _, run, _ in runs] or [0.0]
    duration = how.duration_s if how.duration_s is not None else max(durations)
    if how.recovered:
        duration = seconds_between(started, finished) or 0.0
    duplicates = sum(int(run.get("duplicates") or 0) for _, run, _ in runs)
    run_info = {
        **header,
        "finished_at": finished,
        "duration_s": round(duration, 3),
        **{k: totals[k] for k in _TOTALS},
        "duplicates": duplicates,
        "interrupted": interrupted,
        **({"recovered": True} if how.recovered else {}),
    }
    policy = policy_of(run_info)
    policy = dataclasses.replace(
        policy,
        alert_after=how.alert_after or policy.alert_after,
        remind_every=policy.remind_every if how.remind_every is None else how.remind_every,
    )
    stats = Stats()  # counted in the reports' one pass, for the summary
    try:
        done = await publish(
            journal,
            run_info,
            list_paths,
            base,
            how.formats,
            alert=how.alert,
            policy=policy,
            roll_up_days=how.roll_up_days,
            stats=stats,
        )
    except (ValueError, KeyError, TypeError) as exc:
        # A row that looked whole but is not JSON of a result (the checks
        # above read only the start of each): no report, and no journal left
        # for the next run to stumble on.
        journal.remove()
        raise MergeError(f"a row of the shard reports cannot be read ({exc})") from None
    stats.duplicates = duplicates
    # A merge killed before its commit left its journal here: when this one
    # took the same shard reports, it holds every row of it, and the next
    # run would only recover it as one more (interrupted) run of the same
    # observations. One that took a shard report since replaced stays.
    for path in await asyncio.to_thread(_superseded, out_dir, journal_path, shard_runs, list_paths):
        with contextlib.suppress(OSError):
            os.unlink(path)
            remove_spools(path)
            notes.append(
                f"a killed merge of the same shard reports was replaced by this one: {path}"
            )
    notes += [
        f"{path}: started at {when}, older than --max-age: not merged"
        for path, when in stale.values()
    ]
    notes += [
        f"{path}: merged already (into {into}): not merged again" for path, into in again.values()
    ]
    absent = [f"{k}/{of}" for k in missing if k not in stale and k not in again]
    if absent and how.missing_detail is None:  # (a --processes run says why itself)
        its = "its lines are" if len(absent) == 1 else "their lines are"
        notes.append(f"no report of shard {', '.join(absent)}: {its} reported as not checked")
    if stats.totals() != {k: run_info[k] for k in _TOTALS}:
        notes.append("the shard reports' totals disagree with their rows: the rows were merged")
    return Merged(
        done.reports,
        stats,
        run_info,
        notes + done.notes,
        done.changes,
        recorded_before=done.recorded_before,
    )


def _superseded(out_dir: str, own: str, shard_runs: list[str], lists: list[str]) -> list[str]:
    """The journals in `out_dir` of killed merges (no live run holds them)
    whose every shard run is one of `shard_runs`, over the same lists."""
    mine = set(shard_runs)
    found = []
    for path, head in journal_headers(out_dir):
        theirs = head.get("shard_runs")
        if (
            path != own
            and isinstance(theirs, list)
            and theirs
            and {str(t) for t in theirs} <= mine
            and head.get("lists") == lists
            and not held(path)
        ):
            found.append(path)
    return found


def _shard_report(path: str, out_dir: str) -> tuple[str, dict[str, Any], Shard]:
    """A shard's JSON report, whole (a copy cut short is refused here, not
    half merged), and not in `out_dir` itself."""
    try:
        run, _ = read_report_header(path)
    except RecoverError as exc:
        raise MergeError(str(exc)) from None
    text = run.get("shard")
    if not isinstance(text, str):
        raise MergeError(f"{path}: not a shard's report (its run had no --shard)")
    try:
        shard = Shard.parse(text)
    except ValueError as exc:
        raise MergeError(f"{path}: {exc}") from None
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - len(json_report.TAIL)))
        if f.read() != json_report.TAIL:
            raise MergeError(f"{path}: the report ends early (a copy cut short?)")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(out_dir) and os.path.samefile(folder, out_dir):
        raise MergeError(f"{out_dir}: a shard's own folder ({path}); give the merge its own")
    return path, run, shard


def _options(run: dict[str, Any]) -> dict[str, Any]:
    found = run.get("options")
    return found if isinstance(found, dict) else {}


# Options of a check whose difference between shards is said (the merged
# report shows the first shard's), with the flag that sets each.
_COMPARED = {
    "method": "--method",
    "timeout": "--timeout",
    "connect_timeout": "--connect-timeout",
    "retries": "--retries",
    "follow_redirects": "--no-follow",
    "max_redirects": "--max-redirects",
    "insecure": "--insecure",
    "ca_file": "--ca-file",
    "headers": "-H",
    "max_body": "--max-body",
    "per_host": "--per-host",
    "host_interval": "--host-interval",
}


def _other_options(runs: list[tuple[str, dict[str, Any], Shard]]) -> list[str]:
    if not runs:
        return []
    first_path, first, _ = runs[0]
    notes = []
    for name, flag in _COMPARED.items():
        mine = _options(first).get(name)
        for path, run, _ in runs[1:]:
            theirs = _options(run).get(name)
            if theirs != mine:
                notes.append(
                    f"{path} and {first_path} ran with other {flag} ({name}: {theirs!r}"
                    f" and {mine!r}): the merged report shows the latter's options"
                )
                break
    return notes


def _shown(lists: object) -> str:
    return ", ".join(map(str, lists)) if isinstance(lists, list) else "none"


def _why(k: int, stale: dict[int, tuple[str, str]], again: dict[int, tuple[str, str]]) -> str:
    if k in stale:
        return "was older than --max-age"
    if k in again:
        return "was merged already (its shard has not run since)"
    return "was not merged"


def _merged_before(
    out_dir: str, runs: list[tuple[str, dict[str, Any], Shard]]
) -> dict[int, tuple[str, str]]:
    """The shard runs an earlier merge in `out_dir` took already: merged
    again, a run would count one observation twice (--alert-after)."""
    taken: dict[str, str] = {}  # shard run -> the merged report that took it
    for entry in read_runs(out_dir):
        report = next((n for n in entry.reports if n.endswith(".json")), None)
        into = os.path.join(out_dir, report) if report else f"the run of {entry.started_at}"
        taken.update(dict.fromkeys(entry.shard_runs, into))
    return {
        part.number: (path, taken[key])
        for path, run, part in runs
        if (key := f"{part}@{run.get('started_at')}") in taken
    }


def _stale(
    runs: list[tuple[str, dict[str, Any], Shard]], now: datetime, max_age: float | None
) -> dict[int, tuple[str, str]]:
    """The shards whose run started more than `max_age` seconds before `now`
    (a machine whose cron job stopped: its latest report is an old one)."""
    if max_age is None:
        return {}
    old = {}
    for path, run, part in runs:
        text = str(run.get("started_at") or "")
        try:
            started = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            started = None
        if started is None or (now - started.astimezone(UTC)).total_seconds() > max_age:
            old[part.number] = (path, text or "an unknown time")
    return old


_Key = tuple[int, int, bytes]  # (list, line, the row's JSON)
_TOTALS = ("total", "up", "degraded", "down", "not_checked", "invalid")


def _write_journal(path: str, header: dict[str, Any], streams: list[Iterator[_Key]]) -> None:
    """The merged rows, in list order, as a journal (blocking: in a thread)."""
    with open(path, "wb") as f:
        f.write(header_line(header))
        for seq, (_, _, raw) in enumerate(heapq.merge(*streams)):
            f.write(b'{"seq":%d,"result":' % seq + raw + b"}\n")


# A row's JSON starts with its url, source and line (results.FIELDS): its
# place in the list is read from there, not by decoding the whole row.
_PLACE = re.compile(
    rb'\{"url":(?:"(?:[^"\\]|\\.)*"|null),"source":("(?:[^"\\]|\\.)*"),"line":(\d+),'
)


def _rows(path: str, order: dict[str, int], trusted: bool, total: object = None) -> Iterator[_Key]:
    """Each row of a shard's report with its place in the lists. A report
    from elsewhere (`checker merge`) has every row read and checked first: a
    damaged one is refused before anything is written, and so is one with
    fewer or more rows than its header's `total` (a row taken out of a
    report that stayed valid JSON vanished from the merge, its line in no
    row: found by a review). The reports a --processes run's shards wrote a
    moment ago are `trusted`: only the place is read, from the start of the
    row."""
    count = 0
    for offset, line in report_rows(path):
        count += 1
        found = _PLACE.match(line) if trusted and line.endswith(b"}") else None
        if found is not None:
            source = found.group(1)
            name = source[1:-1].decode() if b"\\" not in source else json.loads(source)
            yield order.get(name, len(order)), int(found.group(2)), line
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        problem = row_problem(row)
        if problem is not None:
            raise MergeError(f"{path}: a damaged row at byte {offset} ({problem})")
        yield order.get(row["source"], len(order)), row["line"], line
    if isinstance(total, int) and count != total:
        raise MergeError(f"{path}: {count:,} rows where its header says {total:,}: not whole")


def _not_checked(
    lists: list[str],
    wanted: str,
    shard: Shard,
    order: dict[str, int],
    detail: str,
    totals: Counter[str],
    unreadable: list[str] | None = None,
) -> Iterator[_Key]:
    """The rows of a shard whose report was not given: read from the lists
    (counted in `totals` as they go). With `unreadable`, lists that cannot
    be read are said there instead of refused."""
    try:
        for item in read_targets(lists, wanted, shard):
            if isinstance(item, Target):
                row = (
                    failed_result(item, INVALID, item.error or "")
                    if item.url is None
                    else failed_result(item, NOT_CHECKED, detail)
                )
                totals.update(("total", "invalid" if item.url is None else "not_checked"))
                yield order.get(item.source, len(order)), item.line, row.to_json().encode("utf-8")
    except ListError as exc:
        if unreadable is None:
            raise MergeError(
                f"--partial needs the lists to read shard {shard}'s lines: {exc}"
            ) from None
        if str(exc) not in unreadable:
            unreadable.append(str(exc))
