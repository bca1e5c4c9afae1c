"""The history database: every run and every result, in SQLite beside the reports.

`<out>/history.sqlite3`, the standard library's sqlite3, WAL journal (a reader,
such as `checker history`, never blocks a run, nor the other way round).

Sized for cron: 10,000 URLs every 5 minutes is 2.9 million results a day.
A result row is small (no text but the error category) and keyed on
(url, run) without a rowid, so one URL's history is one range of the primary
key. Raw results are kept for `history_days` (14 by default); older days are
rolled up into one row per URL per day (checks, up, down, median and 95th
percentile time), kept for a year. Each run rolls up at most ROLL_UP_ROWS
raw rows (a part of the oldest day, URL by URL), so no run pays for a whole
day of history at once.

Blocking calls: every method here is synchronous; the run calls them in a
worker thread (`asyncio.to_thread`), one batch, one transaction at a time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from checker.results import iso
from checker.store.model import Change, Policy, Row, State, Uptime
from checker.store.state import step

NAME = "history.sqlite3"
SCHEMA_VERSION = 2  # 2: url_state
HISTORY_DAYS = 14  # raw results kept this long; then one row per URL per day
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
    PRIMARY KEY (url_id, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_run ON results (run_id);
CREATE TABLE IF NOT EXISTS daily (
    url_id INTEGER NOT NULL,
    day TEXT NOT NULL,                 -- YYYY-MM-DD, UTC
    checks INTEGER NOT NULL, up INTEGER NOT NULL, down INTEGER NOT NULL,
    p50_ms REAL, p95_ms REAL,
    PRIMARY KEY (url_id, day)
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
    run_id INTEGER NOT NULL            -- the last run that stepped it
);
"""
_STATE_COLUMNS = (
    "state, since, status, error, final_url, cert_days, pending, pending_since, reminded_at"
)


class HistoryDB:
    def __init__(self, path: str) -> None:
        self.path = path
        self.created = not os.path.exists(path)
        # One connection, used by one thread at a time (the run awaits each
        # call before the next), from whichever worker thread asyncio picks.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{path}: made by a newer checker (schema {version})")
            with self._db:
                self._db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if 0 < version < 2:
                self.seed_states()  # a database from before url_state
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

    def add_results(
        self,
        run_id: int,
        rows: Sequence[Row],
        policy: Policy | None = None,
        now: datetime | None = None,
        save_states: bool = True,
    ) -> list[Change]:
        """One batch, one transaction. With a `policy`, each URL's state is
        stepped too, and the changes are returned; the new states are kept
        only with `save_states` (a complete run: a stopped one reports what it
        saw, but is never the baseline of the next)."""
        with self._db:
            self._db.execute("BEGIN")
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
                return []
            return self._step_states(
                run_id, rows, ids, policy, now or datetime.now(UTC), save_states
            )

    def _step_states(
        self,
        run_id: int,
        rows: Sequence[Row],
        ids: dict[str, int],
        policy: Policy,
        now: datetime,
        save: bool,
    ) -> list[Change]:
        states = self.states(ids.values())
        changes: list[Change] = []
        updates = []
        for row in rows:
            url_id = ids[row.url]
            state, found = step(states.get(url_id), row, policy, now)
            states[url_id] = state  # the same URL twice in a batch steps twice
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
                    run_id,
                )
            )
        if save:
            self._db.executemany(
                f"INSERT OR REPLACE INTO url_state (url_id, {_STATE_COLUMNS}, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                updates,
            )
        return changes

    def states(self, url_ids: Iterable[int]) -> dict[int, State]:
        wanted = list(url_ids)
        out: dict[int, State] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            for url_id, *values in self._db.execute(
                f"SELECT url_id, {_STATE_COLUMNS} FROM url_state"
                f" WHERE url_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[url_id] = State(*values)
        return out

    def seed_states(self) -> int:
        """States from the newest complete run, for a database that has
        results but no states yet (made by an older checker, or just filled
        from JSON reports): the next run's changes are then against it."""
        with self._db:
            self._db.execute("BEGIN")
            if self._db.execute("SELECT 1 FROM url_state LIMIT 1").fetchone():
                return 0
            return self._db.execute(
                f"INSERT INTO url_state (url_id, {_STATE_COLUMNS}, run_id)"
                " SELECT url_id, CASE WHEN ok THEN 'up' ELSE 'down' END, checked_at,"
                " status, error, NULL, NULL, 0, NULL, NULL, run_id FROM results"
                " WHERE run_id = (SELECT MAX(id) FROM runs WHERE complete)"
            ).rowcount

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
        """Roll part of the oldest day older than `history_days` into `daily`
        and drop those raw results; drop daily rows older than a year.

        Bounded: URLs are taken in id order until about `budget` raw rows are
        done, and the next call goes on from there (a day of 10,000 URLs every
        5 minutes is 2.9 million rows: rolled up at once it took 21 s). While
        a day is half done, each URL has either its raw rows or its daily row,
        never both, so uptime counts stay right. Returns the raw rows done.
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
        done_upto = self._db.execute(
            "SELECT COALESCE(MAX(url_id), 0) FROM daily WHERE day = ?", (day,)
        ).fetchone()[0]
        # The next URLs, as many as the budget holds (each has at most one row a run).
        limit = max(1, budget // max(1, len(run_ids)))
        urls = [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM urls WHERE id > ? ORDER BY id LIMIT ?", (done_upto, limit)
            )
        ]
        marks = ",".join("?" * len(run_ids))
        done = 0
        with self._db:
            self._db.execute("BEGIN")
            if urls:
                lo, hi = urls[0], urls[-1]
                where = f"url_id BETWEEN ? AND ? AND run_id IN ({marks})"
                args = (lo, hi, *run_ids)
                counts = self._db.execute(
                    f"SELECT url_id, COUNT(*), SUM(ok) FROM results WHERE {where} GROUP BY url_id",
                    args,
                ).fetchall()
                times: dict[int, list[float]] = {}
                for url_id, ms in self._db.execute(
                    f"SELECT url_id, total_ms FROM results WHERE {where}"
                    " AND ok AND total_ms IS NOT NULL ORDER BY url_id, total_ms",
                    args,
                ):
                    times.setdefault(url_id, []).append(ms)
                self._db.executemany(
                    "INSERT OR REPLACE INTO daily (url_id, day, checks, up, down, p50_ms, p95_ms)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        (
                            url_id,
                            day,
                            checks,
                            up,
                            checks - up,
                            percentile(times.get(url_id, []), 50),
                            percentile(times.get(url_id, []), 95),
                        )
                        for url_id, checks, up in counts
                    ),
                )
                done = self._db.execute(f"DELETE FROM results WHERE {where}", args).rowcount
                # A marker at the last URL taken, so the next call goes on after
                # it even when that URL had no row that day.
                if not any(url_id == hi for url_id, _, _ in counts):
                    self._db.execute(
                        "INSERT OR REPLACE INTO daily (url_id, day, checks, up, down)"
                        " VALUES (?, ?, 0, 0, 0)",
                        (hi, day),
                    )
            if len(urls) < limit:
                # Every URL is done: the day's runs are rolled up.
                self._db.execute(f"UPDATE runs SET rolled_up = 1 WHERE id IN ({marks})", run_ids)
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

    def recent(self, url_id: int, last: int) -> list[tuple[str, Row]]:
        """(run started_at, result) of the URL's last `last` results, newest first."""
        rows = self._db.execute(
            "SELECT r.started_at, u.url, x.ok, x.status, x.error, x.total_ms, x.checked_at"
            " FROM results x JOIN runs r ON r.id = x.run_id JOIN urls u ON u.id = x.url_id"
            " WHERE x.url_id = ? ORDER BY x.run_id DESC LIMIT ?",
            (url_id, last),
        ).fetchall()
        return [(s, Row(u, bool(ok), st, e, ms, c)) for s, u, ok, st, e, ms, c in rows]

    def uptime(self, url_id: int, since: datetime) -> Uptime:
        """Checks and ups of complete runs since `since`: raw results, plus the
        daily roll-ups of whole days after it."""
        stamp = iso(since)
        raw = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(x.ok), 0) FROM results x JOIN runs r ON r.id = x.run_id"
            " WHERE x.url_id = ? AND r.started_at >= ? AND r.complete",
            (url_id, stamp),
        ).fetchone()
        rolled = self._db.execute(
            "SELECT COALESCE(SUM(checks), 0), COALESCE(SUM(up), 0) FROM daily"
            " WHERE url_id = ? AND day > ?",
            (url_id, stamp[:10]),
        ).fetchone()
        return Uptime(raw[0] + rolled[0], raw[1] + rolled[1])

    def down_since(self, url_id: int) -> str | None:
        """When the URL's current run of downs began (its first down result
        after its last up), or None when its last result is up."""
        last_up = self._db.execute(
            "SELECT MAX(x.run_id) FROM results x JOIN runs r ON r.id = x.run_id"
            " WHERE x.url_id = ? AND x.ok AND r.complete",
            (url_id,),
        ).fetchone()[0]
        first_down = self._db.execute(
            "SELECT r.started_at FROM results x JOIN runs r ON r.id = x.run_id"
            " WHERE x.url_id = ? AND NOT x.ok AND r.complete AND x.run_id > ?"
            " ORDER BY x.run_id LIMIT 1",
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
        assert table in ("runs", "urls", "results", "daily")
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def percentile(ordered: list[float], p: int) -> float | None:
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
    return ordered[rank - 1]
