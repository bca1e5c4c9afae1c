"""Whole checks against local servers: the client, redirects, HEAD->GET, deadlines, TLS."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
import trustme

from checker.check import attempt_check
from checker.demo.fleet import Fleet, Route
from checker.url import parse_url
from tests.helpers import check_options, raw_server, read_request

pytestmark = pytest.mark.timeout(30)


async def test_head_request_bytes_and_up() -> None:
    async with Fleet({"/x": Route(headers=(("Server", "unit"),))}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/x?q=1")), check_options())
        host = f"127.0.0.1:{fleet.http_port}"
    assert att.ok and att.error is None
    assert att.head is not None and att.head.status == 200 and att.head.get("server") == "unit"
    assert att.method == "HEAD" and att.head_status is None
    (req,) = fleet.requests
    assert (
        req.raw_head
        == (
            f"HEAD /x?q=1 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: checker/test\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    assert att.trace.connect_ms is not None and att.trace.ttfb_ms is not None
    assert att.trace.dns_ms is None  # an IP literal is not resolved


async def test_head_405_is_confirmed_with_get() -> None:
    async with Fleet({"/h": Route(head_status=405)}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/h")), check_options())
    assert att.ok
    assert (att.method, att.head_status, att.head and att.head.status) == ("GET", 405, 200)
    assert [r.method for r in fleet.requests] == ["HEAD", "GET"]


async def test_down_status_is_confirmed_and_stays_down() -> None:
    async with Fleet({"/gone": Route(status=404)}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/gone")), check_options())
    assert not att.ok and att.error is None
    assert (att.method, att.head_status, att.head and att.head.status) == ("GET", 404, 404)


async def test_method_get_sends_only_get() -> None:
    async with Fleet({"/": Route()}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/")), check_options(method="GET"))
    assert att.ok and [r.method for r in fleet.requests] == ["GET"]


async def test_redirects_followed_and_recorded() -> None:
    async with Fleet({"/d": Route()}) as other:
        routes = {
            "/a": Route(status=301, location="b"),
            "/b": Route(status=302, location="/c?x=1"),
            "/c": Route(status=307, location=other.url("/d")),  # to another host
        }
        async with Fleet(routes) as fleet:
            att = await attempt_check(parse_url(fleet.url("/a")), check_options())
            expected = [
                (301, fleet.url("/b")),
                (302, fleet.url("/c?x=1")),
                (307, other.url("/d")),
            ]
            final = other.url("/d")
    assert att.ok and att.head is not None and att.head.status == 200
    assert [(h.status, h.location) for h in att.redirects] == expected
    assert str(att.final_url) == final


async def test_no_follow_reports_the_3xx() -> None:
    async with Fleet({"/a": Route(status=301, location="/b")}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/a")), check_options(follow_redirects=False))
    assert att.ok and att.head is not None and att.head.status == 301 and att.redirects == []


async def test_redirect_loop_and_too_many() -> None:
    routes = {
        "/loop": Route(status=302, location="/loop2"),
        "/loop2": Route(status=302, location="/loop"),
    }
    routes |= {f"/n{i}": Route(status=302, location=f"/n{i + 1}") for i in range(20)}
    async with Fleet(routes) as fleet:
        loop = await attempt_check(parse_url(fleet.url("/loop")), check_options())
        many = await attempt_check(parse_url(fleet.url("/n0")), check_options(max_redirects=3))
    assert loop.error is not None and loop.error.category == "too_many_redirects"
    assert "loop" in str(loop.error)
    assert many.error is not None and many.error.category == "too_many_redirects"
    assert len(many.redirects) == 4 and not many.ok


@pytest.mark.parametrize(
    "location", ["ftp://example.com/", "javascript:alert(1)", "file:///etc/passwd"]
)
async def test_bad_redirect_is_not_followed(location: str) -> None:
    async with Fleet({"/r": Route(status=302, location=location)}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/r")), check_options())
        assert len(fleet.requests) == 1
    assert att.error is not None and att.error.category == "bad_redirect" and not att.ok


async def test_deadline_cuts_a_server_that_never_answers() -> None:
    async with Fleet({"/hang": Route(delay=30)}) as fleet:
        start = time.monotonic()
        att = await attempt_check(parse_url(fleet.url("/hang")), check_options(timeout=0.5))
        elapsed = time.monotonic() - start
    assert att.error is not None and att.error.category == "timeout"
    assert 0.4 < elapsed < 2.0


async def test_deadline_cuts_a_server_that_drips() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(drip) as port:
        start = time.monotonic()
        att = await attempt_check(
            parse_url(f"http://127.0.0.1:{port}/"), check_options(timeout=0.6)
        )
        elapsed = time.monotonic() - start
    assert att.error is not None and att.error.category == "timeout"
    assert elapsed < 2.0


async def test_refused() -> None:
    async with Fleet({}) as fleet:
        att = await attempt_check(parse_url(fleet.dead_url()), check_options())
    assert att.error is not None and att.error.category == "refused"


async def test_dns_failure() -> None:
    # .invalid never resolves (RFC 6761); the resolver answers locally.
    att = await attempt_check(parse_url("http://no-such-host.invalid/"), check_options())
    assert att.error is not None and att.error.category == "dns"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"<html>hello</html>\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "three digits"),
        (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "bad header name"),
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nServer: x\r\n", "in the middle of the headers"),
    ],
)
async def test_protocol_errors(raw: bytes, detail: str) -> None:
    async with Fleet({"/": Route(raw=raw)}) as fleet:
        att = await attempt_check(parse_url(fleet.url("/")), check_options())
    assert att.error is not None and att.error.category == "protocol"
    assert detail in str(att.error)


async def test_reset_by_peer() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with raw_server(reset) as port:
        att = await attempt_check(parse_url(f"http://127.0.0.1:{port}/"), check_options())
    assert att.error is not None and att.error.category in ("reset", "protocol")
    assert att.error.transient


async def test_https_verified(ca_file: str, server_tls: ssl.SSLContext) -> None:
    async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
        att = await attempt_check(parse_url(fleet.https_url("/")), check_options(ca_file))
    assert att.ok, att.error
    t = att.trace
    assert t.tls_ms is not None and t.tls_version and t.tls_version.startswith("TLS")
    assert (
        t.tls_cipher and t.cert_not_after and t.cert_days_left is not None and t.cert_days_left > 0
    )
    assert t.cert_issuer is not None


async def test_https_untrusted_and_insecure(server_tls: ssl.SSLContext) -> None:
    async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
        bad = await attempt_check(parse_url(fleet.https_url("/")), check_options())
        ok = await attempt_check(parse_url(fleet.https_url("/")), check_options(insecure=True))
    assert bad.error is not None and bad.error.category == "tls"
    assert "untrusted" in str(bad.error)
    assert ok.ok


async def test_https_hostname_mismatch(ca: trustme.CA, ca_file: str) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(ctx)
    async with Fleet({"/": Route()}, https_context=ctx) as fleet:
        att = await attempt_check(parse_url(fleet.https_url("/")), check_options(ca_file))
    assert att.error is not None and att.error.category == "tls"
    assert "hostname mismatch" in str(att.error)


async def test_tls_to_a_plain_http_port_is_a_tls_error() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # whatever arrives (a ClientHello), answer in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with raw_server(plain) as port:
        att = await attempt_check(parse_url(f"https://127.0.0.1:{port}/"), check_options())
    assert att.error is not None and att.error.category == "tls"
    assert "plain HTTP" in str(att.error)


async def test_tls_handshake_that_never_completes_is_cut_by_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with raw_server(silent) as port:
        start = time.monotonic()
        att = await attempt_check(
            parse_url(f"https://127.0.0.1:{port}/"), check_options(timeout=0.5)
        )
        elapsed = time.monotonic() - start
    assert att.error is not None and att.error.category == "timeout"
    assert elapsed < 2.0
