"""The command line as a user meets it: a subprocess, its exit code, its lines, its reports."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from checker.cli import parse_args
from checker.demo.fleet import Fleet, Route
from checker.run import RunError, ensure_out_dir
from tests.helpers import journal_rows, until

pytestmark = pytest.mark.timeout(60)


async def checker(
    *args: str,
    cwd: Path,
    stop_after: float | None = None,
    stop_when: Callable[[], bool] | None = None,
    sig: int = signal.SIGINT,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run `python -m checker ARGS`; optionally send `sig` after `stop_after`
    seconds, or once `stop_when()` (polled) is true; `env`: variables added to
    this process's environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "checker",
        *args,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        if stop_after is not None:
            await asyncio.sleep(stop_after)
            proc.send_signal(sig)
        elif stop_when is not None:
            # Not after a fixed time: on a loaded machine (CI with four test
            # processes and a reporter per run) a run 0.9 s old had not yet
            # set its signal handlers, and died of the signal (-15, not 143).
            # Wait for what the process has done (a journal with rows is a run
            # that has its handlers).
            await until(stop_when)
            proc.send_signal(sig)
        async with asyncio.timeout(45):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("checker: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("setup", "args", "expect"),
    [
        (None, ["check", "missing.txt"], "missing.txt: no such file"),
        ("dir", ["check", "adir"], "adir: is a directory"),
        ("empty", ["check", "empty.txt"], "empty.txt: no URL in this list"),
        (None, ["check"], "no list: give a list file, URLs, '-', or a --config with groups"),
        ("empty", ["check", "empty.txt", "--concurrency", "0"], "0 must be at least 1"),
        ("empty", ["check", "empty.txt", "--timeout", "soon"], "is not a number of seconds"),
        ("empty", ["check", "empty.txt", "--format", "xml"], "unknown format 'xml'"),
        ("empty", ["check", "empty.txt", "--keep-days", "0"], "a positive number of days"),
        ("list", ["check", "l.txt", "--ca-file", "nope.pem"], "--ca-file nope.pem: cannot load"),
        ("list", ["check", "l.txt", "--out", "l.txt"], "cannot create the report folder"),
        # (Found by a review: accepted, and "sent again by the next run" for ever.)
        (
            "list",
            ["check", "l.txt", "--notify-webhook", "ftp://127.0.0.1:9/hook"],
            "--notify-webhook: invalid webhook URL: unsupported scheme 'ftp' (http or https)",
        ),
        ("list", ["check", "l.txt", "--notify-webhook", "https://"], "invalid webhook URL"),
        (None, ["frobnicate"], "invalid choice"),
    ],
)
async def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, setup: str | None, args: list[str], expect: str
) -> None:
    if setup == "dir":
        (tmp_path / "adir").mkdir()
    if setup == "empty":
        (tmp_path / "empty.txt").write_text("# nothing here\n\n   \n")
    if setup == "list":
        (tmp_path / "l.txt").write_text("http://127.0.0.1:9/\n")
    code, out, err = await checker(*args, cwd=tmp_path)
    assert code == 2
    assert expect in one_error_line(err)
    assert out == ""
    assert not (tmp_path / "reports").exists()  # nothing was checked or written


async def test_run_writes_reports_and_exits_1_when_some_are_down(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/gone": Route(status=404)}) as fleet:
        (tmp_path / "urls.txt").write_text(f"{fleet.url('/ok')}\n{fleet.url('/gone')}\n")
        code, out, err = await checker(
            "check",
            "urls.txt",
            "--out",
            "rep",
            "--timeout",
            "5",
            "--concurrency",
            "4",
            "--method",
            "get",
            cwd=tmp_path,
        )
    assert code == 1, err
    assert err == ""  # no progress bar without a terminal
    assert "checked 2 URLs" in out and "1 up, 1 down" in out and "rep/latest" not in out
    report = json.loads((tmp_path / "rep" / "latest.json").read_text())
    assert [(r["status"], r["ok"], r["method"]) for r in report["results"]] == [
        (200, True, "GET"),
        (404, False, "GET"),
    ]
    assert report["run"]["options"]["method"] == "GET"
    assert (tmp_path / "rep" / "latest.csv").read_text().count("\n") == 3


async def test_all_up_exits_0_and_quiet_prints_nothing(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route()}) as fleet:
        (tmp_path / "urls.txt").write_text(fleet.url("/ok") + "\n")
        code, out, err = await checker("check", "urls.txt", "--quiet", cwd=tmp_path)
    assert (code, out, err) == (0, "", "")
    assert json.loads((tmp_path / "reports" / "latest.json").read_text())["run"]["up"] == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_signal_stops_the_run_and_still_writes_every_row(
    tmp_path: Path, sig: int, code: int
) -> None:
    async with Fleet({"/ok": Route(), "/hang": Route(delay=60)}) as fleet:
        lines = [fleet.url("/ok")] + [fleet.url(f"/hang?{i}") for i in range(30)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        got, out, err = await checker(
            "check",
            "urls.txt",
            "--timeout",
            "50",
            "--concurrency",
            "5",
            cwd=tmp_path,
            stop_when=lambda: sum(journal_rows(tmp_path / "reports")) >= 1,
            sig=sig,
        )
    assert got == code, err
    assert "Traceback" not in err
    assert out.startswith("INTERRUPTED: checked 1 URL in ")
    assert ": 1 up, 0 down (30 not checked, as the run was stopped)\n" in out
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert report["run"]["interrupted"] is True
    rows = report["results"]
    assert [r["line"] for r in rows] == list(range(1, 32))
    assert rows[0]["ok"] is True
    assert {r["error"] for r in rows[1:]} == {"interrupted"}


async def test_version_and_module_entry(tmp_path: Path) -> None:
    from checker import __version__

    code, out, _ = await checker("--version", cwd=tmp_path)
    assert code == 0 and out.strip() == f"checker {__version__}"


async def test_demo_runs_offline_and_writes_reports(tmp_path: Path) -> None:
    code, out, err = await checker("demo", "--out", "demo", cwd=tmp_path)
    assert "Traceback" not in err
    assert code == 0, err
    assert "reports: demo/status-" in out
    rows = {
        r["url"].rsplit("/", 1)[-1]: r
        for r in json.loads((tmp_path / "demo" / "latest.json").read_text())["results"]
    }
    assert rows["healthy"]["ok"] and rows["secure"]["ok"] and rows["secure"]["tls_version"]
    assert rows["head-405"]["head_status"] == 405 and rows["head-405"]["status"] == 200
    assert rows["missing"]["status"] == 404 and not rows["missing"]["ok"]
    assert rows["hang"]["error"] == "timeout"
    assert rows["redirect"]["redirects"][0]["status"] == 301
    assert rows["healthy"]["duplicates"]
    errors = [
        r["error"] for r in json.loads((tmp_path / "demo" / "latest.json").read_text())["results"]
    ]
    assert "refused" in errors and "invalid_url" in errors
    # The demo's mail and file servers: up, and saying that they are not encrypted.
    services = {
        r["method"]: r
        for r in json.loads((tmp_path / "demo" / "latest.json").read_text())["results"]
        if r["method"] in ("SMTP", "FTP")
    }
    assert services["SMTP"]["state"] == "up" and services["SMTP"]["banner"].startswith("demo")
    assert services["FTP"]["state"] == "up" and services["FTP"]["status"] == 220
    assert all(r["warnings"] for r in services.values())


async def test_https_checks_under_both_loops(
    tmp_path: Path, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
        urls = [fleet.https_url(f"/?{i}") for i in range(20)]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        for loop in ("asyncio", "uvloop"):
            code, _, err = await checker(
                "check",
                "urls.txt",
                "--ca-file",
                ca_file,
                "--loop",
                loop,
                "--quiet",
                "--out",
                loop,
                "--per-host",
                "2",
                cwd=tmp_path,
            )
            assert code == 0, err
            report = json.loads((tmp_path / loop / "latest.json").read_text())
            rows = report["results"]
            assert report["run"]["options"]["loop"] == loop
            assert all(r["tls_version"] for r in rows)
            assert sum(r["reused"] for r in rows) >= 18  # two connections carry them all
            assert all(r["tls_ms"] is None for r in rows if r["reused"])


async def test_unknown_or_missing_loop_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("http://127.0.0.1:9/\n")
    code, _, err = await checker("check", "l.txt", "--loop", "trio", cwd=tmp_path)
    assert code == 2 and "invalid choice: 'trio'" in one_error_line(err)


async def test_demo_keeps_out_of_a_folder_a_run_is_writing_to(tmp_path: Path) -> None:
    # It clears away what killed runs left in its folder, as every run does:
    # only under the folder's lock, never beside a run still going.
    from checker.lock import run_lock

    (tmp_path / "demo").mkdir()
    with run_lock(str(tmp_path / "demo")):
        code, _, err = await checker("demo", "--out", "demo", "-q", cwd=tmp_path)
    assert code == 3 and "another checker run" in err, err
    assert not (tmp_path / "demo" / "demo-urls.txt").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("report", "MISSING_DIR/latest.csv"),
            "checker: error: MISSING_DIR/latest.csv: no such file",
        ),
        (
            ("demo", "--out", "a_file", "-q"),
            "checker: error: a_file: cannot create the report folder: File exists",
        ),
    ],
)
async def test_bad_paths_are_one_line_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    (tmp_path / "a_file").write_text("")
    code, _, err = await checker(*args, cwd=tmp_path)
    assert code == 2
    assert one_error_line(err) == line


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    # `checker history | head -1`: the pipe is closed before checker writes.
    runs = tmp_path / "reports" / "runs.jsonl"
    runs.parent.mkdir()
    entry = {"started_at": "x", "finished_at": "2026-11-30T00:00:00Z", "total": 1, "up": 1}
    runs.write_text("".join(json.dumps(entry) + "\n" for _ in range(5000)))
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "checker", "history"],
            cwd=tmp_path,
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141
    assert done.stderr == b""


def test_an_io_error_writing_reports_has_its_own_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from checker import cli

    def full_disk(config: object, quiet: bool, args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "reports/status-x.json")

    (tmp_path / "urls.txt").write_text("http://127.0.0.1:1/\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run_and_report", full_disk)
    assert cli.main(["check", "urls.txt", "-q"]) == cli.EXIT_IO == 4
    err = capsys.readouterr().err
    assert err == "checker: error: reports/status-x.json: No space left on device\n"


def test_history_says_not_checked_and_invalid_not_down() -> None:
    from checker.cli import _verdict

    assert _verdict(False, "interrupted", None, ()) == "not checked"
    assert _verdict(False, "invalid_url", None, ()) == "invalid line"
    assert _verdict(False, "refused", None, ()) == "DOWN refused"
    assert _verdict(False, None, 503, ["status 503 not in 200-399"]) == "DOWN 503"
    assert _verdict(True, None, 200, ()) == "up 200"
    # Found by a review: `DOWN None` for a banner that did not match, and
    # `DOWN 200` for a body check; `up None` for a service.
    assert _verdict(False, None, None, ["first line does not match /^SSH-1\\.\\d/"]) == (
        "DOWN expectation"
    )
    assert _verdict(False, None, 200, ["body lacks 'Welcome'"]) == "DOWN expectation"
    assert _verdict(True, None, None, ()) == "up"


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-", "<&- >&- 2>&-"])
async def test_closed_standard_streams(tmp_path: Path, closed: str) -> None:
    """From cron or a service manager the standard streams may be closed: the
    run goes on, exits as it should, and writes its reports. (With both
    closed it was aborted; with stdout closed it ended in a traceback.)"""
    async with Fleet({"/": Route()}) as fleet:
        (tmp_path / "urls.txt").write_text(fleet.url("/") + "\n")
        code = await _check_redirected(tmp_path, closed)
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert [row["state"] for row in rows] == ["up"], rows
    assert code == 0


@pytest.mark.parametrize("full", [">/dev/full", "2>/dev/full", ">/dev/full 2>&1"])
@pytest.mark.parametrize("unbuffered", ["", "1"])
async def test_output_that_cannot_be_written_changes_no_outcome(
    tmp_path: Path, full: str, unbuffered: str
) -> None:
    """Found by a review: a cron job's log on a full disk (here /dev/full)
    ended the run in a traceback and exit 120, or with PYTHONUNBUFFERED in
    `checker: error: No space left on device`, exit 4, as if the reports
    could not be written. The output is lost; the exit code is the run's."""
    async with Fleet({"/": Route()}) as fleet:
        (tmp_path / "urls.txt").write_text(fleet.url("/") + "\nhttp://127.0.0.1:1/\n")
        code = await _check_redirected(tmp_path, full, {"PYTHONUNBUFFERED": unbuffered})
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert [row["state"] for row in rows] == ["up", "down"], rows
    assert code == 1


async def _check_redirected(cwd: Path, redirections: str, env: dict[str, str] | None = None) -> int:
    """`checker check urls.txt --retries 0` with the shell's `redirections`; its exit code."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f'exec "$0" -m checker check urls.txt --retries 0 {redirections}',
        sys.executable,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(45):
        return await proc.wait()


async def test_history_to_a_full_disk_says_so(tmp_path: Path) -> None:
    # Found by a review: with stdout lost for `check` (above), `checker
    # history > file` on a full disk exited 0 having written nothing; its
    # output is the answer.
    async with Fleet({"/": Route()}) as fleet:
        (tmp_path / "urls.txt").write_text(fleet.url("/") + "\n")
        assert await _check_redirected(tmp_path, ">/dev/null") == 0
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        'exec "$0" -m checker history >/dev/full',
        sys.executable,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(45):
        _, err = await proc.communicate()
    assert proc.returncode == 4
    assert err.decode() == "checker: error: standard output: No space left on device\n"


def as_nobody() -> list[str] | None:
    """The command prefix that runs a program as `nobody`, where this user
    can (root, with util-linux's setpriv), and `nobody` can run checker."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import checker"], capture_output=True, timeout=30
    )
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize("name", [".checker.lock", "runs.jsonl"])
def test_another_users_files_in_out_are_exit_2_before_anything_is_checked(name: str) -> None:
    # Found by the cron review: a run once as root, then cron as a user:
    # the lock was `Permission denied`, exit 4 (the code for a write refused
    # once the run had started), and with the lock writable the run checked,
    # wrote its reports, and failed on the run index, exit 4, its journal
    # left behind. The README says an unusable --out is 2, nothing checked.
    prefix = as_nobody()
    if prefix is None:
        pytest.skip("needs root and setpriv, and a checker that nobody can import")
    folder = Path(tempfile.mkdtemp(prefix="checker-nobody-"))
    try:
        folder.chmod(0o777)
        (folder / "l.txt").write_text("http://127.0.0.1:9/\n")
        out = folder / "reports"
        out.mkdir(mode=0o777)
        out.chmod(0o777)  # (whatever the umask)
        (out / ".checker.lock").write_text("")
        (out / ".checker.lock").chmod(0o644 if name == ".checker.lock" else 0o666)
        (out / "runs.jsonl").write_text("")
        (out / "runs.jsonl").chmod(0o644)
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "checker", "check", "l.txt", "-q", "--no-progress"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=45,
        )
        assert done.returncode == 2, done.stderr
        assert one_error_line(done.stderr) == (
            f"checker: error: reports/{name}: not writable by this user (it belongs to root);"
            " nothing was checked"
        )
        assert sorted(p.name for p in out.iterdir()) == [".checker.lock", "runs.jsonl"]
    finally:
        shutil.rmtree(folder)


def test_the_files_a_run_writes_in_place_are_checked_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (The same, where the suite cannot run as another user: the answer of
    # access(2) for another user's file, faked.)
    (tmp_path / "runs.jsonl").write_text("")
    (tmp_path / "history.sqlite3").write_text("")
    refused = {str(tmp_path / "runs.jsonl"), str(tmp_path / "history.sqlite3")}
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) not in refused and real(p, mode))
    with pytest.raises(RunError, match=r"runs.jsonl: not writable by this user \(it belongs to"):
        ensure_out_dir(str(tmp_path))
    refused.remove(str(tmp_path / "runs.jsonl"))
    ensure_out_dir(str(tmp_path))  # a read-only history costs the history only


@pytest.mark.parametrize(
    ("value", "on"), [("0", False), ("off", False), ("", False), ("1", True), ("Yes", True)]
)
def test_on_off_variables_mean_what_they_say(
    monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    # Found by a review: CHECKER_SMTP_TLS=0 turned TLS on (any value did),
    # and every mail alert failed.
    monkeypatch.setenv("CHECKER_SMTP_TLS", value)
    monkeypatch.setenv("CHECKER_SMTP_STARTTLS", value)
    args, _ = parse_args(["check", "l.txt"])
    assert (args.smtp_tls, args.smtp_starttls) == (on, on)


@pytest.mark.parametrize(
    ("var", "value", "line"),
    [
        (
            "CHECKER_SMTP_TLS",
            "maybe",
            "CHECKER_SMTP_TLS='maybe': use 1 or 0 (on, off, yes, no, true, false)",
        ),
        # (Found by a review: the message named --alert-after, never typed.)
        ("CHECKER_ALERT_AFTER", "abc", "CHECKER_ALERT_AFTER: 'abc' is not a whole number"),
    ],
)
async def test_a_variable_with_a_bad_value_is_exit_2_and_named(
    tmp_path: Path, var: str, value: str, line: str
) -> None:
    code, _, err = await checker("check", "l.txt", cwd=tmp_path, env={var: value})
    assert code == 2
    assert one_error_line(err) == f"checker: error: {line}"


@pytest.mark.parametrize("kind", ["damaged", "newer"])
async def test_history_of_a_url_with_an_unusable_database_answers_from_the_reports(
    tmp_path: Path, kind: str
) -> None:
    # Found by a review: a traceback, exit 1 (a check sets a damaged one
    # aside, but `history URL` is what one runs when something is wrong).
    async with Fleet({"/ok": Route()}) as fleet:
        url = fleet.url("/ok")
        code, _, err = await checker("check", url, "-q", cwd=tmp_path)
    assert code == 0, err
    db = tmp_path / "reports" / "history.sqlite3"
    if kind == "damaged":
        db.write_bytes(b"this is not a database" * 300)
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA user_version=99")
    code, out, err = await checker("history", url, cwd=tmp_path)
    why = "file is not a database" if kind == "damaged" else "made by a newer checker (schema 99)"
    assert (code, err) == (
        0,
        f"checker: history: reports/history.sqlite3: {why}; from the reports instead\n",
    )
    assert "up 200" in out
