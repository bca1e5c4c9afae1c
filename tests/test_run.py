"""Whole runs through the pool into reports: order, retries, caps, duplicates, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker.demo.fleet import Fleet, Route
from checker.pool import FLUSH_EVERY, Pool, PoolOptions
from checker.results import FIELDS, Result
from checker.targets import Duplicate, ListError, Target, read_targets
from checker.url import parse_url
from tests.helpers import (
    RecordingSink,
    SwitchableSite,
    check_options,
    raw_server,
    read_request,
    run_list_file,
)

pytestmark = pytest.mark.timeout(60)


async def test_every_line_once_in_input_order(run_list: Any, tmp_path: Path) -> None:
    routes = {f"/p{i}": Route(delay=0.05 * (i % 4)) for i in range(40)}
    async with Fleet(routes) as fleet:
        lines = ["# header comment", ""]
        lines += [fleet.url(f"/p{i}") for i in range(40)]
        lines += ["not a url at all", fleet.url("/p3"), fleet.dead_url()]
        outcome, report = await run_list(
            lines, pool=PoolOptions(concurrency=16, per_host=16, retries=0)
        )
    rows = report["results"]
    assert [r["line"] for r in rows] == [*range(3, 43), 43, 45]
    assert rows[-2]["error"] == "invalid_url" and rows[-2]["attempts"] == 0
    assert rows[-1]["error"] == "refused"
    assert rows[3]["duplicates"] == [f"{tmp_path / 'urls.txt'}:44"]
    run = report["run"]
    # The invalid line is counted apart from the sites that are down.
    assert (run["total"], run["up"], run["down"], run["duplicates"]) == (42, 40, 1, 1)
    assert run["invalid"] == 1 and run["not_checked"] == 0
    assert run["interrupted"] is False
    assert outcome.stats.up == 40
    # The journal is gone once the reports are written; the timestamped files stay.
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not [n for n in names if n.endswith(".journal.jsonl")]
    assert {"latest.csv", "latest.json", "runs.jsonl", "history.sqlite3"} <= set(names)
    assert len(names) == 6


async def test_csv_matches_json_and_neutralises_formulas(run_list: Any, tmp_path: Path) -> None:
    raw = b'HTTP/1.1 200 =HYPERLINK("http://evil/")\r\nServer: @cmd\r\n\r\n'
    async with Fleet({"/evil": Route(raw=raw), "/ok": Route()}) as fleet:
        _, report = await run_list([fleet.url("/evil"), fleet.url("/ok")])
    text = (tmp_path / "out" / "latest.csv").read_bytes().decode()
    assert text.startswith(",".join(FIELDS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2 == len(report["results"])
    assert rows[0]["reason"] == '\'=HYPERLINK("http://evil/")'
    assert rows[0]["server"] == "'@cmd"
    assert report["results"][0]["reason"] == '=HYPERLINK("http://evil/")'  # JSON keeps it as sent
    assert rows[1]["ok"] == "true" and rows[1]["status"] == "200"


async def test_retries_transient_status_then_gives_up(run_list: Any) -> None:
    async with Fleet({"/busy": Route(status=503, headers=(("Retry-After", "0"),))}) as fleet:
        _, report = await run_list(
            [fleet.url("/busy")], pool=PoolOptions(retries=2, backoff_base=0.01)
        )
        # HEAD 503: its GET comes after the host's pace, not at once (that
        # doubled the load on a host that said it had too much), and the
        # retries are GETs: three requests, not six.
        assert [r.method for r in fleet.requests] == ["HEAD", "GET", "GET"]
    (row,) = report["results"]
    assert row["attempts"] == 3 and row["status"] == 503 and row["ok"] is False


async def test_retry_recovers(run_list: Any) -> None:
    calls = 0

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        await read_request(reader)
        calls += 1
        if calls <= 2:
            return  # close without a response: a cut-off, transient
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(flaky) as port:
        _, report = await run_list(
            [f"http://127.0.0.1:{port}/"], pool=PoolOptions(retries=2, backoff_base=0.01)
        )
    (row,) = report["results"]
    # The first attempt: HEAD cut off, then the GET that decides cut off too;
    # the second: HEAD answered.
    assert row["ok"] is True and row["attempts"] == 2 and calls == 3


async def test_refused_is_not_retried(run_list: Any) -> None:
    async with Fleet({}) as fleet:
        _, report = await run_list([fleet.dead_url()], pool=PoolOptions(retries=3))
    assert report["results"][0]["attempts"] == 1


async def test_per_host_cap_is_respected(tmp_path: Path) -> None:
    active = peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        await read_request(reader)
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(slow) as port:
        lst = tmp_path / "cap.txt"
        lst.write_text("\n".join(f"http://127.0.0.1:{port}/{i}" for i in range(20)))
        sink = RecordingSink()
        pool = Pool(check_options(), PoolOptions(concurrency=10, per_host=3, retries=0), sink)
        interrupted = await pool.run(read_targets([str(lst)]), asyncio.Event())
    assert not interrupted and len(sink.rows) == 20
    assert all(r.ok for r in sink.rows.values())
    assert peak == 3
    assert pool.hosts is not None and len(pool.hosts) == 0  # no per-host state left behind


async def test_stop_marks_the_rest_interrupted(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/hang": Route(delay=30)}) as fleet:
        lines = [fleet.url("/ok")] + [fleet.url(f"/hang?{i}") for i in range(50)] + ["bad url"]
        lst = tmp_path / "l.txt"
        lst.write_text("\n".join(lines))
        sink = RecordingSink()
        stop = asyncio.Event()
        pool = Pool(check_options(timeout=20), PoolOptions(concurrency=4, retries=0), sink)
        asyncio.get_running_loop().call_later(0.5, stop.set)
        interrupted = await pool.run(read_targets([str(lst)]), stop)
    assert interrupted
    assert sorted(sink.rows) == list(range(52))
    assert sink.rows[0].ok
    errors = [sink.rows[i].error for i in range(1, 51)]
    assert set(errors) == {"interrupted"}
    assert sink.rows[51].error == "invalid_url"


async def test_lines_settled_without_a_request_leave_the_loop_turning(tmp_path: Path) -> None:
    # The workers read the list themselves. Each one counting its own lines
    # let all of them go on in the same turn of the loop (512 each): behind
    # 300,000 invalid lines the loop turned 13 times, a healthy site's answer
    # waited 4.7 s, and with --timeout 2 it was down (found by a review).
    # The lines settled in one turn are counted for all the workers at once.
    async def fine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    invalid = 30_000
    async with raw_server(fine) as port:
        lst = tmp_path / "urls.txt"
        lines = [f"http://127.0.0.1:{port}/"] + [f"bad line {i}" for i in range(invalid)]
        lst.write_text("\n".join(lines) + "\n")
        sink = RecordingSink()
        pool = Pool(check_options(timeout=20), PoolOptions(concurrency=100, retries=0), sink)
        ticking = asyncio.create_task(ticker())
        try:
            async with asyncio.timeout(60):
                await pool.run(read_targets([str(lst)]), asyncio.Event())
        finally:
            ticking.cancel()
    assert len(sink.rows) == invalid + 1 and sink.rows[0].ok
    # At most TURN_LINES (512), and one a worker, in a turn: 30,000 lines
    # take 49 turns at least. (Each worker's own 512: one turn did them all.)
    assert turns >= invalid // (512 + 100), turns


async def test_a_list_that_fails_mid_run_stops_every_worker() -> None:
    # The workers (which read the list) are one task group: when reading the
    # lists fails, the error comes out of the pool and no task outlives it.
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; ends when the client hangs up

    def items(port: int) -> Iterator[Target | Duplicate]:
        for i in range(25):  # all fit in the workers and the queue
            url = f"http://127.0.0.1:{port}/{i}"
            yield Target(i, "urls.txt", i + 1, url, parse_url(url))
        raise ListError("urls.txt: cannot read: Input/output error")

    async with raw_server(hang) as port:
        sink = RecordingSink()
        pool = Pool(check_options(timeout=20), PoolOptions(concurrency=10), sink)
        before = asyncio.all_tasks()
        with pytest.raises(ListError, match="Input/output error"):
            async with asyncio.timeout(10):
                await pool.run(items(port), asyncio.Event())
        assert asyncio.all_tasks() <= before  # nothing left running


async def test_stopping_a_long_list_streams_the_unchecked_rows() -> None:
    # Stopped early, the rows for lines never read are written out as they
    # are made, not held: the sink is flushed every FLUSH_EVERY rows.
    class CountingSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.unflushed = 0
            self.most_unflushed = 0

        def add(self, seq: int, result: Result) -> None:
            super().add(seq, result)
            self.unflushed += 1
            self.most_unflushed = max(self.most_unflushed, self.unflushed)

        async def flush(self) -> None:
            await super().flush()
            self.unflushed = 0

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; ends when the client hangs up

    async with raw_server(hang) as port:
        n = 20_000
        targets = (
            Target(i, "urls.txt", i + 1, u, parse_url(u))
            for i in range(n)
            for u in [f"http://127.0.0.1:{port}/{i}"]
        )
        sink = CountingSink()
        stop = asyncio.Event()
        pool = Pool(check_options(timeout=20), PoolOptions(concurrency=10), sink)
        asyncio.get_running_loop().call_later(0.3, stop.set)
        async with asyncio.timeout(20):
            assert await pool.run(targets, stop) is True
    assert len(sink.rows) == n
    assert all(r.error == "interrupted" for r in sink.rows.values())
    assert sink.flushes >= n // FLUSH_EVERY
    assert sink.most_unflushed <= FLUSH_EVERY + 100


async def test_a_failed_run_index_leaves_a_journal_the_next_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reports and the history are written, then runs.jsonl cannot be:
    # the run fails (exit 4 in the CLI) and its journal stays. The next run
    # finds that run in the history already: it indexes it and keeps its
    # reports, instead of "recovering" a complete run as a killed one (and
    # counting it twice).
    import sqlite3

    from checker import run as run_module
    from checker.reports import recover
    from checker.reports.recover import recover_leftovers
    from checker.run import RunConfig, run_check

    async def refused(out_dir: str, entry: dict[str, Any]) -> None:
        raise PermissionError(13, "Permission denied", f"{out_dir}/runs.jsonl")

    out = tmp_path / "out"
    async with raw_server(SwitchableSite()) as port:
        lst = tmp_path / "urls.txt"
        lst.write_text(f"http://127.0.0.1:{port}/\n")
        config = RunConfig(
            lists=[str(lst)],
            out_dir=str(out),
            formats=["json"],
            check=check_options(),
            pool=PoolOptions(concurrency=2),
        )
        # (A run writes its index line itself after a reporter; after its
        # checks, as a killed run's reports are written: recover.publish.)
        with monkeypatch.context() as patched:
            patched.setattr(run_module, "append_run", refused)
            patched.setattr(recover, "append_run", refused)
            with pytest.raises(PermissionError):
                await run_check(config)
    (journal,) = out.glob("*.journal.jsonl")
    first = json.loads((out / "latest.json").read_text())
    assert first["run"]["interrupted"] is False
    notes = await recover_leftovers(str(out), ["json"])
    assert notes == [
        f"a run killed at its very end was completed: {journal}".replace(".journal.jsonl", ".json")
    ], notes
    assert list(out.glob("*.journal.jsonl")) == []
    assert json.loads((out / "latest.json").read_text()) == first  # kept as it was
    (entry,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert (entry["started_at"], entry["interrupted"]) == (first["run"]["started_at"], False)
    db = sqlite3.connect(out / "history.sqlite3")
    try:
        assert db.execute("SELECT COUNT(*), SUM(complete) FROM runs").fetchone() == (1, 1)
    finally:
        db.close()


async def test_head_503_get_200_is_up_and_an_expected_503_is_the_answer(run_list: Any) -> None:
    # Found by a review of this change: a server answering HEAD 503 and GET
    # 200 came out degraded ("up only on attempt 3") after 100 s of pacing,
    # where it was up at once before; and a CSV row expecting 503 (a
    # maintenance page) slowed its host and was retried into "degraded".
    async with Fleet(
        {
            "/head-503": Route(head_status=503),
            "/maintenance": Route(status=503),
        }
    ) as fleet:
        _, report = await run_list(
            [fleet.url("/head-503")], pool=PoolOptions(retries=2, backoff_base=0.01)
        )
        (row,) = report["results"]
        assert (row["state"], row["status"], row["method"]) == ("up", 200, "GET"), row
        assert any("a GET decided after the host's pace" in w for w in row["warnings"]), row
        # What HEAD said is kept, as for any GET that decided after a HEAD
        # (found by a review: null here).
        assert row["head_status"] == 503, row
        _, report = await run_list(
            ["url,expect_status", f"{fleet.url('/maintenance')},503"],
            pool=PoolOptions(retries=2, backoff_base=0.01),
        )
        (row,) = report["results"]
        assert (row["state"], row["status"], row["attempts"]) == ("up", 503, 1), row


async def test_a_degraded_row_says_what_its_earlier_attempts_met(tmp_path: Path) -> None:
    # Found by a review (haproxy, maxconn 5, --method GET): rows "up only on
    # attempt 2" with no warning: nothing said that attempt 1 had timed out.
    seen: dict[bytes, int] = {}

    async def first_fails(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            path = (await read_request(reader)).split(b" ")[1]
            seen[path] = seen.get(path, 0) + 1
            if seen[path] == 1 and path == b"/slow":
                await asyncio.sleep(5)
            status = b"500 Internal Server Error" if seen[path] == 1 else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async with raw_server(first_fails) as port:
        rows = await run_list_file(
            tmp_path,
            [f"http://127.0.0.1:{port}/error", f"http://127.0.0.1:{port}/slow"],
            "--method", "GET", "--retries", "1", "--timeout", "1",
        )  # fmt: skip
    error, slow = rows[f"http://127.0.0.1:{port}/error"], rows[f"http://127.0.0.1:{port}/slow"]
    assert (error["state"], error["attempts"]) == ("degraded", 2), error
    assert "attempt 1 failed: status 500 not in 200-399" in error["warnings"], error
    assert (slow["state"], slow["attempts"]) == ("degraded", 2), slow
    assert any(w.startswith("attempt 1 failed: timeout (") for w in slow["warnings"]), slow
