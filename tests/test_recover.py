"""A run killed with SIGKILL loses nothing that finished, and every line still gets a row."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from checker.demo.fleet import Fleet, Route
from checker.results import FIELDS
from tests.helpers import SwitchableSite, journal_with, raw_server
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)


async def start_and_kill(tmp_path: Path, fleet: Fleet) -> Path:
    """Start a run over a list, SIGKILL it once its journal holds the quick row."""
    lines = [fleet.url("/ok"), "not a url", *[fleet.url(f"/hang?{i}") for i in range(20)]]
    lines.append(fleet.url("/ok"))  # a duplicate of line 1
    (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "checker",
        "check",
        "urls.txt",
        "--timeout",
        "50",
        "--concurrency",
        "4",
        "--quiet",
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        journal = await journal_with(tmp_path / "reports")
        # While it runs, its folder and journal are locked: nobody may turn it into reports.
        code, _, err = await checker("report", str(journal), cwd=tmp_path)
        assert code == 3 and "another checker run" in err
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "reports" / "latest.json").exists()
    return journal


def check_rows(report: dict[str, object]) -> None:
    rows = report["results"]
    assert isinstance(rows, list)
    assert [r["line"] for r in rows] == list(range(1, 23))  # every line, once, in order
    assert rows[0]["ok"] is True and rows[0]["duplicates"] == ["urls.txt:23"]
    assert list(rows[0]) == list(FIELDS)  # the duplicates spliced in, every field kept
    assert rows[1]["error"] == "invalid_url"
    assert {r["error"] for r in rows[2:]} == {"interrupted"}
    assert all(r["error_detail"] == "not checked: the run was killed first" for r in rows[2:])
    run = report["run"]
    assert isinstance(run, dict)
    assert run["interrupted"] is True and run["recovered"] is True
    assert (run["total"], run["up"], run["duplicates"]) == (22, 1, 1)


async def test_checker_report_turns_a_killed_runs_journal_into_reports(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/hang": Route(delay=60)}) as fleet:
        journal = await start_and_kill(tmp_path, fleet)
    code, out, err = await checker("report", str(journal), cwd=tmp_path)
    assert code == 1, err
    # 22 rows: one checked, one invalid line, 20 the killed run never finished.
    assert out.startswith("INTERRUPTED: checked 1 URL in ")
    assert "1 up, 0 down (20 not checked, as the run was stopped; 1 invalid line;" in out
    stem = journal.name.removesuffix(".journal.jsonl")
    recovered = json.loads((tmp_path / "reports" / f"{stem}.json").read_text())
    check_rows(recovered)
    # It finished when its last check did, not when it was recovered.
    assert recovered["run"]["finished_at"] == recovered["results"][0]["checked_at"]
    assert (tmp_path / "reports" / "latest.csv").read_text().count("\n") == 23
    assert not journal.exists()
    # The run index lists it, as an interrupted, recovered run.
    (entry,) = [
        json.loads(x) for x in (tmp_path / "reports" / "runs.jsonl").read_text().splitlines()
    ]
    assert (entry["interrupted"], entry["recovered"], entry["total"]) == (True, True, 22)
    assert entry["reports"] == [f"{stem}.csv", f"{stem}.json", f"{stem}.html"]
    code, out, _ = await checker("history", cwd=tmp_path)
    assert code == 0 and out.splitlines()[1].endswith("interrupted (recovered)")
    # And the history database: its one checked row is a result, but the run
    # is not complete, so no URL's state moved.
    db = sqlite3.connect(tmp_path / "reports" / "history.sqlite3")
    try:
        assert db.execute("SELECT complete, total FROM runs").fetchall() == [(0, 22)]
        assert db.execute("SELECT ok FROM results").fetchall() == [(1,)]
        assert db.execute("SELECT COUNT(*) FROM url_state").fetchone() == (0,)
    finally:
        db.close()


async def test_the_next_run_recovers_a_killed_runs_journal(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/hang": Route(delay=60)}) as fleet:
        journal = await start_and_kill(tmp_path, fleet)
        (tmp_path / "next.txt").write_text(fleet.url("/ok") + "\n")
        code, _, err = await checker("check", "next.txt", "--quiet", cwd=tmp_path)
    assert code == 0
    stem = journal.name.removesuffix(".journal.jsonl")
    assert f"an unfinished run's journal became reports/{stem}.csv" in err
    check_rows(json.loads((tmp_path / "reports" / f"{stem}.json").read_text()))
    latest = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert latest["run"]["lists"] == ["next.txt"]  # latest stays the newest run
    assert not journal.exists()


async def test_report_of_a_journal_whose_list_is_gone(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/hang": Route(delay=60)}) as fleet:
        journal = await start_and_kill(tmp_path, fleet)
    (tmp_path / "urls.txt").unlink()
    code, _, err = await checker("report", str(journal), cwd=tmp_path)
    assert code == 1  # its invalid line is down
    assert "cannot be read again" in err
    stem = journal.name.removesuffix(".journal.jsonl")
    rows = json.loads((tmp_path / "reports" / f"{stem}.json").read_text())["results"]
    assert [r["line"] for r in rows] == [1, 2]  # what was recorded, nothing invented


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("x.json", "{}", "not a checker JSON report"),
        ("x.txt", "{}", "not a journal"),
        ("status-x.journal.jsonl", "hello\n", "not a checker journal"),
        ("missing.journal.jsonl", None, "no such file"),
    ],
)
async def test_report_refuses_what_is_not_a_journal(
    tmp_path: Path, name: str, content: str | None, expect: str
) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    code, _, err = await checker("report", name, cwd=tmp_path)
    assert code == 2 and expect in err and "Traceback" not in err


def test_block_reader_finds_lines_across_blocks(tmp_path: Path) -> None:
    # The journal keeps only where each line starts; a line may cross a block
    # boundary or be longer than a block.
    import os

    from checker.reports.journal import BlockReader

    lines = [b"a" * 5 + b"\n", b"b" * 30 + b"\n", b"c" * 7 + b"\n", b"d" * 3]  # last one torn
    path = tmp_path / "j"
    path.write_bytes(b"".join(lines))
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = BlockReader(fd, size=16, blocks=2)
        offset = 0
        for line in lines:
            assert reader.line(offset) == line
            offset += len(line)
        assert reader.line(6 + 20) == b"b" * 10 + b"\n"  # from the middle of a long line
    finally:
        os.close(fd)


# A run that writes its reports after its checks (no reporter) and is killed
# while its rows go into the history: found by a review, the batches written
# before the kill were committed one by one, so 716 of 2,000 URLs had gone
# down in the states of a run that was then recovered as killed (and added
# again): the next complete run saw no change, and no alert went out.
KILLED_IN_THE_HISTORY = """
import os, sys
from checker.reports import output
from checker.store import feed

# Many batches of a short list.
output.ReportWriter.open.__func__.__kwdefaults__.update(batch=8, store_rows=8)
sends = 0
real = feed.Feed.send

async def send(self):
    global sends
    found = await real(self)  # (the batch before this one is written now)
    sends += 1
    if sends == 3:
        os._exit(9)  # as SIGKILL: nothing more runs
    return found

feed.Feed.send = send
from checker import cli
sys.argv = ["checker", *sys.argv[1:]]
cli.entry()
"""


async def test_a_run_killed_in_its_history_leaves_none_of_it(tmp_path: Path) -> None:
    site = SwitchableSite()
    async with raw_server(site) as port:
        (tmp_path / "urls.txt").write_text(
            "".join(f"http://127.0.0.1:{port}/{i}\n" for i in range(60))
        )
        off = {"CHECKER_REPORTER": "off"}
        code, _, err = await checker("check", "urls.txt", "-q", cwd=tmp_path, env=off)
        assert code == 0, err
        # Now they are all down, and the run is killed in its history's third batch.
        site.status = b"404 Not Found"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            KILLED_IN_THE_HISTORY,
            "check",
            "urls.txt",
            "-q",
            cwd=tmp_path,
            env={**os.environ, **off},
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(45):
            _, err_b = await proc.communicate()
        assert proc.returncode == 9, err_b
        db = sqlite3.connect(tmp_path / "reports" / "history.sqlite3")
        try:
            # Nothing of the killed run: not a row, not a state moved.
            assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
            assert db.execute("SELECT COUNT(*) FROM url_state WHERE state != 'up'").fetchone() == (
                0,
            )
        finally:
            db.close()
        # The next run recovers it (once), and, complete, finds all 60 down.
        code, _, err = await checker("check", "urls.txt", "-q", cwd=tmp_path, env=off)
    assert code == 1 and "an unfinished run's journal became" in err, err
    db = sqlite3.connect(tmp_path / "reports" / "history.sqlite3")
    try:
        assert db.execute("SELECT complete FROM runs ORDER BY id").fetchall() == [(1,), (0,), (1,)]
        assert db.execute("SELECT COUNT(*) FROM url_state WHERE state = 'down'").fetchone() == (60,)
    finally:
        db.close()
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert report["run"]["changes_total"] == 60


async def test_partial_reports_go_unless_their_run_still_holds_its_journal(
    tmp_path: Path,
) -> None:
    # The next run (or merge) removes the hidden reports of runs that are
    # over, journal or none (recovered, merged again, set aside); never
    # those of a run that still holds its journal, nor anything else.
    from checker.reports.journal import Journal
    from checker.reports.recover import remove_stale_spools

    going = "status-20261130T000002Z"
    dead = ["status-20261130T000000Z", "status-20261130T000000Z2"]  # no journal, one unlocked
    (tmp_path / f"{dead[1]}.journal.jsonl").write_text('{"journal":1,"run":{}}\n')
    spools = [f".{stem}.{fmt}.k3x_9abc" for stem in (*dead, going) for fmt in ("csv", "json")]
    # A latest.* link on its way in: kept while its process lives (this one),
    # removed once it is gone (a process that has ended).
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await ended.wait()
    spools.append(f".latest.csv.{ended.pid}.tmp")
    kept = [
        "status-20261130T000000Z.json",
        "latest.json",
        f".latest.json.{os.getpid()}.tmp",
        ".checker.lock",
        ".notes.json.k3x_9abc",
        ".status-20261130T000000Z.txt.k3x_9abc",
    ]
    for name in spools + kept:
        (tmp_path / name).write_text("x")
    async with Journal(str(tmp_path / f"{going}.journal.jsonl"), {}):
        remove_stale_spools(str(tmp_path))
        left = sorted(n for n in os.listdir(tmp_path) if not n.endswith(".jsonl"))
    assert left == sorted([*kept, *(s for s in spools if going in s)]), left
    remove_stale_spools(str(tmp_path))  # its run is over now
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(".jsonl")) == sorted(kept)
