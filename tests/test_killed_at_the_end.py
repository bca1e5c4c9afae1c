"""Runs killed at their very end: the reports and the history are in place,
the run index line and the journal's removal are not. The next run (or merge)
completes such a run: its reports kept as they are, one line in runs.jsonl
that says what the history says, never counted twice (README, "The journal").

Found by a review of that path: a next run started from another folder
recovered the run again (a second history row, its complete report replaced
by a "recovered" one); without a JSON report the index said "interrupted";
a merge made again named no reports, counted 0 URLs and exited 0 with URLs
down; a --processes run's next run named no reports either."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import raw_server, read_request
from tests.killed_child import killed_writing_reports
from tests.test_cli import checker
from tests.test_processes import hosts

pytestmark = pytest.mark.timeout(120)

OFF = {"CHECKER_REPORTER": "off"}


async def some_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """/<n>: 500 when n is a multiple of 7, else 200."""
    head = await read_request(reader)
    n = int(head.split(b" ", 2)[1].strip(b"/") or b"1")
    status = b"500 Oops" if n % 7 == 0 else b"200 OK"
    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()


def history(out: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(out / "history.sqlite3")
    try:
        return db.execute(
            "SELECT started_at, complete, total, down FROM runs ORDER BY id"
        ).fetchall()
    finally:
        db.close()


def index(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


KILLED = -signal.SIGKILL


@pytest.mark.parametrize("formats", ["csv,json,html", "csv"])
async def test_completed_by_a_run_from_another_folder(tmp_path: Path, formats: str) -> None:
    first, other, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    first.mkdir()
    other.mkdir()
    async with raw_server(some_down) as port:
        (first / "urls.txt").write_text(
            "".join(f"http://127.0.0.1:{port}/{i}\n" for i in range(1, 50))
        )
        code, err = await killed_writing_reports(
            first,
            "check",
            "urls.txt",
            "--out",
            str(out),
            "--format",
            formats,
            "-q",
            at="index",
            env=OFF,
        )
        assert code == KILLED, err
        (killed,) = history(out)
        assert killed[1:] == (1, 49, 7)
        # The same list, named from elsewhere: the next run completes the run.
        code, _, err = await checker(
            "check",
            str(first / "urls.txt"),
            "--out",
            str(out),
            "--format",
            formats,
            "-q",
            cwd=other,
            env=OFF,
        )
    assert code == 1, err
    assert "a run killed at its very end was completed" in err, err
    assert "journal became" not in err, err
    assert [row[:2] for row in history(out)] == [(killed[0], 1), (history(out)[1][0], 1)]
    lines = index(out)
    assert (lines[0]["started_at"], lines[0]["interrupted"], lines[0]["down"]) == (
        killed[0],
        False,
        7,
    )
    assert "recovered" not in lines[0] or not lines[0]["recovered"]
    assert lines[0]["reports"] and list(out.glob("*.journal.jsonl")) == []
    if "json" in formats:
        stamp = lines[0]["reports"][0].removesuffix(".csv")
        header = json.loads((out / f"{stamp}.json").read_text())["run"]
        assert header["interrupted"] is False and "recovered" not in header


async def test_a_merge_made_again_says_what_the_killed_one_recorded(tmp_path: Path) -> None:
    async with hosts(some_down, 2) as origins:  # (shards split by host)
        (tmp_path / "urls.txt").write_text(
            "".join(f"{o}/{i}\n" for o in origins for i in range(1, 25))
        )
        for k in (1, 2):
            code, _, err = await checker(
                "check", "urls.txt", "--shard", f"{k}/2", "--out", f"s{k}", "-q", cwd=tmp_path
            )
            assert code in (0, 1), err  # (a shard may hold both hosts, or none)
    merge = ("merge", "out", "s1/latest.json", "s2/latest.json")
    code, err = await killed_writing_reports(tmp_path, *merge, at="index")
    assert code == KILLED, err
    code, out, err = await checker(*merge, cwd=tmp_path)
    assert code == 1, (out, err)  # 7 down: no all-clear
    assert "checked 48 URLs" in out and "42 up, 6 down" in out, out
    assert "disagree" not in err, err
    (entry,) = index(tmp_path / "out")
    assert entry["reports"] and all((tmp_path / "out" / r).exists() for r in entry["reports"])
    assert len(history(tmp_path / "out")) == 1
    assert list((tmp_path / "out").glob("*.journal.jsonl")) == []


async def test_a_processes_run_completed_names_its_reports(tmp_path: Path) -> None:
    async with hosts(some_down, 2) as origins:
        (tmp_path / "urls.txt").write_text(
            "".join(f"{o}/{i}\n" for o in origins for i in range(1, 20))
        )
        code, err = await killed_writing_reports(
            tmp_path, "check", "urls.txt", "--processes", "2", "-q", at="index"
        )
        assert code == KILLED, err
        code, _, err = await checker("check", "urls.txt", "--processes", "2", "-q", cwd=tmp_path)
    assert code == 1, err
    out = tmp_path / "reports"
    first = index(out)[0]
    assert first["reports"] and not first["interrupted"], first
    assert all(r in err for r in first["reports"]), err
    # Said once (it was said twice: "shards became" and "in the history already").
    assert "a killed --processes run, at its very end, was completed" in err, err
    assert "became" not in err and "in the history already" not in err, err
    assert [row[1] for row in history(out)] == [1, 1]


async def test_checker_report_on_its_journal_says_what_was_recorded(tmp_path: Path) -> None:
    # `checker report JOURNAL` on a run killed at its very end: the run was
    # complete and is in the history. Its summary said INTERRUPTED, timed
    # from the journal's rows, and no note said that nothing was redone.
    async with raw_server(some_down) as port:
        (tmp_path / "urls.txt").write_text(
            "".join(f"http://127.0.0.1:{port}/{i}\n" for i in range(1, 50))
        )
        code, err = await killed_writing_reports(
            tmp_path, "check", "urls.txt", "--out", "out", "-q", at="index", env=OFF
        )
    assert code == KILLED, err
    (journal,) = (tmp_path / "out").glob("*.journal.jsonl")
    code, out, err = await checker("report", str(journal), cwd=tmp_path)
    assert code == 1, (out, err)  # 7 down
    assert "in the history already" in err, err
    assert not out.startswith("INTERRUPTED"), out
    assert "checked 49 URLs" in out and "42 up, 7 down" in out, out
    (entry,) = index(tmp_path / "out")
    assert entry["interrupted"] is False and not entry.get("recovered"), entry
    assert len(history(tmp_path / "out")) == 1 and not journal.exists()


async def test_a_merge_killed_before_its_commit_is_replaced_by_the_next(tmp_path: Path) -> None:
    # A merge killed as it put its reports in place (before the history's
    # commit) left its journal in OUT; the merge made again of the same shard
    # reports left it there, for the next check to recover as one more run
    # (every row twice in the history, an "interrupted (recovered)" line).
    async with hosts(some_down, 2) as origins:
        (tmp_path / "urls.txt").write_text(
            "".join(f"{o}/{i}\n" for o in origins for i in range(1, 25))
        )
        for k in (1, 2):
            code, _, err = await checker(
                "check", "urls.txt", "--shard", f"{k}/2", "--out", f"s{k}", "-q", cwd=tmp_path
            )
            assert code in (0, 1), err
    merge = ("merge", "out", "s1/latest.json", "s2/latest.json")
    code, err = await killed_writing_reports(tmp_path, *merge, at="reports")
    assert code == KILLED, err
    (killed,) = (tmp_path / "out").glob("*.journal.jsonl")
    code, out, err = await checker(*merge, cwd=tmp_path)
    assert code == 1, (out, err)
    assert "checked 48 URLs" in out, out
    assert "a killed merge of the same shard reports" in err, err
    assert not killed.exists() and list((tmp_path / "out").glob("*.journal.jsonl")) == []
    assert len(history(tmp_path / "out")) == 1 and len(index(tmp_path / "out")) == 1
