"""Reports from the journal of a run that died (SIGKILL, OOM, power cut).

Every line of the run's lists still gets exactly one row: what the journal
holds as it was recorded, and every line it lacks as `interrupted` ("not
checked: the run was killed first"), found by reading the lists again. If the
lists are gone or changed since, the rows the journal holds are reported and
the note says what could not be accounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checker.check import failed_result
from checker.http.errors import Interrupted, InvalidURL
from checker.reports import prom_report
from checker.reports.atomic import write_atomic
from checker.reports.journal import Journal, JournalBusy, run_of

# (Every run's start needs these, and not the rest of this module: see there.)
from checker.reports.leftovers import JOURNAL_SUFFIX as JOURNAL_SUFFIX
from checker.reports.leftovers import journals
from checker.reports.leftovers import remove_spools as remove_spools
from checker.reports.leftovers import remove_stale_spools as remove_stale_spools
from checker.reports.output import write_reports
from checker.results import NOT_A_CHECK
from checker.store.feed import commit, let_go, recorded_run, start_feed
from checker.store.index import append_run, index_entry, lists_key, read_runs, report_rows
from checker.store.model import Change, Policy, RecordedRun
from checker.store.prune import stamp_order
from checker.summary import Stats
from checker.targets import Duplicate, ListError, Shard, Target, read_targets

KILLED = "not checked: the run was killed first"


# The end of the note for a run the history had already (publish).
RECORDED_BEFORE = "was in the history already, its reports in place: they were kept as they are"


class RecoverError(Exception):
    """The file cannot be turned into reports (one line for the user)."""


@dataclass
class Recovered:
    reports: list[str]
    stats: Stats
    run: dict[str, Any]
    note: str | None
    recorded_before: bool = False  # killed after its reports and history were in place


async def recover(path: str, formats: Sequence[str]) -> Recovered:
    if not path.endswith(JOURNAL_SUFFIX):
        raise RecoverError(f"{path}: not a journal (expected a name ending in {JOURNAL_SUFFIX})")
    try:
        journal = Journal.reopen(path)
    except FileNotFoundError:
        raise RecoverError(f"{path}: no such file") from None
    except JournalBusy as exc:
        raise RecoverError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise RecoverError(str(exc)) from None
    lists = [str(p) for p in journal.header.get("lists", [])]
    note = _why_lists_unusable(journal, lists)
    async with journal:
        if note is None:
            for item in read_targets(lists, _list_format(journal.header), _shard(journal.header)):
                _fill(journal, item)
        else:
            journal.allow_gaps = True
    stats = Stats()
    finished = journal.header.get("started_at")
    for seq, row in enumerate(journal.results()):
        stats.add_row(seq, row)
        # When it died: its last check. (The rows made now for the lines it
        # never finished, and for invalid lines, carry the time of recovery.)
        done = row.get("checked_at") if row.get("error") not in NOT_A_CHECK else None
        if done and (finished is None or done > finished):
            finished = done
    stats.duplicates = sum(1 for _ in journal.duplicate_lines())
    run = dict(journal.header)
    run.update(
        finished_at=finished,
        duration_s=seconds_between(run.get("started_at"), finished),
        **stats.totals(),
        duplicates=stats.duplicates,
        interrupted=True,
        recovered=True,
    )
    base = path[: -len(JOURNAL_SUFFIX)]
    done = await publish(journal, run, lists, base, formats, alert=())  # (a killed run's)
    remove_spools(path)
    if done.recorded_before:
        # The run as the history and its reports have it (complete, as a
        # rule), and the note that nothing was written again.
        recorded = done.recorded if done.recorded is not None else run
        return Recovered(done.reports, stats, recorded, done.notes[0], recorded_before=True)
    notes = done.notes
    return Recovered(done.reports, stats, run, "; ".join([n for n in (note, *notes) if n]) or None)


@dataclass
class Published:
    reports: list[str]
    notes: list[str]  # for the user: the history database could not be used
    changes: list[Change]  # since the previous complete run in the folder
    # The history had the run already (see `publish`): these reports were in
    # place, and nothing was written again. `recorded`: that run's header.
    recorded_before: bool = False
    recorded: dict[str, Any] | None = None


async def publish(
    journal: Journal,
    run: dict[str, Any],
    lists: list[str],
    base: str,
    formats: Sequence[str],
    *,
    alert: Sequence[str],
    policy: Policy | None = None,
    roll_up_days: int | None = None,
    stats: Stats | None = None,
    now: datetime | None = None,
    latest: bool | None = None,
) -> Published:
    """Reports from a completed journal (a killed run's, a merge's, or a run's
    own after its checks), into the history database and the run index; the
    journal is removed. A run with `interrupted` set is never the baseline of
    a change. A complete run's changes are queued for the `alert` channels
    with the states they came from, for `run.send_alerts`. The `policy` is
    the run's own options' unless given; `roll_up_days` rolls up a share of
    old results, as a complete run does; `now` is when the states and trends
    are as of (default: now); `latest` points latest.* at the reports
    (default: when no later report exists).

    The history takes the run in one transaction, committed once the reports
    are in place; then the run index; the journal goes last. A run killed
    before the commit leaves nothing in the history, and its journal is
    recovered. One killed after it (or a reporter that committed and died
    before its answer) leaves a journal whose run the history has already:
    its reports are in place, so they stay as they are, the run is indexed if
    it is not yet, and it is never counted twice (its changes wait in the
    outbox, committed with its states, for the next alert)."""
    out_dir = os.path.dirname(base) or "."
    keyed = lists_key(lists)
    if not run.get("shard"):
        prior = await asyncio.to_thread(recorded_run, out_dir, str(run["started_at"]))
        if prior is not None:
            return await _recorded_before(journal, run, keyed, base, formats, prior, stats)
    if policy is None:
        policy = policy_of(run)
    json_name = os.path.basename(base) + ".json" if "json" in formats else None
    db, feed, notes = (
        await start_feed(
            out_dir,
            run,
            keyed,
            json_name,
            policy,
            now or datetime.now(UTC),
            one_transaction=True,
            alert=alert,
        )
        if not run.get("shard")  # a shard keeps no history: its merge does
        else (None, None, [])
    )
    try:
        if latest is None:
            latest = _is_newest(base)
        reports = await write_reports(
            base, formats, run, journal, store=feed, latest=latest, stats=stats
        )
        if db is not None:
            failed = await asyncio.to_thread(commit, db, feed)
            if failed is not None:
                notes.append(failed)
            elif roll_up_days is not None and not run.get("interrupted"):
                with contextlib.suppress(sqlite3.Error):  # (the run is in; the rest waits)
                    await asyncio.to_thread(db.roll_up, None, roll_up_days)
    finally:
        if db is not None:
            let_go(db)  # (nothing to roll back, once committed)
    # In the run index too, so that `checker history` lists it.
    await append_run(out_dir, index_entry(run, keyed, reports))
    journal.remove()
    changes = feed.changes if feed is not None and feed.failed is None else []
    return Published(reports, notes, changes)


async def _recorded_before(
    journal: Journal,
    run: dict[str, Any],
    lists: list[str],
    base: str,
    formats: Sequence[str],
    prior: RecordedRun,
    stats: Stats | None,
) -> Published:
    out_dir = os.path.dirname(base) or "."
    # Its reports are where it put them: a merge or a --processes run made
    # again after a kill names its own by the time it started, not theirs.
    if prior.report:
        base = os.path.join(out_dir, prior.report.removesuffix(".json"))
    reports = _in_place(base, formats)
    # The run as it was recorded: from its own report, or the history's row.
    recorded = {
        **{k: v for k, v in run.items() if k != "recovered"},
        **prior.totals,
        "interrupted": not prior.complete,
        "finished_at": prior.finished_at or run.get("finished_at"),
    }
    if prior.report:
        # (Its changes are in the outbox, committed with its states: the next
        # alert sends them.)
        with contextlib.suppress(RecoverError):
            recorded, _ = read_report_header(os.path.join(out_dir, prior.report))
    if stats is not None:  # (a merge's summary: counted in the pass not made)
        for seq, row in enumerate(journal.results()):
            stats.add_row(seq, row)
    started = str(recorded.get("started_at"))
    if not any(entry.started_at == started for entry in read_runs(out_dir)):
        await append_run(out_dir, index_entry(recorded, lists, reports))
    journal.remove()
    # The journal of the killed run itself, when this one was made again
    # under another name (the caller holds the folder's lock).
    if base + JOURNAL_SUFFIX != journal.path:
        with contextlib.suppress(OSError):
            os.unlink(base + JOURNAL_SUFFIX)
    note = f"the run of {started} {RECORDED_BEFORE}"
    return Published(reports, [note], [], recorded_before=True, recorded=recorded)


def _in_place(base: str, formats: Sequence[str]) -> list[str]:
    return [path for path in (f"{base}.{fmt}" for fmt in formats) if os.path.exists(path)]


def policy_of(run: dict[str, Any]) -> Policy:
    """The alert policy a run was made with (its report's options)."""
    options = run.get("options")
    if not isinstance(options, dict):
        options = {}
    remind = options.get("remind_every_s")
    return Policy(
        alert_after=_int(options.get("alert_after"), 1),
        remind_every=float(remind) if isinstance(remind, int | float) and remind > 0 else None,
        warn_days=_int(options.get("cert_warn_days"), 14),
    )


async def recover_leftovers(out_dir: str, formats: Sequence[str]) -> list[str]:
    """Turn the journals of dead runs in `out_dir` into reports; say what was done."""
    notes = []
    for path in journals(out_dir):
        try:
            done = await recover(path, formats)
        except RecoverError as exc:
            if "still going" not in str(exc):
                notes.append(f"could not recover {path}: {exc}")
            continue
        except (ValueError, KeyError, TypeError) as exc:
            # A journal whose rows are not what a run writes (damaged on
            # disk): set aside, so that it is not in the way of every run to come.
            aside = path + ".unreadable"
            os.replace(path, aside)
            notes.append(f"could not recover {path} ({exc}): moved to {aside}")
            continue
        if done.recorded_before:
            # Killed after its reports and history were in place: only its
            # line in the run index and its journal's removal were left.
            notes.append(f"a run killed at its very end was completed: {', '.join(done.reports)}")
            continue
        # (Killed, or ended by an error: a full disk leaves one too.)
        notes.append(f"an unfinished run's journal became {', '.join(done.reports)}")
        if done.note:
            notes.append(done.note)
    return notes


def journal_headers(out_dir: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, run header) of each run journal in `out_dir`, in name order;
    one that cannot be read, or is no journal, is passed over."""
    for name in sorted(os.listdir(out_dir)):
        if not (name.startswith("status-") and name.endswith(JOURNAL_SUFFIX)):
            continue
        path = os.path.join(out_dir, name)
        try:
            with open(path, "rb") as f:
                head = run_of(f.readline())
        except OSError:
            continue
        if head is not None:
            yield path, head


def _fill(journal: Journal, item: Target | Duplicate) -> None:
    if isinstance(item, Duplicate):
        if not journal.has_duplicate(item):
            journal.add_duplicate(item)
    elif not journal.seen(item.seq):
        if item.url is None:
            journal.add(item.seq, failed_result(item, InvalidURL.category, item.error or ""))
        else:
            journal.add(item.seq, failed_result(item, Interrupted.category, KILLED))


def _why_lists_unusable(journal: Journal, lists: list[str]) -> str | None:
    """None when the lists still say what they said when the run read them."""
    if not lists:
        return "the journal names no lists; only its recorded rows are reported"
    try:
        with journal.reader() as row_of:
            for item in read_targets(lists, _list_format(journal.header), _shard(journal.header)):
                if isinstance(item, Target) and journal.seen(item.seq):
                    row = row_of(item.seq)
                    if (row["source"], row["line"], row["url"]) != (
                        item.source,
                        item.line,
                        item.text,
                    ):
                        return (
                            "the lists changed since the run; only its recorded rows are reported"
                        )
    except ListError as exc:
        return f"the lists cannot be read again ({exc}); only recorded rows are reported"
    return None


def _is_newest(base: str) -> bool:
    """Whether no later report exists beside `base` (so latest.* may point at it)."""
    folder, name = os.path.split(base)
    mine = stamp_order(name.removeprefix("status-"))
    for other in glob.glob(os.path.join(glob.escape(folder or "."), "status-*.*")):
        stem = os.path.basename(other).split(".", 1)[0]
        later = stamp_order(stem.removeprefix("status-")) > mine
        if later and not other.endswith(JOURNAL_SUFFIX):
            return False
    return True


def seconds_between(start: object, end: object) -> float | None:
    try:
        a = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((b.astimezone(UTC) - a.astimezone(UTC)).total_seconds(), 3)


def read_report_header(path: str) -> tuple[dict[str, Any], list[Change]]:
    """The "run" and "changes" lines of a checker JSON report (see json_report)."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
            second = f.readline()
        if not first.startswith(b'{"run":'):
            raise ValueError("no run header on its first line")
        run = json.loads(first[len(b'{"run":') :].rstrip(b",\r\n"))
        changes = []
        if second.startswith(b'"changes":'):
            changes = json.loads(second[len(b'"changes":') :].rstrip(b",\r\n"))
    except FileNotFoundError:
        raise RecoverError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise RecoverError(f"{path}: not a checker JSON report ({exc})") from None
    if not isinstance(run, dict) or not isinstance(changes, list):
        raise RecoverError(f"{path}: not a checker JSON report")
    return run, [c for c in map(Change.from_dict, changes) if c is not None]


async def rerender(path: str, formats: Sequence[str]) -> tuple[list[str], bool]:
    """HTML and/or CSV again from a stored JSON report (next to it, same name).

    Returns the files written and whether any URL in it was down.
    """
    from checker.reports import csv_report, html_report

    run, changes = read_report_header(path)

    def rows() -> Iterator[dict[str, Any]]:
        for _, line in report_rows(path):
            yield json.loads(line)

    base = path[: -len(".json")]
    written = []
    for fmt in formats:
        if fmt == "json":
            continue  # it is the source
        out = f"{base}.{fmt}"
        if fmt == "html":
            await write_atomic(out, html_report.render(run, rows, changes))
        elif fmt == "csv":
            await write_atomic(out, csv_report.render(line for _, line in report_rows(path)))
        elif fmt == "prom":
            await write_atomic(out, prom_report.render(run, rows))
        written.append(out)
    return written, bool(run.get("down") or run.get("invalid"))


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _list_format(header: dict[str, Any]) -> str:
    """The run's --list-format (auto for a journal from before the option)."""
    options = header.get("options")
    wanted = options.get("list_format") if isinstance(options, dict) else None
    return wanted if wanted in ("auto", "plain", "csv") else "auto"


def _shard(header: dict[str, Any]) -> Shard | None:
    """The run's --shard: its other lines are another run's to report."""
    options = header.get("options")
    text = options.get("shard") if isinstance(options, dict) else None
    try:
        return Shard.parse(text) if isinstance(text, str) else None
    except ValueError:
        return None
