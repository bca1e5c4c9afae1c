"""One check of one URL: the request(s), redirects, HEAD->GET confirmation,
the deadline, and the record that comes out of it.

Retries and concurrency live in `pool`; sockets live in `http.client`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from checker.expect import DEGRADED, DOWN, PLAIN, UP, Expect, Observed, printable, verdict
from checker.hosts import SLOW_DOWN
from checker.http.body import MAX_BODY, Body, BodySink, decode
from checker.http.client import ClientConfig, Trace, open_service, request_head, tls_ready
from checker.http.connections import ConnectionPool
from checker.http.cookies import Jar
from checker.http.deadline import Deadline
from checker.http.errors import (
    BadRedirect,
    CheckError,
    CheckTimeout,
    ConnectionReset,
    ProtocolError,
    TooManyRedirects,
)
from checker.http.resolver import check_deadline
from checker.http.wire import ResponseHead, parse_content_length
from checker.results import NOT_A_CHECK, Hop, Result, now_iso
from checker.targets import Target
from checker.url import TLS_SCHEMES, URL, URLError, is_clean, location_of, resolve_location

if TYPE_CHECKING:
    from checker.protocols.session import Outcome

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BANNER_LIMIT = 1024  # bytes of a service's first line kept (and matched)
# Services with a protocol session of their own (checker.protocols, imported
# when a list first names one: a list of web pages never loads them).
SESSIONS = frozenset({"smtp", "smtps", "ftp", "ftps"})


def _session(scheme: str) -> Callable[[URL, ClientConfig, Trace], Awaitable[Outcome]]:
    if scheme.startswith("smtp"):
        from checker.protocols.smtp_check import check_smtp

        return check_smtp
    from checker.protocols.ftp_check import check_ftp

    return check_ftp


@dataclass(frozen=True, slots=True)
class CheckOptions:
    client: ClientConfig
    method: str = "HEAD"  # "HEAD" (confirmed with GET when down) or "GET"
    follow_redirects: bool = True
    max_redirects: int = 10
    timeout: float = 10.0  # the whole exchange, every hop (and the GET that decides, anew)
    headers: tuple[tuple[str, str], ...] = ()  # -H, sent with every request
    max_body: int = MAX_BODY  # bytes of a body kept for a body check


@dataclass(slots=True)
class Attempt:
    """What one attempt at a check came to (one deadline, and one more for
    the GET that decides after HEAD)."""

    method: str
    final_url: URL
    head: ResponseHead | None = None
    head_status: int | None = None
    error: CheckError | None = None
    redirects: list[Hop] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    trace: Trace = field(default_factory=Trace)
    total_ms: float = 0.0
    expect: Expect = PLAIN
    body: Body | None = None  # for a body check
    banner: str | None = None  # a service's first line (tcp://, tls:// when asked; smtp://)
    # A protocol's last reply (smtp://): the report's status and reason.
    reply_code: int | None = None
    reply_text: str | None = None
    # A HEAD told to slow down (429, 503) whose GET was kept for later
    # (attempt_check's slow_down_later): the pool sends it after the pace.
    get_later: bool = False

    @property
    def state(self) -> tuple[str, tuple[str, ...]]:
        """(up, degraded or down; why) on this attempt alone (see expect.verdict)."""
        if self.error is not None:
            return DOWN, ()
        if self.final_url.is_service:
            seen = Observed(
                None, self.banner, True, self.total_ms, self.trace.cert_days_left, 1, True
            )
            return verdict(self.expect, seen)
        if self.head is None:
            return DOWN, ()
        expect = self.expect
        if (
            expect.max_ms is None
            and expect.cert_min_days is None
            and not expect.needs_body
            and self.head.status in expect.statuses
        ):
            return UP, ()  # what verdict says when only the status is asked about (most rows)
        return verdict(
            self.expect,
            Observed(
                self.head.status,
                self.body.text if self.body else None,
                self.body.complete if self.body else False,
                self.total_ms,
                self.trace.cert_days_left,
                1,
            ),
        )

    @property
    def ok(self) -> bool:
        return self.state[0] != DOWN


# HEAD's failures after which a GET decides: the server took the request and
# then did something wrong with it (no answer, a cut or broken one, a reset).
# Not the failures to reach the host at all (dns, refused, tls...): a GET
# would meet the same.
_HEAD_FAILURES = (ProtocolError, ConnectionReset)


async def attempt_check(
    url: URL,
    opts: CheckOptions,
    connections: ConnectionPool | None = None,
    expect: Expect | None = None,
    method: str | None = None,
    slow_down_later: bool = False,
) -> Attempt:
    """Run one attempt under the check's deadline (the GET that decides after
    a HEAD under one of its own); never raises a CheckError.

    With `connections`, requests may reuse kept-alive connections. `expect`:
    a CSV list row's expectations (a body check is a GET that reads the body).
    `method`: this attempt's, over the options' (the pool retries with GET
    after a HEAD that got no answer in time). `slow_down_later`: a HEAD
    answered 429 or 503 is this attempt's answer (the pool asks again after
    the host's pace), not confirmed by a GET at once.
    """
    if url.scheme in TLS_SCHEMES:
        await tls_ready(opts.client)  # (the run's to wait for, not this URL's)
    start = time.perf_counter()
    expect = expect or PLAIN
    if url.is_service:
        return await _probe(url, opts, expect, start)
    method = method or expect.method or ("GET" if expect.needs_body else opts.method)
    out = Attempt(method=method, final_url=url, expect=expect)
    deadlines = [_Within(opts.timeout)]
    try:
        failed: CheckError | None = None
        try:
            with deadlines[0]:
                await _follow(url, method, opts, out, connections)
        except _HEAD_FAILURES as exc:
            if method != "HEAD":
                raise
            failed = exc
        head = out.head
        refused = head is not None and head.status not in expect.statuses
        if method == "HEAD" and refused and slow_down_later and head is not None:
            # (A HEAD told to slow down: its GET after the host's pace.)
            out.get_later = head.status in SLOW_DOWN
            refused = not out.get_later
        if method == "HEAD" and (failed is not None or refused):
            # Many servers answer HEAD wrongly (405, 501, even 404 or 500,
            # or not at all): one GET decides before the URL is called down.
            # With a deadline of its own: a slow site that refuses HEAD
            # must not have its GET starved by the HEAD's wait.
            head_status = out.head.status if failed is None and out.head else None
            # What HEAD's server did wrong stays said (a body after HEAD).
            warnings = out.warnings
            if failed is not None:
                warnings.append(f"HEAD failed ({failed.category}: {failed}); GET decided")
            out = Attempt(method="GET", final_url=url, head_status=head_status, expect=expect)
            out.warnings = warnings
            deadlines.append(_Within(opts.timeout))
            with deadlines[1]:
                await _follow(url, "GET", opts, out, connections)
    except CheckError as exc:
        out.error = exc
    except TimeoutError:
        out.error = CheckTimeout(f"no complete response within {opts.timeout:g}s")
    # (Not the time that was not the URL's: a wait for a resolver thread, a
    # body read off after the answer to keep the connection.)
    not_timed = 0.0
    for deadline in deadlines:
        not_timed += deadline.not_timed()
    out.total_ms = round((time.perf_counter() - start - not_timed) * 1000, 3)
    return out


class _Within(Deadline):
    """A check attempt's deadline, which the resolver and the pool's waits
    can hold off: while its block runs, `check_deadline` names it. (A
    context manager, not a coroutine around the attempt's: one coroutine
    less to make and to pass through at each resume.)"""

    __slots__ = ("_token",)

    def __enter__(self) -> _Within:
        super().__enter__()
        self._token = check_deadline.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        check_deadline.reset(self._token)
        super().__exit__(exc_type, exc, tb)


async def _probe(url: URL, opts: CheckOptions, expect: Expect, start: float) -> Attempt:
    """tcp:// and tls://: a connection (and handshake) under the check's
    deadline, and the first line when an expectation is about it."""
    out = Attempt(method=url.scheme.upper(), final_url=url, expect=expect)
    deadline = _Within(opts.timeout)
    try:
        with deadline:
            await _service(url, opts, expect, out)
    except CheckError as exc:
        out.error = exc
        if url.scheme in SESSIONS:
            # (Only a session says no in words: its replies are imported with it.)
            from checker.protocols.replies import ReplyRefused

            if isinstance(exc, ReplyRefused):  # the server said no: its words stay
                out.reply_code = exc.code
                out.banner = exc.banner
    except TimeoutError:
        if url.scheme in SESSIONS:
            what = f"no complete {url.scheme.removesuffix('s').upper()} session"
        else:
            what = "no first line" if expect.needs_body else "no connection"
        out.error = CheckTimeout(f"{what} within {opts.timeout:g}s")
    out.total_ms = round((time.perf_counter() - start - deadline.not_timed()) * 1000, 3)
    return out


async def _service(url: URL, opts: CheckOptions, expect: Expect, out: Attempt) -> None:
    """A service's session (smtp://, ftp://...) or connection (tcp://, tls://),
    into `out`."""
    if url.scheme in SESSIONS:
        session = await _session(url.scheme)(url, opts.client, out.trace)
        out.banner = session.greeting.first_line
        out.reply_code = session.last.code
        out.reply_text = session.last.first_line
        out.warnings += session.warnings
    else:
        out.banner = await open_service(
            url, opts.client, out.trace, BANNER_LIMIT if expect.needs_body else None
        )


async def _follow(
    url: URL, method: str, opts: CheckOptions, out: Attempt, connections: ConnectionPool | None
) -> None:
    """Request `url`, following redirects; leaves the last response in `out`."""
    # The URLs visited once there is a redirect, each with the cookies held
    # then: back at one with new cookies is a cookie gate, not a loop.
    seen: dict[str, object] = {}
    jar: Jar | None = None  # (made at the first redirect that sets a cookie)
    current = url
    while True:
        out.final_url = current
        out.trace = Trace()
        out.head = None
        out.body = None
        # A body only when a check needs it: then compressed bodies are welcome.
        sink = BodySink(opts.max_body) if out.expect.needs_body and method == "GET" else None
        extra = opts.headers + out.expect.headers
        if extra and current.origin != url.origin and not _upgraded(url, current):
            extra = _for_another_origin(extra, current, out.warnings)
        cookie = jar.header(current) if jar is not None else None
        if cookie is not None:
            extra = _with_cookie(extra, cookie)
        if sink is not None:
            extra += (("Accept-Encoding", "gzip, deflate"),)
        try:
            out.head = await request_head(
                current, method, opts.client, out.trace, connections, extra=extra, sink=sink
            )
        finally:
            out.warnings += out.trace.warnings
        if sink is not None:
            out.body = decode(
                bytes(sink.data),
                sink.complete,
                out.head.get("content-encoding"),
                out.head.get("content-type"),
                opts.max_body,
            )
            out.warnings += out.body.warnings
        status = out.head.status
        location = out.head.get_all("location") if status in REDIRECT_STATUSES else None
        if (
            not opts.follow_redirects
            or not location  # (a 3xx without a Location is reported as it is)
            # A row that expects this redirect (expect_status 301): it is the answer.
            or out.expect.statuses.names_redirect(status)
        ):
            if opts.follow_redirects and status in REDIRECT_STATUSES and not location:
                out.warnings.append(f"{status} without a Location: nothing to follow")
            if sink is not None and sink.broken is not None:
                # The final page's body broke off: no page to check. (A hop
                # that is followed has no body to judge: curl -L and browsers
                # follow it. Found by a review.) A cut or reset may be
                # retried, as ever.
                raise sink.broken
            if out.body is not None and out.body.broken:
                # As curl (exit 61) and browsers (ERR_CONTENT_DECODING_FAILED):
                # a page nobody can read is not up, whatever its bytes hold.
                raise ProtocolError(out.body.broken)
            return
        if sink is not None and sink.broken is not None:
            out.warnings.append(f"{sink.broken} (a redirect's body: followed, not judged)")
        try:
            nxt = resolve_location(current, location_of(location[0]))
        except URLError as exc:
            raise BadRedirect(f"{exc}: Location {location[0][:200]!r}") from None
        if not is_clean(location[0]):
            out.warnings.append(
                f"a Location with spaces or control characters ({location[0][:200]!r}),"
                " followed as browsers do"
            )
        out.redirects.append(Hop(out.head.status, str(current), str(nxt)))
        if current.scheme == "https" and nxt.scheme == "http":
            out.warnings.append(f"redirected from https down to http: {nxt}")
        set_cookie = out.head.get_all("set-cookie")
        if set_cookie:
            jar = jar or Jar()
            jar.take(current, set_cookie)
        held = jar.state() if jar is not None else None
        if not seen:
            seen[str(url)] = None
        if str(nxt) in seen and seen[str(nxt)] == held:
            raise TooManyRedirects(f"redirect loop: {nxt} was already visited")
        if len(out.redirects) > opts.max_redirects:
            raise TooManyRedirects(f"more than {opts.max_redirects} redirects")
        seen[str(nxt)] = held
        current = nxt


# Credentials that go to the URL's own origin only (as curl, and browsers
# for Authorization): a redirect elsewhere must not carry the list's
# secrets to another host, or over plain http.
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _with_cookie(headers: tuple[tuple[str, str], ...], cookie: str) -> tuple[tuple[str, str], ...]:
    """`headers` with the jar's cookies: one Cookie field (RFC 6265 5.4),
    after the list's own when it sets one."""
    own = [v for n, v in headers if n.lower() == "cookie"]
    rest = tuple(h for h in headers if h[0].lower() != "cookie")
    return (*rest, ("Cookie", "; ".join([*own, cookie])))


def _upgraded(first: URL, now: URL) -> bool:
    """The same host, from http to https on its default port: what went in
    clear on the first hop is no safer kept from the encrypted one, and an
    API that redirects to https wants it there (found by a review: such rows
    were 401, down)."""
    return (
        first.scheme == "http"
        and now.scheme == "https"
        and first.host == now.host
        and (first.port, now.port) == (80, 443)
    )


def _for_another_origin(
    headers: tuple[tuple[str, str], ...], to: URL, warnings: list[str]
) -> tuple[tuple[str, str], ...]:
    kept = tuple(h for h in headers if h[0].lower() not in _CREDENTIALS)
    if len(kept) < len(headers):
        names = ", ".join(sorted({n for n, _ in headers if n.lower() in _CREDENTIALS}))
        where = f"{to.scheme}://{to.host_header}"
        warnings.append(f"{names} not sent to {where}: a redirect to another origin")
    return kept


def make_result(target: Target, attempt: Attempt, attempts: int, free: int = 0) -> Result:
    """The row of a check's last attempt. `free`: attempts before it that are
    not charged to the URL (a kept-alive connection that went silent)."""
    head, trace, error = attempt.head, attempt.trace, attempt.error
    state, reasons = attempt.state
    if state != DOWN and attempts - free > 1:
        # Up on a retry: it answered, but not the first time (README, "Three states").
        state, reasons = DEGRADED, (*reasons, f"up only on attempt {attempts}")
    expect = target.expect
    content_length: int | None = None
    if head is not None:
        try:
            content_length = parse_content_length(head.get_all("content-length"))
        except CheckError:
            content_length = None  # framing only matters once a body is read
    # By position, in `FIELDS` order: 37 keywords cost 27,700 instructions a
    # row, by position 10,300 (valgrind). tests/test_results.py gives every
    # field its own value and finds each under its name.
    return Result(
        target.text,  # url
        target.source,  # source
        target.line,  # line
        state != DOWN,  # ok
        state,  # state
        head.status if head else attempt.reply_code,  # status
        head.reason if head else _printable(attempt.reply_text),  # reason
        error.category if error else None,  # error
        str(error) if error else None,  # error_detail
        attempt.method,  # method
        attempt.head_status,  # head_status
        head.version if head else None,  # http_version
        str(attempt.final_url),  # final_url
        trace.ip,  # ip
        tuple(attempt.redirects),  # redirects
        attempts,  # attempts
        trace.dns_ms,  # dns_ms
        trace.connect_ms,  # connect_ms
        trace.tls_ms,  # tls_ms
        trace.ttfb_ms,  # ttfb_ms
        attempt.total_ms,  # total_ms
        trace.reused,  # reused
        now_iso(),  # checked_at
        content_length,  # content_length
        head.get("server") if head else None,  # server
        trace.tls_version,  # tls_version
        trace.tls_cipher,  # tls_cipher
        trace.cert_subject,  # cert_subject
        trace.cert_issuer,  # cert_issuer
        trace.cert_not_after,  # cert_not_after
        trace.cert_days_left,  # cert_days_left
        tuple(dict.fromkeys(attempt.warnings)) if attempt.warnings else (),  # warnings
        reasons,  # reasons
        expect.name if expect else None,  # name
        expect.tags if expect else (),  # tags
        _printable(attempt.banner),  # banner
    )


def failed_result(target: Target, category: str, detail: str) -> Result:
    """A row for a line that was never checked (invalid, or the run was stopped)."""
    expect = target.expect
    return Result(
        url=target.text,
        source=target.source,
        line=target.line,
        ok=False,
        # A line that is no check, or one the run never finished, is in no state.
        state=None if category in NOT_A_CHECK else DOWN,
        error=category,
        error_detail=detail,
        checked_at=now_iso(),
        name=expect.name if expect else None,
        tags=expect.tags if expect else (),
    )


def _printable(line: str | None) -> str | None:
    """A banner as a report can hold it: control characters shown as \\xNN."""
    if line is None:
        return None
    return printable(line)[:200]
