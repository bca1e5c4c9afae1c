"""Redirects and what a list row says of them: a row expecting a redirect
takes it as its answer, and the list's credentials stay with the URL's own
origin."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from checker.expect import DEFAULT_STATUSES, parse_statuses
from tests.helpers import raw_server, read_request
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)


def test_which_expected_statuses_name_a_redirect() -> None:
    assert not DEFAULT_STATUSES.names_redirect(301)  # 200-399: follow
    for text in ("301", "3xx", "301-302", "300-399", "301,404"):
        assert parse_statuses(text).names_redirect(301), text
    # With a 2xx too, the final page is what is asked about (found by a
    # review: "200,301" with a body check judged the 301's own body).
    for text in ("200-302", "200,301-302", "2xx,3xx", "302", "404"):
        assert not parse_statuses(text).names_redirect(301), text


def _row(tmp_path: Path) -> dict[str, dict[str, object]]:
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    return {r["name"]: r for r in report["results"]}


async def test_a_row_expecting_a_redirect_takes_it_as_its_answer(tmp_path: Path) -> None:
    # Found by a review: redirects were always followed and the final status
    # judged, so `expect_status 301` (or 3xx, or the README's own
    # 200,301-302) could never match: a working redirect was down.
    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            path = head.split(b" ")[1]
            if path == b"/old":
                writer.write(b"HTTP/1.1 301 Moved\r\nLocation: /\r\nContent-Length: 0\r\n\r\n")
            elif path == b"/gone":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async with raw_server(site) as port:
        base = f"http://127.0.0.1:{port}"
        rows = [
            ("moved", f"{base}/old", "301"),
            ("class", f"{base}/old", "3xx"),
            ("either", f"{base}/old", "200,301-302"),  # a 2xx too: followed
            ("followed", f"{base}/old", ""),  # the default: followed to its 200
            ("wrong", f"{base}/gone", "301"),  # a 302 is not the 301 asked for
        ]
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(["name", "url", "expect_status"])
        out.writerows(rows)
        (tmp_path / "checks.csv").write_text(buf.getvalue())
        code, _, err = await checker("check", "checks.csv", "-q", "--retries", "0", cwd=tmp_path)
    assert code == 1, err
    got = _row(tmp_path)
    for name in ("moved", "class"):
        row = got[name]
        assert (row["state"], row["status"], row["redirects"]) == ("up", 301, []), row
    for name in ("followed", "either"):
        assert (got[name]["state"], got[name]["status"]) == ("up", 200)
        assert len(got[name]["redirects"]) == 1  # type: ignore[arg-type]
    assert (got["wrong"]["state"], got["wrong"]["status"]) == ("down", 200)


async def test_credentials_stay_with_the_urls_own_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by a review: the list's Authorization, Cookie and other headers
    # went to whatever host a redirect named (curl and browsers drop
    # Authorization and Cookie when the host changes).
    monkeypatch.setenv("API_TOKEN", "s3cret")
    seen: dict[str, bytes] = {}

    async def other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["other"] = await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with raw_server(other) as other_port:

        async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head = await read_request(reader)
                if head.startswith(b"GET /here ") or head.startswith(b"HEAD /here "):
                    seen["same"] = head
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                else:
                    to = f"http://127.0.0.1:{other_port}/"
                    if b"/local" in head.split(b"\r\n")[0]:
                        to = "/here"
                    moved = f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                    writer.write(moved.encode())
                await writer.drain()

        async with raw_server(first) as port:
            base = f"http://127.0.0.1:{port}"
            (tmp_path / "checks.csv").write_text(
                "name,url,auth,headers\n"
                f"away,{base}/away,bearer:API_TOKEN,X-Env: prod\n"
                f"local,{base}/local,bearer:API_TOKEN,X-Env: prod\n"
            )
            code, _, err = await checker(
                "check",
                "checks.csv",
                "-q",
                "--retries",
                "0",
                "-H",
                "Cookie: s=${API_TOKEN}",
                cwd=tmp_path,
            )
    assert code == 0, err
    got = _row(tmp_path)
    assert got["away"]["state"] == "up" and got["local"]["state"] == "up"
    away = seen["other"].lower()
    assert b"s3cret" not in away and b"authorization" not in away and b"cookie" not in away
    assert b"x-env: prod" in away  # other headers go on, as curl sends them
    assert b"authorization: bearer s3cret" in seen["same"].lower()  # the same origin: kept
    assert any(
        "not sent to http://127.0.0.1:" in w
        for w in got["away"]["warnings"]  # type: ignore[attr-defined]
    )


async def test_a_redirect_without_a_location_says_so(tmp_path: Path) -> None:
    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with raw_server(site) as port:
        (tmp_path / "checks.csv").write_text(f"name,url\nbare,http://127.0.0.1:{port}/\n")
        await checker("check", "checks.csv", "-q", "--retries", "0", cwd=tmp_path)
    row = _row(tmp_path)["bare"]
    assert row["status"] == 301
    assert row["warnings"] == ["301 without a Location: nothing to follow"]


def test_credentials_go_on_when_the_same_host_upgrades_to_https() -> None:
    from checker.check import _upgraded
    from checker.url import parse_url

    http = parse_url("http://api.example/v1")
    assert _upgraded(http, parse_url("https://api.example/v1"))
    assert not _upgraded(http, parse_url("https://api.example:8443/v1"))
    assert not _upgraded(parse_url("http://api.example:8080/"), parse_url("https://api.example/"))
    assert not _upgraded(http, parse_url("https://other.example/v1"))
    assert not _upgraded(parse_url("https://api.example/"), parse_url("http://api.example/"))
