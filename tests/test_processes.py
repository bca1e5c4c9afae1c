"""--processes N: N shard processes under one command, merged into one report
that has the rows of one unsharded run; one lock, one bar; Ctrl-C, SIGTERM,
a shard killed and the parent killed all keep every row."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import sys
import termios
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from checker.parallel import usable_cpus
from tests.helpers import SwitchableSite, ended, journal_rows, read_request, until
from tests.test_cli import checker, one_error_line
from tests.test_notify import WebhookSink

pytestmark = pytest.mark.timeout(90)


class SlowSite:
    """200 after `delay` seconds, keep-alive."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()


@contextlib.asynccontextmanager
async def hosts(handler: object, n: int) -> AsyncIterator[list[str]]:
    """`n` servers, on 127.0.0.1 to 127.0.0.n (distinct hosts: the shards
    split by host); yields their origins."""
    servers = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)  # type: ignore[operator]
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    try:
        for i in range(1, n + 1):
            servers.append(await asyncio.start_server(serve, f"127.0.0.{i}", 0))
        yield [
            f"http://127.0.0.{i}:{s.sockets[0].getsockname()[1]}" for i, s in enumerate(servers, 1)
        ]
    finally:
        for server in servers:
            server.close()


async def start(tmp_path: Path, *args: str, **how: Any) -> asyncio.subprocess.Process:
    """`python -m checker check urls.txt ARGS` in `tmp_path`, not waited for."""
    how.setdefault("stdout", asyncio.subprocess.PIPE)
    how.setdefault("stderr", asyncio.subprocess.PIPE)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "checker", "check", "urls.txt", *args, cwd=tmp_path, **how
    )


async def act_then_wait(
    proc: asyncio.subprocess.Process,
    after: float | Callable[[], bool],
    act: Callable[[asyncio.subprocess.Process], None],
) -> tuple[bytes, bytes]:
    """`act` (a signal to send) `after` seconds, or once `after()` (polled)
    is true; then the run's output once it has ended (killed, with its
    group, if it does not end in time)."""
    try:
        if callable(after):
            await until(after)
        else:
            await asyncio.sleep(after)
        act(proc)
        async with asyncio.timeout(40):
            return await proc.communicate()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            await proc.wait()


def both_have_rows(tmp_path: Path) -> bool:
    """Both shards of a `--processes 2` run have results in their journals
    (after a fixed 2 s, a loaded machine could still be starting them)."""
    return sum(1 for rows in journal_rows(tmp_path / "reports") if rows) >= 2


def ctrl_c(proc: asyncio.subprocess.Process) -> None:
    """The terminal's Ctrl-C: a SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)


def rows(folder: Path) -> list[tuple[str, int, str | None, str | None]]:
    report = json.loads((folder / "latest.json").read_text())
    return [(r["url"], r["line"], r["state"], r["error"]) for r in report["results"]]


def run_header(folder: Path) -> dict[str, object]:
    header = json.loads((folder / "latest.json").read_text())["run"]
    assert isinstance(header, dict)
    return header


async def test_processes_give_the_rows_of_one_run(tmp_path: Path) -> None:
    down = SwitchableSite(b"503 Service Unavailable")
    async with hosts(SwitchableSite(), 12) as up, hosts(down, 1) as broken:
        lines = [f"{o}/p{j}" for o in up for j in range(3)] + [f"{broken[0]}/x"]
        lines += ["not a url", f"{up[3]}/p1", "# a comment"]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        args = ("check", "urls.txt", "--retries", "0")
        code, _, err = await checker(*args, "--out", "one", cwd=tmp_path)
        assert code == 1, err
        code, out, err = await checker(*args, "--out", "three", "--processes", "3", cwd=tmp_path)
    assert code == 1, err
    assert err == ""  # no note said three times, no bar without a terminal
    assert rows(tmp_path / "three") == rows(tmp_path / "one")
    states = {(state, error) for _, _, state, error in rows(tmp_path / "three")}
    assert states == {("up", None), ("down", None), (None, "invalid_url")}  # 503: a status
    header = run_header(tmp_path / "three")
    assert header["merged"] == ["1/3", "2/3", "3/3"] and header["shard"] is None
    assert header["interrupted"] is False and header["duplicates"] == 1
    assert header["options"]["processes"] == 3  # type: ignore[index]
    assert out.startswith("merged from 3 shards: checked 37 URLs in ")
    assert "(1 invalid line; 1 duplicate line skipped)" in out
    three = tmp_path / "three"
    assert (three / "latest.html").exists() and (three / "latest.csv").exists()
    assert (three / "history.sqlite3").exists() and not (three / ".shards").exists()
    assert [p.name for p in three.glob("*.journal.jsonl")] == []


async def test_a_merged_run_alerts_once_and_only_on_a_change(tmp_path: Path) -> None:
    site, hook = SwitchableSite(), WebhookSink()
    async with hosts(site, 6) as origins, hosts(hook, 1) as hook_origin:
        (tmp_path / "urls.txt").write_text("\n".join(f"{o}/" for o in origins) + "\n")
        args = ("check", "urls.txt", "-q", "--retries", "0", "--processes", "2")
        alert = ("--notify-webhook", f"{hook_origin[0]}/hook")
        code, _, err = await checker(*args, *alert, cwd=tmp_path)
        assert code == 0, err
        assert hook.requests == []  # the first run is the baseline
        site.status = b"503 Service Unavailable"
        code, _, err = await checker(*args, *alert, cwd=tmp_path)
    assert code == 1, err
    assert len(hook.requests) == 1  # once, from the merged run, not once a shard
    body = json.loads(hook.requests[0][1])
    assert sorted(c["url"] for c in body["changes"]) == sorted(f"{o}/" for o in origins)


async def test_ctrl_c_stops_every_shard_and_keeps_every_row(tmp_path: Path) -> None:
    async with hosts(SlowSite(0.4), 8) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(20)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        # Its own process group, as a terminal's foreground job: Ctrl-C is a
        # SIGINT to the whole group, the parent and the shards alike.
        proc = await start(tmp_path, "--processes", "2", "--per-host", "1", start_new_session=True)
        out, err = await act_then_wait(proc, lambda: both_have_rows(tmp_path), ctrl_c)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    got = rows(tmp_path / "reports")
    assert [line for _, line, _, _ in got] == list(range(1, len(lines) + 1))
    assert {(s, e) for _, _, s, e in got} == {("up", None), (None, "interrupted")}
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    stopped = [r for r in report["results"] if r["error"] == "interrupted"]
    assert stopped and run_header(tmp_path / "reports")["interrupted"] is True
    assert b"INTERRUPTED" in out
    assert not (tmp_path / "reports" / ".shards").exists()


async def test_a_killed_shard_is_recovered_from_its_journal(tmp_path: Path) -> None:
    async with hosts(SlowSite(0.3), 8) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(15)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        proc = await start(tmp_path, "--processes", "2", "--per-host", "1")

        def kill_a_shard(proc: asyncio.subprocess.Process) -> None:
            shards = children(proc.pid)
            assert len(shards) == 2
            os.kill(shards[0], signal.SIGKILL)

        _, err = await act_then_wait(proc, lambda: both_have_rows(tmp_path), kill_a_shard)
    text = err.decode()
    assert proc.returncode == 1, text  # not all checked: no all-clear
    assert "stopped before its report: recovered" in text and "Traceback" not in text
    got = rows(tmp_path / "reports")
    assert [line for _, line, _, _ in got] == list(range(1, len(lines) + 1))
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    killed = [r for r in report["results"] if r["error"] == "interrupted"]
    assert killed and all("killed" in r["error_detail"] for r in killed)
    assert report["run"]["interrupted"] is True


async def test_a_killed_parent_stops_its_shards_and_the_next_run_merges_them(
    tmp_path: Path,
) -> None:
    async with hosts(SlowSite(0.3), 6) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(15)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        proc = await start(
            tmp_path,
            *("--processes", "2", "--per-host", "1"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(2.0)
        shards = children(proc.pid)
        assert len(shards) == 2
        proc.kill()
        await proc.wait()
        # The shards follow their parent (SIGTERM), each writing its report.
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in shards) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in shards)
        assert (tmp_path / "reports" / ".shards").is_dir()
        (tmp_path / "other.txt").write_text(f"{origins[0]}/\n")
        code, _, err = await checker("check", "other.txt", "-q", cwd=tmp_path)
    assert code == 0, err
    assert "a killed --processes run's shards became" in err
    assert not (tmp_path / "reports" / ".shards").exists()
    killed = sorted((tmp_path / "reports").glob("status-*.json"))[0]
    report = json.loads(killed.read_text())
    assert [r["line"] for r in report["results"]] == list(range(1, len(lines) + 1))
    assert report["run"]["interrupted"] is True
    assert {r["state"] for r in report["results"]} >= {"up"}


async def test_one_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    async with hosts(SwitchableSite(), 6) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(10)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        leader, follower = pty.openpty()
        # 100 columns (a new terminal has none: tqdm would draw nothing).
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        proc = await start(
            tmp_path, "--processes", "3", stdout=asyncio.subprocess.DEVNULL, stderr=follower
        )
        os.close(follower)
        drawn = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(40):
            while True:
                try:
                    chunk = await loop.run_in_executor(None, os.read, leader, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                drawn += chunk
            await proc.wait()
        os.close(leader)
    assert proc.returncode == 0
    text = drawn.decode("utf-8", "replace")
    assert "60/60" in text and "Traceback" not in text, text
    assert "/20" not in text, repr(text)  # no shard's own bar (each has 20)
    assert text.rstrip().endswith("up 60 down 0]"), repr(text)  # the final totals


async def test_processes_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    for extra, says in [
        (["--processes", "2", "--shard", "1/2"], "--processes and --shard"),
        (["--processes", "0"], "from 1 to 256"),
        (["--processes", "many"], "not a number or auto"),
    ]:
        code, _, err = await checker("check", "urls.txt", *extra, cwd=tmp_path)
        assert code == 2 and says in one_error_line(err)
    assert usable_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpus", "chosen"), [(1, 1), (2, 1), (3, 3), (8, 8)])
def test_processes_auto_is_one_on_two_cpus_or_fewer(
    monkeypatch: pytest.MonkeyPatch, cpus: int, chosen: int
) -> None:
    # On two CPUs one process and its reporter beat two shards and their
    # merge (benchmarks/RESULTS-processes.md).
    import checker.parallel
    from checker import cli

    monkeypatch.setattr(checker.parallel, "usable_cpus", lambda: cpus)
    assert cli._processes("auto") == cli._processes(" AUTO ") == chosen
    assert cli._processes("2") == 2  # a number is taken as it is


def children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by init) has stopped all the same.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


async def test_fewer_at_once_than_processes_lowers_the_processes(tmp_path: Path) -> None:
    async with hosts(SwitchableSite(), 4) as origins:
        (tmp_path / "urls.txt").write_text("\n".join(f"{o}/" for o in origins) + "\n")
        args = ("check", "urls.txt", "--processes", "4", "--concurrency", "2")
        code, out, err = await checker(*args, cwd=tmp_path)
    assert code == 0, err
    said = "--processes 4: at most 2 checks at once: running 2 processes"
    assert err == f"checker: {said}\n"
    header = run_header(tmp_path / "reports")
    assert header["merged"] == ["1/2", "2/2"]
    assert "merged from 2 shards" in out


async def test_an_early_ctrl_c_says_nothing_of_its_shards_starting(tmp_path: Path) -> None:
    # Pages of 3 s: the Ctrl-C must come while the run goes on. (With 0.3 s,
    # a run under load, the suite in four processes, once ended whole before
    # its Ctrl-C came, exit 0: the test's premise, not the run, was wrong.)
    async with hosts(SlowSite(3.0), 6) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(10)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        for delay in (0.0, 0.2, 0.45):
            out = f"r{delay}"
            proc = await start(tmp_path, "--processes", "3", "--out", out, start_new_session=True)
            # Counted from when the run holds its folder: a Ctrl-C before the
            # interpreter has even started (a busy machine: CI saw one at
            # 0.15 s) kills it as it would any program, with no word.
            async with asyncio.timeout(30):
                while not (tmp_path / out / ".checker.lock").exists():
                    await asyncio.sleep(0.005)
            _, err = await act_then_wait(proc, delay, ctrl_c)
            text = err.decode()
            assert proc.returncode == 130, text
            for noise in ("Traceback", "Fatal Python error", "KeyboardInterrupt", "never awaited"):
                assert noise not in text, text
            if (tmp_path / out / "latest.json").exists():
                got = rows(tmp_path / out)
                assert [line for _, line, _, _ in got] == list(range(1, len(lines) + 1))
            assert not (tmp_path / out / ".shards").exists()


async def test_a_killed_run_whose_list_is_gone_is_merged_from_what_it_kept(
    tmp_path: Path,
) -> None:
    # A parent killed as its shards started: shard 1 wrote its report, shard
    # 2 nothing; then the list is deleted. The next run merges what is there,
    # says what could not be accounted for, and goes on.
    async with hosts(SwitchableSite(), 4) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(3)]
        (tmp_path / "gone.txt").write_text("\n".join(lines) + "\n")
        work = tmp_path / "reports" / ".shards" / "status-20261130T000000Z"
        args = ("check", "gone.txt", "--shard", "1/2", "--out", str(work / "1"), "-q")
        code, _, err = await checker(*args, "--format", "json", cwd=tmp_path)
        assert code == 0, err
        (work / "2").mkdir()
        parent = {
            "started_at": "2026-11-30T00:00:00.000Z",
            "options": {"list_format": "auto", "processes": 2},
            "lists": ["gone.txt"],
            "processes": 2,
        }
        (work / "parent.json").write_text(json.dumps(parent))
        shard1 = [
            r["line"] for r in json.loads((work / "1" / "latest.json").read_text())["results"]
        ]
        (tmp_path / "gone.txt").unlink()
        (tmp_path / "urls.txt").write_text(f"{origins[0]}/\n")
        code, _, err = await checker("check", "urls.txt", "-q", cwd=tmp_path)
    assert code == 0, err
    assert "Traceback" not in err and "gone.txt" in err
    assert not (tmp_path / "reports" / ".shards").exists()
    killed = sorted((tmp_path / "reports").glob("status-*.json"))[0]
    report = json.loads(killed.read_text())
    assert [r["line"] for r in report["results"]] == shard1
    assert report["run"]["interrupted"] is True and report["run"]["recovered"] is True


async def test_a_parent_killed_as_it_merged_is_merged_once(tmp_path: Path) -> None:
    # Its shards had their reports; it had begun the merged journal. The next
    # run remakes the merge from the shards (every row), once, and drops the
    # half journal; a parent killed after publishing leaves only its folder.
    from checker.reports.journal import header_line

    async with hosts(SwitchableSite(), 4) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(3)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        started = "2026-11-30T00:00:00.000Z"
        work = tmp_path / "reports" / ".shards" / "status-20261130T000000Z"
        for k in (1, 2):
            args = ("check", "urls.txt", "--shard", f"{k}/2", "--out", str(work / str(k)))
            code, _, err = await checker(*args, "-q", "--format", "json", cwd=tmp_path)
            assert code == 0, err
        parent = {
            "started_at": started,
            "options": {"list_format": "auto", "processes": 2},
            "lists": ["urls.txt"],
            "processes": 2,
        }
        (work / "parent.json").write_text(json.dumps(parent))
        saved = tmp_path / "saved"
        shutil.copytree(work, saved)
        half = tmp_path / "reports" / "status-20261130T000000Z.journal.jsonl"
        head = {**parent, "shard": None, "merged": ["1/2", "2/2"]}
        first = (work / "1" / "latest.json").read_text().splitlines()[3].rstrip(",")
        half.write_bytes(header_line(head) + b'{"seq":0,"result":' + first.encode() + b"}\n")
        (tmp_path / "other.txt").write_text(f"{origins[0]}/\n")
        code, _, err = await checker("check", "other.txt", "-q", cwd=tmp_path)
        assert code == 0, err
        killed = sorted((tmp_path / "reports").glob("status-20261130T000000Z*.json"))
        assert [p.name for p in killed] == ["status-20261130T000000Z.json"], err
        report = json.loads(killed[0].read_text())
        assert [r["line"] for r in report["results"]] == list(range(1, len(lines) + 1))
        assert {r["state"] for r in report["results"]} == {"up"}  # every row from its shard
        assert report["run"]["recovered"] is True
        assert not list((tmp_path / "reports").glob("*.journal.jsonl"))
        # Killed after publishing: only its folder was left, and goes.
        shutil.copytree(saved, work)
        runs = (tmp_path / "reports" / "runs.jsonl").read_text()
        code, _, err = await checker("check", "other.txt", "-q", cwd=tmp_path)
    assert code == 0 and err == "", err
    assert not (tmp_path / "reports" / ".shards").exists()
    after = (tmp_path / "reports" / "runs.jsonl").read_text()
    assert after.startswith(runs) and after.count("\n") == runs.count("\n") + 1  # its own only


async def test_a_run_killed_as_it_writes_its_reports_leaves_no_hidden_file(
    tmp_path: Path,
) -> None:
    # SIGKILLed as the parent merges its shards into the reports' spools: the
    # next run merges the shards again, and the spools go (cron would pile
    # them up otherwise, a report's size each time).
    from tests.killed_child import hidden_reports, killed_writing_reports

    async with hosts(SwitchableSite(), 4) as origins:
        lines = [f"{o}/{j}" for o in origins for j in range(3)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        args = ("check", "urls.txt", "--processes", "2", "-q")
        code, err = await killed_writing_reports(tmp_path, *args)
        assert code == -signal.SIGKILL, err
        out = tmp_path / "reports"
        left = hidden_reports(out)
        assert [name.split(".")[2] for name in left] == ["csv", "html", "json"], left
        assert (out / ".shards").is_dir()
        code, _, err = await checker(*args, cwd=tmp_path)
    assert code == 0, err
    assert "a killed --processes run's shards became" in err
    assert hidden_reports(out) == []
    assert not (out / ".shards").exists()
    assert len(list(out.glob("status-*.json"))) == 2  # the killed run's, and this one's


@pytest.mark.parametrize("how", [("--processes", "2"), ()], ids=["shards", "reporter"])
async def test_helpers_run_from_a_folder_holding_one_named_checker(
    tmp_path: Path, how: tuple[str, ...]
) -> None:
    # Found by a review: the helpers (the reporter, the shards) were started
    # as `python -m ...`, which puts the current folder first on sys.path:
    # run from a clone's parent (/srv for /srv/checker) or any folder with a
    # `checker` in it, that folder was imported instead, and every shard
    # died (all lines "not checked") or the reporter did.
    (tmp_path / "checker" / "checker").mkdir(parents=True)  # (as a clone's parent)
    async with hosts(SwitchableSite(), 2) as up:
        (tmp_path / "urls.txt").write_text("".join(f"{o}/p{j}\n" for o in up for j in range(5)))
        proc = await asyncio.create_subprocess_exec(
            # (-P: this process itself must not import the empty folder either)
            *(sys.executable, "-P", "-m", "checker", "check", "urls.txt", "-q", *how),
            cwd=tmp_path,
            env={**os.environ, "CHECKER_REPORTER": "on"},
            stderr=asyncio.subprocess.PIPE,
        )
        code, _, err = await ended(proc)
    assert (code, err) == (0, ""), err
    header = run_header(tmp_path / "reports")
    assert (header["up"], header["down"], header["not_checked"]) == (10, 0, 0), header
