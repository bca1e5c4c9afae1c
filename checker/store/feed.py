"""A run's results into the history database, off the event loop.

The report pass hands every row to `Feed.add`; a batch is written in a worker
thread, one transaction per batch, while the pass goes on rendering the next
(one batch in flight at a time, so memory stays at two batches). For a
complete run each batch also steps its URLs' states (`store.state`), and the
changes come back here: the first MAX_CHANGES kept, all of them counted. The
kept ones are also queued in the database's outbox for the run's alert
channels, in the transaction that keeps the states (`HistoryDB.add_results`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from checker.results import NOT_A_CHECK
from checker.store.db import NAME, HistoryDB
from checker.store.index import MAX_CHANGES, read_runs, report_rows
from checker.store.model import Batch, Change, Incident, Policy, RecordedRun, Row, RunEntry

INCIDENTS = 50  # listed in the page


def as_row(row: dict[str, Any]) -> Row | None:
    if row.get("error") in NOT_A_CHECK or not isinstance(row.get("url"), str):
        return None
    get = row.get
    # By position, in Row's order (a row of every report: keywords cost a
    # third more; tests/test_store.py gives each field its own value).
    return Row(
        row["url"],  # url
        bool(get("ok")),  # ok
        get("status"),  # status
        get("error"),  # error
        get("total_ms"),  # total_ms
        get("checked_at"),  # checked_at
        get("state") == "degraded",  # degraded
        int(get("line") or 0),  # line
        # What went wrong: the error's detail, or what the expectations said
        # ("status 500 not in 200-399").
        get("error_detail") or "; ".join(get("reasons") or ()) or None,  # detail
        get("final_url"),  # final_url
        get("cert_days_left"),  # cert_days
    )


class Feed:
    """With a `policy` the rows step their URLs' states and the changes are
    gathered; the states are kept only with `save_states` (a complete run),
    and the changes with them, for each of the `alert` channels to send.

    `send()` hands the rows added since the last send to the database thread
    as one batch, and returns what the batch before it found (waiting for it
    if need be): the caller renders that batch's rows with their trends while
    the thread stores the next. `close()` returns the last batch's.

    A database that fails on the way (damaged, locked by another process past
    its busy timeout, read-only) costs the run its history, never its
    reports: `failed` says why, and nothing more is sent to it; the caller
    then rolls the run back instead of committing it.
    """

    def __init__(
        self,
        db: HistoryDB,
        run_id: int,
        policy: Policy | None = None,
        now: datetime | None = None,
        save_states: bool = True,
        alert: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.alert = tuple(alert)
        self.has_history = False  # set by start_feed: an earlier complete run
        self.save_states = save_states
        self.run_id = run_id
        self.policy = policy
        self.now = now
        self.changes: list[Change] = []
        self.changes_total = 0
        self.incidents: list[Incident] = []  # the newest INCIDENTS of the run's URLs
        self._batch: list[Row] = []
        self._pending: asyncio.Future[Batch] | None = None
        self.failed: str | None = None  # why the database could not take the run

    @property
    def trends(self) -> bool:
        """Whether the batches come back with trends (a complete history to
        show: a policy, and an earlier complete run)."""
        return self.policy is not None and self.has_history

    @property
    def batched(self) -> int:
        """Rows added since the last `send`."""
        return len(self._batch)

    def add(self, row: dict[str, Any]) -> None:
        kept = as_row(row)
        if kept is not None:
            self._batch.append(kept)

    async def send(self) -> Batch | None:
        previous = await self._collect()
        batch, self._batch = self._batch, []
        if batch and self.failed is None:
            self._pending = asyncio.ensure_future(
                asyncio.to_thread(
                    self.db.add_results,
                    self.run_id,
                    batch,
                    self.policy,
                    self.now,
                    self.save_states,
                    self.has_history,  # (asked once, by start_feed, not once a batch)
                    # The changes this feed keeps (`_collect`) are the ones queued.
                    alert=self.alert,
                    room=MAX_CHANGES - len(self.changes),
                )
            )
        else:
            self._pending = asyncio.get_running_loop().create_future()
            self._pending.set_result(Batch([], {}, []))
        return previous

    async def close(self) -> Batch | None:
        """The findings of the batch still in flight (`send` the last rows first)."""
        assert not self._batch, "rows added after the last send"
        return await self._collect()

    async def _collect(self) -> Batch | None:
        if self._pending is None:
            return None
        try:
            found = await self._pending
        except sqlite3.Error as exc:
            self.failed = unusable(self.db.path, exc)
            found = Batch([], {}, [])
        self._pending = None
        self.changes_total += len(found.changes)
        self.changes += found.changes[: max(0, MAX_CHANGES - len(self.changes))]
        if found.incidents:
            merged = sorted(self.incidents + found.incidents, key=lambda i: i.started)
            self.incidents = merged[-INCIDENTS:][::-1]
        return found


def totals(run: dict[str, Any]) -> dict[str, int]:
    keys = ("total", "up", "down", "not_checked", "invalid")
    return {k: int(run.get(k) or 0) for k in keys}


def _entry_totals(entry: RunEntry) -> dict[str, int]:
    return {
        "total": entry.total,
        "up": entry.up,
        "down": entry.down,
        "not_checked": entry.not_checked,
    }


def import_reports(db: HistoryDB, out_dir: str) -> int:
    """Fill a new database from the JSON reports the run index still names,
    so that nobody loses the history they had. Returns the runs imported."""
    imported = 0
    for entry in read_runs(out_dir):
        name = next((n for n in entry.reports if n.endswith(".json")), None)
        if name is None or not os.path.exists(os.path.join(out_dir, name)):
            continue
        run_id = db.add_run(
            started_at=entry.started_at,
            lists=json.dumps(list(entry.lists)),
            complete=not entry.interrupted,
            totals=_entry_totals(entry),
            finished_at=entry.finished_at,
            report=name,
        )
        batch: list[Row] = []
        for _, line in report_rows(os.path.join(out_dir, name)):
            try:
                kept = as_row(json.loads(line))
            except ValueError:
                continue
            if kept is not None:
                batch.append(kept)
            if len(batch) >= 2048:
                db.add_results(run_id, batch)
                batch = []
        if batch:
            db.add_results(run_id, batch)
        imported += 1
    return imported


def unusable(path: str, exc: sqlite3.Error, move: bool = True) -> str:
    """The line that says a run has no history, and why. A damaged
    database is moved aside, so that the next run starts a new one from the
    JSON reports (it stayed damaged, and every run after had no history,
    changes or alerts, until someone moved it: found by a review)."""
    line = f"history: {path}: {exc} (no history, changes or alerts this run)"
    if move and _damaged(exc):
        moved = set_aside(path)
        if moved is not None:
            line += f"; it is kept as {moved}, and the next run starts a new one"
    return line


# SQLITE_CORRUPT and SQLITE_NOTADB: the file is damaged, or not a database.
# (Not SQLITE_BUSY or SQLITE_READONLY: a lock or a permission goes away.)
_DAMAGED = frozenset({11, 26})


def _damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGED


def set_aside(path: str) -> str | None:
    """Rename a damaged database (and its WAL files) out of the way; its new
    name, or None when it could not be moved."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(aside):  # (two in one second: keep both)
        n += 1
        aside = f"{path}.damaged-{stamp}-{n}"
    try:
        os.replace(path, aside)
    except OSError:
        return None
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.replace(path + suffix, aside + suffix)
    return aside


def open_history(out_dir: str) -> tuple[HistoryDB | None, list[str]]:
    """The folder's history database, made (and filled from the JSON reports
    already there) on first use. A database that cannot be used costs the
    history of this run, never its reports: it is said on stderr."""
    try:
        db = HistoryDB.in_folder(out_dir)
    except sqlite3.Error as exc:
        path = os.path.join(out_dir, NAME)
        if not (_damaged(exc) and set_aside(path)):
            return None, [unusable(path, exc, move=False)]  # (tried already, if damaged)
        # Moved aside: a new one, from the JSON reports, this run already.
        try:
            db = HistoryDB.in_folder(out_dir)
        except sqlite3.Error as again:
            return None, [unusable(path, again)]
        notes = [f"history: {path}: {exc}: moved aside, a new one made from the reports"]
        return db, notes + _filled(db, out_dir)
    return db, _filled(db, out_dir) if db.created else []


def _filled(db: HistoryDB, out_dir: str) -> list[str]:
    """A new database filled from the JSON reports in the folder; what to say."""
    try:
        imported = import_reports(db, out_dir)
        db.count_days()
        db.seed_states()
    except (sqlite3.Error, OSError) as exc:
        return [f"history: importing the earlier reports failed: {exc}"]
    return (
        [f"history: started from the {imported} earlier reports in {out_dir}"] if imported else []
    )


def recorded_run(out_dir: str, started_at: str) -> RecordedRun | None:
    """`HistoryDB.recorded` in the folder's database (None also when there is
    no database, or it cannot be read: then the run is written as usual)."""
    path = os.path.join(out_dir, NAME)
    if not os.path.exists(path):
        return None
    try:
        db = HistoryDB(path)
    except sqlite3.Error:
        return None
    try:
        return db.recorded(started_at)
    except sqlite3.Error:
        return None
    finally:
        db.close()


async def start_feed(
    out_dir: str,
    run_info: dict[str, Any],
    lists: list[str],
    json_name: str | None,
    policy: Policy,
    now: datetime,
    *,
    alert: Sequence[str],
    one_transaction: bool = False,
) -> tuple[HistoryDB | None, Feed | None, list[str]]:
    """The run in the folder's database, and the feed for its rows (None when
    the database cannot be used; the notes say why). Close the database.
    `alert`: the channels the run's changes are queued for, to be sent after
    the reports (`run.send_alerts`); none for a run that sends no alerts.
    With `one_transaction`, the run is added in a transaction that lasts
    until the caller commits it or rolls it back (`HistoryDB.begin`)."""
    db, notes = await asyncio.to_thread(open_history, out_dir)
    if db is None:
        return None, None, notes
    complete = not run_info.get("interrupted")
    try:
        if one_transaction:
            db.begin()
        run_id = await asyncio.to_thread(
            db.add_run,
            str(run_info["started_at"]),
            json.dumps(lists),
            complete,
            totals(run_info),
            str(run_info.get("finished_at") or run_info["started_at"]),
            json_name,
        )
        previous = await asyncio.to_thread(db.previous_complete, run_id)
    except sqlite3.Error as exc:
        # (Opened, and then damaged, locked past its busy timeout or read-only.)
        let_go(db)
        return None, None, [*notes, unusable(db.path, exc)]
    # Only a complete run moves the URLs' states: a stopped, killed or
    # recovered one says what it saw, but is never the baseline of a change
    # (its unfinished rows are "not checked", and never step a state).
    feed = Feed(db, run_id, policy=policy, now=now, save_states=complete, alert=alert)
    if previous is not None:
        run_info["previous_run"] = previous
        feed.has_history = True
    return db, feed, notes


def let_go(db: HistoryDB) -> None:
    """Roll back what the run put in `db` and close it, whatever state it is in."""
    with contextlib.suppress(sqlite3.Error):
        db.rollback()
    with contextlib.suppress(sqlite3.Error):
        db.close()


def commit(
    db: HistoryDB, feed: Feed | None, finish: Callable[[], None] | None = None
) -> str | None:
    """Commit the run (after `finish`, its last update), unless its feed
    failed; None, or the line that says why the run has no history."""
    if feed is not None and feed.failed is not None:
        return feed.failed
    try:
        if finish is not None:
            finish()
        db.commit()
    except sqlite3.Error as exc:
        return unusable(db.path, exc)
    return None
