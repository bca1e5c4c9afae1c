"""A run's reporter started as the command starts (checker/reports/prestart.py):
the guess from the command line, the hand-over to the run, and a reporter
started for nothing that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checker.demo.fleet import Fleet, Route
from checker.lock import run_lock
from checker.reports import prestart
from checker.reports.formats import FORMATS
from checker.reports.reporter import Reporter, Start
from checker.store.model import Policy

BIG = prestart.LIST_BYTES


@pytest.fixture
def lists(tmp_path: Path) -> tuple[Path, Path]:
    big = tmp_path / "big.txt"
    big.write_text("".join(f"http://127.0.0.1:9/{i:08d}\n" for i in range(BIG // 20 + 1)))
    small = tmp_path / "small.txt"
    small.write_text("http://127.0.0.1:9/\n")
    assert big.stat().st_size >= BIG > small.stat().st_size
    return big, small


@pytest.fixture
def no_early() -> Iterator[None]:
    """Whatever a test starts early is let go (and waited for) at its end."""
    yield
    prestart.let_go()
    for proc in prestart._let_go:
        proc.wait(timeout=30)
    prestart._let_go.clear()


@pytest.mark.parametrize(
    ("argv", "env", "cpus", "expected"),
    [
        (["check", "{big}"], "auto", 2, True),
        (["check", "{big}", "--out", "{dir}", "-q"], "", 4, True),
        (["check", "{small}"], "auto", 2, False),  # written after the checks
        (["check", "{small}", "{small}"], "auto", 2, False),
        (["check", "{big}"], "auto", 1, False),  # no second CPU
        (["check", "{small}"], "on", 1, True),  # CHECKER_REPORTER=on: always
        (["check", "{big}"], "off", 2, False),
        (["check", "{big}"], "maybe", 2, False),  # refused by the run itself
        (["check", "{big}", "--shard", "1/2"], "auto", 2, False),  # a shard: none
        (["check", "{big}", "--shard=1/2"], "on", 2, False),
        (["check", "{big}", "--processes", "2"], "auto", 2, False),
        (["check", "{big}", "--proc", "2"], "on", 2, False),  # argparse takes a prefix
        (["check", "{big}", "--progress"], "auto", 2, True),  # not --processes
        (["merge", "{big}"], "on", 2, False),
        (["report", "{big}"], "auto", 2, False),
        ([], "on", 2, False),
        (["check", "-", "{dir}"], "on", 2, True),
        (["check", "-", "{dir}", "http://example.test/"], "auto", 2, False),
    ],
)
def test_a_run_likely_to_want_a_reporter_is_told_from_its_command_line(
    lists: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: str,
    cpus: int,
    expected: bool,
) -> None:
    big, small = lists
    monkeypatch.setenv("CHECKER_REPORTER", env)
    monkeypatch.setattr(prestart, "usable_cpus", lambda: cpus)
    filled = [a.format(big=big, small=small, dir=tmp_path) for a in argv]
    assert prestart.likely(filled) is expected


def test_a_reporter_started_early_and_let_go_exits(
    lists: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, no_early: None
) -> None:
    monkeypatch.setenv("CHECKER_REPORTER", "auto")
    monkeypatch.setattr(prestart, "usable_cpus", lambda: 2)
    prestart.prestart(["check", str(lists[0])])
    early = prestart._early
    assert early is not None and early.poll() is None
    prestart.let_go()
    assert prestart._early is None and prestart.take() is None
    # It reads the end of its stdin before any Start: "the run went away".
    assert early.wait(timeout=30) == 1


def test_nothing_is_started_for_a_run_that_will_not_want_it(
    lists: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, no_early: None
) -> None:
    monkeypatch.setenv("CHECKER_REPORTER", "auto")
    prestart.prestart(["check", str(lists[1])])
    assert prestart._early is None


async def test_the_run_takes_the_reporter_started_early(
    lists: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_early: None
) -> None:
    monkeypatch.setenv("CHECKER_REPORTER", "on")
    prestart.prestart(["check", str(lists[0])])
    early = prestart._early
    assert early is not None

    def no_second(*_: object) -> subprocess.Popen[bytes]:
        raise AssertionError("a second reporter was started")

    monkeypatch.setattr(prestart, "spawn", no_second)
    monkeypatch.setattr("checker.reports.reporter.spawn", no_second)
    out = tmp_path / "reports"
    out.mkdir()
    start = Start(
        str(out / "status-x.journal.jsonl"),
        str(out / "status-x"),
        FORMATS,
        {},
        (str(lists[0]),),
        "auto",
        False,
        Policy(),
        [],
        datetime.now(UTC),
        14,
        (),
    )
    reporter = await Reporter.start(start)
    assert reporter is not None
    try:
        assert reporter._proc is early
        assert prestart.take() is None  # (taken once)
    finally:
        await reporter.close()  # never asked for its outcome: stopped
    assert early.returncode is not None


def _tagged(tag: str) -> list[int]:
    """Processes whose environment holds CHECKER_TEST_TAG=tag."""
    found = []
    needle = f"CHECKER_TEST_TAG={tag}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("why", "code"), [("another run's lock", 3), ("an argument error", 2)])
async def test_a_run_that_ends_before_its_checks_leaves_no_reporter_behind(
    lists: tuple[Path, Path], tmp_path: Path, why: str, code: int
) -> None:
    """The reporter started early is gone when the command has ended (not a
    moment later), and was waited for (`-X dev` warned of a process object
    collected while its process ran)."""
    out = tmp_path / "reports"
    out.mkdir()
    tag = uuid.uuid4().hex
    env = {**os.environ, "CHECKER_REPORTER": "on", "CHECKER_TEST_TAG": tag}
    bad = ["--concurrency", "nope"] if why == "an argument error" else []
    with run_lock(str(out)) if code == 3 else contextlib.nullcontext():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-X",
            "dev",
            "-m",
            "checker",
            "check",
            str(lists[0]),
            "--out",
            str(out),
            "-q",
            *bad,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, err
    assert _tagged(tag) == []
    assert b"Warning" not in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_closed_standard_streams_are_not_given_to_the_reporters_pipes(
    tmp_path: Path,
) -> None:
    """From cron the standard streams may be closed (`<&- >&- 2>&-`): they are
    pointed at /dev/null before the reporter's pipes are made, or the run's
    stdout would have been the pipe to its reporter's stdin."""
    async with Fleet({"/slow": Route(delay=3)}) as fleet:
        (tmp_path / "urls.txt").write_text(fleet.url("/slow") + "\n")
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"exec {sys.executable} -m checker check urls.txt --retries 0 <&- >&- 2>&-",
            cwd=tmp_path,
            env={**os.environ, "CHECKER_REPORTER": "on"},
        )
        try:
            seen: dict[int, str] = {}
            async with asyncio.timeout(30):
                while len(seen) < 3 and proc.returncode is None:
                    for fd in (0, 1, 2):
                        with contextlib.suppress(OSError):  # (it ended meanwhile)
                            seen[fd] = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                    await asyncio.sleep(0.02)
                    # (bash's own descriptors until it execs: read again)
                    if len(seen) == 3 and not (tmp_path / "reports").exists():
                        seen.clear()
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert seen == {0: os.devnull, 1: os.devnull, 2: os.devnull}
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert [row["state"] for row in rows] == ["up"]
