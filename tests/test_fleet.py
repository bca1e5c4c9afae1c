"""The demo fleet server, exercised with raw asyncio stream clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest

from checker.demo.fleet import Fleet, Route, SeenRequest, demo_ca_file, demo_server_context

# Upper bound for any single wait in these tests; everything local answers far faster.
TIMEOUT = 5.0

RAW = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"

ROUTES = {
    "/ok": Route(headers=(("X-Demo", "yes"),)),
    "/no-head": Route(head_status=405),
    "/no-reason": Route(reason=""),
    "/own-reason": Route(status=201, reason="Made It"),
    "/slow": Route(delay=0.3),
    "/very-slow": Route(delay=60.0),
    "/raw": Route(raw=RAW),
    "/redirect": Route(status=302, location="/ok", body=b""),
    "/empty": Route(status=204),
}


@dataclass
class Response:
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"repeated header {name}: {values}"
        return values[0] if values else None


@pytest.fixture
async def fleet(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Fleet]:
    async with Fleet(ROUTES, https_context=demo_server_context()) as running:
        yield running
    # Surface leaked transports (ResourceWarning) now, while this test is still running.
    gc.collect()
    # caplog.records holds only the current (teardown) phase's records.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    problems = [r for r in records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]


@contextlib.asynccontextmanager
async def connect(
    port: int, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await writer.wait_closed()
        writer.transport.abort()  # no-op unless the close above stalled


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    async with asyncio.timeout(TIMEOUT):
        status_line = await reader.readline()
        headers = []
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        response = Response(status_line, headers, b"")
        if not head:
            response.body = await reader.readexactly(int(response.header("Content-Length") or 0))
        return response


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await reader.read()


def request(method: str, target: str, *extra: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def exchange(port: int, data: bytes, *, head: bool = False) -> Response:
    async with connect(port) as (reader, writer):
        writer.write(data)
        return await read_response(reader, head=head)


async def test_get_answers_with_status_headers_and_body(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/ok"))

    assert response.status_line == b"HTTP/1.1 200 OK\r\n"
    assert response.body == b"ok\n"
    assert response.header("Content-Length") == "3"
    assert response.header("Server") == "checker-demo"
    assert response.header("X-Demo") == "yes"
    assert response.header("Connection") is None
    date = response.header("Date")
    assert date is not None
    assert parsedate_to_datetime(date).tzinfo is not None


async def test_head_sends_content_length_but_no_body(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("HEAD", "/ok"))
        head = await read_response(reader, head=True)
        # Had the HEAD response carried a body, this next status line would be garbled.
        writer.write(request("GET", "/ok"))
        get = await read_response(reader)

    assert head.status_line == b"HTTP/1.1 200 OK\r\n"
    assert head.header("Content-Length") == "3"
    assert get.status_line == b"HTTP/1.1 200 OK\r\n"
    assert get.body == b"ok\n"


async def test_head_status_answers_head_only(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("HEAD", "/no-head"))
        head = await read_response(reader, head=True)
        writer.write(request("GET", "/no-head"))
        get = await read_response(reader)

    assert head.status_line == b"HTTP/1.1 405 Method Not Allowed\r\n"
    assert head.header("Content-Length") == "0"
    assert get.status_line == b"HTTP/1.1 200 OK\r\n"


async def test_empty_reason_sends_no_reason_phrase(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/no-reason"))

    assert response.status_line == b"HTTP/1.1 200\r\n"
    assert response.body == b"ok\n"


async def test_given_reason_replaces_the_standard_one(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/own-reason"))

    assert response.status_line == b"HTTP/1.1 201 Made It\r\n"


async def test_delay_holds_the_response_back(fleet: Fleet) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await exchange(fleet.http_port, request("GET", "/slow"))

    assert loop.time() - started >= 0.3
    assert response.status_line == b"HTTP/1.1 200 OK\r\n"


async def test_raw_sends_exact_bytes_then_closes(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/raw"))
        assert await read_to_eof(reader) == RAW


async def test_unknown_path_is_404(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/nowhere"))

    assert response.status_line == b"HTTP/1.1 404 Not Found\r\n"


async def test_route_lookup_ignores_the_query(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/ok?page=2"))

    assert response.status_line == b"HTTP/1.1 200 OK\r\n"
    assert fleet.requests[-1].target == "/ok?page=2"


async def test_redirect_carries_location_verbatim(fleet: Fleet) -> None:
    response = await exchange(fleet.http_port, request("GET", "/redirect"))

    assert response.status_line == b"HTTP/1.1 302 Found\r\n"
    assert response.header("Location") == "/ok"
    assert response.header("Content-Length") == "0"


async def test_204_has_neither_body_nor_length(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/empty"))
        empty = await read_response(reader)
        writer.write(request("GET", "/ok"))
        after = await read_response(reader)

    assert empty.status_line == b"HTTP/1.1 204 No Content\r\n"
    assert empty.header("Content-Length") is None
    assert after.body == b"ok\n"


async def test_keep_alive_answers_several_requests_on_one_connection(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/ok"))
        first = await read_response(reader)
        writer.write(request("GET", "/nowhere"))
        second = await read_response(reader)

    assert first.status_line == b"HTTP/1.1 200 OK\r\n"
    assert second.status_line == b"HTTP/1.1 404 Not Found\r\n"
    assert len(fleet.requests) == 2


async def test_pipelined_requests_are_answered_in_order(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/ok") + request("GET", "/no-reason"))
        first = await read_response(reader)
        second = await read_response(reader)

    assert first.status_line == b"HTTP/1.1 200 OK\r\n"
    assert second.status_line == b"HTTP/1.1 200\r\n"


@pytest.mark.parametrize(
    "data",
    [
        request("GET", "/ok", "Connection: close"),
        request("GET", "/ok", "Connection: keep-alive, Close"),
        request("GET", "/ok", version="HTTP/1.0"),
    ],
    ids=["connection-close", "close-token", "http-1.0"],
)
async def test_closes_when_the_client_asks(fleet: Fleet, data: bytes) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(data)
        response = await read_response(reader)
        assert await read_to_eof(reader) == b""

    assert response.header("Connection") == "close"
    assert response.body == b"ok\n"


async def test_request_body_is_read_and_discarded(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("POST", "/ok", "Content-Length: 5") + b"hello")
        first = await read_response(reader)
        writer.write(request("GET", "/ok"))
        second = await read_response(reader)

    assert first.status_line == second.status_line == b"HTTP/1.1 200 OK\r\n"
    assert [seen.method for seen in fleet.requests] == ["POST", "GET"]


@pytest.mark.parametrize(
    "data",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /ok HTTP/2.0\r\n\r\n",
        request("GET", "/ok", "no colon here"),
        request("GET", "/ok", " folded: header"),
        request("GET", "/ok", "Content-Length: 5x"),
        request("GET", "/ok", "Content-Length: 1", "Content-Length: 2"),
        request("GET", "/" + "a" * 20_000),
    ],
    ids=[
        "request-line",
        "version",
        "no-colon",
        "obs-fold",
        "bad-length",
        "conflicting-lengths",
        "line-too-long",
    ],
)
async def test_bad_request_gets_400_and_close(fleet: Fleet, data: bytes) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(data)
        response = await read_response(reader)
        assert await read_to_eof(reader) == b""

    assert response.status_line == b"HTTP/1.1 400 Bad Request\r\n"
    assert response.header("Connection") == "close"
    assert fleet.requests == []


async def test_head_larger_than_64_kib_gets_400(fleet: Fleet) -> None:
    headers = [f"X-Filler-{i}: {'x' * 1000}" for i in range(70)]
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/ok", *headers))
        response = await read_response(reader)

    assert response.status_line == b"HTTP/1.1 400 Bad Request\r\n"


async def test_requests_are_recorded_as_received(fleet: Fleet) -> None:
    head = b"GET /ok?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Thing:  spaced \r\n\r\n"
    await exchange(fleet.http_port, head)

    assert fleet.requests == [
        SeenRequest(
            method="GET",
            target="/ok?x=1",
            headers=(("Host", "example.test"), ("X-Thing", "spaced")),
            raw_head=head,
            tls=False,
        )
    ]


async def test_https_works_with_the_demo_ca(fleet: Fleet) -> None:
    context = ssl.create_default_context(cafile=demo_ca_file())
    port = fleet.https_port
    assert port is not None
    async with connect(port, ssl_context=context) as (reader, writer):
        writer.write(request("GET", "/ok"))
        response = await read_response(reader)

    assert response.status_line == b"HTTP/1.1 200 OK\r\n"
    assert response.body == b"ok\n"
    assert fleet.requests[-1].tls is True


async def test_https_fails_verification_without_the_demo_ca(fleet: Fleet) -> None:
    port = fleet.https_port
    assert port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(port, ssl_context=ssl.create_default_context()):
            pass
    # The failed handshake leaves the server serving.
    response = await exchange(fleet.http_port, request("GET", "/ok"))
    assert response.status_line == b"HTTP/1.1 200 OK\r\n"


async def test_dead_url_refuses_connections(fleet: Fleet) -> None:
    url = urlsplit(fleet.dead_url("/x"))
    assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", "/x")
    assert url.port not in (fleet.http_port, fleet.https_port)

    with pytest.raises(ConnectionRefusedError):
        async with asyncio.timeout(TIMEOUT):
            await asyncio.open_connection("127.0.0.1", url.port)


async def test_urls_point_at_the_servers(fleet: Fleet) -> None:
    assert fleet.url("/a?b=1") == f"http://127.0.0.1:{fleet.http_port}/a?b=1"
    assert fleet.https_url("/a") == f"https://127.0.0.1:{fleet.https_port}/a"
    assert fleet.http_port != fleet.https_port


async def test_https_url_without_https_raises() -> None:
    async with Fleet({}) as plain:
        assert plain.https_port is None
        with pytest.raises(RuntimeError):
            plain.https_url("/")


async def test_stop_closes_a_connection_waiting_for_a_delayed_response(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/very-slow"))
        async with asyncio.timeout(TIMEOUT):
            while not fleet.requests:  # wait until the server is inside the delay
                await asyncio.sleep(0.01)
            await fleet.stop()
        assert await read_to_eof(reader) == b""


async def test_stop_closes_a_connection_with_a_partial_request(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/ok"))
        await read_response(reader)
        writer.write(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line yet
        # Let the server read those bytes: closing a socket with unread input sends
        # a reset instead of an orderly EOF.
        await asyncio.sleep(0.05)
        async with asyncio.timeout(TIMEOUT):
            await fleet.stop()
        assert await read_to_eof(reader) == b""


async def test_client_disconnect_mid_request_is_harmless(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (_, writer):
        writer.write(b"GET /ok HTTP/1.1\r\nHo")
    async with connect(fleet.http_port) as (_, writer):
        writer.write(request("GET", "/slow"))  # gone before the delayed answer is sent
    await asyncio.sleep(0.4)  # let the server try to answer the departed client

    response = await exchange(fleet.http_port, request("GET", "/ok"))
    assert response.status_line == b"HTTP/1.1 200 OK\r\n"


async def test_client_reset_is_harmless(fleet: Fleet) -> None:
    async with connect(fleet.http_port) as (reader, writer):
        writer.write(request("GET", "/ok"))
        await read_response(reader)
        # Linger time 0 makes close() send a reset instead of an orderly EOF.
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    await asyncio.sleep(0.05)  # let the server read the reset

    response = await exchange(fleet.http_port, request("GET", "/ok"))
    assert response.status_line == b"HTTP/1.1 200 OK\r\n"


async def test_stop_closes_a_connection_stuck_before_the_tls_handshake(fleet: Fleet) -> None:
    port = fleet.https_port
    assert port is not None
    async with connect(port) as (reader, _):  # plain TCP: never starts the handshake
        await asyncio.sleep(0.05)  # let the server accept it
        async with asyncio.timeout(TIMEOUT):
            await fleet.stop()
        assert await read_to_eof(reader) == b""


def test_route_rejects_header_injection() -> None:
    with pytest.raises(ValueError):
        Route(headers=(("X-Evil", "a\r\nInjected: yes"),))
    with pytest.raises(ValueError):
        Route(reason="OK\r\n")


def test_demo_certificates_are_packaged() -> None:
    assert demo_ca_file().is_file()
    assert "BEGIN CERTIFICATE" in demo_ca_file().read_text()
    assert isinstance(demo_server_context(), ssl.SSLContext)
