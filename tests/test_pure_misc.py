"""Small pure pieces: CSV cells, retry policy, the per-host cap, exception mapping, list files."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme

from checker.check import Attempt
from checker.http.client import map_exceptions
from checker.http.errors import (
    BadRedirect,
    CheckError,
    CheckTimeout,
    ConnectionRefused,
    ConnectionReset,
    DNSError,
    IncompleteResponse,
    Interrupted,
    InvalidURL,
    ProtocolError,
    TLSError,
    TooManyRedirects,
    Unreachable,
)
from checker.http.wire import ResponseHead
from checker.pool import (
    RETRY_STATUSES,
    PoolOptions,
    parse_retry_after,
    retry_delay,
    should_retry,
)
from checker.reports.csv_report import cell
from checker.targets import Duplicate, ListError, Target, check_lists, read_targets
from checker.url import parse_url

TIMEOUT = 5.0
URL_ = parse_url("https://example.com/")

# --- csv_report.cell --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("status", None, ""),
        ("reason", None, ""),
        ("ok", True, "true"),
        ("ok", False, "false"),
        ("status", 200, 200),
        ("line", 0, 0),
        ("cert_days_left", -3, -3),
        ("total_ms", 12.5, 12.5),
        ("total_ms", -0.25, -0.25),
        ("reason", "OK", "OK"),
        ("url", "https://example.com/", "https://example.com/"),
        ("error_detail", "", ""),
        # Formula starters get a leading quote.
        ("reason", '=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("server", "+1+1", "'+1+1"),
        ("server", "-1", "'-1"),
        ("server", "-", "'-"),
        ("server", "@SUM(A1)", "'@SUM(A1)"),
        ("reason", "\t=1", "'\t=1"),
        ("reason", "\r=1", "'\r=1"),
        # Only the first character matters.
        ("reason", "a=1", "a=1"),
        ("reason", " =1", " =1"),
        # Other lists are joined with " ; ", and quoted like any text.
        ("duplicates", ["a.txt:3", "b.txt:9"], "a.txt:3 ; b.txt:9"),
        ("duplicates", ["=cmd", "b.txt:9"], "'=cmd ; b.txt:9"),
        ("duplicates", [], ""),
    ],
)
def test_cell(name: str, value: object, expected: object) -> None:
    out = cell(name, value)
    assert out == expected
    assert type(out) is type(expected)  # numbers stay numbers, bools become text


def test_cell_redirects() -> None:
    hops = [
        {"status": 301, "url": "http://example.com/", "location": "https://example.com/"},
        {"status": 302, "url": "https://example.com/", "location": "https://example.com/home"},
    ]
    assert cell("redirects", hops) == (
        "301 http://example.com/ -> https://example.com/ ; "
        "302 https://example.com/ -> https://example.com/home"
    )
    assert cell("redirects", []) == ""


# --- parse_retry_after ----------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("007", 7.0),
        # The three HTTP-date formats (RFC 9110 5.6.7), 30 s after NOW.
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 08:27:30 GMT", 3600.0),
        # A date in the past means "now".
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        # Garbage is ignored.
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("1e3", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 +9999", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_defaults_to_the_clock() -> None:
    soon = format_datetime(datetime.fromtimestamp(time.time() + 120, UTC), usegmt=True)
    delay = parse_retry_after(soon)
    assert delay is not None
    assert 100 < delay <= 120


@pytest.fixture
def local_time_5h_behind_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("local_time_5h_behind_utc")
def test_parse_retry_after_asctime_is_gmt() -> None:
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now=NOW) == 30.0


# --- should_retry ---------------------------------------------------------------------------


def _head(status: int, *headers: tuple[str, str]) -> ResponseHead:
    return ResponseHead("1.1", status, "", tuple(headers))


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (CheckTimeout("t"), True),
        (ConnectionReset("r"), True),
        (IncompleteResponse("cut off"), True),
        (ProtocolError("p"), False),
        (DNSError("d"), False),
        (ConnectionRefused("c"), False),
        (Unreachable("u"), False),
        (TLSError("t"), False),
        (InvalidURL("i"), False),
        (TooManyRedirects("m"), False),
        (BadRedirect("b"), False),
        (Interrupted("i"), False),
    ],
)
def test_should_retry_errors(error: CheckError, retry: bool) -> None:
    assert should_retry(Attempt("GET", URL_, error=error)) is retry
    # An error wins over whatever head came before it.
    assert should_retry(Attempt("GET", URL_, head=_head(503), error=error)) is retry


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (200, False),
        (204, False),
        (301, False),
        (400, False),
        (403, False),
        (404, False),
        (501, False),
        (505, False),
    ],
)
def test_should_retry_statuses(status: int, retry: bool) -> None:
    assert should_retry(Attempt("GET", URL_, head=_head(status))) is retry
    assert (status in RETRY_STATUSES) is retry


def test_should_retry_nothing_at_all() -> None:
    assert should_retry(Attempt("GET", URL_)) is False


# --- retry_delay --------------------------------------------------------------------------

OPTS = PoolOptions(backoff_base=0.5, backoff_max=10.0, retry_after_cap=30.0)


@pytest.mark.parametrize(
    ("n", "base"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (20, 10.0), (1000, 10.0)]
)
def test_retry_delay_within_half_base_and_base(n: int, base: float) -> None:
    attempt = Attempt("GET", URL_, error=ConnectionReset("r"))
    delays = [retry_delay(n, attempt, OPTS) for _ in range(200)]
    assert all(base / 2 <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize("pick", [min, max])
def test_retry_delay_bounds_are_reached(
    pick: Callable[..., float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("checker.pool.random.uniform", lambda a, b: pick(a, b))
    attempt = Attempt("GET", URL_, head=_head(503))
    assert retry_delay(3, attempt, OPTS) == (1.0 if pick is min else 2.0)


def test_retry_delay_for_a_very_late_retry() -> None:
    attempt = Attempt("GET", URL_, error=ConnectionReset("r"))
    assert 5.0 <= retry_delay(1100, attempt, OPTS) <= 10.0


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("20", 20.0, 20.0),  # honoured
        ("30", 30.0, 30.0),
        ("100", 30.0, 30.0),  # capped
        ("9" * 400, 30.0, 30.0),
        ("0", 0.25, 0.5),  # shorter than the backoff: the backoff wins
        ("garbage", 0.25, 0.5),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.25, 0.5),
    ],
)
def test_retry_delay_honours_retry_after(retry_after: str, low: float, high: float) -> None:
    attempt = Attempt("GET", URL_, head=_head(503, ("retry-after", retry_after)))
    for _ in range(50):
        assert low <= retry_delay(1, attempt, OPTS) <= high


def test_retry_delay_retry_after_date() -> None:
    value = format_datetime(datetime.now(UTC) + timedelta(seconds=25), usegmt=True)
    attempt = Attempt("GET", URL_, head=_head(429, ("retry-after", value)))
    assert 20.0 <= retry_delay(1, attempt, OPTS) <= 25.0


# --- map_exceptions ---------------------------------------------------------------------


def _mapped(exc: BaseException) -> BaseException:
    """What leaves map_exceptions when `exc` is raised inside it."""
    try:
        with map_exceptions():
            raise exc
    except BaseException as out:
        return out
    raise AssertionError("map_exceptions swallowed the exception")


@pytest.mark.parametrize(
    ("exc", "expected", "detail"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            ConnectionRefused,
            "refused",
        ),
        (
            ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            ConnectionReset,
            "reset",
        ),
        (
            ConnectionAbortedError(errno.ECONNABORTED, "Software caused abort"),
            ConnectionReset,
            "abort",
        ),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), ConnectionReset, "Broken pipe"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), DNSError, "not known"),
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            Unreachable,
            "Network is unreachable",
        ),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Unreachable, "No route to host"),
        (asyncio.IncompleteReadError(b"HTTP/1.1 2", 100), IncompleteResponse, "closed"),
    ],
)
def test_map_exceptions(exc: BaseException, expected: type[CheckError], detail: str) -> None:
    out = _mapped(exc)
    assert type(out) is expected
    assert detail in str(out)
    assert out.__cause__ is None and out.__suppress_context__  # one clean line, no chain


@pytest.mark.parametrize(
    "exc",
    [
        asyncio.CancelledError(),
        CheckTimeout("mine"),
        ProtocolError("mine"),
        ValueError("a bug, not the I/O edge's"),
        KeyboardInterrupt(),
    ],
    ids=["CancelledError", "CheckTimeout", "ProtocolError", "ValueError", "KeyboardInterrupt"],
)
def test_map_exceptions_lets_through(exc: BaseException) -> None:
    assert _mapped(exc) is exc


def test_map_exceptions_os_timeout() -> None:
    out = _mapped(OSError(errno.ETIMEDOUT, "Connection timed out"))
    assert isinstance(out, CheckTimeout)


# Real TLS failures, from an in-memory handshake (no sockets).


@pytest.fixture(scope="module")
def own_ca() -> trustme.CA:
    # Its own CA, not conftest's `ca`: these certificates are meant to fail.
    return trustme.CA()


def _handshake_error(
    ca: trustme.CA, hostname: str, *, trusted: bool = True, expired: bool = False
) -> ssl.SSLError:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    not_after = datetime.now(UTC) - timedelta(days=1) if expired else None
    not_before = datetime.now(UTC) - timedelta(days=10) if expired else None
    ca.issue_cert("example.com", not_before=not_before, not_after=not_after).configure_cert(
        server_ctx
    )
    client_ctx = ssl.create_default_context()
    if trusted:
        ca.configure_trust(client_ctx)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            return exc
        s_in.write(c_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        c_in.write(s_out.read())
    raise AssertionError("the handshake did not fail")


def _plain_http_error() -> ssl.SSLError:
    """What a client sees when the port speaks plain HTTP."""
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(c_in, c_out, server_hostname="example.com")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    c_in.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        client.do_handshake()
    except ssl.SSLError as exc:
        return exc
    raise AssertionError("the handshake did not fail")


def test_map_exceptions_ssl_error() -> None:
    out = _mapped(_plain_http_error())
    assert type(out) is TLSError
    assert str(out).startswith("TLS failed: WRONG_VERSION_NUMBER")
    assert "plain HTTP" in str(out)


@pytest.mark.parametrize(
    ("hostname", "trusted", "expired", "detail"),
    [
        ("example.com", False, False, "untrusted certificate (unknown issuer)"),
        ("other.example", True, False, "hostname mismatch"),
        ("example.com", True, True, "expired certificate"),
    ],
)
def test_map_exceptions_certificate_errors(
    own_ca: trustme.CA, hostname: str, trusted: bool, expired: bool, detail: str
) -> None:
    exc = _handshake_error(own_ca, hostname, trusted=trusted, expired=expired)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    out = _mapped(exc)
    assert type(out) is TLSError
    assert str(out).startswith(detail + ": ")
    assert exc.verify_message in str(out)


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        (18, "untrusted certificate (self-signed)"),
        (19, "untrusted certificate (self-signed CA in chain)"),
        (9, "certificate not yet valid"),
        (999, "certificate verification failed"),
    ],
)
def test_map_exceptions_other_verify_codes(code: int, detail: str) -> None:
    exc = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    exc.verify_code = code
    exc.verify_message = "some OpenSSL text"
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    out = _mapped(exc)
    assert type(out) is TLSError
    assert str(out) == f"{detail}: some OpenSSL text"


# --- read_targets / check_lists ------------------------------------------------------------


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def lists(tmp_path: Path) -> tuple[str, str]:
    first = _write(
        tmp_path / "first.txt",
        b"# a comment\n"  # 1
        b"\n"  # 2
        b"  http://a.example/  \t\n"  # 3 -> seq 0
        b"example.com\n"  # 4 -> seq 1
        b"not a url\n"  # 5 -> seq 2, invalid
        b"HTTP://A.example:80/\n"  # 6 -> duplicate of seq 0
        b"   \t \n"  # 7
        b"   # indented comment\n"  # 8
        b"https://b.example/x",  # 9 -> seq 3, no final newline
    )
    second = _write(
        tmp_path / "second.txt",
        b"\xef\xbb\xbfhttps://c.example/\r\n"  # 1 -> seq 4, after a BOM
        b"https://example.com:443/\r\n"  # 2 -> duplicate of seq 1
        b"http://c.example/caf\xe9\r\n"  # 3 -> seq 5, Latin-1, not UTF-8
        b"not a url\r\n"  # 4 -> seq 6, invalid again (not a duplicate)
        b"http://a.example/\r\n",  # 5 -> duplicate of seq 0, across files
    )
    return first, second


def test_read_targets(lists: tuple[str, str]) -> None:
    first, second = lists
    items = list(read_targets([first, second]))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Target", 3),
        ("Target", 4),
        ("Target", 5),
        ("Duplicate", 6),
        ("Target", 9),
        ("Target", 1),
        ("Duplicate", 2),
        ("Target", 3),
        ("Target", 4),
        ("Duplicate", 5),
    ]
    targets = [i for i in items if isinstance(i, Target)]
    assert [t.seq for t in targets] == list(range(7))  # consecutive over both files
    assert [t.source for t in targets] == [first] * 4 + [second] * 3
    assert [t.text for t in targets[:2]] == ["http://a.example/", "example.com"]  # trimmed

    a, example, bad, b, c, latin1, bad_again = targets
    assert a.url == parse_url("http://a.example/") and a.error is None
    assert example.url == parse_url("https://example.com/")
    assert b.url == parse_url("https://b.example/x")
    assert c.text == "https://c.example/"  # the BOM is gone
    assert c.url == parse_url("https://c.example/")
    for invalid in (bad, bad_again):
        assert invalid.url is None
        assert invalid.error == "a space in URL"
        assert invalid.text == "not a url"
    assert latin1.url is None
    assert latin1.error == "line is not valid UTF-8"
    assert latin1.text == "http://c.example/caf\ufffd"  # printable in a report

    dups = [i for i in items if isinstance(i, Duplicate)]
    assert dups == [
        Duplicate(of_seq=0, source=first, line=6),
        Duplicate(of_seq=1, source=second, line=2),
        Duplicate(of_seq=0, source=second, line=5),
    ]


def test_read_targets_is_lazy_and_reports_a_missing_file(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.txt", b"example.com\n")
    items = read_targets([good, str(tmp_path / "missing.txt")])
    first = next(items)
    assert isinstance(first, Target) and first.url is not None
    with pytest.raises(ListError, match="no such file"):
        next(items)


def test_check_lists_counts_entries(lists: tuple[str, str]) -> None:
    first, second = lists
    assert check_lists([first]) == 5  # invalid lines and duplicates count
    assert check_lists([first, second]) == 10
    assert check_lists([]) == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.txt"), "no such file"),
        (lambda d: str(d), "is a directory"),
        (lambda d: _write(d / "comments.txt", b"# only\n\n   # comments\n"), "no URL"),
        (lambda d: _write(d / "empty.txt", b""), "no URL"),
        (lambda d: _write(d / "bom.txt", b"\xef\xbb\xbf\r\n"), "no URL"),
    ],
    ids=["missing", "directory", "only-comments", "empty", "only-bom"],
)
def test_check_lists_refuses(
    tmp_path: Path, make: Callable[[Path], str], message: str, lists: tuple[str, str]
) -> None:
    bad = make(tmp_path)
    for paths in ([bad], [lists[0], bad]):  # also when an earlier list is fine
        with pytest.raises(ListError) as info:
            check_lists(paths)
        text = str(info.value)
        assert message in text
        assert text.startswith(bad + ": ")
        assert "\n" not in text


def test_large_blocks_go_back_to_the_system() -> None:
    import platform

    from checker.limits import return_large_blocks

    took = return_large_blocks()
    if platform.libc_ver()[0] == "glibc":
        assert took is True


def test_a_run_tunes_the_collector_and_leaves_it_as_it_found_it() -> None:
    import gc

    from checker import loops

    async def during() -> tuple[tuple[int, ...], int]:
        return gc.get_threshold(), gc.get_freeze_count()

    before = gc.get_threshold()
    threshold, frozen = loops.run(during(), "asyncio")
    assert threshold == (10_000, 10, 10) and frozen > 0
    # The process goes on (cli.main from a program, the tests) as it was.
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
