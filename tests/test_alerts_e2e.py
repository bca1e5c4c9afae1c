"""Issue 5's "done when": two runs with one site changed; the report names that
change, and a webhook and a mail about it arrive at local servers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from checker.demo.fleet import Fleet, Route
from tests.helpers import SwitchableSite, journal_rows, raw_server, read_request
from tests.test_cli import checker
from tests.test_notify import StartSMTP, WebhookSink, smtp_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)


async def test_one_change_reaches_the_report_the_webhook_and_the_mail(
    tmp_path: Path,
    smtp_server: StartSMTP,  # noqa: F811
) -> None:
    site = SwitchableSite()

    recorder, smtp_port = smtp_server()
    hook = WebhookSink()
    async with (
        Fleet({"/steady": Route()}) as fleet,
        raw_server(site) as port,
        raw_server(hook) as hook_port,
    ):
        changing = f"http://127.0.0.1:{port}/shop"
        (tmp_path / "urls.txt").write_text(f"{fleet.url('/steady')}\n{changing}\n")
        alerts = [
            "--notify-webhook",
            f"http://127.0.0.1:{hook_port}/hook",
            "--notify-email",
            "ops@example.com",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_port),
            "--smtp-from",
            "checker@example.com",
        ]
        code, _, err = await checker(
            "check", "urls.txt", "--retries", "0", "-q", *alerts, cwd=tmp_path
        )
        assert code == 0, err
        assert hook.requests == [] and recorder.envelopes == []  # nothing changed: no alert
        site.status = b"500 Internal Server Error"
        code, out, err = await checker("check", "urls.txt", "--retries", "0", *alerts, cwd=tmp_path)
    assert code == 1
    assert out.startswith(f"1 change since the last run:\n  DOWN   {changing} (line 2): 200 -> 500")
    assert (
        "checker: webhook: sent (HTTP 200)" in err and "checker: mail: sent to 1 recipient" in err
    )

    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert [c["url"] for c in report["changes"]] == [changing]
    page = (tmp_path / "reports" / "latest.html").read_text().replace("<wbr>", "")
    assert changing in page

    ((head, body),) = hook.requests
    assert b"content-type: application/json" in head.lower()
    sent = json.loads(body)
    (change,) = sent["changes"]
    assert change.pop("since") == report["results"][1]["checked_at"]  # since when it is down
    assert change.pop("detail") == "status 500 not in 200-399"  # what is wrong
    assert change == {"url": changing, "line": 2, "kind": "down", "before": 200, "after": 500}
    # Where it ran, and the reports to open.
    assert sent["run"]["host"] == socket.gethostname()
    assert str(tmp_path / "reports" / Path(report_name(tmp_path)).name) in sent["run"]["reports"]

    (envelope,) = recorder.envelopes
    assert envelope.rcpt_tos == ["ops@example.com"]
    assert envelope.original_content is not None
    msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert "1 down" in str(msg["Subject"])
    text = msg.get_body().get_content()  # type: ignore[union-attr]
    assert changing in text
    assert f"checked from {socket.gethostname()}" in text and "reports: " in text
    assert ", since 20" in text  # since when the URL is down


async def test_a_failing_alert_channel_costs_no_report(tmp_path: Path) -> None:
    site = SwitchableSite()

    async with raw_server(site) as port, Fleet({}) as fleet:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
        alerts = [
            "--notify-webhook",
            fleet.dead_url("/hook"),
            "--notify-email",
            "ops@example.com",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            fleet.dead_url().rsplit(":", 1)[1].strip("/"),
        ]
        await checker("check", "urls.txt", "-q", *alerts, cwd=tmp_path)
        site.status = b"404 Not Found"
        code, _, err = await checker(
            "check", "urls.txt", "-q", "--retries", "0", *alerts, cwd=tmp_path
        )
    assert code == 1
    assert "checker: webhook: failed:" in err and "checker: mail: failed:" in err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert report["changes"][0]["kind"] == "down"


async def test_quiet_says_nothing_when_an_alert_went_out(tmp_path: Path) -> None:
    # Under cron, a sent alert is not news (cron would mail it every time);
    # only a failed channel is (previous test).
    site = SwitchableSite()
    hook = WebhookSink()
    async with raw_server(site) as port, raw_server(hook) as hook_port:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
        args = ("check", "urls.txt", "-q", "--retries", "0")
        alert = ("--notify-webhook", f"http://127.0.0.1:{hook_port}/hook")
        await checker(*args, *alert, cwd=tmp_path)
        site.status = b"503 Service Unavailable"
        code, out, err = await checker(*args, *alert, cwd=tmp_path)
    assert code == 1
    assert (out, err) == ("", "")
    assert len(hook.requests) == 1


async def test_a_stopped_run_sends_no_alert_and_the_next_sends_it_once(tmp_path: Path) -> None:
    # Run 1 complete: the site is up. It goes down; run 2 sees it (its first
    # line) but is stopped: no alert (it is not the baseline of run 3, which
    # would alert the same change again). Run 3 complete: one alert.
    site = SwitchableSite()
    hook = WebhookSink()
    async with (
        raw_server(site) as port,
        raw_server(hook) as hook_port,
        Fleet({"/slow": Route(delay=0.5)}) as fleet,
    ):
        lines = [f"http://127.0.0.1:{port}/"] + [fleet.url(f"/slow?{i}") for i in range(12)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        args = ("check", "urls.txt", "-q", "--retries", "0", "--concurrency", "2")
        alert = ("--notify-webhook", f"http://127.0.0.1:{hook_port}/hook")
        code, _, err = await checker(*args, *alert, cwd=tmp_path)
        assert code == 0, err
        site.status = b"503 Service Unavailable"
        code, _, err = await checker(
            *args,
            *alert,
            cwd=tmp_path,
            stop_when=lambda: sum(journal_rows(tmp_path / "reports")) >= 1,
            sig=15,
        )
        assert code == 143, err
        stopped = json.loads((tmp_path / "reports" / "latest.json").read_text())
        assert [c["kind"] for c in stopped["changes"]] == ["down"]  # said in its report
        assert hook.requests == []  # but not alerted
        code, _, err = await checker(*args, *alert, cwd=tmp_path)
    assert code == 1, err
    assert len(hook.requests) == 1


def report_name(tmp_path: Path) -> str:
    """The newest run's JSON report, from the run index."""
    runs = (tmp_path / "reports" / "runs.jsonl").read_text().splitlines()
    return str(next(n for n in json.loads(runs[-1])["reports"] if n.endswith(".json")))


async def test_alert_after_waits_for_runs_in_a_row_and_any_format_alerts(tmp_path: Path) -> None:
    # --format prom only: changes come from the history database, not from a
    # JSON report, so alerts go out whatever the formats are.
    site = SwitchableSite()
    hook = WebhookSink()
    async with raw_server(site) as port, raw_server(hook) as hook_port:
        url = f"http://127.0.0.1:{port}/"
        (tmp_path / "urls.txt").write_text(url + "\n")
        args = ("check", "urls.txt", "-q", "--retries", "0", "--format", "prom")
        alert = ("--notify-webhook", f"http://127.0.0.1:{hook_port}/hook", "--alert-after", "2")
        code, _, err = await checker(*args, *alert, cwd=tmp_path)
        assert code == 0, err
        site.status = b"503 Service Unavailable"
        code, _, err = await checker(*args, *alert, cwd=tmp_path)  # down once: not yet
        assert code == 1, err
        assert hook.requests == []
        site.status = b"200 OK"
        code, _, err = await checker(*args, *alert, cwd=tmp_path)  # a flap: never said
        assert code == 0, err
        site.status = b"503 Service Unavailable"
        for _ in range(2):
            code, _, err = await checker(*args, *alert, cwd=tmp_path)
            assert code == 1, err
        assert len(hook.requests) == 1  # down in two runs in a row: said once
        index = (tmp_path / "reports" / "runs.jsonl").read_text().splitlines()
        runs = [json.loads(line) for line in index]
        code, _, err = await checker(*args, *alert, cwd=tmp_path)  # still down: no repeat
        assert code == 1, err
    assert len(hook.requests) == 1
    (change,) = json.loads(hook.requests[0][1])["changes"]
    assert (change["kind"], change["before"], change["after"]) == ("down", 200, 503)
    # Dated from the first of the two runs that saw it down.
    assert runs[3]["started_at"] <= change["since"] <= runs[3]["finished_at"]


async def test_remind_every_needs_a_duration(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    code, out, err = await checker("check", "urls.txt", "--remind-every", "6", cwd=tmp_path)
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "argument --remind-every: '6' is not a duration such as 30m, 6h or 1d" in line
    assert "Traceback" not in err


async def test_an_alert_that_could_not_go_out_goes_out_with_the_next_run(tmp_path: Path) -> None:
    site = SwitchableSite()
    hook = WebhookSink()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    try:
        async with raw_server(site) as port, raw_server(hook) as hook_port:
            (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
            args = ("check", "urls.txt", "-q", "--retries", "0")
            live = f"http://127.0.0.1:{hook_port}/hook"
            code, _, err = await checker(*args, "--notify-webhook", live, cwd=tmp_path)
            assert code == 0, err
            site.status = b"503 Service Unavailable"
            code, _, err = await checker(*args, "--notify-webhook", dead, cwd=tmp_path)
            assert code == 1
            assert "webhook: failed: " in err
            assert "its 1 change will be sent again by the next run" in err
            # Still down: no new change, but the one that never went out does.
            code, _, err = await checker(*args, "--notify-webhook", live, cwd=tmp_path)
            assert code == 1 and err == "", err
            assert len(hook.requests) == 1
            code, _, err = await checker(*args, "--notify-webhook", live, cwd=tmp_path)
            assert code == 1 and err == ""
    finally:
        closed.close()
    assert len(hook.requests) == 1  # once, not again
    (change,) = json.loads(hook.requests[0][1])["changes"]
    assert (change["kind"], change["after"]) == ("down", 503)


class StallingHook(WebhookSink):
    """A webhook that, while `stall` is set, takes the POST and never answers:
    the run that sent it is in the middle of its alert."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = True
        self.stalled = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.stall:
            return await super().__call__(reader, writer)
        await read_request(reader)
        self.stalled.set()
        await reader.read()  # until the run's end of the connection goes (killed)


@pytest.mark.parametrize(
    ("how", "reporter"),
    [([], "off"), ([], "on"), (["--processes", "2"], "off")],
    ids=["after-the-checks", "reporter", "processes"],
)
async def test_a_run_killed_while_its_webhook_hangs_leaves_the_changes_to_the_next(
    tmp_path: Path, how: list[str], reporter: str
) -> None:
    # Found by a review: the states were kept before the alert, the changes
    # only if it failed; a run SIGKILLed during the POST lost them for good.
    site = SwitchableSite()
    hook = StallingHook()
    env = {"CHECKER_REPORTER": reporter}
    async with raw_server(site) as port, raw_server(hook) as hook_port:
        urls = [f"http://127.0.0.1:{port}/{name}" for name in ("a", "b")]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        args = ("check", "urls.txt", "-q", "--retries", "0", *how)
        args += ("--notify-webhook", f"http://127.0.0.1:{hook_port}/hook")
        code, _, err = await checker(*args, cwd=tmp_path, env=env)
        assert code == 0, err
        site.status = b"503 Service Unavailable"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "checker",
            *args,
            cwd=tmp_path,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(30):
                await hook.stalled.wait()
        finally:
            proc.kill()
            await proc.wait()
        assert hook.requests == []  # nothing went out
        hook.stall = False
        # Still down: no change of its own, but the killed run's go out.
        code, _, err = await checker(*args, cwd=tmp_path, env=env)
        assert code == 1 and err == "", err
        assert len(hook.requests) == 1
        code, _, err = await checker(*args, cwd=tmp_path, env=env)
        assert code == 1 and err == "", err
    assert len(hook.requests) == 1  # once, not again
    sent = json.loads(hook.requests[0][1])["changes"]
    assert sorted((c["url"], c["kind"], c["after"]) for c in sent) == [
        (url, "down", 503) for url in urls
    ]
