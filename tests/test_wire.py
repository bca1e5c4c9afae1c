"""checker.http.wire: pure functions over bytes, tested with byte vectors and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.http.errors import ProtocolError
from checker.http.wire import (
    StatusLine,
    build_request,
    has_token,
    is_obs_fold,
    parse_chunk_size,
    parse_content_length,
    parse_header_line,
    parse_status_line,
    strip_eol,
    unfold,
)
from checker.url import URL, parse_url

# No example database: the tests must leave nothing behind in the tree.
PROPERTY = settings(database=None, max_examples=300, deadline=None)

# --- build_request ----------------------------------------------------------------


def test_build_request_exact_bytes() -> None:
    url = parse_url("https://example.com/a/b?c=1&d=%2F")
    headers = (("User-Agent", "checker"), ("Accept", "*/*"), ("Connection", "close"))
    assert build_request("HEAD", url, headers) == (
        b"HEAD /a/b?c=1&d=%2F HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"User-Agent: checker\r\n"
        b"Accept: */*\r\n"
        b"Connection: close\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (URL("http", "example.com", 80, "/"), b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (
            URL("http", "example.com", 8080, "/x"),
            b"GET /x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        ),
        (URL("https", "example.com", 80, "/"), b"GET / HTTP/1.1\r\nHost: example.com:80\r\n\r\n"),
        (URL("http", "::1", 80, "/"), b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
        (
            URL("https", "2001:db8::1", 8443, "/?q"),
            b"GET /?q HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
        ),
    ],
)
def test_build_request_host_field(url: URL, expected: bytes) -> None:
    assert build_request("GET", url) == expected


def test_build_request_keeps_header_order_and_allows_tab_and_utf8() -> None:
    url = URL("http", "h", 80, "/")
    data = build_request("GET", url, (("Z-Last", "1"), ("A-First", "a\tb"), ("X-Name", "café")))
    assert data == (
        b"GET / HTTP/1.1\r\nHost: h\r\nZ-Last: 1\r\nA-First: a\tb\r\nX-Name: caf\xc3\xa9\r\n\r\n"
    )
    lines = data.split(b"\r\n")
    assert lines[-2:] == [b"", b""]  # the head ends with exactly one blank line
    assert b"\n" not in data.replace(b"\r\n", b"")  # every line ends with CRLF


@pytest.mark.parametrize(
    "method", ["", "GET /", "GET\r\n", "G\x00T", "GÉT", "GET\t", "(GET)", "GET:"]
)
def test_build_request_refuses_a_bad_method(method: str) -> None:
    with pytest.raises(ValueError, match="bad method"):
        build_request(method, URL("http", "h", 80, "/"))


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "\x7f", "a\x1b"])
def test_build_request_refuses_control_characters_in_a_header_value(value: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        build_request("GET", URL("http", "h", 80, "/"), (("X-Test", value),))


@pytest.mark.parametrize("name", ["", "Bad Name", "X:Y", "X\r\nY", "Ünicode", "X\x00"])
def test_build_request_refuses_a_bad_header_name(name: str) -> None:
    with pytest.raises(ValueError, match="bad header name"):
        build_request("GET", URL("http", "h", 80, "/"), ((name, "v"),))


@pytest.mark.parametrize(
    "url",
    [
        URL("http", "h", 80, "/a b"),
        URL("http", "h", 80, "/a\r\nX-Injected: 1"),
        URL("http", "h", 80, "/\x00"),
        URL("http", "h", 80, "/ü"),
        URL("http", "h\r\nX-Injected: 1", 80, "/"),
        URL("http", "h h", 80, "/"),
    ],
)
def test_build_request_second_line_of_defence(url: URL) -> None:
    """A URL built without parse_url still cannot split the request."""
    with pytest.raises(ValueError, match="unsafe characters"):
        build_request("GET", url)


# --- strip_eol --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a\r\n", b"a"),
        (b"a\n", b"a"),
        (b"a", b"a"),
        (b"a\r", b"a\r"),
        (b"a\r\r\n", b"a\r"),
        (b"\r\n", b""),
        (b"", b""),
    ],
)
def test_strip_eol(line: bytes, expected: bytes) -> None:
    assert strip_eol(line) == expected


# --- parse_status_line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"HTTP/1.1 200 OK", StatusLine("1.1", 200, "OK")),
        (b"HTTP/1.0 404 Not Found", StatusLine("1.0", 404, "Not Found")),
        (b"HTTP/1.1 200", StatusLine("1.1", 200, "")),
        (b"HTTP/1.1 200 ", StatusLine("1.1", 200, "")),
        (b"HTTP/1.1 100 Continue", StatusLine("1.1", 100, "Continue")),
        (b"HTTP/1.1 599 X", StatusLine("1.1", 599, "X")),
        (b"HTTP/1.1 200 Caf\xe9 \x80\xff!", StatusLine("1.1", 200, "Caf\xe9 \x80\xff!")),
        (
            b"HTTP/1.1 500 Internal\tServer\tError",
            StatusLine("1.1", 500, "Internal\tServer\tError"),
        ),
        # The reason is kept exactly as sent (llhttp reports " OK" for "200  OK").
        (b"HTTP/1.1 404 \tNot  Found\t ", StatusLine("1.1", 404, "\tNot  Found\t ")),
        (b'HTTP/1.1 200 OK: "fine" (really)', StatusLine("1.1", 200, 'OK: "fine" (really)')),
    ],
)
def test_parse_status_line(line: bytes, expected: StatusLine) -> None:
    assert parse_status_line(line) == expected


def test_a_status_past_599_is_reported_as_it_came() -> None:
    # Found by a review: LinkedIn's "999 Request denied" was a protocol
    # error; RFC 9110 15 has a client take it as a 5xx, not refuse it.
    assert parse_status_line(b"HTTP/1.1 999 Request denied").status == 999
    assert parse_status_line(b"HTTP/1.1 600 X").status == 600


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"http/1.1 200 OK",
        b"HTTP/2 200",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.2 200 OK",
        b"HTTP/0.9 200 OK",
        b"HTTP/11 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 099 X",
        b"HTTP/1.1 000 X",
        b"HTTP/1.1 20a OK",
        b"HTTP/1.1 -20 OK",
        b"HTTP/1.1200 OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1 200\tOK",
        b"HTTP/1.1",
        b"HTTP/1.1 ",
        b"HTTP/",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 OK\r",
        b"HTTP/1.1 200 OK\x7f",
        b"HTTP/1.1 200 OK\x1b[2J",
        b"ICE/1.1 200 OK",
        b" HTTP/1.1 200 OK",
        b"<html>",
        b"<!DOCTYPE html><html><body>hello</body></html>",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS record on a plain port
    ],
)
def test_parse_status_line_refuses(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_status_line(line)


def test_parse_status_line_error_detail_is_printable_and_short() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_status_line(b"\x00\r\x1b" + b"<" * 500)
    detail = str(info.value)
    assert detail.isprintable()
    assert len(detail) < 200


@pytest.mark.parametrize("edge", [b"\x85", b"\xa0"])
def test_parse_status_line_keeps_obs_text_at_the_edges_of_the_reason(edge: bytes) -> None:
    line = b"HTTP/1.1 200 " + edge + b"OK" + edge
    assert parse_status_line(line).reason == (edge + b"OK" + edge).decode("latin-1")


# --- parse_header_line, obs-fold ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"Content-Type: text/html", ("content-type", "text/html")),
        (b"X-A:no-space", ("x-a", "no-space")),
        (b"X-A: \t spaced \t ", ("x-a", "spaced")),
        (b"X-A: in\tside  and out", ("x-a", "in\tside  and out")),
        (b"X-Empty:", ("x-empty", "")),
        (b"X-Empty:  \t", ("x-empty", "")),
        (b"Location: http://h:8080/x", ("location", "http://h:8080/x")),
        (b"X-Obs: caf\xe9 \x80\xff", ("x-obs", "caf\xe9 \x80\xff")),
        (b"!#$%&'*+-.^_`|~09azAZ: tchar", ("!#$%&'*+-.^_`|~09azaz", "tchar")),
    ],
)
def test_parse_header_line(line: bytes, expected: tuple[str, str]) -> None:
    assert parse_header_line(line) == expected


def test_whitespace_before_the_colon_is_taken_off() -> None:
    # Found by a review: "Server : GoAhead-Webs" (embedded devices) made the
    # device down; curl and browsers read it. (RFC 9112 5.1 binds servers
    # and proxies, which a client is not.)
    assert parse_header_line(b"Server : GoAhead-Webs") == ("server", "GoAhead-Webs")
    assert parse_header_line(b"Host\t: example.com") == ("host", "example.com")
    for line in (b" : x", b"Bad Name : x"):
        with pytest.raises(ProtocolError):
            parse_header_line(line)


@pytest.mark.parametrize(
    "line",
    [
        b"no colon here",
        b"",
        b": value",
        b" X-A: b",
        b"X(A): b",
        b"X\x80: b",
        b"X-A: a\x00b",
        b"X-A: a\rb",
        b"X-A: a\nb",
        b"X-A: a\x7f",
        b"X-A: \x1b[31m",
        b"X-A: \x0b",
    ],
)
def test_parse_header_line_refuses(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_header_line(line)


@pytest.mark.parametrize(
    ("line", "folded"),
    [(b" more", True), (b"\tmore", True), (b"X-A: b", False), (b"", False), (b"x", False)],
)
def test_is_obs_fold(line: bytes, folded: bool) -> None:
    assert is_obs_fold(line) is folded


@pytest.mark.parametrize(
    ("previous", "line", "expected"),
    [
        (("x-a", "one"), b"  two  ", ("x-a", "one two")),
        (("x-a", "one"), b"\ttwo\tthree", ("x-a", "one two\tthree")),
        (("x-a", ""), b" two", ("x-a", "two")),
        (("x-a", "one"), b"   ", ("x-a", "one")),
        (("x-a", "one"), b" caf\xe9", ("x-a", "one caf\xe9")),
    ],
)
def test_unfold(previous: tuple[str, str], line: bytes, expected: tuple[str, str]) -> None:
    assert is_obs_fold(line)
    assert unfold(previous, line) == expected


@pytest.mark.parametrize("line", [b" a\x00b", b"\tx\ry", b" \x7f"])
def test_unfold_refuses_control_characters(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        unfold(("x-a", "one"), line)


# --- parse_content_length --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["0"], 0),
        (["5"], 5),
        ([" 5 "], 5),
        (["5", "5"], 5),
        (["5, 5"], 5),
        (["5,5", "5"], 5),
        (["007"], 7),
        (["9" * 18], 10**18 - 1),
    ],
)
def test_parse_content_length(values: list[str], expected: int | None) -> None:
    assert parse_content_length(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["5", "6"], "conflicting"),
        (["5, 6"], "conflicting"),
        (["5", "5, 6"], "conflicting"),
        (["-1"], "bad Content-Length"),
        (["+5"], "bad Content-Length"),
        (["abc"], "bad Content-Length"),
        (["5x"], "bad Content-Length"),
        (["0x10"], "bad Content-Length"),
        ([""], "bad Content-Length"),
        (["5,"], "bad Content-Length"),
        (["1.5"], "bad Content-Length"),
        (["\u0665"], "bad Content-Length"),  # Arabic-Indic five: a digit, but not ASCII
        (["9" * 19], "too large"),
        (["1" + "0" * 100], "too large"),
    ],
)
def test_parse_content_length_refuses(values: list[str], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_content_length(values)


# --- parse_chunk_size ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"0", 0),
        (b"a", 10),
        (b"1A", 26),
        (b"ff", 255),
        (b"1a;name=value", 26),
        (b'1a ; name="quoted;value"', 26),
        (b"1a\t;x;y=z", 26),
        (b"0000000000000001", 1),
        (b"f" * 16, 2**64 - 1),
        # Whitespace at the end (ESP32 devices, some load balancers; h11 and
        # curl read it; found by a review, where a body check was down).
        (b"FF ", 255),
        (b"21  ", 33),
        (b"1a;x=y\t ", 26),
    ],
)
def test_parse_chunk_size(line: bytes, expected: int) -> None:
    assert parse_chunk_size(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b";ext",
        b" ",
        b"1" * 17,
        b"0" * 17,
        b"g",
        b"0x1a",
        b"-1",
        b"+1",
        b" 1a",
        b"1 a",
        b"1a\r",
        b"1_000",
        b"\xff",
        b"\xd9\xa1",  # a non-ASCII digit
    ],
)
def test_parse_chunk_size_refuses(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="bad chunk size"):
        parse_chunk_size(line)


# --- has_token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token", "expected"),
    [
        ("close", "close", True),
        ("Close", "close", True),
        ("keep-alive, Close", "close", True),
        (" \tchunked\t ", "chunked", True),
        ("gzip,chunked", "chunked", True),
        ("gzip, chunked", "gzip", True),
        ("closed", "close", False),
        ("x-close", "close", False),
        ("close;q=1", "close", False),
        ("keep-alive", "close", False),
        ("", "close", False),
        (None, "close", False),
    ],
)
def test_has_token(value: str | None, token: str, expected: bool) -> None:
    assert has_token(value, token) is expected


# --- properties ---------------------------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=200))
def test_parse_status_line_any_bytes(line: bytes) -> None:
    try:
        status = parse_status_line(line)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError
        assert str(exc)
    else:
        assert 100 <= status.status <= 599
        assert status.version in ("1.0", "1.1")


@PROPERTY
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=20).map(b"HTTP/1.1 ".__add__)))
def test_parse_status_line_any_bytes_after_a_good_prefix(line: bytes) -> None:
    try:
        parse_status_line(line)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError


@PROPERTY
@given(st.binary(max_size=200))
def test_parse_header_line_any_bytes(line: bytes) -> None:
    try:
        name, value = parse_header_line(line)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError
    else:
        assert name == name.lower()
        assert value == value.strip(" \t")


@PROPERTY
@given(st.binary(max_size=60))
def test_parse_chunk_size_any_bytes(line: bytes) -> None:
    try:
        size = parse_chunk_size(line)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError
    else:
        assert 0 <= size < 2**64


_REASON_BYTES = [0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)]  # HTAB SP VCHAR obs-text
_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@PROPERTY
@given(
    version=st.sampled_from(["1.0", "1.1"]),
    status=st.integers(100, 599),
    reason=st.lists(st.sampled_from(_REASON_BYTES), max_size=40).map(bytes),
    crlf=st.sampled_from([b"\r\n", b"\n"]),
)
def test_status_line_round_trip(version: str, status: int, reason: bytes, crlf: bytes) -> None:
    line = f"HTTP/{version} {status} ".encode() + reason + crlf
    parsed = parse_status_line(strip_eol(line))
    try:
        text = reason.decode("utf-8")  # kept as sent; UTF-8 when it is UTF-8
    except UnicodeDecodeError:
        text = reason.decode("latin-1")
    assert parsed == StatusLine(version, status, text)


@PROPERTY
@given(
    name=st.lists(st.sampled_from(_TCHAR), min_size=1, max_size=20).map(bytes),
    value=st.lists(st.sampled_from(_REASON_BYTES), max_size=40).map(bytes),
    ows=st.sampled_from([b"", b" ", b"\t", b" \t "]),
)
def test_header_line_round_trip(name: bytes, value: bytes, ows: bytes) -> None:
    parsed = parse_header_line(name + b":" + ows + value + ows)
    assert parsed == (name.decode().lower(), value.strip(b" \t").decode("latin-1"))


# --- the header section whole (the client's fast path) ----------------------


@pytest.mark.parametrize(
    ("buffer", "end"),
    [
        (b"\r\n", 2),
        (b"\n", 1),
        (b"\r\nHTTP/1.1 200 OK\r\n", 2),  # the next response left over
        (b"A: 1\r\n\r\n", 8),
        (b"A: 1\n\n", 6),
        (b"A: 1\r\n\n", 7),  # mixed line endings
        (b"A: 1\n\r\nleft", 7),
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", 14),
        (b"A: 1\r\n", -1),
        (b"A: 1\r\nB:", -1),
        (b"", -1),
        (b"A: 1\r\r\n\r\n", 9),  # a bare CR line is not the end (the parser refuses it)
    ],
)
def test_head_end(buffer: bytes, end: int) -> None:
    from checker.http.wire import head_end

    assert head_end(buffer) == end


def _line_by_line(block: bytes) -> object:
    from checker.http.wire import HeaderLines

    lines = HeaderLines()
    try:
        for piece in block.split(b"\n")[:-1]:
            if lines.feed(piece + b"\n"):
                return tuple(lines.headers)
    except ProtocolError as exc:
        return str(exc)
    return "unfinished"


def _whole(block: bytes) -> object:
    from checker.http.wire import parse_header_block

    try:
        return parse_header_block(block)
    except ProtocolError as exc:
        return str(exc)


_LINE = st.one_of(
    st.sampled_from([b"A: 1", b"Server: x", b" folded", b"\tmore", b"bad line", b"X : y", b""]),
    # Values the whole-section scan must take as the line rules do: OWS on
    # either side, none at all, bytes that are or are not allowed in a value.
    st.sampled_from(
        [
            b"X-A:  spaced value \t",
            b"X-Tab:\tv",
            b"Empty:",
            b"Empty2:   ",
            b"X-Nul: a\x00b",
            b"X-Cr: a\rb",
            b"X-Del: a\x7fb",
            b"X-Latin: caf\xe9",
            b": no name",
            b"X-Colons: a:b:c",
        ]
    ),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_LINE, st.sampled_from([b"\r\n", b"\n"])), max_size=8))
def test_whole_section_parses_as_line_by_line(lines: list[tuple[bytes, bytes]]) -> None:
    from checker.http.wire import head_end

    block = b"".join(text + eol for text, eol in lines) + b"\r\n"
    end = head_end(block)
    assert end > 0
    block = block[:end]
    assert _whole(block) == _line_by_line(block)


def test_whole_section_limits_match_line_by_line() -> None:
    from checker.http.wire import MAX_HEADERS, MAX_LINE

    many = b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    assert _whole(many) == _line_by_line(many) == f"more than {MAX_HEADERS} header lines"
    long = b"A: " + b"x" * MAX_LINE + b"\r\n\r\n"
    assert _whole(long) == "response line longer than 64 KiB"
    big = b"".join(b"H%d: %s\r\n" % (i, b"v" * 1000) for i in range(270)) + b"\r\n"
    assert _whole(big) == _line_by_line(big) == "response headers larger than 256 KiB"
