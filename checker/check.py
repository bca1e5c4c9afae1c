"""One check of one URL: the request(s), redirects, HEAD->GET confirmation,
the deadline, and the record that comes out of it.

Retries and concurrency live in `pool`; sockets live in `http.client`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from checker.http.client import ClientConfig, Trace, request_head
from checker.http.connections import ConnectionPool
from checker.http.errors import BadRedirect, CheckError, CheckTimeout, TooManyRedirects
from checker.http.resolver import check_deadline
from checker.http.wire import ResponseHead, parse_content_length
from checker.results import Hop, Result, now_iso
from checker.targets import Target
from checker.url import URL, URLError, resolve_location

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class CheckOptions:
    client: ClientConfig
    method: str = "HEAD"  # "HEAD" (confirmed with GET when down) or "GET"
    follow_redirects: bool = True
    max_redirects: int = 10
    timeout: float = 10.0  # the whole exchange: every hop, the GET confirmation


def is_up(status: int) -> bool:
    """Up means a final status of 200-399 (README, "Up or down")."""
    return 200 <= status <= 399


@dataclass(slots=True)
class Attempt:
    """What one attempt at a check came to (one deadline)."""

    method: str
    final_url: URL
    head: ResponseHead | None = None
    head_status: int | None = None
    error: CheckError | None = None
    redirects: list[Hop] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    trace: Trace = field(default_factory=Trace)
    total_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.head is not None and is_up(self.head.status)


async def attempt_check(
    url: URL, opts: CheckOptions, connections: ConnectionPool | None = None
) -> Attempt:
    """Run one attempt under the check's deadline; never raises a CheckError.

    With `connections`, requests may reuse kept-alive connections.
    """
    start = time.perf_counter()
    out = Attempt(method=opts.method, final_url=url)
    try:
        async with asyncio.timeout(opts.timeout) as deadline:
            token = check_deadline.set(deadline)
            try:
                await _follow(url, opts.method, opts, out, connections)
                if opts.method == "HEAD" and out.head is not None and not is_up(out.head.status):
                    # Many servers answer HEAD wrongly (405, 501, even 404 or
                    # 500): one GET decides before the URL is called down.
                    head_status = out.head.status
                    # What HEAD's server did wrong stays said (a body after HEAD).
                    warnings = out.warnings
                    out = Attempt(method="GET", final_url=url, head_status=head_status)
                    out.warnings = warnings
                    await _follow(url, "GET", opts, out, connections)
            finally:
                check_deadline.reset(token)
    except CheckError as exc:
        out.error = exc
    except TimeoutError:
        out.error = CheckTimeout(f"no complete response within {opts.timeout:g}s")
    out.total_ms = round((time.perf_counter() - start) * 1000, 3)
    return out


async def _follow(
    url: URL, method: str, opts: CheckOptions, out: Attempt, connections: ConnectionPool | None
) -> None:
    """Request `url`, following redirects; leaves the last response in `out`."""
    seen = {str(url)}
    current = url
    while True:
        out.final_url = current
        out.trace = Trace()
        out.head = None
        try:
            out.head = await request_head(current, method, opts.client, out.trace, connections)
        finally:
            out.warnings += out.trace.warnings
        if not opts.follow_redirects or out.head.status not in REDIRECT_STATUSES:
            return
        location = out.head.get_all("location")
        if not location:
            return  # a 3xx without a Location is reported as it is
        try:
            nxt = resolve_location(current, location[0])
        except URLError as exc:
            raise BadRedirect(f"{exc}: Location {location[0][:200]!r}") from None
        out.redirects.append(Hop(out.head.status, str(current), str(nxt)))
        if current.scheme == "https" and nxt.scheme == "http":
            out.warnings.append(f"redirected from https down to http: {nxt}")
        if str(nxt) in seen:
            raise TooManyRedirects(f"redirect loop: {nxt} was already visited")
        if len(out.redirects) > opts.max_redirects:
            raise TooManyRedirects(f"more than {opts.max_redirects} redirects")
        seen.add(str(nxt))
        current = nxt


def make_result(target: Target, attempt: Attempt, attempts: int) -> Result:
    head, trace, error = attempt.head, attempt.trace, attempt.error
    content_length: int | None = None
    if head is not None:
        try:
            content_length = parse_content_length(head.get_all("content-length"))
        except CheckError:
            content_length = None  # framing only matters once a body is read
    return Result(
        url=target.text,
        source=target.source,
        line=target.line,
        ok=attempt.ok,
        status=head.status if head else None,
        reason=head.reason if head else None,
        error=error.category if error else None,
        error_detail=str(error) if error else None,
        method=attempt.method,
        head_status=attempt.head_status,
        http_version=head.version if head else None,
        final_url=str(attempt.final_url),
        redirects=tuple(attempt.redirects),
        attempts=attempts,
        dns_ms=trace.dns_ms,
        connect_ms=trace.connect_ms,
        tls_ms=trace.tls_ms,
        ttfb_ms=trace.ttfb_ms,
        total_ms=attempt.total_ms,
        checked_at=now_iso(),
        content_length=content_length,
        server=head.get("server") if head else None,
        tls_version=trace.tls_version,
        tls_cipher=trace.tls_cipher,
        cert_subject=trace.cert_subject,
        cert_issuer=trace.cert_issuer,
        cert_not_after=trace.cert_not_after,
        cert_days_left=trace.cert_days_left,
        reused=trace.reused,
        ip=trace.ip,
        warnings=tuple(dict.fromkeys(attempt.warnings)),
    )


def failed_result(target: Target, category: str, detail: str) -> Result:
    """A row for a line that was never checked (invalid, or the run was stopped)."""
    return Result(
        url=target.text,
        source=target.source,
        line=target.line,
        ok=False,
        error=category,
        error_detail=detail,
        checked_at=now_iso(),
    )
