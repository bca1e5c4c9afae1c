"""Made for cron: one run at a time, pruning, history, what changed, Prometheus output."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checker.demo.fleet import Fleet, Route
from checker.lock import run_lock
from checker.store.prune import prune
from tests.helpers import SwitchableSite, journal_rows, raw_server
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)


# --- the lock -------------------------------------------------------------------


async def test_a_second_run_exits_3_while_the_first_holds_the_folder(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("http://127.0.0.1:9/\n")
    (tmp_path / "reports").mkdir()
    with run_lock(str(tmp_path / "reports")):
        code, out, err = await checker("check", "l.txt", cwd=tmp_path)
        assert code == 3 and out == ""
        assert f"another checker run (pid {os.getpid()}) is writing to reports" in err
        code, _, err = await checker("check", "l.txt", "--wait-lock", "0.3", cwd=tmp_path)
        assert code == 3 and "after waiting 0.3s" in err
    assert not (tmp_path / "reports" / "latest.json").exists()


async def test_wait_lock_waits_for_the_first_run(tmp_path: Path) -> None:
    async with Fleet({"/": Route()}) as fleet:
        (tmp_path / "l.txt").write_text(fleet.url("/") + "\n")
        (tmp_path / "reports").mkdir()
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with run_lock(str(tmp_path / "reports")):
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        try:
            held.wait(5)
            asyncio.get_running_loop().call_later(0.5, release.set)
            code, _, err = await checker("check", "l.txt", "--wait-lock", "10", "-q", cwd=tmp_path)
        finally:
            release.set()
            t.join()
    assert code == 0, err
    assert (tmp_path / "reports" / "latest.json").exists()


# --- pruning --------------------------------------------------------------------


def test_prune_keeps_the_newest_and_never_touches_the_rest(tmp_path: Path) -> None:
    stamps = ["20260101T000000Z", "20261101T000000Z", "20261120T000000Z", "20261124T000000Z"]
    for s in stamps:
        for ext in ("csv", "json", "html"):
            (tmp_path / f"status-{s}.{ext}").write_text("x")
    keep = [
        "latest.json",
        "latest.csv",
        "runs.jsonl",
        "status-20250101T000000Z.journal.jsonl",
        "notes.txt",
    ]
    for name in keep:
        (tmp_path / name).write_text("x")
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    removed = prune(str(tmp_path), keep=3, keep_days=None, now=now)
    assert sorted(Path(p).name for p in removed) == [
        f"status-{stamps[0]}.{e}" for e in ("csv", "html", "json")
    ]
    removed = prune(str(tmp_path), keep=None, keep_days=10, now=now)
    assert {Path(p).name.split(".")[0] for p in removed} == {f"status-{stamps[1]}"}
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in left if n.startswith("status-2026")] == [
        f"status-{s}.{e}" for s in stamps[2:] for e in ("csv", "html", "json")
    ]
    assert all(name in left for name in keep)
    # Even --keep-days 0 keeps the newest run.
    prune(str(tmp_path), keep=None, keep_days=0, now=now)
    assert (tmp_path / f"status-{stamps[3]}.json").exists()


# --- what changed ---------------------------------------------------------------


async def test_two_runs_name_exactly_what_changed(tmp_path: Path) -> None:
    site = SwitchableSite()

    async with Fleet({"/a": Route(), "/b": Route()}) as fleet, raw_server(site) as port:
        flaky = f"http://127.0.0.1:{port}/flaky"
        (tmp_path / "urls.txt").write_text(f"{fleet.url('/a')}\n{flaky}\n{fleet.url('/b')}\n")
        code, out, _ = await checker("check", "urls.txt", "--retries", "0", cwd=tmp_path)
        assert code == 0 and "no changes" not in out  # the first run has nothing to compare
        site.status = b"503 Service Unavailable"
        code, out, _ = await checker("check", "urls.txt", "--retries", "0", cwd=tmp_path)
    assert code == 1
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    since = report["results"][1]["checked_at"]
    assert out.startswith(
        f"1 change since the last run:\n  DOWN   {flaky} (line 2): 200 -> 503, down since {since}"
        ": status 503 not in 200-399\n"  # what decided it (a body check's 200 -> 200 said nothing)
    )
    ((change,),) = [report["changes"]]
    assert change["since"] == report["results"][1]["checked_at"]  # when it was seen down
    del change["since"]
    assert change.pop("detail") == "status 503 not in 200-399"
    assert change == {"url": flaky, "line": 2, "kind": "down", "before": 200, "after": 503}
    assert report["run"]["changes_total"] == 1 and report["run"]["previous_run"]
    runs = [
        json.loads(line) for line in (tmp_path / "reports" / "runs.jsonl").read_text().splitlines()
    ]
    assert [(r["up"], r["down"], r["changes"]) for r in runs] == [(3, 0, 0), (2, 1, 1)]
    assert runs[1]["lists"] == [str(tmp_path / "urls.txt")]

    # checker history: the URL's uptime, since when it is down, its recent
    # results (newest last), from the history database; and the runs.
    code, out, _ = await checker("history", flaky, cwd=tmp_path)
    lines = out.splitlines()
    assert code == 0 and lines[0] == flaky
    assert lines[1] == "  uptime: 24 h 50% (2 checks) · 7 d 50% (2 checks) · 30 d 50% (2 checks)"
    assert lines[2] == f"  down since {since}"  # its first down result, as in the alerts
    assert "up 200" in lines[4] and "DOWN 503" in lines[5] and len(lines) == 6
    code, out, _ = await checker("history", cwd=tmp_path)
    assert code == 0 and len(out.splitlines()) == 3
    code, _, err = await checker("history", "http://nowhere.example/", cwd=tmp_path)
    assert code == 2 and "not in the history of reports" in err


async def test_keep_prunes_after_a_run(tmp_path: Path) -> None:
    async with Fleet({"/": Route()}) as fleet:
        (tmp_path / "l.txt").write_text(fleet.url("/") + "\n")
        for _ in range(3):
            code, _, err = await checker(
                "check", "l.txt", "-q", "--keep", "2", "--format", "json", cwd=tmp_path
            )
            assert code == 0, err
            await asyncio.sleep(1.05)
    reports = sorted(p.name for p in (tmp_path / "reports").glob("status-*.json"))
    assert len(reports) == 2
    assert len((tmp_path / "reports" / "runs.jsonl").read_text().splitlines()) == 3


# --- Prometheus -------------------------------------------------------------------


async def test_prometheus_textfile(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/gone": Route(status=404)}) as fleet:
        quoted = fleet.url('/ok?q="x"')  # a quote in the URL, escaped in the label
        (tmp_path / "l.txt").write_text(
            f"{quoted}\n{fleet.url('/gone')}\n{fleet.dead_url()}\nnot a url\n"
        )
        code, _, err = await checker(
            "check", "l.txt", "--format", "prom", "-q", "--retries", "0", cwd=tmp_path
        )
        gone, dead = fleet.url("/gone"), fleet.dead_url()
    assert code == 1, err
    text = (tmp_path / "reports" / "latest.prom").read_text()
    esc = quoted.replace('"', '\\"')
    # One series per URL, by URL alone (a line number would change with edits).
    assert f'checker_up{{url="{esc}"}} 1\n' in text
    assert f'checker_http_status{{url="{gone}"}} 404\n' in text
    assert f'checker_error{{url="{dead}",category="refused"}} 1\n' in text
    assert "checker_run_down 2\n" in text and "# TYPE checker_up gauge\n" in text
    # The invalid line has no per-URL series, only its count.
    assert "not a url" not in text and "checker_run_invalid 1\n" in text
    (stamp,) = [x for x in text.splitlines() if x.startswith("checker_run_timestamp_seconds ")]
    assert abs(float(stamp.split()[1]) - datetime.now(UTC).timestamp()) < 60
    for sample in text.splitlines():
        if sample.startswith("checker_phase_seconds"):
            assert len(sample.rsplit(" ", 1)[1].partition(".")[2]) <= 6  # rounded
    # Families are contiguous: each TYPE line appears once, before its samples.
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families))
    samples = [
        line.split("{")[0].split()[0] for line in text.splitlines() if not line.startswith("#")
    ]
    assert samples == sorted(samples, key=families.index)


async def test_prometheus_has_each_check_of_a_csv_list_once(tmp_path: Path) -> None:
    # A CSV list checks one URL twice, with other expectations: each check is
    # a series of its own (named by the list), the file has no series twice.
    async with Fleet({"/ok": Route()}) as fleet:
        ok = fleet.url("/ok")
        (tmp_path / "l.csv").write_text(
            f"name,url,expect_status\nhome,{ok},200\nmoved,{ok},301\nplain,{fleet.url('/')},\n"
        )
        code, _, err = await checker(
            "check", "l.csv", "--format", "prom", "-q", "--retries", "0", cwd=tmp_path
        )
    assert code == 1, err
    text = (tmp_path / "reports" / "latest.prom").read_text()
    series = _series(text)
    assert len(series) == len(set(series)), text
    assert f'checker_up{{url="{ok}",name="home"}} 1\n' in text
    assert f'checker_up{{url="{ok}",name="moved"}} 0\n' in text
    assert f'checker_http_status{{url="{ok}",name="moved"}} 200\n' in text


# --- cron's bare environment ------------------------------------------------------


async def test_runs_in_crons_bare_environment(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route()}) as fleet:
        lst = tmp_path / "urls.txt"
        lst.write_text(fleet.url("/ok?q=ünïcode") + "\n", encoding="utf-8")
        out_dir = tmp_path / "out"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "checker",
            "check",
            str(lst),
            "--out",
            str(out_dir),
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},  # no HOME, LANG, TERM: cron's world
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert "checked 1 URL" in out.decode("utf-8")
    assert json.loads((out_dir / "latest.json").read_text(encoding="utf-8"))["results"][0]["ok"]


async def test_the_readmes_crontab_line_works_as_written(tmp_path: Path) -> None:
    """The crontab line in the README, run as cron would: its command, with
    /srv/checker moved to a temporary folder, in a bare environment from /."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    line = next(
        ln for ln in readme.splitlines() if ln.startswith("*/5 * * * * ") and "checker check" in ln
    )
    command = line.split(maxsplit=5)[5]
    assert command.startswith("/srv/checker/.venv/bin/checker check")
    srv = tmp_path / "srv"
    (srv / "data").mkdir(parents=True)
    async with Fleet({"/": Route()}) as fleet:
        (srv / "data" / "urls.txt").write_text(fleet.url("/") + "\n")
        argv = command.replace("/srv/checker", str(srv)).split()
        argv[0:1] = [sys.executable, "-m", "checker"]  # this checkout's checker, not /srv's
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out == b"" and err == b""  # --quiet: cron mails nothing on a good run
    assert json.loads((srv / "reports" / "latest.json").read_text())["run"]["up"] == 1


def test_environment_variables_stand_in_for_the_alert_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from checker.cli import build_parser

    monkeypatch.setenv("CHECKER_NOTIFY_WEBHOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("CHECKER_SMTP_PORT", "2525")
    monkeypatch.setenv("CHECKER_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("CHECKER_SMTP_STARTTLS", "1")
    args = build_parser().parse_args(["check", "l.txt"])
    assert args.notify_webhook == "http://127.0.0.1:9/hook"
    assert (args.smtp_port, args.smtp_password, args.smtp_starttls) == (2525, "s3cret", True)
    assert args.smtp_host == "localhost" and args.notify_email is None
    # An option given on the command line wins over the variable.
    args = build_parser().parse_args(["check", "l.txt", "--smtp-port", "25"])
    assert args.smtp_port == 25


async def test_report_re_renders_html_and_csv_from_a_stored_json_report(tmp_path: Path) -> None:
    async with Fleet({"/ok": Route(), "/gone": Route(status=404)}) as fleet:
        (tmp_path / "l.txt").write_text(f"{fleet.url('/ok')}\n{fleet.url('/gone')}\n")
        code, _, _ = await checker("check", "l.txt", "-q", cwd=tmp_path)
        gone = fleet.url("/gone")
    assert code == 1
    (report,) = (tmp_path / "reports").glob("status-*.json")
    csv_before = report.with_suffix(".csv").read_bytes()
    report.with_suffix(".csv").unlink()
    report.with_suffix(".html").unlink()
    code, out, err = await checker("report", str(report.relative_to(tmp_path)), cwd=tmp_path)
    assert code == 1, err  # the stored report has a down URL
    assert out.startswith("reports: ")
    assert report.with_suffix(".csv").read_bytes() == csv_before
    page = report.with_suffix(".html").read_text()
    assert gone in page.replace("<wbr>", "") and "1 of 2 down" in page


async def test_a_stopped_run_is_neither_down_nor_a_baseline(tmp_path: Path) -> None:
    # Run 1 complete, all up. Run 2 stopped by SIGTERM with most rows never
    # checked: no "down" change for them. Run 3 complete, all up: compared
    # with run 1, not with the stopped run, so no "up" change either.
    async with Fleet({"/ok": Route(), "/slow": Route(delay=0.4)}) as fleet:
        lines = [fleet.url("/ok")] + [fleet.url(f"/slow?{i}") for i in range(16)]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        args = ("check", "urls.txt", "--concurrency", "4", "--per-host", "4", "--format", "json")
        code, out, err = await checker(*args, cwd=tmp_path)
        assert code == 0, err
        code, out, err = await checker(
            *args,
            cwd=tmp_path,
            stop_when=lambda: sum(journal_rows(tmp_path / "reports")) >= 1,
            sig=15,
        )
        assert code == 143, err
        stopped = json.loads((tmp_path / "reports" / "latest.json").read_text())
        assert stopped["run"]["interrupted"] is True
        assert stopped["run"]["not_checked"] >= 4 and stopped["run"]["down"] == 0
        assert stopped["changes"] == [] and stopped["run"]["changes_total"] == 0
        assert "not checked, as the run was stopped" in out
        code, out, err = await checker(*args, cwd=tmp_path)
        assert code == 0, err
        third = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert third["changes"] == [] and third["run"]["changes_total"] == 0
    assert third["run"]["previous_run"] != stopped["run"]["started_at"]
    assert "no changes since the last run" in out


async def test_runs_in_the_same_second_get_their_own_reports(tmp_path: Path) -> None:
    # The lock keeps runs apart, but two can start within one second: each
    # keeps its own report files, in order, and the run index names each once.
    async with raw_server(SwitchableSite()) as port:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
        for _ in range(3):
            code, _, err = await checker("check", "urls.txt", "-q", cwd=tmp_path)
            assert code == 0, err
    reports = tmp_path / "reports"
    runs = [json.loads(line) for line in (reports / "runs.jsonl").read_text().splitlines()]
    names = [r["reports"][1] for r in runs]  # the .json of each run
    assert len(set(names)) == 3
    assert all((reports / n).exists() for n in names)
    newest = json.loads((reports / "latest.json").read_text())
    assert newest["run"]["started_at"] == runs[-1]["started_at"]


def test_later_runs_in_one_second_sort_after_the_first() -> None:
    from checker.store.prune import stamp_order

    stamps = ["20261130T083131Z", "20261130T083131Z2", "20261130T083131Z10", "20261130T083132Z"]
    assert sorted(reversed(stamps), key=stamp_order) == stamps


def test_a_taken_report_name_gets_the_next_number(tmp_path: Path) -> None:
    from checker.run import report_base

    moment = datetime(2026, 11, 30, 8, 31, 31, tzinfo=UTC)
    assert report_base(str(tmp_path), moment) == str(tmp_path / "status-20261130T083131Z")
    (tmp_path / "status-20261130T083131Z.json").write_text("{}")
    assert report_base(str(tmp_path), moment) == str(tmp_path / "status-20261130T083131Z2")
    (tmp_path / "status-20261130T083131Z2.journal.jsonl").write_text("")
    assert report_base(str(tmp_path), moment) == str(tmp_path / "status-20261130T083131Z3")


def test_prometheus_leaves_unchecked_rows_out() -> None:
    from checker.reports.prom_report import render

    rows = [
        {"url": "https://a.example/", "ok": True, "status": 200, "error": None, "total_ms": 12.3},
        {"url": "https://b.example/", "ok": False, "status": None, "error": "interrupted"},
    ]
    run = {"total": 2, "up": 1, "down": 0, "not_checked": 1, "finished_at": "2026-11-30T08:00:00Z"}
    text = b"".join(render(run, lambda: iter(rows))).decode()
    assert 'checker_up{url="https://a.example/"} 1\n' in text
    assert "b.example" not in text  # absent, not 0: a stopped run is not a site down
    assert "checker_run_not_checked 1\n" in text
    assert "checker_run_timestamp_seconds 1796025600.0\n" in text
    assert 'checker_phase_seconds{url="https://a.example/",phase="total"} 0.0123\n' in text


def _series(text: str) -> list[str]:
    """The samples' metric and labels (what makes a series), in order."""
    return [line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(
    ("names", "sources", "labels"),
    [
        (("home", "login"), ("l.csv", "l.csv"), ('name="home"', 'name="login"')),
        ((None, "login"), ("l.csv", "l.csv"), ('line="2"', 'line="5"')),
        (("same", "same"), ("l.csv", "l.csv"), ('line="2"', 'line="5"')),
        ((None, None), ("a.csv", "b.csv"), ('line="a.csv:2"', 'line="b.csv:5"')),
    ],
)
def test_prometheus_tells_apart_the_checks_of_one_url(
    names: tuple[str | None, str | None], sources: tuple[str, str], labels: tuple[str, str]
) -> None:
    # The same URL with other expectations is two checks: one series each,
    # or node_exporter refuses the file (a series twice). A URL checked once
    # keeps its one label.
    from checker.reports.prom_report import render

    url = "https://a.example/"
    rows: list[dict[str, object]] = [
        {"url": url, "line": 2, "source": sources[0], "name": names[0], "ok": True},
        {"url": "https://b.example/", "line": 3, "source": sources[0], "name": "b", "ok": True},
        {"url": url, "line": 5, "source": sources[1], "name": names[1], "ok": False},
    ]
    for row in rows:
        row.update(status=200 if row["ok"] else 500, error=None, total_ms=5.0)
    run = {"total": 3, "up": 2, "down": 1, "finished_at": "2026-11-30T08:00:00Z"}
    text = b"".join(render(run, lambda: iter(rows))).decode()
    series = _series(text)
    assert len(series) == len(set(series)), text
    assert f'checker_up{{url="{url}",{labels[0]}}} 1\n' in text
    assert f'checker_up{{url="{url}",{labels[1]}}} 0\n' in text
    assert f'checker_phase_seconds{{url="{url}",{labels[1]},phase="total"}} 0.005\n' in text
    assert 'checker_up{url="https://b.example/"} 1\n' in text


def test_prometheus_says_which_urls_are_degraded() -> None:
    from checker.reports.prom_report import render

    rows: list[dict[str, object]] = [
        {"url": f"https://{host}.example/", "ok": state != "down", "state": state}
        | {"status": 200 if state != "down" else 500, "error": None}
        for host, state in (("a", "up"), ("b", "degraded"), ("c", "down"))
    ]
    run = {"total": 3, "up": 2, "degraded": 1, "down": 1, "finished_at": "2026-11-30T08:00:00Z"}
    text = b"".join(render(run, lambda: iter(rows))).decode()
    assert 'checker_degraded{url="https://a.example/"} 0\n' in text
    assert 'checker_degraded{url="https://b.example/"} 1\n' in text
    assert 'checker_degraded{url="https://c.example/"}' not in text  # down is checker_up 0
    assert "checker_run_degraded 1\n" in text


async def test_history_finds_a_url_in_any_spelling(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        (tmp_path / "urls.txt").write_text(f"HTTP://127.0.0.1:{port}/a/../ok\n")
        code, _, err = await checker("check", "urls.txt", "-q", cwd=tmp_path)
        assert code == 0, err
    for spelling in (f"http://127.0.0.1:{port}/ok", f"HTTP://127.0.0.1:{port}/a/../ok"):
        code, out, err = await checker("history", spelling, cwd=tmp_path)
        assert code == 0, err
        assert "up 200" in out
    code, _, err = await checker("history", f"http://127.0.0.1:{port}/other", cwd=tmp_path)
    assert code == 2 and "not in the history of reports" in err
    # Without the database (a folder from before it), the JSON reports answer.
    (tmp_path / "reports" / "history.sqlite3").unlink()
    code, out, err = await checker("history", f"http://127.0.0.1:{port}/ok", cwd=tmp_path)
    assert code == 0 and "up 200" in out, err
