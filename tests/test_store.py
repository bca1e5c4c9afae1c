"""The history database: what a run stores, the roll-up of old days, uptime,
"down since", the import of earlier JSON reports, and a broken database that
costs no report."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checker.pool import PoolOptions
from checker.results import iso
from checker.store.db import RECENT, HistoryDB, _pushed, percentile
from checker.store.feed import as_row, open_history
from checker.store.model import Policy, Row
from checker.store.query import find
from tests.helpers import SwitchableSite, raw_server

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def add_run(db: HistoryDB, when: datetime, rows: list[Row], complete: bool = True) -> int:
    """As a run stores its rows: states stepped, kept only when it is complete."""
    run_id = db.add_run(iso(when), "[]", complete, {"total": len(rows)}, iso(when), None)
    rows = [r if r.checked_at else replace(r, checked_at=iso(when)) for r in rows]
    db.add_results(run_id, rows, Policy(), when, save_states=complete)
    return run_id


def row(url: str, ok: bool, ms: float | None = 10.0) -> Row:
    return Row(url, ok, 200 if ok else 503, None, ms, None)


def results_of(recent: str | None) -> tuple[tuple[bool, float | None], ...]:
    """The (up, ms) of a Trend's `recent` (model.Trend), oldest first."""
    if not recent:
        return ()
    return tuple(
        (item[0] == "1", float(item[2:]) if len(item) > 2 else None) for item in recent.split(" ")
    )


def test_uptime_down_since_and_recent(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a = "https://a.example/"
    for hours, ok in [(50, True), (20, True), (3, False), (2, True), (1, False), (0.5, False)]:
        add_run(db, NOW - timedelta(hours=hours), [row(a, ok)])
    # A stopped run's result never counts towards uptime.
    add_run(db, NOW - timedelta(minutes=10), [row(a, True)], complete=False)
    ((url_id, _),) = db.url_ids([a])
    day = db.uptime(url_id, NOW - timedelta(days=1))
    assert (day.checks, day.up, day.percent) == (5, 2, 40.0)
    week = db.uptime_days(url_id, 7, NOW)  # by UTC day, from the daily counts
    assert (week.checks, week.up) == (6, 3)
    assert db.down_since(url_id) == iso(NOW - timedelta(hours=1))
    recent = db.recent(url_id, 3)
    # Newest first; the stopped run's result is shown as such.
    assert [(complete, r.ok) for _, complete, r in recent] == [
        (False, True),
        (True, False),
        (True, False),
    ]
    db.close()


def test_roll_up_one_day_at_a_time_keeps_the_counts(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a, b = "https://a.example/", "https://b.example/"
    old = NOW - timedelta(days=20)
    for i in range(10):  # ten runs on one old day: a 80% up, b always up
        when = old.replace(hour=0) + timedelta(hours=i)
        add_run(db, when, [row(a, i >= 2, ms=float(10 * (i + 1))), row(b, True, ms=5.0)])
    add_run(db, old + timedelta(days=1), [row(a, True), row(b, True)])  # the next old day
    add_run(db, NOW - timedelta(hours=1), [row(a, True), row(b, False)])  # recent: stays raw
    ((a_id, _),) = db.url_ids([a])
    before = db.uptime_days(a_id, 30, NOW)
    assert db.roll_up(NOW, history_days=14) == 20  # the oldest day only: 10 runs, 2 URLs
    assert db.count("results") == 4
    assert db.roll_up(NOW, history_days=14) == 2  # then the next day
    assert db.roll_up(NOW, history_days=14) == 0  # nothing older is left
    # 2 URLs on 3 days (counted as the runs were stored): today's still open.
    assert (db.count("daily"), db.count("daily_open")) == (4, 2)
    after = db.uptime_days(a_id, 30, NOW)
    assert (after.checks, after.up) == (before.checks, before.up) == (12, 10)
    daily = db._db.execute(
        "SELECT checks, up, down, p50_ms, p95_ms FROM daily WHERE url_id = ? ORDER BY day",
        (a_id,),
    ).fetchall()
    # Times of the up checks only: 30, 40, ..., 100 ms.
    assert daily[0] == (10, 8, 2, 60.0, 100.0)
    db.close()


def test_a_urls_newest_day_is_kept_apart_until_a_run_of_another_day(tmp_path: Path) -> None:
    # `daily` keeps a URL's days together, its newest last: adding each
    # run's counts there dirtied a page per URL (a year in, 50 MB of WAL a
    # run of 10,000 URLs). The newest day's counts are one row per URL in
    # `daily_open`, moved to `daily` by the first run of another day; every
    # reader counts both.
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a, b, c = "https://a.example/", "https://b.example/", "https://c.example/"
    yesterday = NOW - timedelta(days=1)
    for hour in (1, 2, 3):
        add_run(db, yesterday.replace(hour=hour), [row(a, hour != 2), row(b, True)])
    assert (db.count("daily"), db.count("daily_open")) == (0, 2)
    # Today's first run closes yesterday, b's too though b is no longer checked.
    add_run(db, NOW - timedelta(hours=2), [row(a, True), row(c, False)])
    when = NOW - timedelta(hours=1)
    run_id = db.add_run(iso(when), "[]", True, {"total": 1}, iso(when), None)
    last = replace(row(a, False), checked_at=iso(when))
    found = db.add_results(run_id, [last], Policy(), when, trends=True)
    assert (db.count("daily"), db.count("daily_open")) == (2, 2)
    ids = dict((url, url_id) for url_id, url in db.url_ids([a, b, c]))
    week = {url: db.uptime_days(url_id, 7, NOW) for url, url_id in ids.items()}
    assert {url: (u.checks, u.up) for url, u in week.items()} == {
        a: (5, 3),  # yesterday 2 of 3, today 1 of 2
        b: (3, 3),
        c: (1, 0),
    }
    today = db.uptime_days(ids[a], 1, NOW)
    assert (today.checks, today.up) == (2, 1)
    # The page's 7 and 30 days, from the same counts.
    assert found.trends[a].uptime[1:] == (60.0, 60.0)
    # A database whose runs added to `daily` alone (a checker from before
    # `daily_open`): read as it is, and the two add up once a run writes.
    older = HistoryDB(str(tmp_path / "older.sqlite3"))
    add_run(older, NOW - timedelta(hours=3), [row(a, True)])
    older._db.execute(
        "INSERT INTO daily (url_id, day, checks, up, down) SELECT url_id, day, checks, up,"
        " down FROM daily_open WHERE true"
    )
    older._db.execute("DROP TABLE daily_open")
    (a_id,) = (url_id for url_id, _ in older.url_ids([a]))
    reread = HistoryDB(older.path)
    assert (reread.uptime_days(a_id, 1, NOW).checks, reread._has_open()) == (1, False)
    add_run(reread, NOW - timedelta(hours=1), [row(a, False)])
    both = reread.uptime_days(a_id, 1, NOW)
    assert (both.checks, both.up) == (2, 1)
    assert (reread.count("daily"), reread.count("daily_open")) == (1, 1)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)


def test_find_a_url_in_any_spelling(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    add_run(db, NOW, [row("HTTPS://PyPI.org", True), row("https://pypi.org/simple", True)])
    assert [u for _, u in find(db, "https://pypi.org/")] == ["HTTPS://PyPI.org"]
    assert [u for _, u in find(db, "HTTPS://PyPI.org")] == ["HTTPS://PyPI.org"]
    assert find(db, "https://other.example/") == []
    db.close()


async def test_a_run_stores_every_checked_row(run_list: Any, tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://127.0.0.1:{port}/{i}" for i in range(30)] + ["not a url"]
        await run_list(lines, pool=PoolOptions(concurrency=5, retries=0))
    db = HistoryDB(str(tmp_path / "out" / "history.sqlite3"))
    assert db.count("runs") == 1 and db.count("urls") == 30 and db.count("results") == 30
    (run,) = db.runs(5)
    assert run["complete"] == 1 and run["total"] == 31 and run["up"] == 30
    db.close()


async def test_earlier_reports_are_imported_once(run_list: Any, tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://127.0.0.1:{port}/{i}" for i in range(5)]
        for _ in range(2):
            await run_list(lines)
    out = tmp_path / "out"
    (out / "history.sqlite3").unlink()  # as if made by a checker without the database
    db, notes = open_history(str(out))
    assert db is not None
    assert notes == [f"history: started from the 2 earlier reports in {out}"]
    assert db.count("runs") == 2 and db.count("results") == 10
    ((url_id, _),) = db.url_ids([lines[0]])
    assert db.uptime_days(url_id, 1, datetime.now(UTC)).checks == 2  # days counted
    assert db.states([url_id])[url_id].state == "up"  # the next run compares with it
    db.close()
    db, notes = open_history(str(out))  # not again
    assert db is not None and notes == [] and db.count("runs") == 2
    db.close()


async def test_a_broken_database_costs_no_report(run_list: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    async with raw_server(SwitchableSite()) as port:
        outcome, report = await run_list([f"http://127.0.0.1:{port}/"])
    assert report["results"][0]["ok"]
    (note,) = [n for n in outcome.notes if n.startswith("history:")]
    assert "history.sqlite3" in note


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer checker"):
        HistoryDB(str(path))


def test_runs_listing(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    for i in range(3):
        add_run(db, NOW + timedelta(minutes=i), [row("https://a.example/", True)])
    assert [r["started_at"] for r in db.runs(2)] == [
        iso(NOW + timedelta(minutes=1)),
        iso(NOW + timedelta(minutes=2)),
    ]
    db.close()


def test_roll_up_is_bounded_and_goes_on_where_it_stopped(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    urls = [f"https://u{i}.example/" for i in range(10)]
    old = (NOW - timedelta(days=20)).replace(hour=0)
    for hour in range(4):  # 4 runs of 10 URLs on one old day: 40 raw rows
        add_run(db, old + timedelta(hours=hour), [row(u, hour != 0) for u in urls])
    ((first, _),) = db.url_ids([urls[0]])
    before = db.uptime_days(first, 30, NOW)
    done = []
    while (n := db.roll_up(NOW, history_days=14, budget=12)) > 0:  # 3 URLs a call
        done.append(n)
        # Half done, the counts stand: they were counted as the runs were stored.
        now = db.uptime_days(first, 30, NOW)
        assert (now.checks, now.up) == (before.checks, before.up) == (4, 3)
    assert done == [12, 12, 12, 4]
    assert db.count("results") == 0 and db.count("daily") == 10
    assert db.roll_up(NOW, history_days=14, budget=12) == 0
    db.close()


def test_states_step_only_with_a_policy_and_are_kept_only_when_saved(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a = "https://a.example/"
    policy = Policy()

    def step_run(ok: bool, save: bool = True) -> list[str]:
        run_id = db.add_run(iso(NOW), "[]", save, {"total": 1}, iso(NOW), None)
        found = db.add_results(run_id, [row(a, ok)], policy, NOW, save_states=save)
        return [c.kind for c in found.changes]

    assert step_run(True) == []  # first sight
    assert step_run(False, save=False) == ["down"]  # a stopped run says what it saw...
    assert step_run(False) == ["down"]  # ...but the next complete run is still the change
    assert step_run(False) == []
    assert step_run(True) == ["up"]
    ((url_id, _),) = db.url_ids([a])
    assert db.states([url_id])[url_id].state == "up"
    db.close()


def test_a_complete_runs_changes_are_queued_with_its_states_until_delivered(
    tmp_path: Path,
) -> None:
    """The outbox gets a run's changes in the transaction that keeps the
    states they came from (so no moment after it loses them), per channel,
    and loses them only as a channel reports them delivered."""
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a, b = "https://a.example/", "https://b.example/"
    both = ("webhook", "mail")

    def step_run(ok: bool, save: bool = True, urls: tuple[str, ...] = (a,)) -> int:
        run_id = db.add_run(iso(NOW), "[]", save, {"total": 1}, iso(NOW), None)
        rows = [row(u, ok) for u in urls]
        db.add_results(run_id, rows, Policy(), NOW, save_states=save, alert=both)
        return run_id

    def kinds(channel: str) -> list[tuple[str, str]]:
        return [(c.url, c.kind) for c in db.held(channel)]

    step_run(True, urls=(a, b))
    assert kinds("webhook") == []  # first sight: no change
    step_run(False, save=False)
    assert kinds("webhook") == []  # a stopped run's changes are never alerted
    step_run(False)
    assert kinds("webhook") == kinds("mail") == [(a, "down")]
    db.delivered("webhook", 1)  # the webhook took it; the mail did not
    assert kinds("webhook") == [] and kinds("mail") == [(a, "down")]
    # The run's own transaction (a reporter's): queued at its commit, or never.
    for commit in (False, True):  # b goes down in both; the first is rolled back
        db.begin()
        step_run(False, urls=(b,))
        assert kinds("webhook") == []  # (not before the commit)
        (db.commit if commit else db.rollback)()
    assert kinds("webhook") == [(b, "down")] and kinds("mail") == [(a, "down"), (b, "down")]
    db.delivered("mail", 1)  # what it was sent, not what came since
    assert kinds("mail") == [(b, "down")]
    # A limit: the first `room` of a batch's changes (what the run's alert lists).
    run_id = db.add_run(iso(NOW), "[]", True, {"total": 2}, iso(NOW), None)
    db.add_results(run_id, [row(a, True), row(b, True)], Policy(), NOW, alert=("mail",), room=1)
    assert kinds("mail") == [(b, "down"), (a, "up")] and kinds("webhook") == [(b, "down")]
    db.close()


def test_a_database_from_before_states_is_seeded_from_its_last_complete_run(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "h.sqlite3")
    db = HistoryDB(path)
    a, b = "https://a.example/", "https://b.example/"
    add_run(db, NOW - timedelta(hours=2), [row(a, True), row(b, True)])
    add_run(db, NOW - timedelta(hours=1), [row(a, True), row(b, False)])
    add_run(db, NOW, [row(a, False), row(b, False)], complete=False)  # never a baseline
    db.close()
    old = sqlite3.connect(path)  # as a checker of schema 1 left it
    for table in ("url_state", "incidents", "rollup_progress"):
        old.execute(f"DROP TABLE {table}")
    old.execute("DELETE FROM daily")  # only the roll-up wrote daily rows then
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    db = HistoryDB(path)
    ids = dict((url, url_id) for url_id, url in db.url_ids([a, b]))
    states = db.states(ids.values())
    assert (states[ids[a]].state, states[ids[b]].state) == ("up", "down")
    week = db.uptime_days(ids[b], 7, NOW)  # the days counted from the raw results
    assert (week.checks, week.up) == (2, 1)
    # The next complete run's changes are against it.
    run_id = db.add_run(iso(NOW), "[]", True, {"total": 2}, iso(NOW), None)
    found = db.add_results(run_id, [row(a, False), row(b, True)], Policy(), NOW)
    assert sorted((c.url, c.kind) for c in found.changes) == [(a, "down"), (b, "up")]
    assert db.seed_states() == 0  # only ever into an empty table
    db.close()


def test_the_pages_last_results_are_kept_with_the_states(tmp_path: Path) -> None:
    """Each URL's last RECENT results (the page's strip) are kept with its
    state, not read back from the results every run; they are what the
    results say: the complete runs' (this one's last), oldest first. A
    database without them (made before them, or its states written by an
    older checker) has them from its results, and then keeps them."""
    path = str(tmp_path / "h.sqlite3")
    db = HistoryDB(path)
    a, b = "https://a.example/", "https://b.example/"
    seen: dict[str, list[tuple[bool, float | None]]] = {a: [], b: []}

    def one_run(i: int, complete: bool = True) -> dict[str, Any]:
        when = NOW - timedelta(hours=60 - i)
        rows = [row(a, i % 3 != 0, float(i)), row(b, i % 5 == 0, None if i % 2 else 2.5)]
        run_id = db.add_run(iso(when), "[]", complete, {"total": 2}, iso(when), None)
        rows = [replace(r, checked_at=iso(when)) for r in rows]
        found = db.add_results(run_id, rows, Policy(), when, save_states=complete, trends=True)
        if complete:
            for r in rows:
                seen[r.url].append((r.ok, r.total_ms))
        return {url: results_of(trend.recent) for url, trend in found.trends.items()}

    def expected() -> dict[str, Any]:
        return {url: tuple(results[-RECENT:]) for url, results in seen.items()}

    for i in range(RECENT + 5):
        shown = one_run(i, complete=i % 7 != 6)
        if i % 7 == 6:  # a stopped run: the complete runs' results, not its own
            assert shown == expected()
        else:
            assert shown == expected(), i
    assert len(expected()[a]) == RECENT
    # Written without them: an older checker's states, or a database made before.
    db._db.execute("UPDATE url_state SET recent = NULL WHERE url_id = 1")
    assert one_run(40) == expected()
    db.close()
    old = sqlite3.connect(path)
    old.execute("ALTER TABLE url_state DROP COLUMN recent")
    old.commit()
    old.close()
    db = HistoryDB(path)
    assert db.states([1, 2]) and db._recent_column is None  # (read without it)
    assert one_run(41) == expected()
    assert one_run(42) == expected()
    kept = db._db.execute("SELECT recent FROM url_state ORDER BY url_id").fetchall()
    assert [len(text.split(" ")) for (text,) in kept] == [RECENT, RECENT]
    db.close()


def test_a_database_of_schema_2_has_its_results_keyed_by_run(tmp_path: Path) -> None:
    """Up to schema 2 the results were keyed by (url, run), and each run
    wrote into every page of the table; the upgrade keys them by (run, url)
    and keeps every one."""
    path = str(tmp_path / "h.sqlite3")
    db = HistoryDB(path)
    a, b = "https://a.example/", "https://b.example/"
    for hours, ok in [(5, True), (4, False), (3, True)]:
        add_run(db, NOW - timedelta(hours=hours), [row(a, ok, hours * 1.5), row(b, True)])
    db.close()
    old = sqlite3.connect(path, isolation_level=None)  # as schema 2 had it
    old.executescript(
        "BEGIN; CREATE TABLE r2 (url_id INTEGER NOT NULL, run_id INTEGER NOT NULL,"
        " checked_at TEXT, ok INTEGER NOT NULL, status INTEGER, error TEXT, total_ms REAL,"
        " PRIMARY KEY (url_id, run_id)) WITHOUT ROWID;"
        " INSERT INTO r2 SELECT * FROM results; DROP TABLE results;"
        " ALTER TABLE r2 RENAME TO results;"
        " CREATE INDEX results_run ON results (run_id); PRAGMA user_version=2; COMMIT;"
    )
    before = old.execute("SELECT * FROM results ORDER BY url_id, run_id").fetchall()
    old.close()
    db = HistoryDB(path)
    table = db._db.execute("SELECT sql FROM sqlite_master WHERE name = 'results'").fetchone()
    assert "PRIMARY KEY (run_id, url_id)" in table[0]
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'"
    assert db._db.execute(indexes).fetchall() == []  # (results_run went: the key has it)
    after = db._db.execute("SELECT * FROM results ORDER BY url_id, run_id").fetchall()
    assert after == before and len(after) == 6
    assert db._db.execute("PRAGMA user_version").fetchone()[0] == 3
    ((url_id, _),) = db.url_ids([a])
    assert [r.ok for _, _, r in db.recent(url_id, 2)] == [True, False]  # newest first
    assert db.uptime(url_id, NOW - timedelta(days=1)) == db.uptime(url_id, NOW - timedelta(days=2))
    assert db.uptime(url_id, NOW - timedelta(days=1)).checks == 3
    db.close()


def test_the_kept_last_results_round_trip() -> None:
    text = None
    results: list[tuple[bool, float | None]] = []
    for i in range(RECENT + 3):
        result = (i % 2 == 0, None if i % 3 == 0 else i * 1.25 + 0.001)
        results.append(result)
        text = _pushed(text, *result)
        assert results_of(text) == tuple(results[-RECENT:])
    assert results_of(None) == results_of("") == ()


def test_a_url_down_from_its_first_check_has_an_incident(tmp_path: Path) -> None:
    db = HistoryDB(str(tmp_path / "h.sqlite3"))
    a = "https://a.example/"
    add_run(db, NOW - timedelta(hours=2), [row(a, False)])
    add_run(db, NOW - timedelta(hours=1), [row(a, True)])
    assert db._db.execute("SELECT started, ended, cause FROM incidents").fetchall() == [
        (iso(NOW - timedelta(hours=2)), iso(NOW - timedelta(hours=1)), "503")
    ]
    db.close()


@pytest.mark.parametrize("reporter", ["off", "on"])
@pytest.mark.parametrize("how", ["damaged", "locked"])
async def test_a_database_that_fails_after_it_opened_costs_no_report(
    tmp_path: Path, how: str, reporter: str
) -> None:
    # Found by a review: only the open was guarded; a database damaged in
    # one page, or locked by another process past its busy timeout, failed
    # its first write with a traceback, exit 1 and no reports, and a damaged
    # one did so at every later run (recovering the journal it left).
    from tests.test_cli import checker

    env = {"CHECKER_REPORTER": reporter}
    async with raw_server(SwitchableSite()) as port:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
        args = ("check", "urls.txt", "-q", "--out", "out")
        code, _, err = await checker(*args, cwd=tmp_path, env=env)
        assert code == 0, err
        path = tmp_path / "out" / "history.sqlite3"
        holder = None
        if how == "damaged":
            with path.open("r+b") as f:
                f.seek(4096)
                f.write(b"\xff" * 4096)
        else:
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # held past the 5 s busy timeout
        try:
            code, _, err = await checker(*args, cwd=tmp_path, env=env)
            assert code == 0, err
            assert "Traceback" not in err
            (line,) = err.strip().splitlines()
            assert line.startswith("checker: history: ") and "this run" in line, line
        finally:
            if holder is not None:
                holder.close()
        if how == "damaged":
            # Kept aside (found by a review: it stayed, and no run after had
            # a history, changes or alerts): the next run starts a new one
            # from the reports, and it works again.
            assert "it is kept as " in line and "the next run starts a new one" in line
            (aside,) = (tmp_path / "out").glob("history.sqlite3.damaged-*[0-9Z]")
            assert aside.stat().st_size > 0  # (the damaged one, kept)
            code, _, err = await checker(*args, cwd=tmp_path, env=env)
            assert code == 0, err
            assert err == "checker: history: started from the 2 earlier reports in out\n"
            code, _, err = await checker(*args, cwd=tmp_path, env=env)
            assert (code, err) == (0, "")  # a history as before
    reports = sorted((tmp_path / "out").glob("status-*.json"))
    assert len(reports) == (4 if how == "damaged" else 2)
    assert not list((tmp_path / "out").glob("*.journal*"))
    row = json.loads(reports[-1].read_text())["results"][0]
    assert row["state"] == "up"
    if how == "damaged":
        db = HistoryDB.in_folder(str(tmp_path / "out"))
        try:
            assert db.count("runs") == 4  # the reports' 2, and the 2 runs since
        finally:
            db.close()


def test_as_row_puts_each_value_under_its_own_field() -> None:
    """feed.as_row builds the history's Row by position: each value of a
    report row, distinct, lands under its own name."""
    row = as_row(
        {
            "url": "http://example.com/",
            "ok": True,
            "status": 203,
            "error": "e",
            "total_ms": 12.5,
            "checked_at": "2026-12-02T00:00:00.000Z",
            "state": "degraded",
            "line": 7,
            "error_detail": None,
            "reasons": ["r1", "r2"],
            "final_url": "http://example.com/final",
            "cert_days_left": 40,
        }
    )
    assert row == Row(
        url="http://example.com/",
        ok=True,
        status=203,
        error="e",
        total_ms=12.5,
        checked_at="2026-12-02T00:00:00.000Z",
        degraded=True,
        line=7,
        detail="r1; r2",
        final_url="http://example.com/final",
        cert_days=40,
    )
    assert as_row({"url": "u", "error": "invalid_url"}) is None
