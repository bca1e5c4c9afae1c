"""checker.http.client.read_head, fed from an asyncio.StreamReader with no socket.

Every reader is tested three ways (STYLE.md, "Protocol code" 4): all bytes at
once, one byte at a time, and with the next message's bytes left over, which
must still be in the reader afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from checker.http import wire
from checker.http.client import Trace, read_head
from checker.http.errors import CheckError, IncompleteResponse, NoResponse, ProtocolError
from checker.http.wire import ResponseHead

TIMEOUT = 5.0
# What the server sends after the head: the next response on the connection.
NEXT = b"HTTP/1.1 204 No Content\r\nX-Next: yes\r\n\r\n"

WAYS = ["whole", "bytewise", "leftover"]
EOF_WAYS = ["whole", "bytewise"]  # a response cut off by EOF has nothing after it


async def _feed_bytewise(reader: asyncio.StreamReader, data: bytes) -> None:
    for i in range(len(data)):
        reader.feed_data(data[i : i + 1])
        await asyncio.sleep(0)
    reader.feed_eof()


def bound(data: bytes, way: str) -> float:
    """A hang's bound, not a speed test: fed a byte a loop turn, a head of
    256 KiB takes 3 s alone here, and went over 5 s in CI with the suite in
    four processes on two cores (11 us a byte; 100 allowed)."""
    return TIMEOUT + (len(data) * 100e-6 if way == "bytewise" else 0.0)


async def read(
    data: bytes, way: str, *, sent: float | None = None
) -> tuple[ResponseHead, Trace, bytes]:
    """Feed `data` the given way, read one head; return it, the trace, and what is left."""
    reader = asyncio.StreamReader(limit=wire.MAX_LINE)
    trace = Trace()
    start = time.perf_counter() if sent is None else sent
    async with asyncio.timeout(bound(data, way)):
        if way == "whole":
            reader.feed_data(data)
            reader.feed_eof()
            head = await read_head(reader, trace, start)
        elif way == "bytewise":
            feeder = asyncio.create_task(_feed_bytewise(reader, data))
            try:
                head = await read_head(reader, trace, start)
            except BaseException:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
                raise
            await feeder
        else:
            assert way == "leftover"
            # No EOF: the head must be complete without it.
            reader.feed_data(data + NEXT)
            head = await read_head(reader, trace, start)
            reader.feed_eof()
        rest = await reader.read()
    return head, trace, rest


async def read_fails(data: bytes, way: str) -> tuple[CheckError, Trace]:
    """Feed `data`, expect read_head to raise a ProtocolError; return it and the trace."""
    trace = Trace()
    with pytest.raises(ProtocolError) as info:
        reader = asyncio.StreamReader(limit=wire.MAX_LINE)
        async with asyncio.timeout(bound(data, way)):
            if way == "bytewise":
                feeder = asyncio.create_task(_feed_bytewise(reader, data))
                try:
                    await read_head(reader, trace, time.perf_counter())
                finally:
                    feeder.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feeder
            else:
                reader.feed_data(data + (NEXT if way == "leftover" else b""))
                reader.feed_eof()
                await read_head(reader, trace, time.perf_counter())
    return info.value, trace


def expected_rest(way: str) -> bytes:
    return NEXT if way == "leftover" else b""


def header_block(total: int) -> bytes:
    """Header lines (each well under MAX_LINE) plus the blank line, exactly `total` bytes."""
    lines: list[bytes] = []
    left = total - 2  # the final CRLF
    n = 0
    while left > 0:
        prefix = b"X-Pad-%03d: " % n
        size = min(left, 8000)
        if 0 < left - size < len(prefix) + 2:  # never leave a remainder too small for a line
            size -= len(prefix) + 2
        lines.append(prefix + b"a" * (size - len(prefix) - 2) + b"\r\n")
        left -= size
        n += 1
    block = b"".join(lines) + b"\r\n"
    assert len(block) == total
    return block


# --- heads that are read ---------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
async def test_simple_200(way: str) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: demo\r\n\r\n"
    head, _trace, rest = await read(data, way)
    assert head == ResponseHead("1.1", 200, "OK", (("content-length", "2"), ("server", "demo")))
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_http_1_0_without_headers_or_reason(way: str) -> None:
    head, _trace, rest = await read(b"HTTP/1.0 404\r\n\r\n", way)
    assert head == ResponseHead("1.0", 404, "", ())
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_repeated_fields(way: str) -> None:
    data = (
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: a=1\r\n"
        b"Vary: Accept\r\n"
        b"SET-COOKIE: b=2\r\n"
        b"vary: Accept-Encoding\r\n"
        b"\r\n"
    )
    head, _trace, rest = await read(data, way)
    assert head.get_all("set-cookie") == ["a=1", "b=2"]
    assert head.get("set-cookie") == "a=1, b=2"
    assert head.get("vary") == "Accept, Accept-Encoding"
    assert head.get("missing") is None
    assert head.get_all("missing") == []
    assert [name for name, _ in head.headers] == ["set-cookie", "vary", "set-cookie", "vary"]
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_bare_lf_line_endings(way: str) -> None:
    data = b"HTTP/1.1 301 Moved\nLocation: /new\r\nX-Mixed: yes\n\n"
    head, _trace, rest = await read(data, way)
    assert head == ResponseHead("1.1", 301, "Moved", (("location", "/new"), ("x-mixed", "yes")))
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_interim_responses_are_skipped(way: str) -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    )
    head, _trace, rest = await read(data, way)
    assert (head.status, head.reason) == (200, "OK")
    assert head.headers == (("content-type", "text/html"),)  # no Link from the 103
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_101_is_final(way: str) -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    head, _trace, rest = await read(data, way)
    assert (head.status, head.reason) == (101, "Switching Protocols")
    assert head.get("upgrade") == "websocket"
    # What follows a 101 is not HTTP any more, and is left alone.
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_obs_fold_is_unfolded(way: str) -> None:
    data = b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\tthree\r\nX-After: b\r\n\r\n"
    head, _trace, rest = await read(data, way)
    assert head.headers == (("x-long", "one two three"), ("x-after", "b"))
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_ttfb_is_measured_from_sent(way: str) -> None:
    sent = time.perf_counter() - 0.25  # as if the request went out 250 ms ago
    _head, trace, _rest = await read(b"HTTP/1.1 200 OK\r\n\r\n", way, sent=sent)
    assert trace.ttfb_ms is not None
    assert 250.0 <= trace.ttfb_ms < 250.0 + TIMEOUT * 1000


async def test_ttfb_is_kept_from_the_first_line() -> None:
    trace = Trace(ttfb_ms=1.5)  # already measured: read_head must not overwrite it
    reader = asyncio.StreamReader(limit=wire.MAX_LINE)
    reader.feed_data(b"HTTP/1.1 200 OK\r\n\r\n")
    reader.feed_eof()
    async with asyncio.timeout(TIMEOUT):
        await read_head(reader, trace, time.perf_counter() - 10)
    assert trace.ttfb_ms == 1.5


# --- limits: the largest heads that are still read ---------------------------------------


@pytest.mark.parametrize("way", WAYS)
async def test_line_of_max_line_bytes_is_read(way: str) -> None:
    prefix = b"X-Big: "
    line = prefix + b"a" * (wire.MAX_LINE - len(prefix) - 2) + b"\r\n"
    assert len(line) == wire.MAX_LINE
    head, _trace, rest = await read(b"HTTP/1.1 200 OK\r\n" + line + b"\r\n", way)
    assert len(head.get("x-big") or "") == wire.MAX_LINE - len(prefix) - 2
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_max_headers_are_read(way: str) -> None:
    lines = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(wire.MAX_HEADERS))
    head, _trace, rest = await read(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n", way)
    assert len(head.headers) == wire.MAX_HEADERS
    assert head.headers[-1] == (f"x-h{wire.MAX_HEADERS - 1}", str(wire.MAX_HEADERS - 1))
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_obs_fold_lines_do_not_count_as_headers(way: str) -> None:
    lines = b"".join(b"X-H%d: %d\r\n more\r\n" % (i, i) for i in range(wire.MAX_HEADERS))
    head, _trace, _rest = await read(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n", way)
    assert len(head.headers) == wire.MAX_HEADERS
    assert head.headers[0] == ("x-h0", "0 more")


@pytest.mark.parametrize("way", WAYS)
async def test_head_of_max_head_bytes_is_read(way: str) -> None:
    block = header_block(wire.MAX_HEAD)
    head, _trace, rest = await read(b"HTTP/1.1 200 OK\r\n" + block, way)
    assert sum(len(n) + len(v) + 4 for n, v in head.headers) + 2 == wire.MAX_HEAD
    assert rest == expected_rest(way)


@pytest.mark.parametrize("way", WAYS)
async def test_max_interim_responses_are_skipped(way: str) -> None:
    data = b"HTTP/1.1 103 Early Hints\r\n\r\n" * wire.MAX_INTERIM + b"HTTP/1.1 200 OK\r\n\r\n"
    head, _trace, rest = await read(data, way)
    assert head.status == 200
    assert rest == expected_rest(way)


# --- heads that are refused ------------------------------------------------------------


@pytest.mark.parametrize("way", EOF_WAYS)
async def test_eof_before_anything(way: str) -> None:
    exc, trace = await read_fails(b"", way)
    # (NoResponse: also what a limit of a client's connections does, pool.TOO_MANY.)
    assert type(exc) is NoResponse and isinstance(exc, IncompleteResponse)
    assert exc.transient
    assert exc.category == "protocol"
    assert "without sending a response" in str(exc)
    assert trace.ttfb_ms is None  # no byte arrived: there is no time to first byte


@pytest.mark.parametrize("way", EOF_WAYS)
@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"H", "status line"),
        (b"HTTP/1.1 20", "status line"),
        (b"HTTP/1.1 200 OK", "status line"),
        (b"HTTP/1.1 200 OK\r", "status line"),
        (b"HTTP/1.1 200 OK\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r", "headers"),
        (b"HTTP/1.1 100 Continue\r\n", "headers"),
    ],
)
async def test_eof_in_the_middle(data: bytes, where: str, way: str) -> None:
    exc, _trace = await read_fails(data, way)
    assert type(exc) is IncompleteResponse
    assert exc.transient
    assert where in str(exc)


@pytest.mark.parametrize("way", EOF_WAYS)
async def test_eof_after_an_interim_response(way: str) -> None:
    exc, _trace = await read_fails(b"HTTP/1.1 100 Continue\r\n\r\n", way)
    assert type(exc) is IncompleteResponse
    assert exc.transient


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    "data",
    [
        b"<html><body>hi</body></html>\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name : x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded first\r\nX-A: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n \x01\r\n\r\n",
    ],
)
async def test_malformed_heads_are_protocol_errors(data: bytes, way: str) -> None:
    exc, _trace = await read_fails(data, way)
    assert type(exc) is ProtocolError
    assert not exc.transient


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("where", ["status line", "header"])
async def test_line_longer_than_max_line(where: str, way: str) -> None:
    big = b"a" * (wire.MAX_LINE + 100)
    if where == "status line":
        data = b"HTTP/1.1 200 " + big + b"\r\n\r\n"
    else:
        data = b"HTTP/1.1 200 OK\r\nX-Big: " + big + b"\r\n\r\n"
    exc, _trace = await read_fails(data, way)  # a ProtocolError, not readline's ValueError
    assert type(exc) is ProtocolError
    assert "longer than" in str(exc)


@pytest.mark.parametrize("way", WAYS)
async def test_more_than_max_headers(way: str) -> None:
    lines = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(wire.MAX_HEADERS + 1))
    exc, _trace = await read_fails(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n", way)
    assert type(exc) is ProtocolError
    assert f"more than {wire.MAX_HEADERS} header lines" in str(exc)


@pytest.mark.parametrize("way", WAYS)
async def test_head_larger_than_max_head(way: str) -> None:
    block = header_block(wire.MAX_HEAD + 1)
    exc, _trace = await read_fails(b"HTTP/1.1 200 OK\r\n" + block, way)
    assert type(exc) is ProtocolError
    assert "larger than" in str(exc)


@pytest.mark.parametrize("way", WAYS)
async def test_more_than_max_interim_responses(way: str) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" * (wire.MAX_INTERIM + 1) + b"HTTP/1.1 200 OK\r\n\r\n"
    exc, _trace = await read_fails(data, way)
    assert type(exc) is ProtocolError
    assert f"more than {wire.MAX_INTERIM} interim" in str(exc)


async def test_kept_parses_are_the_parses_and_errors_are_never_kept() -> None:
    """Heads a server repeats are parsed once (client.CACHED_HEAD); the same
    bytes must read the same every time, and a bad head fail every time."""
    from checker.http import client

    good = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"
    first = (await read(good, "whole"))[0]
    second = (await read(good, "whole"))[0]
    assert (
        first
        == second
        == wire.ResponseHead(
            "1.1", 200, "OK", (("server", "nginx"), ("content-length", "0"), ("x-a", "1"))
        )
    )
    bad = b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"
    for _ in range(2):
        with pytest.raises(ProtocolError):
            await read(bad, "whole")
    long_value = b"y" * (client.CACHED_HEAD + 10)  # past the cache: parsed each time
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + long_value + b"\r\n\r\n"
    for _ in range(2):
        head = (await read(big, "whole"))[0]
        assert head.get("x-big") == long_value.decode()
    many = b"".join(b"X-F%d: v\r\n" % i for i in range(client.CACHED_FIELDS + 1))
    kept = client._header_block.cache_info().currsize
    for _ in range(2):  # short, but too many fields to keep
        head = (await read(b"HTTP/1.1 200 OK\r\n" + many + b"\r\n", "whole"))[0]
        assert len(head.headers) == client.CACHED_FIELDS + 1
    assert client._header_block.cache_info().currsize == kept
    long_reason = b"HTTP/1.1 404 " + b"R" * client.CACHED_LINE + b"\r\n\r\n"
    for _ in range(2):
        assert (await read(long_reason, "whole"))[0].reason == "R" * client.CACHED_LINE
