"""The HTML report in a real headless browser: no errors, sorting, filtering, a screenshot.

Chromium is driven with the Chrome DevTools Protocol over `--remote-debugging-pipe`:
the browser reads commands from fd 3 and writes replies and events to fd 4, one
JSON message per NUL-terminated record. No port, no websocket, no dependency.
CI installs Debian's `chromium` package; without it this module is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker.reports.html_report import Page, encode, render, tail
from checker.store.model import Incident, Trend
from tests.test_html_report import sample_changes, sample_rows, sample_run

CHROMIUM = shutil.which("chromium")
DEADLINE_S = 25.0  # the whole test, chromium's start included
WIDTH, HEIGHT = 1440, 900  # a laptop screen

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI: apt-get install -y chromium)"
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No network here: nothing may try to phone home, or wait for it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers have a small /dev/shm
    "--remote-debugging-pipe",
)


class CDPError(Exception):
    pass


class Browser:
    """A minimal CDP client over the debugging pipe, every read bounded by a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self.wfd = to_browser
        self.rfd = from_browser
        self.deadline = time.monotonic() + DEADLINE_S
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._id = 0

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if not ready:
                continue
            data = os.read(self.rfd, 1 << 16)
            if not data:
                raise CDPError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self._buf += data
        raw, _, self._buf = self._buf.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """One command; events that arrive meanwhile are kept in `events`."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data) :]
        while True:
            reply = self._read_message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event["method"] == method:
                return self.events.pop(i)
        while True:
            message = self._read_message()
            if message.get("method") == method:
                return message
            if "method" in message:
                self.events.append(message)

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[dict[str, Any]]:
        """Exceptions, console errors and log errors seen so far."""
        bad = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if (
                method == "Runtime.exceptionThrown"
                or (method == "Runtime.consoleAPICalled" and params.get("type") == "error")
                or (method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error")
            ):
                bad.append(event)
        return bad


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[Browser]:
    """Start chromium with the debugging pipe on fds 3 and 4; kill it (and its
    helpers: its own process group) however the test ends."""
    assert CHROMIUM is not None
    to_r, to_w = os.pipe()  # we write commands, chromium reads them on fd 3
    from_r, from_w = os.pipe()  # chromium writes on fd 4, we read
    # Move the child's ends to free fds above 4 first, so that placing them on 3
    # and 4 cannot overwrite one with the other. (subprocess cannot renumber fds:
    # pass_fds keeps their numbers.)
    child_r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
    child_w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(to_r)
    os.close(from_w)

    def on_fds_3_and_4() -> None:  # in the child, between fork and exec
        os.dup2(child_r, 3)  # dup2 clears close-on-exec: these two survive exec
        os.dup2(child_w, 4)

    log = (tmp_path / "chromium.log").open("wb")
    try:
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Not close_fds: it would close 3 and 4 after preexec_fn, and
            # pass_fds=(3, 4) fails when the parent has nothing open there. Python
            # opens every fd close-on-exec (PEP 446), so nothing else leaks in.
            close_fds=False,
            preexec_fn=on_fds_3_and_4,
            start_new_session=True,
            # Its crash database and caches go in tmp_path too, not in ~/.config.
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)},
        )
    except BaseException:
        for fd in (to_w, from_r):
            os.close(fd)
        log.close()
        raise
    finally:
        os.close(child_r)
        os.close(child_w)
    try:
        yield Browser(proc, to_w, from_r)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        os.close(to_w)
        os.close(from_r)
        log.close()


def open_page(
    browser: Browser, report: Path, width: int, height: int, mobile: bool, network: bool = False
) -> str:
    """A new tab at `width` x `height` with `report` loaded; its session id.
    With `network`, the requests the page makes are recorded too."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session: str = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", *(("Network",) if network else ())):
        browser.send(f"{domain}.enable", session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=mobile,
    )
    browser.send("Page.navigate", session, url=report.as_uri())
    browser.wait_for("Page.loadEventFired")
    return session


# Column values of the table, top to bottom, of the rows that are displayed
# (rendered boxes, not just the `hidden` flag: the page's CSS must honour it).
COLUMN_JS = """
(() => {
  const th = document.querySelector('#rows th[data-col="%s"]');
  return Array.from(document.querySelectorAll("#rows tbody tr"))
    .filter((r) => r.getClientRects().length > 0)
    .map((r) => r.cells[th.cellIndex].textContent);
})()
"""
CLICK_JS = """document.querySelector('#rows th[data-col="%s"] button').click()"""


def test_report_in_chromium(tmp_path: Path) -> None:
    started = time.monotonic()
    report = tmp_path / "report.html"
    rows = sample_rows()
    report.write_bytes(b"".join(render(sample_run(), lambda: iter(rows), sample_changes())))

    with chromium(tmp_path) as browser:
        session = open_page(browser, report, WIDTH, HEIGHT, mobile=False, network=True)

        assert browser.evaluate(session, "document.querySelectorAll('#rows tbody tr').length") == 14
        assert browser.evaluate(session, "document.querySelectorAll('svg.chart').length") == 2
        # An injected <script> would have run by now; its text must be in a cell instead.
        assert browser.evaluate(session, "document.body.innerText.includes('<script>alert(1)')")

        # Sorting: numbers as numbers, empty cells last, both ways.
        before = browser.evaluate(session, COLUMN_JS % "total_ms")
        browser.evaluate(session, CLICK_JS % "total_ms")
        asc = browser.evaluate(session, COLUMN_JS % "total_ms")
        numbers = [float(v) for v in asc if v]
        assert numbers == sorted(numbers) and len(numbers) == 12
        assert asc[-2:] == ["", ""]  # the DNS failure and the invalid line
        assert sorted(asc) == sorted(before)
        assert (
            browser.evaluate(
                session, "document.querySelector('#rows th[data-col=\"total_ms\"]').ariaSort"
            )
            == "ascending"
        )
        browser.evaluate(session, CLICK_JS % "total_ms")
        desc = browser.evaluate(session, COLUMN_JS % "total_ms")
        assert [float(v) for v in desc if v] == sorted(numbers, reverse=True)
        assert desc[0] == "10000" and desc[-2:] == ["", ""]
        browser.evaluate(session, CLICK_JS % "url")
        urls = browser.evaluate(session, COLUMN_JS % "url")
        assert urls == sorted(urls, key=str.lower)

        # Filtering: a substring of the row text, then "only down" on top.
        browser.evaluate(
            session,
            """(async () => {
                 const q = document.getElementById("q");
                 q.value = "EXAMPLE.COM";
                 q.dispatchEvent(new Event("input"));
                 await new Promise((ok) => setTimeout(ok, 400));
               })()""",
        )
        matched = browser.evaluate(session, COLUMN_JS % "url")
        assert len(matched) == 6 and all("example.com" in u for u in matched)
        browser.evaluate(session, "document.getElementById('only-down').click()")
        down = browser.evaluate(session, COLUMN_JS % "url")
        assert sorted(down) == ["https://broken.example.com/", "https://gone.example.com/page"]
        assert browser.evaluate(session, "document.getElementById('shown').textContent") == (
            "2 of 14 rows"
        )
        browser.evaluate(
            session,
            """(async () => {
                 const q = document.getElementById("q");
                 q.value = "";
                 q.dispatchEvent(new Event("input"));
                 await new Promise((ok) => setTimeout(ok, 400));
               })()""",
        )
        assert len(browser.evaluate(session, COLUMN_JS % "url")) == 5  # every down row
        browser.evaluate(session, "document.getElementById('only-down').click()")
        browser.evaluate(session, CLICK_JS % "line")  # input order again, for the picture

        browser.evaluate(session, "window.scrollTo(0, 0)")
        shot = browser.send("Page.captureScreenshot", session, format="png")
        # The whole page: a window as tall as the page, since rows off screen
        # are not drawn (content-visibility) even by captureBeyondViewport.
        # Twice: rows drawn for the first time take their real height.
        for _ in range(2):
            size = browser.send("Page.getLayoutMetrics", session)["cssContentSize"]
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=WIDTH,
                height=min(int(size["height"]), 8000),
                deviceScaleFactor=1,
                mobile=False,
            )
            browser.evaluate(session, "new Promise((ok) => requestAnimationFrame(() => ok()))")
        full = browser.send("Page.captureScreenshot", session, format="png")
        browser.send("Runtime.evaluate", session, expression="0")  # flush pending events

        assert browser.errors() == []
        # The page fetched nothing but itself: the CSP and the renderer agree.
        requested = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        assert all(u.startswith(("file:", "data:")) for u in requested), requested
        # And the CSP is in force: a fetch the page might be tricked into is refused.
        blocked = browser.evaluate(
            session,
            """new Promise((ok) => {
                 document.addEventListener("securitypolicyviolation",
                   (e) => ok(e.effectiveDirective), {once: true});
                 const img = document.createElement("img");
                 img.src = "http://127.0.0.1:9/x.png";
                 document.body.append(img);
               })""",
        )
        assert blocked == "img-src"

    for name, data in (("html-report.png", shot), ("html-report-full.png", full)):
        png = base64.b64decode(data["data"])
        path = tmp_path / name
        path.write_bytes(png)
        print(f"\nscreenshot of the HTML report: {path}")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 10_000
    assert time.monotonic() - started < 30


def test_report_on_a_phone(tmp_path: Path) -> None:
    # 390 px wide (a phone held upright): nothing may scroll sideways, neither
    # the page nor the table's own box; URLs wrap at their separators, and a
    # URL with none (a long query) wraps anyway, in the tables of slowest
    # checks too.
    report = tmp_path / "report.html"
    rows = sample_rows()
    long = dict(rows[0], url="https://long.example/x?q=" + "a" * 150, total_ms=99_000.0)
    rows.append(long)
    report.write_bytes(b"".join(render(sample_run(), lambda: iter(rows), sample_changes())))
    with chromium(tmp_path) as browser:
        session = open_page(browser, report, 390, 844, mobile=True)
        widths = browser.evaluate(
            session,
            """[document.documentElement.scrollWidth, document.body.scrollWidth,
                document.querySelector('.scroll').scrollWidth,
                document.querySelector('.scroll').clientWidth,
                Math.max(...[...document.querySelectorAll('.card')].map(c => c.scrollWidth))]""",
        )
        page, body, box, box_client, card = widths
        assert browser.evaluate(session, "document.body.innerText.includes('aaaaaaaa')")
        assert page <= 390 and body <= 390, widths
        assert box <= box_client, widths
        assert card <= 390, widths
        shot = browser.send("Page.captureScreenshot", session, format="png")
        assert browser.errors() == []
    png = base64.b64decode(shot["data"])
    path = tmp_path / "html-report-phone.png"
    path.write_bytes(png)
    print(f"\nscreenshot of the HTML report on a phone: {path}")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def trends_page(path: Path) -> None:
    """The sample rows with a history: trends, what is down now, incidents."""
    rows = sample_rows()
    run = sample_run()
    page = Page(run, sum(1 for r in rows if not r.get("ok")))
    table = []
    for seq, row in enumerate(rows):
        ok = bool(row.get("ok"))
        recent = " ".join(
            f"{int(i % 7 != 3 or ok)}:{20.0 + (i * 37 % 90)!r}" for i in range(20)
        )  # (as the history keeps them: model.Trend)
        trend = Trend(
            (99.31, 99.8, 99.95) if ok else (41.5, 88.0, 97.12),
            recent,
            None if ok else "2026-11-24T19:02:11.000Z",
        )
        html_row = page.row(seq, row, trend)
        if html_row is not None:
            table.append(html_row)
    incidents = [
        Incident(
            "https://shop.example.com/checkout?session=abcdef&step=payment",
            "2026-11-24T19:02:11.000Z",
            None,
            "503",
            "Service Unavailable",
        ),
        Incident(
            "https://api.example.com/v1/health",
            "2026-11-23T03:10:00.000Z",
            "2026-11-23T03:25:02.000Z",
            "timeout",
            "no complete response within 10s",
        ),
    ]
    path.write_bytes(page.head(sample_changes(), incidents) + encode("".join(table)) + tail())


@pytest.mark.parametrize(("width", "height", "mobile"), [(WIDTH, HEIGHT, False), (390, 844, True)])
def test_trends_page_in_chromium(tmp_path: Path, width: int, height: int, mobile: bool) -> None:
    report = tmp_path / "report.html"
    trends_page(report)
    with chromium(tmp_path) as browser:
        session = open_page(browser, report, width, height, mobile=mobile)
        found = browser.evaluate(
            session,
            """[document.querySelectorAll('.down-now li').length,
                document.querySelectorAll('svg.hist').length,
                document.documentElement.scrollWidth,
                document.querySelector('.scroll').scrollWidth -
                  document.querySelector('.scroll').clientWidth]""",
        )
        down_now, strips, page_width, box_overflow = found
        assert down_now >= 1 and strips == len(sample_rows())
        if mobile:
            assert page_width <= width and box_overflow <= 0, found
        # The uptime column sorts by its 24 h figure.
        browser.evaluate(session, CLICK_JS % "uptime")
        column = browser.evaluate(session, COLUMN_JS % "uptime")
        firsts = [float(text.split(" · ")[0]) for text in column]
        assert firsts == sorted(firsts)
        shot = browser.send("Page.captureScreenshot", session, format="png")
        assert browser.errors() == []
    png = base64.b64decode(shot["data"])
    path = tmp_path / f"trends-{width}.png"
    path.write_bytes(png)
    print(f"\nscreenshot of the page with trends: {path}")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
