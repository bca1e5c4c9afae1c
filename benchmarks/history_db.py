"""How the history database holds up for a long-running cron user: a run's
writes (states, daily counts, trends, incidents), the page's rows with their
trends, the bounded roll-up, and `checker history URL`'s queries.

    python3 benchmarks/history_db.py        # 10,000 URLs every 5 min, 30 days, 14 kept raw
    python3 benchmarks/history_db.py --urls 1000 --days 3 --every 60 --history-days 1  # quick
    python3 benchmarks/history_db.py --write benchmarks/RESULTS-history.md

(The quick one takes a second; `--history-days 1` gives its roll-up a day to
do. The full one takes 2.5 to 6 minutes, as this machine goes, and 2.3 GiB of
disk.)

The fill: a fresh database in a temporary folder (`--keep DIR`: in DIR, left
there for a look), as `--days` of cron runs (every URL each run, every
`--every` minutes) would have left it at the end of the last day, written
with direct SQL through the HistoryDB's own connection (executemany, one
transaction per day, no fsyncs: two minutes, where `add_results` a run at a
time would take 40 min without a policy, two hours with one): every run in
`runs`; raw `results` only for the days not rolled up yet (the last day and
the `--history-days` before it); the older days rolled up (their runs
`rolled_up = 1`, no raw rows, `daily` rows with checks, up, down, p50 and
p95); `daily` counts for every day (p50/p95 empty on the raw days: the
roll-up adds them); a `url_state` row for every URL; an open incident for
each URL that is down now. The model (seeded): 1% of the URLs went down at
some moment of the history and stayed down; any other check fails with
probability 0.5% (single failed checks, not confirmed by the alerts: the
cron user runs `--alert-after 3`); about 1% of all results are down.
`--seed` changes the draw.

Then, timed, each three times (medians), one run after another just after
midnight, the first runs of a new day:
  a. one run's rows stored the way a run stores them: a `Row` per URL through
     `add_results(run_id, batch, Policy(), now)` in batches of 1024 (states,
     daily counts, trends, incidents), and the same with `policy=None`
     (storage only);
  b. the page's table rows for those URLs with the trends from (a):
     `Page(run_info, down)`, `page.row(seq, row, trend)` each, `page.head`;
     and the same rows with `trend=None`;
  c. the run's share of the roll-up (`roll_up(now, history_days)`: the day
     that has just become old enough, at most ROLL_UP_ROWS raw rows);
  d. one URL's `checker history` queries (uptime 24 h / 7 d / 30 d, down
     since, last 10), for a URL that is up and one that is down;
then where one more run's `add_results` time goes, statement by statement
(the connection wrapped in a timer), and the database's size and row
counts. It prints a markdown table (`--write FILE`: also writes it, with the
date, commit and command, to FILE). Nothing is sent anywhere; it uses the
project's own `checker.store` and `checker.reports.html_report`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker import __version__  # noqa: E402
from checker.reports.html_report import Page  # noqa: E402
from checker.results import iso  # noqa: E402
from checker.store.db import HOURS_KEPT, ROLL_UP_ROWS, HistoryDB  # noqa: E402
from checker.store.model import Incident, Policy, Row, Trend  # noqa: E402

END = datetime(2026, 11, 30, tzinfo=UTC)  # the filled history ends here (midnight)
BATCH = 1024  # rows per add_results call, as a run sends them
DEAD = 0.01  # URLs that went down at some moment and stayed down
FLAKE = 0.005  # any other result down (a timeout), unconfirmed
REPEATS = 3
LIST = "/home/cron/urls.txt"
RUN_SECONDS = 45.0  # how long a run takes: checked_at spreads over it

# What a URL that is down answers: (status, error, reason, error_detail), weighted.
DOWN_KINDS = (
    (503, None, "Service Unavailable", None),
    (503, None, "Service Unavailable", None),
    (502, None, "Bad Gateway", None),
    (404, None, "Not Found", None),
    (None, "timeout", None, "no response within 10 s"),
    (None, "timeout", None, "no response within 10 s"),
    (None, "refused", None, "connection refused"),
    (None, "dns", None, "name does not resolve (NXDOMAIN)"),
    (None, "tls", None, "certificate has expired"),
)
FLAKE_KIND = (None, "timeout", None, "no response within 10 s")
EARLIER = (
    "Before the roll-up was bounded per run (the first version of 2026-11-30), rolling up"
    " the oldest whole day (288 runs, 2.88 million rows) in one run took 21.27 s; it is now"
    " at most 100,000 rows a run."
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class World:
    """The synthetic sites: who is down since when, how fast each is, its
    redirect and its certificate. Seeded: the same arguments, the same data."""

    def __init__(self, n: int, runs: int, every: int, rng: random.Random) -> None:
        self.n, self.runs, self.every, self.rng = n, runs, every, rng
        self.first = END - timedelta(minutes=every * runs)  # the first run's start
        self.urls = [f"https://site{i}.example/health" for i in range(n)]
        self.base_ms = [round(rng.lognormvariate(math.log(120), 0.6), 1) for _ in range(n)]
        self.final_url: list[str | None] = []
        self.method: list[str] = []
        self.cert_expiry: list[datetime | None] = []
        for url in self.urls:
            pick = rng.random()
            if pick < 0.15:
                self.final_url.append(url.replace("https://", "https://www."))
            elif pick < 0.18:
                self.final_url.append(url.replace("/health", "/login?next=%2Fhealth"))
            else:
                self.final_url.append(url)
            self.method.append("GET" if rng.random() < 0.1 else "HEAD")
            # Certificates renewed every 90 days; a few forgotten ones run out.
            self.cert_expiry.append(END + timedelta(days=rng.uniform(-3, 90)))
        # The URLs down now, and the run (index) each went down at.
        self.down_from: dict[int, int] = {
            u: rng.randrange(1, runs) for u in rng.sample(range(n), max(1, round(n * DEAD)))
        }
        self.down_kind = {u: rng.choice(DOWN_KINDS) for u in self.down_from}
        # Per URL: seconds into a run at which it is checked ("07.123Z").
        self.offset = [f"{0.5 + RUN_SECONDS * u / n + rng.random() * 0.5:06.3f}Z" for u in range(n)]

    def start(self, run: int) -> datetime:
        return self.first + timedelta(minutes=self.every * run)

    def checked_at(self, run: int, u: int) -> str:
        return iso(self.start(run))[:17] + self.offset[u]

    def flakes(self) -> set[int]:
        """The URLs with a failed check in one run (about n * FLAKE)."""
        mean = self.n * FLAKE
        k = max(0, round(self.rng.gauss(mean, math.sqrt(mean * (1 - FLAKE)))))
        return set(self.rng.sample(range(self.n), min(k, self.n)))

    def dead(self, u: int, run: int) -> bool:
        since = self.down_from.get(u)
        return since is not None and run >= since

    def cert_days(self, u: int, when: datetime) -> int | None:
        expiry = self.cert_expiry[u]
        return None if expiry is None else (expiry - when).days

    def row(self, u: int, run: int, flaky: bool) -> Row:
        """A full result, as a run hands it to the database."""
        when = self.start(run)
        kind = self.down_kind[u] if self.dead(u, run) else FLAKE_KIND if flaky else None
        if kind is None:
            ms = round(self.base_ms[u] * (0.8 + 0.6 * self.rng.random()), 1)
            return Row(
                self.urls[u],
                True,
                200,
                None,
                ms,
                self.checked_at(run, u),
                line=u + 1,
                detail=None,
                final_url=self.final_url[u],
                cert_days=self.cert_days(u, when),
            )
        status, error, _, detail = kind
        return Row(
            self.urls[u],
            False,
            status,
            error,
            10_000.0 if error == "timeout" else round(self.base_ms[u], 1) if status else None,
            self.checked_at(run, u),
            line=u + 1,
            detail=detail,
            final_url=None,
            cert_days=self.cert_days(u, when) if status else None,
        )

    def report_row(self, row: Row) -> dict[str, Any]:
        """The report's fields for a row (what `Page.row` reads)."""
        u = row.line - 1
        reason = "OK" if row.ok else next((k[2] for k in DOWN_KINDS if k[0] == row.status), None)
        return {
            "url": row.url,
            "line": row.line,
            "ok": row.ok,
            "status": row.status,
            "reason": reason if row.status is not None else None,
            "error": row.error,
            "error_detail": row.detail,
            "method": self.method[u],
            "final_url": row.final_url,
            "total_ms": row.total_ms,
            "cert_days_left": row.cert_days,
            "reused": u % 8 != 0,
            "warnings": ["slow: 2,100 ms"] if row.ok and (row.total_ms or 0) > 2000 else [],
            "source": LIST,
        }


# --- the fill ------------------------------------------------------------------


def fill(db: HistoryDB, world: World, history_days: int) -> tuple[int, int]:
    """The database a cron user has at the end of the last day. Returns the
    first raw run (index) and the number of raw results written."""
    con = db._db
    con.execute("PRAGMA synchronous=OFF")  # a throwaway database: no fsyncs
    con.execute("PRAGMA cache_size=-524288")  # 512 MiB while filling
    n, runs = world.n, world.runs
    con.execute("BEGIN")
    con.executemany("INSERT INTO urls (id, url) VALUES (?, ?)", enumerate(world.urls, 1))
    con.execute("COMMIT")
    # Raw: the days the last run's roll-up has not reached (roll_up's cutoff).
    last = world.start(runs - 1)
    cutoff = (last - timedelta(days=history_days)).strftime("%Y-%m-%d")
    by_day: dict[str, list[int]] = defaultdict(list)
    for run in range(runs):
        by_day[world.start(run).strftime("%Y-%m-%d")].append(run)
    first_raw = runs
    raw_rows = 0
    flaked_last: set[int] = set()
    started = time.perf_counter()
    for number, (day, day_runs) in enumerate(sorted(by_day.items()), 1):
        raw = day >= cutoff
        flakes = [world.flakes() for _ in day_runs]
        flaked_last = flakes[-1]
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO runs (id, started_at, finished_at, lists, complete, total, up, down,"
            " not_checked, invalid, report, rolled_up) VALUES (?,?,?,?,1,?,?,?,0,0,?,?)",
            (
                run_record(world, run, flaked, int(not raw))
                for run, flaked in zip(day_runs, flakes, strict=True)
            ),
        )
        down = Counter[int]()
        for flaked in flakes:
            down.update(flaked)
        for u, since in world.down_from.items():  # the dead URLs' downs, and no flakes
            down[u] = sum(
                1 for run, f in zip(day_runs, flakes, strict=True) if run < since and u in f
            )
            down[u] += sum(1 for run in day_runs if run >= since)
        checks = len(day_runs)
        if raw:
            first_raw = min(first_raw, day_runs[0])
            con.executemany(
                "INSERT INTO results (url_id, run_id, checked_at, ok, status, error, total_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                raw_results(world, day_runs, flakes),
            )
            raw_rows += n * checks
            con.executemany(
                "INSERT INTO daily (url_id, day, checks, up, down) VALUES (?, ?, ?, ?, ?)",
                ((u + 1, day, checks, checks - down[u], down[u]) for u in range(n)),
            )
        else:
            con.executemany(
                "INSERT INTO daily (url_id, day, checks, up, down, p50_ms, p95_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rolled_day(world, u, day, checks, down[u]) for u in range(n)),
            )
        con.execute("COMMIT")
        say(
            f"  filled {day} ({'raw' if raw else 'rolled up'}), day {number} of {len(by_day)},"
            f" {time.perf_counter() - started:.0f} s"
        )
    # The hourly counts of the last hours, as the runs would have kept them.
    con.execute("BEGIN")
    con.execute(
        "INSERT INTO hourly (url_id, hour, checks, up)"
        " SELECT x.url_id, substr(r.started_at, 1, 13), COUNT(*), SUM(x.ok)"
        " FROM results x JOIN runs r ON r.id = x.run_id"
        " WHERE r.complete AND r.started_at >= ?"
        " GROUP BY x.url_id, substr(r.started_at, 1, 13)",
        (iso(last - timedelta(hours=HOURS_KEPT)),),
    )
    con.execute("COMMIT")
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO url_state (url_id, state, since, status, error, final_url, cert_days,"
        " pending, pending_since, reminded_at, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (state_record(world, u, u in flaked_last) for u in range(n)),
    )
    con.executemany(
        "INSERT INTO incidents (url_id, started, ended, cause, detail) VALUES (?, ?, NULL, ?, ?)",
        (
            (u + 1, world.checked_at(since, u), str(world.down_kind[u][1] or world.down_kind[u][0]),
             world.down_kind[u][3])
            for u, since in sorted(world.down_from.items())
        ),
    )  # fmt: skip
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return first_raw, raw_rows


def run_record(world: World, run: int, flaked: set[int], rolled_up: int) -> tuple[object, ...]:
    start = world.start(run)
    down = len(flaked | {u for u in world.down_from if world.dead(u, run)})
    return (
        run + 1,
        iso(start),
        iso(start + timedelta(seconds=RUN_SECONDS + 1)),
        f'["{LIST}"]',
        world.n,
        world.n - down,
        down,
        start.strftime("checks_%Y%m%d_%H%M%S.json"),
        rolled_up,
    )


def raw_results(
    world: World, day_runs: Sequence[int], flakes: Sequence[set[int]]
) -> Iterator[tuple[object, ...]]:
    """A day's results in primary-key order (URL, then run)."""
    prefixes = [iso(world.start(run))[:17] for run in day_runs]
    rand = world.rng.random
    for u in range(world.n):
        url_id, base, offset = u + 1, world.base_ms[u], world.offset[u]
        since = world.down_from.get(u, world.runs)
        status, error = world.down_kind[u][:2] if u in world.down_from else (None, None)
        dead_ms = 10_000.0 if error == "timeout" else base if status else None
        for run, prefix, flaked in zip(day_runs, prefixes, flakes, strict=True):
            if run >= since:
                yield (url_id, run + 1, prefix + offset, 0, status, error, dead_ms)
            elif u in flaked:
                yield (url_id, run + 1, prefix + offset, 0, None, "timeout", 10_000.0)
            else:
                ms = round(base * (0.8 + 0.6 * rand()), 1)
                yield (url_id, run + 1, prefix + offset, 1, 200, None, ms)


def rolled_day(world: World, u: int, day: str, checks: int, down: int) -> tuple[object, ...]:
    """A rolled-up day: the counts, and the up checks' median and 95th percentile."""
    base = world.base_ms[u] * (0.95 + 0.1 * world.rng.random())
    up = checks - down
    p50 = round(base * 1.1, 1) if up else None
    p95 = round(base * 1.37, 1) if up else None
    return (u + 1, day, checks, up, down, p50, p95)


def state_record(world: World, u: int, flaked: bool) -> tuple[object, ...]:
    """The URL's state after the last run, with `--alert-after 3`."""
    last = world.runs - 1
    if u in world.down_from:
        status, error = world.down_kind[u][:2]
        since = world.checked_at(world.down_from[u], u)
        cert = world.cert_days(u, world.start(world.down_from[u] - 1))
        return (u + 1, "down", since, status, error, None, cert, 0, None, since, last + 1)
    pending_since = world.checked_at(last, u) if flaked else None
    cert = world.cert_days(u, world.start(last))
    return (
        u + 1,
        "up",
        world.checked_at(0, u),
        200,
        None,
        world.final_url[u],
        cert,
        int(flaked),
        pending_since,
        None,
        last + 1,
    )


# --- the timings -----------------------------------------------------------------


class TimedConnection:
    """The database's connection with every statement timed (rows fetched
    eagerly, so that a query's time includes reading its rows)."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.spent: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def _note(self, sql: str, seconds: float) -> None:
        label = re.sub(r"\s+", " ", sql).strip()
        label = re.sub(r"(\?,)+\?", "…", label)
        label = label[:90] + ("…" if len(label) > 90 else "")
        self.spent[label] += seconds
        self.calls[label] += 1

    def execute(self, sql: str, params: Any = ()) -> Fetched:
        start = time.perf_counter()
        cur = self.con.execute(sql, params)
        out = Fetched(cur)
        self._note(sql, time.perf_counter() - start)
        return out

    def executemany(self, sql: str, params: Any) -> Any:
        start = time.perf_counter()
        cur = self.con.executemany(sql, params)
        self._note(sql, time.perf_counter() - start)
        return cur

    def __enter__(self) -> Any:
        return self.con.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        start = time.perf_counter()
        out = self.con.__exit__(*exc)
        self._note("COMMIT", time.perf_counter() - start)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


class Fetched:
    def __init__(self, cur: Any) -> None:
        self.rows: list[Any] = cur.fetchall()
        self.rowcount = cur.rowcount
        self.lastrowid = cur.lastrowid

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def median_of(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_info(world: World, start: datetime, rows: Sequence[Row], previous: str) -> dict[str, Any]:
    down = sum(1 for r in rows if not r.ok)
    return {
        "started_at": iso(start),
        "finished_at": iso(start + timedelta(seconds=RUN_SECONDS + 1)),
        "duration_s": RUN_SECONDS + 1,
        "total": len(rows),
        "up": len(rows) - down,
        "down": down,
        "not_checked": 0,
        "invalid": 0,
        "duplicates": 0,
        "interrupted": False,
        "lists": [LIST],
        "checker_version": __version__,
        "options": {"cert_warn_days": 14},
        "previous_run": previous,
        "changes_total": 0,
    }


def render(
    info: dict[str, Any],
    dicts: Sequence[dict[str, Any]],
    trends: dict[str, Trend] | None,
    incidents: Sequence[Incident],
) -> int:
    """The page's head and table rows, as a run makes them; returns their size."""
    page = Page(info, int(info["down"]))
    size = 0
    for seq, row in enumerate(dicts):
        html = page.row(seq, row, trends.get(row["url"]) if trends is not None else None)
        size += len(html or "")
    return size + len(page.head([], incidents))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30, help="history to fill (default 30)")
    parser.add_argument("--every", type=int, default=5, help="minutes between runs (default 5)")
    parser.add_argument(
        "--history-days", type=int, default=14, help="raw results kept (default 14)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", metavar="FILE", help="also write the results to FILE")
    parser.add_argument(
        "--keep", metavar="DIR", help="fill DIR/history.sqlite3 and leave it there (DIR: new)"
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    rng = random.Random(args.seed)
    runs = args.days * 24 * 60 // args.every
    world = World(args.urls, runs, args.every, rng)
    policy = Policy()
    with tempfile.TemporaryDirectory(prefix="checker-histdb-") as tmp:
        if args.keep:
            os.makedirs(args.keep)
        path = os.path.join(args.keep or tmp, "history.sqlite3")
        db = HistoryDB(path)
        say(f"filling {path}: {args.urls:,} URLs, {runs:,} runs over {args.days} days")
        start = time.perf_counter()
        first_raw, raw_rows = fill(db, world, args.history_days)
        fill_s = time.perf_counter() - start
        db.close()
        size_filled = db_size(path)
        say(f"filled in {fill_s:.0f} s: {raw_rows:,} raw results, {size_filled:,.0f} MiB")

        db = HistoryDB(path)  # a run's own connection, as it opens it
        ids = dict((url, url_id) for url_id, url in db.url_ids(world.urls))
        run = runs  # the next run's index
        previous = iso(world.start(run - 1))
        stored: list[float] = []
        stored_pieces: list[dict[str, float]] = []
        paged: list[float] = []
        plain: list[float] = []
        rolled: list[float] = []
        rolled_rows: list[int] = []
        changes = incidents_n = page_kb = 0
        for rep in range(REPEATS):
            rows = [world.row(u, run, flaky) for u, flaky in flake_rows(world)]
            when = world.start(run)
            now = when + timedelta(seconds=RUN_SECONDS + 1)
            info = run_info(world, when, rows, previous)
            run_id = add_run(db, world, run, info)
            trends: dict[str, Trend] = {}
            incidents: list[Incident] = []
            pieces = wrap_pieces(db)
            took = 0.0
            for k in range(0, len(rows), BATCH):
                t0 = time.perf_counter()
                found = db.add_results(run_id, rows[k : k + BATCH], policy, now)
                took += time.perf_counter() - t0
                trends.update(found.trends)
                changes += len(found.changes)
                if found.incidents:  # as store.feed merges them
                    incidents = sorted(incidents + found.incidents, key=lambda i: i.started)
                    incidents = incidents[-50:][::-1]
            stored.append(took)
            stored_pieces.append(unwrap_pieces(db, pieces))
            incidents_n = len(incidents)
            dicts = [world.report_row(r) for r in rows]
            paged.append(timed(partial(render, info, dicts, trends, incidents)))
            plain.append(timed(partial(render, info, dicts, None, [])))
            page_kb = render(info, dicts, trends, incidents) // 1024
            t0 = time.perf_counter()
            rolled_rows.append(db.roll_up(now, args.history_days))
            rolled.append(time.perf_counter() - t0)
            say(
                f"  run {rep + 1}: stored {took * 1000:.0f} ms, page {paged[-1] * 1000:.0f} ms"
                f" ({plain[-1] * 1000:.0f} ms without trends), roll-up {rolled[-1]:.2f} s"
                f" ({rolled_rows[-1]:,} rows)"
            )
            previous, run = iso(when), run + 1
        bare: list[float] = []
        for _ in range(REPEATS):
            rows = [world.row(u, run, flaky) for u, flaky in flake_rows(world)]
            when = world.start(run)
            run_id = add_run(db, world, run, run_info(world, when, rows, previous))
            took = 0.0
            for k in range(0, len(rows), BATCH):
                took += timed(partial(db.add_results, run_id, rows[k : k + BATCH]))
            bare.append(took)
            say(f"  run without a policy: stored {took * 1000:.0f} ms")
            previous, run = iso(when), run + 1

        # Where one more run's add_results time goes, statement by statement.
        rows = [world.row(u, run, flaky) for u, flaky in flake_rows(world)]
        when = world.start(run)
        run_id = add_run(db, world, run, run_info(world, when, rows, previous))
        real = db._db
        timer = TimedConnection(real)
        db._db = timer  # type: ignore[assignment]
        t0 = time.perf_counter()
        for k in range(0, len(rows), BATCH):
            db.add_results(run_id, rows[k : k + BATCH], policy, when + timedelta(seconds=46))
        profiled = time.perf_counter() - t0
        db._db = real
        run += 1

        # One URL's `checker history`: one that is up, one that is down now.
        now = world.start(run)
        up_url = next(u for u in range(args.urls // 2, args.urls) if u not in world.down_from)
        down_url = min(world.down_from)
        asked = {}
        for name, u in (("up", up_url), ("down", down_url)):
            url_id = ids[world.urls[u]]

            def ask(url_id: int = url_id) -> None:
                db.uptime(url_id, now - timedelta(days=1))
                db.uptime_days(url_id, 7, now)
                db.uptime_days(url_id, 30, now)
                db.down_since(url_id)
                db.recent(url_id, 10)

            asked[name] = median_of([timed(ask) for _ in range(REPEATS)])
        counts = {t: db.count(t) for t in ("runs", "urls", "results", "daily")}
        for table in ("url_state", "incidents"):
            counts[table] = db._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        db.close()
        size = db_size(path)

    pieces_med = {k: median_of([p[k] for p in stored_pieces]) for k in stored_pieces[0]}
    raw_days = (runs - first_raw) * args.every // (24 * 60)
    lines = [
        f"| history | {args.urls:,} URLs every {args.every} min, {args.days} days"
        f" ({raw_days} of them raw, `--history-days {args.history_days}`) |",
        "|---|---|",
        f"| filled (direct SQL) | {runs:,} runs, {raw_rows:,} raw results,"
        f" {counts['daily']:,} daily rows, {size_filled:,.0f} MiB, in {fill_s:.0f} s |",
        f"| a. one run's rows stored, with `Policy()` ({args.urls:,} rows, batches of {BATCH})"
        f" | {median_of(stored) * 1000:.0f} ms |",
        f"| … of which: states stepped and saved, daily counts, incidents recorded"
        f" | {pieces_med['_step_states'] * 1000:.0f} ms |",
        f"| … of which: trends (uptime 24 h / 7 d / 30 d, last {20} results)"
        f" | {pieces_med['_trends'] * 1000:.0f} ms |",
        f"| … of which: the batch's incidents | {pieces_med['_incidents'] * 1000:.0f} ms |",
        f"| a'. the same rows stored with `policy=None` (storage only)"
        f" | {median_of(bare) * 1000:.0f} ms |",
        f"| b. the page: {args.urls:,} table rows with their trends, and the head"
        f" ({page_kb:,} KiB) | {median_of(paged) * 1000:.0f} ms |",
        f"| b'. the same rows with `trend=None` | {median_of(plain) * 1000:.0f} ms |",
        f"| c. one run's share of the roll-up (at most {ROLL_UP_ROWS:,} rows; each run:"
        f" {' / '.join(f'{r:,} rows {s:.2f} s' for r, s in zip(rolled_rows, rolled, strict=True))})"
        f" | {median_of(rolled):.2f} s |",
        f"| d. one URL: uptime 24 h / 7 d / 30 d, down since, last 10 (up / down URL)"
        f" | {asked['up'] * 1000:.1f} ms / {asked['down'] * 1000:.1f} ms |",
        f"| e. database after the timed runs | {size:,.0f} MiB; "
        + ", ".join(f"{t} {c:,}" for t, c in counts.items())
        + " |",
    ]
    top = sorted(timer.spent.items(), key=lambda item: -item[1])[:8]
    breakdown = [
        f"Where one more run's `add_results` (with `Policy()`) goes, statement by statement"
        f" ({profiled * 1000:.0f} ms in all, {sum(timer.spent.values()) * 1000:.0f} ms in"
        " SQLite, the rest in Python: `state.step`, the rows' tuples, the trends):",
        "",
        "| statement | calls | ms |",
        "|---|---|---|",
        *(f"| `{label}` | {timer.calls[label]} | {seconds * 1000:.0f} |" for label, seconds in top),
    ]
    other = f"{changes:,} changes over the {REPEATS} runs; the page listed {incidents_n} incidents."
    text = "\n".join([*lines, "", other, "", *breakdown])
    print(text)
    if args.write:
        write_results(args.write, text, stamp, commit or "?")
    return 0


def flake_rows(world: World) -> Iterator[tuple[int, bool]]:
    flaked = world.flakes()
    return ((u, u in flaked) for u in range(world.n))


def add_run(db: HistoryDB, world: World, run: int, info: dict[str, Any]) -> int:
    return db.add_run(
        info["started_at"],
        f'["{LIST}"]',
        True,
        {k: info[k] for k in ("total", "up", "down", "not_checked", "invalid")},
        info["finished_at"],
        world.start(run).strftime("checks_%Y%m%d_%H%M%S.json"),
    )


def wrap_pieces(db: HistoryDB) -> dict[str, float]:
    """Time the parts of add_results (on this instance only)."""
    spent: dict[str, float] = {}
    for name in ("_step_states", "_trends", "_incidents"):
        method = getattr(db, name)
        spent[name] = 0.0

        def timer(*args: Any, _m: Any = method, _n: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _m(*args, **kwargs)
            finally:
                spent[_n] += time.perf_counter() - t0

        setattr(db, name, timer)
    return spent


def unwrap_pieces(db: HistoryDB, spent: dict[str, float]) -> dict[str, float]:
    for name in spent:
        delattr(db, name)
    return spent


def db_size(path: str) -> float:
    return (
        sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p))
        / 2**20
    )


def write_results(target: str, table: str, date: str, commit: str) -> None:
    """The RESULTS file: when (the run's start), the commit then, the command."""
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])
    Path(target).write_text(
        "# History database: figures\n\n"
        f"Date: {date}, commit {commit} (working tree as is). Command (from the"
        f" repository root):\n\n    {command}\n\n"
        "On this project's 2-core machine. Timings are medians of 3.\n\n"
        f"{table}\n\n{EARLIER}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
