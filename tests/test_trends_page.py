"""The page's memory: what is down now and since when, the incidents, each
URL's uptime and last results, from the history database over several runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import SwitchableSite, raw_server
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)


async def test_down_now_incidents_uptime_and_last_results(tmp_path: Path) -> None:
    steady, flaky = SwitchableSite(), SwitchableSite()
    async with raw_server(steady) as steady_port, raw_server(flaky) as flaky_port:
        steady_url = f"http://127.0.0.1:{steady_port}/"
        flaky_url = f"http://127.0.0.1:{flaky_port}/shop"
        (tmp_path / "urls.txt").write_text(f"{steady_url}\n{flaky_url}\n")
        # up, down, down, up, down: one incident over, one still open.
        for status in (b"200 OK", b"503 Nope", b"503 Nope", b"200 OK", b"503 Nope"):
            flaky.status = status
            code, _, err = await checker("check", "urls.txt", "-q", "--retries", "0", cwd=tmp_path)
            assert code in (0, 1), err
    runs = [
        json.loads(line) for line in (tmp_path / "reports" / "runs.jsonl").read_text().splitlines()
    ]
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    page = (tmp_path / "reports" / "latest.html").read_text().replace("<wbr>", "")

    # Down now, first: the URL, what is wrong, since its first down result.
    down_now = page[
        page.index("<h2>Down now</h2>") : page.index("</section>", page.index("Down now"))
    ]
    since = report["results"][1]["checked_at"]
    assert flaky_url in down_now and steady_url not in down_now
    assert "HTTP 503" in down_now
    assert since[:19].replace("T", " ") in down_now
    assert page.index("Down now") < page.index("Every URL")

    # Incidents: the one that ended (run 2 to run 4), and the open one.
    incidents = page[page.index("Incidents, last 30 days") :]
    incidents = incidents[: incidents.index("</table>")]
    rows = re.findall(r"<tr(?: class=bad)?><td class=\"url\">(.*?)</tr>", incidents)
    assert len(rows) == 2
    assert "still down" in rows[0]  # the newest first
    assert runs[1]["started_at"][:10] in rows[1] and "still down" not in rows[1]

    # The table: uptime over 24 h, 7 d, 30 d (2 of 5 up), and the last results.
    table = page[page.index('<table id="rows">') :]
    flaky_row = next(r for r in table.split("<tr class=") if flaky_url in r and "<td>" in r)
    assert ">40 · 40 · 40</td>" in flaky_row
    assert 'aria-label="last 5: 2 up, 3 down' in flaky_row
    steady_row = next(r for r in table.split("<tr class=") if steady_url in r and "<td>" in r)
    assert ">100 · 100 · 100</td>" in steady_row
    assert 'aria-label="last 5: 5 up, 0 down' in steady_row


async def test_a_folders_first_run_lists_what_is_down_now(tmp_path: Path) -> None:
    # Found by a review: the first run (and so the demo's page) said "2 of 3
    # down" and listed nothing under "Down now": there was no history yet.
    site = SwitchableSite()
    site.status = b"503 Nope"
    async with raw_server(site) as port:
        url = f"http://127.0.0.1:{port}/shop"
        (tmp_path / "urls.txt").write_text(f"{url}\n")
        code, _, err = await checker("check", "urls.txt", "-q", "--retries", "0", cwd=tmp_path)
    assert code == 1, err
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    page = (tmp_path / "reports" / "latest.html").read_text().replace("<wbr>", "")
    down_now = page[
        page.index("<h2>Down now</h2>") : page.index("</section>", page.index("Down now"))
    ]
    assert url in down_now and "HTTP 503" in down_now
    assert report["results"][0]["checked_at"][:19].replace("T", " ") in down_now
