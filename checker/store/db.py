"""The history database: every run and every result, in SQLite beside the reports.

`<out>/history.sqlite3`, the standard library's sqlite3, WAL journal (a reader,
such as `checker history`, never blocks a run, nor the other way round).

Sized for cron: 10,000 URLs every 5 minutes is 2.9 million results a day.
A result row is small (no text but the error category) and keyed on
(run, url) without a rowid: a run's results go in at the end of the table, one
range of the primary key. (Keyed on (url, run), as up to schema 2, each run
put a row into every page of the table: a 10,000-URL run into a folder of 70
runs wrote 48 MB to the WAL, and its checkpoint took 0.16 s at the run's end,
both growing with the history kept. A URL's history, which only `checker
history` and the roll-up read, is one seek a run.) Raw results are kept for
`history_days` (14 by default); older days are rolled up into one row per
URL per day (checks, up, down, median and 95th percentile time), kept for a
year. Each run rolls up at most ROLL_UP_ROWS
raw rows (a part of the oldest day, URL by URL), so no run pays for a whole
day of history at once.

Blocking calls: every method here is synchronous; the run calls them in a
worker thread (`asyncio.to_thread`), one batch, one transaction at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from checker.results import iso
from checker.store.model import (
    DOWN,
    Batch,
    Change,
    Incident,
    Policy,
    RecordedRun,
    Row,
    State,
    Trend,
    Uptime,
)
from checker.store.policy import HISTORY_DAYS as HISTORY_DAYS  # (defined apart, for a run)
from checker.store.state import step

NAME = "history.sqlite3"
SCHEMA_VERSION = 3  # 2: url_state, incidents, daily counted per run; 3: results by run
RECENT = 20  # results in the page's strip and sparkline
HELD = 10_000  # changes kept per alert channel until it has delivered them
HOURS_KEPT = 26  # hourly counts kept (a day, and the hour or two either side)
DAILY_DAYS = 366  # the daily roll-up kept this long
ROLL_UP_ROWS = 100_000  # raw rows rolled up by one run at most (about a second)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,          -- UTC ISO 8601, as in the reports
    finished_at TEXT,
    lists TEXT NOT NULL,               -- JSON array of absolute paths
    complete INTEGER NOT NULL,         -- 0: stopped or killed (never a baseline)
    total INTEGER, up INTEGER, down INTEGER, not_checked INTEGER, invalid INTEGER,
    report TEXT,                       -- the JSON report's file name
    rolled_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS urls (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE           -- as written in the list
);
CREATE TABLE IF NOT EXISTS results (
    url_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    checked_at TEXT,
    ok INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    total_ms REAL,
    PRIMARY KEY (run_id, url_id)
) WITHOUT ROWID;
-- One row per URL per UTC day: the checks and ups of complete runs, counted
-- as each run is stored; the median and 95th percentile time of the up
-- checks are added when the day's raw results are rolled up.
CREATE TABLE IF NOT EXISTS daily (
    url_id INTEGER NOT NULL,
    day TEXT NOT NULL,                 -- YYYY-MM-DD, UTC
    checks INTEGER NOT NULL, up INTEGER NOT NULL, down INTEGER NOT NULL,
    p50_ms REAL, p95_ms REAL,
    PRIMARY KEY (url_id, day)
) WITHOUT ROWID;
-- Each URL's counts of its newest day, while runs still add to it: one row
-- per URL, so that a run's counts touch as many pages as its URLs' rows fill,
-- not a page per URL (a URL's `daily` rows lie together, its newest at their
-- end: after a year, each run dirtied 10,000 pages, 50 MB of WAL). Moved to
-- `daily` by the first run of another day (`_close_days`). Made by the first
-- run that writes (no schema version: an older checker adds to `daily` as
-- before, and the two add up).
CREATE TABLE IF NOT EXISTS daily_open (
    url_id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,                 -- YYYY-MM-DD, UTC
    checks INTEGER NOT NULL, up INTEGER NOT NULL, down INTEGER NOT NULL
) WITHOUT ROWID;
-- The same per URL per UTC hour, for the last HOURS_KEPT hours: the page's
-- 24-hour uptime without reading a day of raw results per URL.
CREATE TABLE IF NOT EXISTS hourly (
    url_id INTEGER NOT NULL,
    hour TEXT NOT NULL,                -- YYYY-MM-DDTHH, UTC
    checks INTEGER NOT NULL, up INTEGER NOT NULL,
    PRIMARY KEY (url_id, hour)
) WITHOUT ROWID;
-- Where a day's roll-up stopped (the last URL done), while it is under way.
CREATE TABLE IF NOT EXISTS rollup_progress (
    day TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
);
-- Changes an alert channel has not delivered yet: a complete run's go in
-- with the states that made them (`_queue`), and out once the channel took
-- them (`delivered`); what is left is sent by the next complete run.
CREATE TABLE IF NOT EXISTS outbox (
    channel TEXT PRIMARY KEY,          -- 'webhook' or 'mail'
    changes TEXT NOT NULL,             -- JSON list of Change.to_dict(), oldest first
    since TEXT NOT NULL                -- the time of the run that queued the oldest
);
-- From a URL's state going down to its coming back (store.state's changes).
CREATE TABLE IF NOT EXISTS incidents (
    url_id INTEGER NOT NULL,
    started TEXT NOT NULL,             -- its first down result
    ended TEXT,                        -- its first result back up; NULL while down
    cause TEXT,                        -- what the down change said (error or status)
    detail TEXT,
    PRIMARY KEY (url_id, started)
) WITHOUT ROWID;
-- Each URL's state across complete runs (store.state): what changes and
-- alerts are computed from. One row per URL, whatever the history's length.
CREATE TABLE IF NOT EXISTS url_state (
    url_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,               -- 'up' or 'down', as the alerts last said
    since TEXT,                        -- when that state began
    status INTEGER, error TEXT, final_url TEXT, cert_days INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,  -- complete runs in a row that saw the other state
    pending_since TEXT,
    reminded_at TEXT,
    degraded INTEGER NOT NULL DEFAULT 0,  -- up, but degraded (expect.verdict)
    run_id INTEGER NOT NULL,           -- the last run that stepped it
    recent TEXT                        -- its last RECENT results (`_pushed`); NULL: not kept
);
"""


def _made(table: str) -> str:
    """`_SCHEMA`'s statement that makes `table`, as a new database has it
    (for a table an older database is given later)."""
    made = _SCHEMA[_SCHEMA.index(f"CREATE TABLE IF NOT EXISTS {table} (") :]
    return made[: made.index(";")]


# (Made by the first run that writes, in a database of schema 3 made before it.)
_OPEN_DAYS = _made("daily_open")
_STATE_COLUMNS = (
    "state, since, status, error, final_url, cert_days, pending, pending_since, reminded_at,"
    " degraded"
)


class HistoryDB:
    def __init__(self, path: str) -> None:
        self.path = path
        self.created = not os.path.exists(path)
        self._in_run = False
        # What `_queue` was given during the run's transaction (`begin`), per
        # channel: written once, by `commit`.
        self._queued: dict[str, list[Change]] = {}
        self._queued_at: datetime | None = None
        self._recent_column: bool | None = None  # (`_has_recent`, once known)
        self._open_day: str | None = None  # the day `daily_open` holds alone (`_close_days`)
        # One connection, used by one thread at a time (the run awaits each
        # call before the next), from whichever worker thread asyncio picks.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                # (No path: the caller's line names the file; it was there twice.)
                raise sqlite3.DatabaseError(f"made by a newer checker (schema {version})")
            # Only a database of an older schema (or a new one) is written
            # here: opening one to read it (`checker history`) must not wait
            # for the write transaction of a run going on (reporter.py).
            if version < SCHEMA_VERSION:
                with self._db:
                    self._db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                if 0 < version < 3:
                    self._results_by_run()
                if 0 < version < 2:
                    self._upgrade_from_1()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_folder(cls, out_dir: str) -> HistoryDB:
        return cls(os.path.join(out_dir, NAME))

    def close(self) -> None:
        self._db.close()

    # --- writing ------------------------------------------------------------

    def add_run(
        self,
        started_at: str,
        lists: str,
        complete: bool,
        totals: dict[str, int],
        finished_at: str | None,
        report: str | None,
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO runs (started_at, finished_at, lists, complete, total, up, down,"
            " not_checked, invalid, report) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                started_at,
                finished_at,
                lists,
                int(complete),
                *(totals.get(k, 0) for k in ("total", "up", "down", "not_checked", "invalid")),
                report,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_run(
        self, run_id: int, complete: bool, totals: dict[str, int], finished_at: str
    ) -> None:
        """What `add_run` could not know yet, when the run was added as it began."""
        self._db.execute(
            "UPDATE runs SET complete = ?, total = ?, up = ?, down = ?, not_checked = ?,"
            " invalid = ?, finished_at = ? WHERE id = ?",
            (
                int(complete),
                *(totals.get(k, 0) for k in ("total", "up", "down", "not_checked", "invalid")),
                finished_at,
                run_id,
            ),
        )

    # A run whose reports are written while it goes (checker.reports.reporter)
    # is one transaction from `begin` to `commit`: every batch's results and
    # states are stepped as if the run will end complete, and a run that ends
    # stopped is rolled back whole (its reports are then written afterwards,
    # as a stopped run's are).

    def begin(self) -> None:
        self._db.execute("BEGIN")
        self._in_run = True

    def commit(self) -> None:
        self._in_run = False
        # The run's changes go into the outbox in the transaction that keeps
        # the states they came from: both are kept, or neither.
        queued, at = self._queued, self._queued_at or datetime.now(UTC)
        self._queued, self._queued_at = {}, None
        for channel, changes in queued.items():
            self._append(channel, changes, at)
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._in_run = False
        self._queued, self._queued_at = {}, None
        self._recent_column = None  # (added in the transaction rolled back?)
        self._open_day = None  # (and the days closed in it)
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (BEGIN to COMMIT, or ROLLBACK on an error), or a
        part of the run's when a run holds one (`begin`)."""
        if self._in_run:
            yield
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                yield
        except BaseException:
            self._open_day = None  # (the days closed in it are open again)
            raise

    def add_results(
        self,
        run_id: int,
        rows: Sequence[Row],
        policy: Policy | None = None,
        now: datetime | None = None,
        save_states: bool = True,
        trends: bool | None = None,
        alert: Sequence[str] = (),
        room: int = HELD,
    ) -> Batch:
        """One batch, one transaction. With a `policy`, each URL's state is
        stepped too, and the changes, the URLs' trends and their incidents are
        returned; the new states (and the day's counts) are kept only with
        `save_states` (a complete run: a stopped one reports what it saw, but
        is never the baseline of the next). The first `room` of the changes
        of kept states are queued for the `alert` channels, in the same
        transaction (`_queue`)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO urls (url) VALUES (?)", ((r.url,) for r in rows)
            )
            ids = dict((url, url_id) for url_id, url in self.url_ids(r.url for r in rows))
            self._db.executemany(
                "INSERT OR REPLACE INTO results"
                " (url_id, run_id, checked_at, ok, status, error, total_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (ids[r.url], run_id, r.checked_at, int(r.ok), r.status, r.error, r.total_ms)
                    for r in rows
                ),
            )
            if policy is None:
                return Batch([], {}, [])
            now = now or datetime.now(UTC)
            if trends is None:
                trends = self.previous_complete(run_id) is not None
            if save_states:
                self._add_recent()
            recent: dict[int, str | None] = {}
            states = self.states(ids.values(), recent)
            if trends:
                # Kept by the runs that stepped them; from the results for
                # the URLs whose states were written without (an older
                # checker's, an import's) or that have none yet.
                unknown = [url_id for url_id in ids.values() if recent.get(url_id) is None]
                if unknown:
                    recent.update(self._recent_from_results(unknown, run_id))
            changes, pushed = self._step_states(
                run_id, rows, ids, policy, now, save_states, trends, states, recent
            )
            if save_states:
                self._queue(alert, changes[: max(0, room)], now)
            if not trends:
                # The first run here: one result is no trend, and there are
                # no incidents yet.
                return Batch(changes, {}, [])
            # The page's strip: a complete run's result last (it is one of
            # the last complete runs); a stopped one's not.
            shown = pushed if save_states else recent
            return Batch(
                changes, self._trends(rows, ids, states, now, shown), self._incidents(ids, now)
            )

    def _step_states(
        self,
        run_id: int,
        rows: Sequence[Row],
        ids: dict[str, int],
        policy: Policy,
        now: datetime,
        save: bool,
        baseline: bool,
        states: dict[int, State],
        recent: dict[int, str | None],
    ) -> tuple[list[Change], dict[int, str | None]]:
        """`states`: the URLs' states, stepped here; `recent`: their last
        results as kept, left as they are (a stopped run's page shows them):
        returned with this batch's results pushed, in a copy."""
        pushed = dict(recent)
        changes: list[Change] = []
        updates = []
        new_down: list[tuple[int, Row]] = []  # down when first seen: an incident already
        for row in rows:
            url_id = ids[row.url]
            prev = states.get(url_id)
            state, found = step(prev, row, policy, now, baseline)
            if prev is None and state.state == DOWN:
                new_down.append((url_id, row))
            states[url_id] = state  # the same URL twice in a batch steps twice
            pushed[url_id] = kept = _pushed(pushed.get(url_id), row.ok, row.total_ms)
            changes += found
            updates.append(
                (
                    url_id,
                    state.state,
                    state.since,
                    state.status,
                    state.error,
                    state.final_url,
                    state.cert_days,
                    state.pending,
                    state.pending_since,
                    state.reminded_at,
                    int(state.degraded),
                    run_id,
                    kept,
                )
            )
        if save:
            self._db.executemany(
                f"INSERT OR REPLACE INTO url_state (url_id, {_STATE_COLUMNS}, run_id, recent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                updates,
            )
            started = self._run_started(run_id)
            self._close_days(started[:10])
            self._db.executemany(
                "INSERT INTO daily_open (url_id, day, checks, up, down) VALUES (?, ?, 1, ?, ?)"
                " ON CONFLICT (url_id) DO UPDATE SET checks = checks + 1,"
                " up = up + excluded.up, down = down + excluded.down",
                ((ids[r.url], started[:10], int(r.ok), int(not r.ok)) for r in rows),
            )
            self._db.executemany(
                "INSERT INTO hourly (url_id, hour, checks, up) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (url_id, hour) DO UPDATE SET checks = checks + 1,"
                " up = up + excluded.up",
                ((ids[r.url], started[:13], int(r.ok)) for r in rows),
            )
            # Each URL's expired hours, by its key: no scan of the table.
            expired = (now - timedelta(hours=HOURS_KEPT)).strftime("%Y-%m-%dT%H")
            self._db.executemany(
                "DELETE FROM hourly WHERE url_id = ? AND hour < ?",
                ((url_id, expired) for url_id in sorted(set(ids.values()))),
            )
            self._record_incidents(changes, ids)
            self._db.executemany(
                "INSERT OR IGNORE INTO incidents (url_id, started, cause, detail)"
                " VALUES (?, ?, ?, ?)",
                (
                    (url_id, row.checked_at, str(row.outcome), row.detail)
                    for url_id, row in new_down
                    if row.checked_at
                ),
            )
        return changes, pushed

    def _trends(
        self,
        rows: Sequence[Row],
        ids: dict[str, int],
        states: dict[int, State],
        now: datetime,
        recent: dict[int, str | None],
    ) -> dict[str, Trend]:
        """Uptime over 24 h (the hourly counts: the hour a day ago whole), 7
        and 30 days (the daily counts: the last 7 or 30 UTC days, today
        included), and the URL's last RECENT results of complete runs
        (`recent`)."""
        wanted = sorted(set(ids.values()))
        marks = ",".join("?" * len(wanted))
        counts: dict[int, list[int]] = {}
        # The last 24 hours by the hour (the hour a day ago whole).
        day_ago = (now - timedelta(hours=24)).strftime("%Y-%m-%dT%H")
        for url_id, checks, up in self._db.execute(
            f"SELECT url_id, SUM(checks), SUM(up) FROM hourly WHERE url_id IN ({marks})"
            " AND hour >= ? GROUP BY url_id",
            (*wanted, day_ago),
        ):
            counts[url_id] = [checks, up]
        by_day: dict[int, dict[int, tuple[int, int]]] = {7: {}, 30: {}}
        week = (now - timedelta(days=6)).strftime("%Y-%m-%d")
        month = (now - timedelta(days=29)).strftime("%Y-%m-%d")
        daily, args = self._daily(f"url_id IN ({marks}) AND day >= ?", (*wanted, month))
        for url_id, checks, up, week_checks, week_up in self._db.execute(
            "SELECT url_id, SUM(checks), SUM(up), SUM(CASE WHEN day >= ? THEN checks END),"
            f" SUM(CASE WHEN day >= ? THEN up END) FROM {daily} GROUP BY url_id",
            (week, week, *args),
        ):
            by_day[30][url_id] = (checks, up)
            if week_checks:
                by_day[7][url_id] = (week_checks, week_up)
        out = {}
        for row in rows:
            url_id = ids[row.url]
            state = states.get(url_id)
            since = None
            if state is not None and not row.ok:
                since = state.since if state.state == DOWN else state.pending_since
            out[row.url] = Trend(
                (
                    _percent(counts.get(url_id)),
                    _percent(by_day[7].get(url_id)),
                    _percent(by_day[30].get(url_id)),
                ),
                recent.get(url_id) or "",
                since or (row.checked_at if not row.ok else None),
            )
        return out

    def _recent_from_results(self, url_ids: Sequence[int], run_id: int) -> dict[int, str]:
        """The URLs' results in the last RECENT complete runs but `run_id`
        (this run's go after them), oldest first, as `recent` keeps them:
        for the URLs whose states have none kept."""
        runs = [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM runs WHERE complete ORDER BY id DESC LIMIT ?", (RECENT,)
            )
            if r[0] != run_id
        ]
        found: dict[int, str] = {}
        if not runs:
            return found
        for i in range(0, len(url_ids), 500):
            chunk = url_ids[i : i + 500]
            # (Both lists: a seek a URL a run, by the primary key.)
            for url_id, ok, ms in self._db.execute(
                f"SELECT url_id, ok, total_ms FROM results WHERE run_id IN"
                f" ({','.join('?' * len(runs))}) AND url_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY url_id, run_id",
                (*runs, *chunk),
            ):
                found[url_id] = _pushed(found.get(url_id), bool(ok), ms)
        return found

    def _incidents(self, ids: dict[str, int], now: datetime, limit: int = 50) -> list[Incident]:
        """The batch's URLs' newest incidents of the last 30 days (or still open)."""
        names = {url_id: url for url, url_id in ids.items()}
        wanted = sorted(names)
        return [
            Incident(names[url_id], started, ended, cause, detail)
            for url_id, started, ended, cause, detail in self._db.execute(
                "SELECT url_id, started, ended, cause, detail FROM incidents"
                f" WHERE url_id IN ({','.join('?' * len(wanted))})"
                " AND (ended IS NULL OR ended >= ?) ORDER BY started DESC LIMIT ?",
                (*wanted, iso(now - timedelta(days=30)), limit),
            )
        ]

    def _record_incidents(self, changes: Sequence[Change], ids: dict[str, int]) -> None:
        for change in changes:
            if change.kind == "down" and change.since:
                self._db.execute(
                    "INSERT OR IGNORE INTO incidents (url_id, started, cause, detail)"
                    " VALUES (?, ?, ?, ?)",
                    (ids[change.url], change.since, str(change.after), change.detail),
                )
            elif change.kind == "up":
                self._db.execute(
                    "UPDATE incidents SET ended = ? WHERE url_id = ? AND ended IS NULL",
                    (change.since, ids[change.url]),
                )

    def _run_started(self, run_id: int) -> str:
        row = self._db.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        return str(row[0]) if row else iso(datetime.now(UTC))

    def states(
        self, url_ids: Iterable[int], recent: dict[int, str | None] | None = None
    ) -> dict[int, State]:
        """The URLs' states; with `recent`, their kept last results too (a
        URL with a state and none kept: None)."""
        wanted = list(url_ids)
        out: dict[int, State] = {}
        with_recent = recent is not None and self._has_recent()
        columns = f"{_STATE_COLUMNS}, recent" if with_recent else _STATE_COLUMNS
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            for url_id, *values in self._db.execute(
                f"SELECT url_id, {columns} FROM url_state"
                f" WHERE url_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                if recent is not None:
                    recent[url_id] = values.pop() if with_recent else None
                # The stored 0/1 made a bool. (Not dataclasses.replace: a
                # second record, and the slowest way to make one, per URL.)
                values[-1] = bool(values[-1])
                out[url_id] = State(*values)
        return out

    def _has_recent(self) -> bool:
        """Whether url_state has its `recent` column: a database made before
        it has not, until a run that writes its states adds it (`_add_recent`;
        a reader, `checker history`, never does: it must not wait for a run's
        lock to add a column).
        No schema version for it: an older checker still uses the database,
        and its states written without it are NULL, read from the results."""
        if self._recent_column is None:
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(url_state)")]
            self._recent_column = "recent" in columns
        return self._recent_column

    def _add_recent(self) -> None:
        if not self._has_recent():
            self._db.execute("ALTER TABLE url_state ADD COLUMN recent TEXT")
            self._recent_column = True

    def _close_days(self, day: str) -> None:
        """Make `daily_open` hold `day`'s counts only: those of any other
        day are added to `daily` (once per run: its first batch)."""
        if self._open_day == day:
            return
        self._db.execute(_OPEN_DAYS)
        self._db.execute(
            "INSERT INTO daily (url_id, day, checks, up, down)"
            " SELECT url_id, day, checks, up, down FROM daily_open WHERE day <> ?"
            " ON CONFLICT (url_id, day) DO UPDATE SET checks = checks + excluded.checks,"
            " up = up + excluded.up, down = down + excluded.down",
            (day,),
        )
        self._db.execute("DELETE FROM daily_open WHERE day <> ?", (day,))
        self._open_day = day

    def _has_open(self) -> bool:
        """Whether `daily_open` is there (a reader never makes it: a
        database that no run of this checker wrote has none)."""
        return bool(
            self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'daily_open'"
            ).fetchone()
        )

    def _daily(self, where: str, args: Sequence[object]) -> tuple[str, Sequence[object]]:
        """The daily counts (url_id, day, checks, up) that `where` (with
        `args`) says, the open day's among them: a subquery, and its args."""
        closed = f"SELECT url_id, day, checks, up FROM daily WHERE {where}"
        if not self._has_open():
            return f"({closed})", args
        opened = f"SELECT url_id, day, checks, up FROM daily_open WHERE {where}"
        return f"({closed} UNION ALL {opened})", (*args, *args)

    def _results_by_run(self) -> None:
        """A database of schema 1 or 2: its results keyed by (url, run), made
        keyed by (run, url), once: a copy of the table (3 to 5 s a million
        results here), and as much again in the WAL until its checkpoint."""
        made = _made("results").replace("EXISTS results (", "EXISTS results_by_run (")
        with self._transaction():
            self._db.execute(made)
            # Sorted, not read in order through the results_run index (the
            # unary +): that was a lookup in the old table a row. 43 million
            # results: 605 s -> 219 s; 5 million: 23.8 s -> 14.0 s.
            self._db.execute(
                "INSERT INTO results_by_run SELECT url_id, run_id, checked_at, ok, status,"
                " error, total_ms FROM results ORDER BY +run_id, url_id"
            )
            self._db.execute("DROP TABLE results")  # (and its index, results_run)
            self._db.execute("ALTER TABLE results_by_run RENAME TO results")

    def _upgrade_from_1(self) -> None:
        """A database of schema 1: daily rows were only written by the
        roll-up (with a marker row at the last URL of a half-done day)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO rollup_progress (day, upto)"
                " SELECT d.day, MAX(d.url_id) FROM daily d WHERE d.day IN"
                " (SELECT substr(started_at, 1, 10) FROM runs WHERE rolled_up = 0)"
                " GROUP BY d.day"
            )
        self.count_days()
        self.seed_states()

    def count_days(self) -> None:
        """The daily counts of the raw results not rolled up yet, from scratch
        (after an import of old reports, or an upgrade): one pass over them."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO daily (url_id, day, checks, up, down)"
                " SELECT x.url_id, substr(r.started_at, 1, 10), COUNT(*), SUM(x.ok),"
                " COUNT(*) - SUM(x.ok) FROM results x JOIN runs r ON r.id = x.run_id"
                " WHERE r.complete AND r.rolled_up = 0"
                " GROUP BY x.url_id, substr(r.started_at, 1, 10)"
                " ON CONFLICT (url_id, day) DO UPDATE SET checks = excluded.checks,"
                " up = excluded.up, down = excluded.down"
            )
            if self._has_open():  # (counted in `daily` now, whatever day)
                self._db.execute("DELETE FROM daily_open")
                self._open_day = None
            since = (datetime.now(UTC) - timedelta(hours=HOURS_KEPT)).strftime("%Y-%m-%dT%H")
            self._db.execute(
                "INSERT INTO hourly (url_id, hour, checks, up)"
                " SELECT x.url_id, substr(r.started_at, 1, 13), COUNT(*), SUM(x.ok)"
                " FROM results x JOIN runs r ON r.id = x.run_id"
                " WHERE r.complete AND r.started_at >= ?"
                " GROUP BY x.url_id, substr(r.started_at, 1, 13)"
                " ON CONFLICT (url_id, hour) DO UPDATE SET checks = excluded.checks,"
                " up = excluded.up",
                (since,),
            )

    def seed_states(self) -> int:
        """States from the newest complete run, for a database that has
        results but no states yet (made by an older checker, or just filled
        from JSON reports): the next run's changes are then against it."""
        with self._transaction():
            if self._db.execute("SELECT 1 FROM url_state LIMIT 1").fetchone():
                return 0
            return self._db.execute(
                f"INSERT INTO url_state (url_id, {_STATE_COLUMNS}, run_id)"
                " SELECT url_id, CASE WHEN ok THEN 'up' ELSE 'down' END, checked_at,"
                " status, error, NULL, NULL, 0, NULL, NULL, 0, run_id FROM results"
                " WHERE run_id = (SELECT MAX(id) FROM runs WHERE complete)"
            ).rowcount

    def held(self, channel: str) -> list[Change]:
        """Changes `channel` has not delivered yet, oldest first (a complete
        run's own, queued with its states, last)."""
        row = self._db.execute(
            "SELECT changes FROM outbox WHERE channel = ?", (channel,)
        ).fetchone()
        if row is None:
            return []
        try:
            items = json.loads(row[0])
        except ValueError:
            return []
        found = [Change.from_dict(item) for item in items] if isinstance(items, list) else []
        return [change for change in found if change is not None]

    def _queue(self, channels: Sequence[str], changes: Sequence[Change], now: datetime) -> None:
        """Keep `changes` for each of `channels` until it has delivered them
        (the newest HELD a channel), in the transaction that keeps the states
        they came from (`add_results`'s): a run killed at any moment after
        that, while its alerts go out included, leaves them here for the next
        complete run to send. In the run's transaction (`begin`) they are
        written once, at its `commit` (rewriting a channel's list for every
        batch of 256 rows cost 0.3 s at 10,000 changes)."""
        if not changes:
            return
        if self._in_run:
            for channel in channels:
                self._queued.setdefault(channel, []).extend(changes)
            self._queued_at = self._queued_at or now
            return
        for channel in channels:
            self._append(channel, changes, now)

    def _append(self, channel: str, changes: Sequence[Change], now: datetime) -> None:
        kept = (self.held(channel) + list(changes))[-HELD:]
        self._db.execute(
            "INSERT INTO outbox (channel, changes, since) VALUES (?, ?, ?)"
            " ON CONFLICT (channel) DO UPDATE SET changes = excluded.changes",
            (channel, json.dumps([c.to_dict() for c in kept], default=str), iso(now)),
        )

    def delivered(self, channel: str, count: int) -> None:
        """`channel` took the oldest `count` of its changes (what `held` gave
        the alert): they go, anything queued since stays."""
        with self._transaction():
            rest = self.held(channel)[count:]
            if rest:
                self._db.execute(
                    "UPDATE outbox SET changes = ? WHERE channel = ?",
                    (json.dumps([c.to_dict() for c in rest], default=str), channel),
                )
            else:
                self._db.execute("DELETE FROM outbox WHERE channel = ?", (channel,))

    def recorded(self, started_at: str) -> RecordedRun | None:
        """The run that started at `started_at`, if the history has it. A run
        is added in the transaction that holds its results, its states and
        its reports' names, committed once its reports are in place: recorded
        means the run's work is done. (The start, to the millisecond, is the
        run's: its lists' names could read differently from another folder.)"""
        row = self._db.execute(
            "SELECT report, complete, total, up, down, not_checked, invalid, finished_at"
            " FROM runs WHERE started_at = ? ORDER BY id LIMIT 1",
            (started_at,),
        ).fetchone()
        if row is None:
            return None
        report, complete, *counts, finished_at = row
        keys = ("total", "up", "down", "not_checked", "invalid")
        return RecordedRun(
            str(report) if report else None,
            bool(complete),
            {k: int(v or 0) for k, v in zip(keys, counts, strict=True)},
            str(finished_at) if finished_at else None,
        )

    def previous_complete(self, run_id: int) -> str | None:
        """When the newest complete run before `run_id` started, if any."""
        row = self._db.execute(
            "SELECT started_at FROM runs WHERE complete AND id < ? ORDER BY id DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    def down_now(self, run_id: int, limit: int) -> list[tuple[str, str | None]]:
        """(URL, down since) of the URLs of run `run_id` whose state is down,
        longest down first."""
        return [
            (str(url), since)
            for url, since in self._db.execute(
                "SELECT u.url, s.since FROM url_state s JOIN urls u ON u.id = s.url_id"
                " WHERE s.run_id = ? AND s.state = 'down' ORDER BY s.since LIMIT ?",
                (run_id, limit),
            )
        ]

    def roll_up(
        self,
        now: datetime | None = None,
        history_days: int = HISTORY_DAYS,
        budget: int = ROLL_UP_ROWS,
    ) -> int:
        """Finish part of the oldest day older than `history_days`: its daily
        rows get their median and 95th percentile times from the raw results,
        which are then dropped; daily rows older than a year go too.

        The day's counts are already in `daily` (each complete run adds its
        own), so uptime never depends on how far a roll-up got. Bounded: URLs
        are taken in id order until about `budget` raw rows are done, and the
        next call goes on from there (`rollup_progress`; a day of 10,000 URLs
        every 5 minutes is 2.9 million rows: rolled up at once it took 21 s).
        Returns the raw rows done.
        """
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(days=history_days)).strftime("%Y-%m-%d")
        first = self._db.execute(
            "SELECT substr(started_at, 1, 10) FROM runs"
            " WHERE rolled_up = 0 AND substr(started_at, 1, 10) < ?"
            " ORDER BY started_at LIMIT 1",
            (cutoff,),
        ).fetchone()
        if first is None:
            return 0
        day = first[0]
        run_ids = [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM runs WHERE rolled_up = 0 AND substr(started_at, 1, 10) = ?",
                (day,),
            )
        ]
        progress = self._db.execute(
            "SELECT upto FROM rollup_progress WHERE day = ?", (day,)
        ).fetchone()
        done_upto = progress[0] if progress else 0
        # The next URLs, as many as the budget holds (each has at most one row a run).
        # (At most 5,000 URLs a call: their ids are query parameters.)
        limit = min(5_000, max(1, budget // max(1, len(run_ids))))
        urls = [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM urls WHERE id > ? ORDER BY id LIMIT ?", (done_upto, limit)
            )
        ]
        marks = ",".join("?" * len(run_ids))
        done = 0
        with self._transaction():
            # (The day's counts in `daily`, for its times: a URL not checked
            # since has them in `daily_open` still.)
            self._close_days(now.strftime("%Y-%m-%d"))
            if urls:
                hi = urls[-1]
                # By the primary key: these URLs' rows of each of the day's
                # runs are one range (the run, the URLs' ids: consecutive ones).
                where = f"run_id IN ({marks}) AND url_id BETWEEN ? AND ?"
                args = (*run_ids, urls[0], hi)
                times: dict[int, list[float]] = {}
                for url_id, ms in self._db.execute(
                    f"SELECT url_id, total_ms FROM results WHERE {where}"
                    " AND ok AND total_ms IS NOT NULL ORDER BY url_id, total_ms",
                    args,
                ):
                    times.setdefault(url_id, []).append(ms)
                self._db.executemany(
                    "UPDATE daily SET p50_ms = ?, p95_ms = ? WHERE url_id = ? AND day = ?",
                    (
                        (percentile(ms, 50), percentile(ms, 95), url_id, day)
                        for url_id, ms in times.items()
                    ),
                )
                done = self._db.execute(f"DELETE FROM results WHERE {where}", args).rowcount
                self._db.execute(
                    "INSERT OR REPLACE INTO rollup_progress (day, upto) VALUES (?, ?)", (day, hi)
                )
            if len(urls) < limit:
                # Every URL is done: the day's runs are rolled up.
                self._db.execute(f"UPDATE runs SET rolled_up = 1 WHERE id IN ({marks})", run_ids)
                self._db.execute("DELETE FROM rollup_progress WHERE day = ?", (day,))
            old = (now - timedelta(days=DAILY_DAYS)).strftime("%Y-%m-%d")
            self._db.execute("DELETE FROM daily WHERE day < ?", (old,))
        return done

    # --- reading ------------------------------------------------------------

    def url_ids(self, urls: Iterable[str]) -> list[tuple[int, str]]:
        wanted = list(urls)
        out: list[tuple[int, str]] = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            out += self._db.execute(
                f"SELECT id, url FROM urls WHERE url IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
        return out

    def urls_like(self, fragment: str) -> list[tuple[int, str]]:
        """URLs whose text contains `fragment` (case-insensitively, for ASCII)."""
        escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._db.execute(
            "SELECT id, url FROM urls WHERE url LIKE ? ESCAPE '\\'", (f"%{escaped}%",)
        ).fetchall()

    def recent(self, url_id: int, last: int) -> list[tuple[str, bool, Row]]:
        """(run started_at, run complete, result) of the URL's last `last`
        results, newest first."""
        rows = self._db.execute(
            # (Run by run, newest first: a seek each, by the primary key.)
            "SELECT r.started_at, r.complete, u.url, x.ok, x.status, x.error, x.total_ms,"
            " x.checked_at FROM runs r CROSS JOIN results x ON x.run_id = r.id AND x.url_id = ?"
            " JOIN urls u ON u.id = x.url_id ORDER BY r.id DESC LIMIT ?",
            (url_id, last),
        ).fetchall()
        return [
            (s, bool(done), Row(u, bool(ok), st, e, ms, c)) for s, done, u, ok, st, e, ms, c in rows
        ]

    def uptime(self, url_id: int, since: datetime) -> Uptime:
        """Checks and ups of the complete runs since `since`, from the raw
        results (which go back `history_days`: for the last 24 hours)."""
        raw = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(x.ok), 0) FROM runs r CROSS JOIN results x"
            " ON x.run_id = r.id AND x.url_id = ? WHERE r.started_at >= ? AND r.complete",
            (url_id, iso(since)),
        ).fetchone()
        return Uptime(raw[0], raw[1])

    def uptime_days(self, url_id: int, days: int, now: datetime) -> Uptime:
        """Checks and ups of the complete runs of the last `days` UTC days,
        today included (the daily counts: a year of them)."""
        first = (now - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        daily, args = self._daily("url_id = ? AND day >= ?", (url_id, first))
        row = self._db.execute(
            f"SELECT COALESCE(SUM(checks), 0), COALESCE(SUM(up), 0) FROM {daily}", args
        ).fetchone()
        return Uptime(row[0], row[1])

    def down_since(self, url_id: int) -> str | None:
        """When the URL's current run of downs began (its first down result
        after its last up, in complete runs), or None when it is up: the
        same moment as the alerts' and the page's "since"."""
        state = self.states([url_id]).get(url_id)
        if state is not None:
            if state.state == DOWN:
                return state.since
            # (Below zero, `pending` counts runs that saw it degraded: still up.)
            return state.pending_since if state.pending > 0 else None
        last_up = self._db.execute(
            "SELECT MAX(r.id) FROM runs r CROSS JOIN results x"
            " ON x.run_id = r.id AND x.url_id = ? WHERE x.ok AND r.complete",
            (url_id,),
        ).fetchone()[0]
        first_down = self._db.execute(
            "SELECT r.started_at FROM runs r CROSS JOIN results x"
            " ON x.run_id = r.id AND x.url_id = ? WHERE NOT x.ok AND r.complete AND r.id > ?"
            " ORDER BY r.id LIMIT 1",
            (url_id, last_up or 0),
        ).fetchone()
        return None if first_down is None else str(first_down[0])

    def runs(self, last: int) -> list[dict[str, object]]:
        cols = ("started_at", "finished_at", "complete", "total", "up", "down", "not_checked")
        rows = self._db.execute(
            f"SELECT {', '.join(cols)} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
            (last,),
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in reversed(rows)]

    def count(self, table: str) -> int:
        assert table in ("runs", "urls", "results", "daily", "daily_open")
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _pushed(recent: str | None, ok: bool, ms: float | None) -> str:
    """A URL's last results as url_state keeps them, with one more, the
    oldest dropped past RECENT: "1:12.5 0 1:9.75", up (1) or down (0),
    then its time in ms if it had one (model.Trend). (Kept with the state, the page's
    strip is one column read a URL, not RECENT rows of results made into
    Python objects: 27 us of the history's 37 a row, in a folder of 70 runs.)"""
    item = ("1" if ok else "0") if ms is None else f"{'1' if ok else '0'}:{ms!r}"
    if recent and recent.count(" ") + 1 >= RECENT:
        recent = recent.partition(" ")[2]  # (the oldest out)
    return f"{recent} {item}" if recent else item


def _percent(counts: Sequence[int] | None) -> float | None:
    """Ups per 100 checks, to two decimals (None: no checks)."""
    if not counts or not counts[0]:
        return None
    return round(100.0 * counts[1] / counts[0], 2)


def percentile(ordered: list[float], p: int) -> float | None:
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
    return ordered[rank - 1]
