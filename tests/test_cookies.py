"""A check's own cookies across its redirects: a cookie gate is followed as a
browser follows it, a real loop is still one, and nothing goes where it was
not set."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from checker.http.cookies import Jar
from checker.url import parse_url
from tests.helpers import raw_server, read_request
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)

A = parse_url("https://a.example/")
A_PLAIN = parse_url("http://a.example/x")
B = parse_url("https://b.example/")


def test_the_jar_keeps_what_a_host_set_for_that_host() -> None:
    jar = Jar()
    assert jar.header(A) is None
    jar.take(A, ["sid=abc123; Path=/; HttpOnly", "lang=en", "tok=s; Secure"])
    assert jar.header(A) == "sid=abc123; lang=en; tok=s"
    assert jar.header(A_PLAIN) == "sid=abc123; lang=en"  # Secure: https only
    assert jar.header(B) is None  # host-only: never another host
    jar.take(A, ["lang=fr", "sid=; Max-Age=0", "tok=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT"])
    assert jar.header(A) == "lang=fr"
    for junk in ("no-equals", "=value", "bad\x01=1"):
        jar.take(B, [junk])
    assert jar.header(B) is None


def test_the_jar_says_when_it_changed() -> None:
    jar = Jar()
    before = jar.state()
    jar.take(A, ["sid=1"])
    after = jar.state()
    assert before != after
    jar.take(A, ["sid=1"])
    assert jar.state() == after


async def test_a_cookie_gate_is_followed_and_a_loop_is_still_a_loop(tmp_path: Path) -> None:
    # Found by a review: a site that sets a cookie and redirects to itself
    # (a bot check, a session gate) was down, "redirect loop"; a browser,
    # and curl with its cookies on, get 200 after one redirect.
    seen: list[bytes] = []

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            seen.append(head)
            path = head.split(b" ")[1]
            has = b"\r\ncookie: sid=abc123" in head.lower()
            if path.startswith(b"/gate") and has:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            elif path.startswith(b"/gate"):
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: /gate\r\nSet-Cookie: sid=abc123; Path=/\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
            else:  # /loop: the same cookie again and again
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nSet-Cookie: x=1\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
            await writer.drain()

    async with raw_server(site) as port:
        base = f"http://127.0.0.1:{port}"
        (tmp_path / "urls.txt").write_text(f"{base}/gate\n{base}/loop\n")
        code, _, err = await checker("check", "urls.txt", "-q", "--retries", "0", cwd=tmp_path)
    assert code == 1, err
    gate, loop = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert (gate["state"], gate["status"], len(gate["redirects"])) == ("up", 200, 1), gate
    assert (loop["state"], loop["error"]) == ("down", "too_many_redirects"), loop
    assert "redirect loop" in loop["error_detail"]
    # The first request of each check went without cookies: nothing carried
    # from one check to another.
    firsts = [h for h in seen if b"cookie" not in h.lower()]
    assert any(h.startswith(b"HEAD /gate") for h in firsts)
