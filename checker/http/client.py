"""The only module that touches sockets: connect, TLS, write + drain, readline.

Everything it reads goes straight to the pure parsers in `wire`. Everything
that goes wrong leaves it as a `CheckError` (see `map_exceptions`), and every
connection it opens is closed before it returns or raises, cancellation
included.

Deadlines: the caller wraps a whole check in `asyncio.timeout()`; this module
adds the connect deadline (DNS + TCP + TLS) of `ClientConfig.connect_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

from checker.http import wire
from checker.http.body import BodySink
from checker.http.connections import (
    Connection,
    ConnectionPool,
    Origin,
    Waiting,
    buffered,
    close_stream,
    unread,
)
from checker.http.deadline import Deadline, Exact, held_off
from checker.http.deadline import clock as deadline_clock
from checker.http.errors import (
    CheckError,
    CheckTimeout,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    DNSError,
    IncompleteResponse,
    NoResponse,
    ProtocolError,
    ProxyError,
    TLSError,
    Unreachable,
)
from checker.http.eyeballs import connect_first
from checker.http.proxy import Proxy, ProxySettings
from checker.http.resolver import Address, Resolver, SystemResolver, check_deadline
from checker.url import TLS_SCHEMES, URL

# Body bytes read to keep a connection for the next request; past this a new
# connection is cheaper.
DRAIN_CAP = 64 * 1024
# How long a body may take to come after its head for the connection to be
# kept (a body sent with its head comes at once; Nagle and a delayed ACK can
# hold a second segment 40 ms): past that it is closed instead.
DRAIN_WAIT = 0.25
DRAIN_MARGIN = 0.01  # the drain ends this long before the check's deadline, at the latest
# A body for a body check whose last piece came this recently when the
# deadline came is a stream, checked on what came; one quiet longer has
# stopped (a timeout). At most STREAMING_SHARE of the deadline: with
# --timeout 1, 2 s of quiet covered the whole read, and a body that sent a
# part and froze was checked on that part (a not_contains passed on it).
STREAMING = 2.0
STREAMING_SHARE = 0.25
# Empty lines tolerated before a status line; more is not a server being sloppy.
MAX_BLANK_LINES = 4
# Bodies are read in pieces of this size, so a huge one never sits in memory.
BODY_PIECE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ClientConfig:
    # A LazyContext (what a run uses) is finished at the first TLS check.
    ssl_context: ssl.SSLContext | LazyContext
    # Bounds the name lookup (from when the system is asked), and then the TCP
    # connect and TLS handshake together.
    connect_timeout: float = 5.0
    user_agent: str = "checker"
    # One per run: its cache and threads live as long as the run.
    resolver: Resolver = field(default_factory=SystemResolver)
    proxies: ProxySettings = field(default_factory=ProxySettings)
    _blocks: dict[bool, bytes] = field(default_factory=dict, compare=False, repr=False)

    def header_block(self, keep: bool) -> bytes:
        """The request's header lines after Host, made once per config."""
        block = self._blocks.get(keep)
        if block is None:
            block = self._blocks[keep] = wire.header_block(_headers(self, keep))
        return block


@dataclass(slots=True)
class Trace:
    """What one request went through. Filled in as it goes, so that a check that
    fails half-way still reports the phases it finished."""

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_not_after: str | None = None
    cert_days_left: int | None = None
    reused: bool = False  # sent on a kept-alive connection: no DNS, connect or TLS phase
    ip: str | None = None  # the address connected to
    # What the server did wrong without costing the check its answer.
    warnings: list[str] = field(default_factory=list)

    def restart(self) -> None:
        """Forget a failed try on a kept-alive connection before a fresh one."""
        self.ttfb_ms = self.tls_version = self.tls_cipher = None
        self.cert_subject = self.cert_issuer = self.cert_not_after = None
        self.cert_days_left = None
        self.reused = False
        self.ip = None


def make_ssl_context(*, insecure: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context (system CAs, plus `ca_file`), ALPN http/1.1."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return _client_settings(ctx, insecure)


def _client_settings(ctx: ssl.SSLContext, insecure: bool) -> ssl.SSLContext:
    # A certificate of the trust store ends a chain even when it is not a
    # root: --ca-file may name an organisation's issuing CA rather than its
    # root (as curl, and Python 3.13's default context). The system's store
    # holds roots, so nothing changes for it.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class LazyContext:
    """make_ssl_context's context for a run, finished at its first TLS check.

    Loading the system's CA certificates takes about 15 ms, a sixth of a
    run's start-up, and holds 2-3 MB (at the edge of the 64 MiB a run of a
    million URLs may take): a list without https:// never needs them. The
    first TLS check waits for them in a thread before its clock starts
    (`tls_ready`), so that the wait is not timed as its own.

    The `ca_file` is read once, by `check`, as the run starts, into the
    context that the system's certificates are then added to: a bad file is
    the user's error before any check, a file given as `<(cat ca.pem)` is
    not read twice, and one removed during the run fails nothing.
    """

    def __init__(self, *, insecure: bool = False, ca_file: str | None = None) -> None:
        self._insecure = insecure
        self._ca_file = ca_file
        self._with_file: ssl.SSLContext | None = None  # the ca_file's certificates alone
        self._made: ssl.SSLContext | None = None
        self._failed: str | None = None  # why it could not be made
        self._lock = threading.Lock()

    def check(self) -> None:
        """Read the ca_file; raise what loading it raises (OSError, SSLError)."""
        if self._ca_file and self._with_file is None:
            # (create_default_context loads no system certificates when given a file.)
            self._with_file = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=self._ca_file
            )

    @property
    def ready(self) -> bool:
        return self._made is not None

    def start_early(self) -> None:
        """Begin making the context now, in a thread of its own, for a run
        whose list begins with a TLS URL: its first handshakes then find it
        made (or wait for the rest of it), rather than all 200 waiting out
        the system's certificates first (15 to 45 ms) while the run's start
        (the journal, the reporter) went on beside it. A daemon: a run that
        ends first does not wait for it. What fails is said by the first TLS
        check, as ever (`get`)."""
        if self._made is None:
            threading.Thread(target=self._make, name="tls-context", daemon=True).start()

    async def get(self) -> ssl.SSLContext:
        """The context; a TLSError (the check's, not a crash) if it cannot be made."""
        made = self._made
        if made is None:
            made = await asyncio.to_thread(self._make)
        return made

    def _make(self) -> ssl.SSLContext:
        with self._lock:  # several first handshakes at once make one context
            if self._made is None and self._failed is None:
                try:
                    self.check()
                    if self._with_file is not None:
                        ctx = self._with_file
                        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
                    else:
                        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
                    self._made = _client_settings(ctx, self._insecure)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    self._failed = f"cannot make the TLS context: {exc}"
            if self._made is None:
                raise TLSError(self._failed or "no TLS context")
            return self._made


async def tls_ready(config: ClientConfig) -> None:
    """Have the run's TLS context made, if it is not yet, so that the wait is
    not timed as part of a check (call before its clock starts)."""
    context = config.ssl_context
    if isinstance(context, LazyContext) and not context.ready:
        with contextlib.suppress(TLSError):  # (the connection reports it)
            await context.get()


async def request_head(
    url: URL,
    method: str,
    config: ClientConfig,
    trace: Trace,
    pool: ConnectionPool | None = None,
    *,
    extra: tuple[tuple[str, str], ...] = (),
    sink: BodySink | None = None,
) -> wire.ResponseHead:
    """Send one request and read the response head.

    Without a `pool` every request has its own connection and says
    `Connection: close`. With one, an idle connection to the same origin is
    reused when there is one, and the connection is handed back after the
    response when it may carry another (see `connections`).
    """
    counted = False  # a TLS handshake counted by the pool (`begin_handshake`)
    if pool is not None:
        conn = pool.take(url.origin)
        if conn is None and url.scheme in TLS_SCHEMES:
            conn = await _handshake_turn(pool, url.origin)
            counted = conn is None
        if conn is not None:
            try:
                return await _exchange(
                    conn, url, method, config, trace, pool, reused=True, extra=extra, sink=sink
                )
            except (ProtocolError, ConnectionReset) as exc:
                # A kept-alive connection can be closed by the server as we
                # write, or hold bytes of an earlier answer that arrived after
                # we handed it back (a body sent after a HEAD response). Either
                # way nothing is charged to this URL until a fresh connection
                # says the same (README, "Connections").
                if trace.ttfb_ms is not None:
                    # (Bytes came: nobody asked for them. Its host's other
                    # connections may hold the same: they are not reused.)
                    no_more = _no_more_reuse(pool, url.origin)
                    trace.warnings.append(
                        f"a kept-alive connection gave an answer that could not be read "
                        f"({exc}); checked again on a new connection{no_more}"
                    )
                trace.restart()
    waiting = pool.waiting(url.origin) if pool is not None else None
    try:
        began = time.perf_counter()
        try:
            reader, writer = await _connect(url, config, trace)
        except BaseException:
            if counted and pool is not None:
                pool.handshake_done(url.origin, ok=False)
            raise
        if counted and pool is not None:
            pool.handshake_done(url.origin, ok=True, seconds=time.perf_counter() - began)
        if waiting is not None and pool is not None and url.scheme in TLS_SCHEMES:
            # A server that finished a TLS handshake has taken the connection:
            # what it waits for now is the page, not a place in the server.
            pool.answered(waiting)
        conn = Connection(url.origin, reader, writer, tls=_tls_fields(trace), ip=trace.ip)
        proxy = config.proxies.for_url(url) if url.scheme == "http" else None
        if proxy is not None:
            conn.via_proxy = proxy.authorization or ""
        return await _exchange(
            conn,
            url,
            method,
            config,
            trace,
            pool,
            reused=False,
            extra=extra,
            sink=sink,
            waiting=waiting,
        )
    finally:
        if waiting is not None and pool is not None:
            pool.answered(waiting)


async def _handshake_turn(pool: ConnectionPool, origin: Origin) -> Connection | None:
    """A connection to `origin` put back while this waited for one, or None:
    shake hands (counted by the pool: `handshake_done` after). The wait is
    the run's, not the URL's: the check's deadline stands still meanwhile,
    and it is left out of the check's time (as a resolver thread's is)."""
    if pool.begin_handshake(origin):
        return None
    with held_off(check_deadline.get()):
        conn = await pool.wait_turn(origin)
    if conn is None:
        pool.begin_handshake(origin, waited=True)
    return conn


async def post(
    url: URL,
    body: bytes,
    content_type: str,
    config: ClientConfig,
    trace: Trace | None = None,
) -> wire.ResponseHead:
    """POST `body` on a connection of its own and read the response head.

    For alerts (the webhook): the same connect, TLS, deadline and error mapping
    as a check; the caller wraps it in `asyncio.timeout()`.
    """
    trace = trace or Trace()
    reader, writer = await _connect(url, config, trace)
    conn = Connection(url.origin, reader, writer)
    extra = (("Content-Type", content_type), ("Content-Length", str(len(body))))
    return await _exchange(
        conn, url, "POST", config, trace, None, reused=False, extra=extra, body=body
    )


async def _exchange(
    conn: Connection,
    url: URL,
    method: str,
    config: ClientConfig,
    trace: Trace,
    pool: ConnectionPool | None,
    *,
    reused: bool,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    sink: BodySink | None = None,
    waiting: Waiting | None = None,
) -> wire.ResponseHead:
    """One request and its response head on `conn`, which is then kept in `pool`
    (when the response allows) or closed; closed at once on any error. With a
    `sink`, the response body is read into it (up to its cap). `waiting`: a
    new connection's, told `answered` once its head came."""
    keep = pool is not None and not pool.last_request(conn)
    absolute = conn.via_proxy is not None  # plain http through a proxy
    if conn.via_proxy:
        extra = (("Proxy-Authorization", conn.via_proxy), *extra)
    if extra:
        # A header the list sets replaces checker's own of that name (User-Agent).
        names = {name.lower() for name, _ in extra}
        base = tuple(h for h in _headers(config, keep) if h[0].lower() not in names)
        request = wire.request_line(method, url, absolute) + wire.header_block(base + extra)
    else:
        # The same few header sets all run long: their bytes are made once.
        request = wire.request_line(method, url, absolute) + config.header_block(keep)
    conn.requests += 1
    trace.reused = reused
    if reused:
        trace.ip = conn.ip
        for name, value in conn.tls.items():
            setattr(trace, name, value)
    try:
        with map_exceptions():
            if body:
                conn.writer.writelines((request, body))
            else:
                conn.sender.send(conn.writer, request)  # written later in this turn of the loop
            await conn.writer.drain()
            sent = time.perf_counter()
            head = await read_head(conn.reader, trace, sent)
        if waiting is not None and pool is not None:
            pool.answered(waiting)  # (before it goes back to the pool: not waiting on itself)
        if sink is not None:
            kept = await _keep_body(conn.reader, head, method, sink, trace)
            reusable = keep and _persistent(head) and kept
        else:
            # (A HEAD response has no body to drain: no coroutine for it.)
            reusable = (
                keep
                and _persistent(head)
                and (method == "HEAD" or await _drain(conn.reader, head, method))
            )
    except BaseException:
        # Errors, timeouts and cancellation: nothing more is owed to this peer.
        if pool is not None:
            pool.gone(conn.origin)
        await close_stream(conn.writer, abort=True)
        raise
    # Where the response ended is known after a HEAD or a body read to its end;
    # anything buffered past that point is excess. (Otherwise it is the body.)
    extra_bytes = buffered(conn.reader) if reusable or method == "HEAD" else 0
    if extra_bytes:
        # More than the response's framing allows: a body after a HEAD
        # response, a second response nobody asked for. The next request on
        # this connection would read it as its answer, so the connection goes,
        # and the host's others with it: theirs may come after they are taken.
        no_more = _no_more_reuse(pool, conn.origin) if pool is not None else ""
        trace.warnings.append(
            f"server sent {extra_bytes} bytes after the response to {method}{no_more}"
        )
        reusable = False
    if reusable and pool is not None:
        pool.put(conn)
    else:
        if pool is not None:
            pool.gone(conn.origin)
        await close_stream(conn.writer)
    return head


def _no_more_reuse(pool: ConnectionPool, origin: Origin) -> str:
    """`origin` sent bytes nobody asked for: its connections are not reused
    again in the run; what its check's warning adds when this stopped them."""
    if pool.stop_reusing(origin):
        return ": its connections are no longer reused in this run"
    return ""


def _headers(config: ClientConfig, keep: bool) -> tuple[tuple[str, str], ...]:
    base = (("User-Agent", config.user_agent), ("Accept", "*/*"))
    # HTTP/1.1 connections persist unless a side says close (RFC 9112 9.3).
    return base if keep else (*base, ("Connection", "close"))


# A connection a request was refused on is not kept: a limit of a client's
# connections counts the idle ones too (haproxy's deny_status 429 past 4: a
# first burst of 6, refused whole and kept idle, held its host over the
# limit, and every request was refused for 7 s, until they timed out idle).
REFUSED = frozenset({429, 503})


def _persistent(head: wire.ResponseHead) -> bool:
    connection = head.get("connection")
    if head.status == 101 or head.status in REFUSED or wire.has_token(connection, "close"):
        return False
    return head.version == "1.1" or wire.has_token(connection, "keep-alive")


async def _drain(reader: asyncio.StreamReader, head: wire.ResponseHead, method: str) -> bool:
    """Read the body off the connection so it can carry another request.

    Only small, exactly framed bodies that come at once are worth it: a large
    one costs more to read than a new connection, a body that runs to the
    close cannot be followed by anything, and one still coming after
    DRAIN_WAIT (server-sent events, long polling, a slow download) would use
    up the check's deadline for an answer it already has: the connection is
    closed instead. A body that turns out broken only costs the reuse; the
    head already arrived complete, so the check stands. The time spent here
    is not the URL's (Deadline.untimed).
    """
    start = time.perf_counter()
    deadline = check_deadline.get()
    left = _time_left(deadline)
    # Never into the check's deadline: its answer is in already (a head in
    # the deadline's last moment came out as a timeout).
    wait = DRAIN_WAIT if left is None else min(DRAIN_WAIT, left)
    try:
        framing = wire.framing(head, method)
        if framing.kind == "eof" or (framing.length or 0) > DRAIN_CAP or wait <= 0:
            return False
        async with asyncio.timeout(wait):
            with map_exceptions():
                _, complete = await read_body(reader, framing, DRAIN_CAP)
    except (ProtocolError, ConnectionReset, TimeoutError):
        return False
    finally:
        if deadline is not None:
            deadline.untimed += time.perf_counter() - start
    return complete


def _time_left(deadline: Deadline | None) -> float | None:
    """Seconds until DRAIN_MARGIN before the check's deadline (None: none,
    or held off): what a body read after the head may take."""
    when = deadline.when() if deadline is not None else None
    return when - deadline_clock() - DRAIN_MARGIN if when is not None else None


async def _keep_body(
    reader: asyncio.StreamReader,
    head: wire.ResponseHead,
    method: str,
    sink: BodySink,
    trace: Trace,
) -> bool:
    """Read the body into `sink` for a body check; whether the connection can
    carry another request. A body that breaks off (framing that cannot be
    read, a cut, a reset) fails the check: what came before is no page to
    check (a not_contains passed on nothing; curl fails, browsers show an
    error page: found by a review)."""
    # The body is read until the check's deadline at the latest, and checked
    # on what came by then: a page still streaming at the deadline has
    # answered (it was a `timeout` with no status, asked again on a new
    # connection, twice the wait for the same answer).
    deadline = check_deadline.get()
    left = _time_left(deadline)
    streaming = (
        STREAMING if deadline is None else min(STREAMING, STREAMING_SHARE * deadline.seconds())
    )
    try:
        framing = wire.framing(head, method)
        async with asyncio.timeout(max(0.0, left) if left is not None else None):
            with map_exceptions():
                _, sink.complete = await read_body(reader, framing, sink.cap, sink)
    except (ProtocolError, ConnectionReset) as exc:  # (IncompleteResponse is a ProtocolError)
        sink.broken = type(exc)(f"the body broke off after {len(sink.data)} bytes: {exc}")
        return False
    except TimeoutError:
        quiet = time.monotonic() - sink.last_at
        if not sink.data or quiet > streaming:
            # Not a stream: a server that froze after its head (or in its
            # body) has not answered; an empty or cut body must not pass
            # a not_contains.
            raise CheckTimeout(
                f"the body stopped coming: {len(sink.data)} bytes, then nothing until the deadline"
            ) from None
        trace.warnings.append(
            f"the body was still coming at the deadline: checked on its first"
            f" {len(sink.data)} bytes"
        )
        return False
    return sink.complete and framing.kind != "eof"


def _tls_fields(trace: Trace) -> dict[str, object]:
    """What a connection's handshake said, to report again on each reuse
    (nothing for plain HTTP: no six None fields set on every check)."""
    if trace.tls_version is None:
        return {}
    names = ("tls_version", "tls_cipher", "cert_subject", "cert_issuer")
    fields = {name: getattr(trace, name) for name in names}
    fields.update(cert_not_after=trace.cert_not_after, cert_days_left=trace.cert_days_left)
    return fields


async def _connect(
    url: URL, config: ClientConfig, trace: Trace
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    proxy = config.proxies.for_url(url)
    if proxy is not None:
        return await _connect_via(proxy, url, config, trace)
    addresses = await _resolve(url.host, config, trace)
    # (Made before connecting: a server that speaks first must find the
    # handshake begun, see _start_tls_or_close.)
    context = await _tls_context(config) if url.scheme in TLS_SCHEMES else None
    start = time.perf_counter()
    try:
        # (Exact, on a timer of its own, not a Deadline swept with the
        # check's: a connect that runs out the check's time must end as a
        # connect timeout, which tells a host that leaves new connections
        # unanswered while busy apart from a page that hangs. Swept, 1 to 2
        # healthy pages of 300 came out degraded or down behind a server
        # that serves 4 connections at once, at --timeout 1: found by a
        # review.)
        with Exact(config.connect_timeout):
            reader, writer = await _open(addresses, url.port, trace, start)
            if context is not None:
                await _start_tls_or_close(reader, writer, url, context, trace)
            return reader, writer
    except TimeoutError as exc:
        if isinstance(exc, CheckError):
            raise
        what = "TLS handshake" if trace.connect_ms is not None else "connect"
        tried = ", ".join(a for _f, a in addresses[:4]) + (", ..." if len(addresses) > 4 else "")
        raise ConnectTimeout(
            f"{what} timed out after {config.connect_timeout:g}s ({tried})"
        ) from None


async def connect(
    url: URL, config: ClientConfig, trace: Trace
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the URL's origin (and TLS for https://, tls://, smtps://),
    for a protocol session of its own (`checker.protocols`)."""
    return await _connect(url, config, trace)


async def upgrade(
    writer: asyncio.StreamWriter, url: URL, config: ClientConfig, trace: Trace
) -> None:
    """TLS on a connection that started in plain text (STARTTLS), the
    certificate checked against the URL's host and recorded in `trace`."""
    await _start_tls(writer, url, await _tls_context(config), trace)


async def open_service(
    url: URL, config: ClientConfig, trace: Trace, banner_limit: int | None = None
) -> str | None:
    """tcp:// and tls:// (see `checker.url`): connect, and for tls:// shake
    hands (the certificate recorded as for HTTPS); with `banner_limit`, read
    the first line the service sends (at most that many bytes). Closed before
    it returns, on every path. Returns the line (without its end), or None."""
    reader, writer = await _connect(url, config, trace)
    try:
        if banner_limit is None:
            return None
        with map_exceptions():
            line = await _first_line(reader, banner_limit)
        return line.rstrip(b"\r\n").decode("utf-8", "replace")
    finally:
        await close_stream(writer)


async def _first_line(reader: asyncio.StreamReader, limit: int) -> bytes:
    """Up to the first line end, or the first `limit` bytes, or what came
    before the close: a first line longer than `limit` is judged on its
    first `limit` bytes as soon as they are in (it waited for a line end
    until the deadline, and a service that had answered at once was a
    `timeout`: found by a review)."""
    got = bytearray()
    while (end := got.find(b"\n")) < 0 and len(got) < limit:
        piece = await reader.read(limit)
        if not piece:
            return bytes(got)
        got += piece
    return bytes(got[: end + 1 if 0 <= end < limit else limit])


async def _resolve(host: str, config: ClientConfig, trace: Trace) -> tuple[Address, ...]:
    """(family, address) pairs to try, in order (see `resolver`)."""
    if ":" in host:
        return ((socket.AF_INET6, host),)
    if _is_ipv4(host):
        return ((socket.AF_INET, host),)
    if host.endswith(".localhost"):
        return _LOOPBACK  # (never asked of DNS: RFC 6761 6.3)
    if host == "localhost":
        return await _localhost(config, trace)
    resolved = await config.resolver.resolve(host, config.connect_timeout)
    trace.dns_ms = resolved.ms
    return resolved.addresses


_LOOPBACK: tuple[Address, ...] = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))


async def _localhost(config: ClientConfig, trace: Trace) -> tuple[Address, ...]:
    """What the resolver says of localhost (/etc/hosts), and the loopback of
    each family it left out, as curl and browsers take it (RFC 6761): a
    server on [::1] only was `refused` where /etc/hosts names localhost
    127.0.0.1 alone (found by a review)."""
    try:
        resolved = await config.resolver.resolve("localhost", config.connect_timeout)
    except DNSError:
        return _LOOPBACK
    trace.dns_ms = resolved.ms
    families = {family for family, _ in resolved.addresses}
    return resolved.addresses + tuple(a for a in _LOOPBACK if a[0] not in families)


async def _open(
    addresses: tuple[Address, ...], port: int, trace: Trace, start: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The first of `addresses` to accept (Happy Eyeballs), as streams."""
    if len(addresses) == 1:
        # Nothing to race: the loop connects the one address itself. An
        # attempt's task, its wait and a socket object of ours cost 60-80 us
        # a connection (a third of a check on a list of distinct hosts), and
        # the loop closes its socket on every path as surely as we do. The
        # address is a literal; AI_NUMERICHOST keeps any lookup out.
        family, trace.ip = addresses[0]
        with map_exceptions():
            streams = await asyncio.open_connection(
                trace.ip, port, family=family, flags=socket.AI_NUMERICHOST, limit=wire.MAX_LINE
            )
        trace.connect_ms = _ms(start)
        return streams
    sock, (_family, trace.ip) = await connect_first(addresses, port, _classify)
    trace.connect_ms = _ms(start)
    try:
        with map_exceptions():
            return await asyncio.open_connection(sock=sock, limit=wire.MAX_LINE)
    except BaseException:
        sock.close()
        raise


async def _connect_via(
    proxy: Proxy, url: URL, config: ClientConfig, trace: Trace
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to `proxy`; for https, a CONNECT tunnel through it to the
    URL's origin, upgraded to TLS in place (the certificate checked against
    the URL's host). What goes wrong before the tunnel stands is the proxy's."""
    context = await _tls_context(config) if url.scheme == "https" else None
    start = time.perf_counter()
    try:
        with Exact(config.connect_timeout):
            addresses = await _resolve(proxy.host, config, trace)
            reader, writer = await _open(addresses, proxy.port, trace, start)
            if context is None:
                return reader, writer
            try:
                await _tunnel(reader, writer, proxy, url)
            except BaseException:
                await close_stream(writer, abort=True)
                raise
    except TimeoutError as exc:
        if isinstance(exc, CheckError):
            raise ProxyError(f"proxy {proxy.shown}: {exc}") from None
        raise ProxyError(
            f"proxy {proxy.shown}: no tunnel within {config.connect_timeout:g}s"
        ) from None
    except ProxyError:
        raise
    except CheckError as exc:
        raise ProxyError(f"proxy {proxy.shown}: {exc}") from None
    await _start_tls_or_close(reader, writer, url, context, trace)
    return reader, writer


async def _tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: Proxy, url: URL
) -> None:
    """CONNECT (RFC 9110 9.3.6): a 2xx answer makes the connection a tunnel."""
    where = f"{url.host_for_uri}:{url.port}"
    lines = [f"CONNECT {where} HTTP/1.1", f"Host: {where}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    with map_exceptions():
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        await writer.drain()
        head = await read_head(reader, Trace(), time.perf_counter())
    if not 200 <= head.status <= 299:
        raise ProxyError(
            f"proxy {proxy.shown} answered {head.status} {head.reason} to CONNECT {where}"
        )


def _classify(exc: BaseException) -> CheckError:
    """The CheckError that `map_exceptions` makes of a connect attempt's failure."""
    try:
        with map_exceptions():
            raise exc
    except CheckError as mapped:
        return mapped
    raise exc  # pragma: no cover - map_exceptions maps every Exception it gets


async def _tls_context(config: ClientConfig) -> ssl.SSLContext:
    context = config.ssl_context
    return await context.get() if isinstance(context, LazyContext) else context


async def _start_tls_or_close(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    url: URL,
    context: ssl.SSLContext,
    trace: Trace,
) -> None:
    """`_start_tls` on a new connection, closed at once if it fails (or is cancelled)."""
    try:
        if buffered(reader):
            # A TLS server waits for the client's hello. Bytes already read
            # are a plain-text server speaking first (a banner), and they
            # would be lost to the handshake, which then waited out the
            # deadline: a timeout instead of what it is.
            said = bytes(unread(reader)[:40])
            raise TLSError(f"TLS handshake failed: the server spoke first, in plain text: {said!r}")
        await _start_tls(writer, url, context, trace)
    except BaseException:
        # Aborted, not waited for: after a failed start_tls the stream's
        # protocol is no longer the transport's, so wait_closed() would
        # wait out its whole bound, a second inside the connect deadline (a
        # reset handshake came out as a `timeout`).
        writer.transport.abort()
        raise


async def _start_tls(
    writer: asyncio.StreamWriter, url: URL, context: ssl.SSLContext, trace: Trace
) -> None:
    start = time.perf_counter()
    try:
        with map_exceptions("TLS handshake"):
            await writer.start_tls(context, server_hostname=url.host)
    except (ConnectionReset, IncompleteResponse) as exc:
        # TCP worked; the peer dropped us mid-handshake, which is how many
        # servers say "no protocol version or cipher in common".
        raise TLSError(f"TLS handshake failed: {exc}") from None
    trace.tls_ms = _ms(start)
    sslobj = writer.get_extra_info("ssl_object")
    if isinstance(sslobj, ssl.SSLObject):
        trace.tls_version = sslobj.version()
        cipher = sslobj.cipher()
        trace.tls_cipher = cipher[0] if cipher else None
        _record_cert(sslobj.getpeercert(), trace)


def _record_cert(cert: object, trace: Trace) -> None:
    """Subject, issuer and expiry; only a verifying context gets them decoded."""
    if not isinstance(cert, dict) or not cert:
        return
    trace.cert_subject = _name(cert.get("subject"))
    trace.cert_issuer = _name(cert.get("issuer"))
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        expires = ssl.cert_time_to_seconds(not_after)
        trace.cert_not_after = (
            datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        )
        trace.cert_days_left = int((expires - time.time()) // 86400)


def _name(rdns: object) -> str | None:
    """An X.509 name as "CN=..., O=..." from getpeercert()'s nested tuples."""
    if not isinstance(rdns, tuple):
        return None
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    parts = [f"{short.get(key, key)}={value}" for rdn in rdns for key, value in rdn if key in short]
    return ", ".join(parts) or None


async def read_head(reader: asyncio.StreamReader, trace: Trace, sent: float) -> wire.ResponseHead:
    blank = 0
    for interim in range(wire.MAX_INTERIM + 1):
        line = await _readline(reader)
        if trace.ttfb_ms is None and line:
            trace.ttfb_ms = _ms(sent)
        while line in (b"\r\n", b"\n") and blank < MAX_BLANK_LINES:
            # Robustness (RFC 9112 2.2): some servers send a stray CRLF before
            # a status line, e.g. after a 100 Continue. llhttp skips them too.
            blank += 1
            line = await _readline(reader)
        if not line:
            if interim:
                raise IncompleteResponse("connection closed after an interim (1xx) response")
            raise NoResponse("server closed the connection without sending a response")
        if not line.endswith(b"\n"):
            raise IncompleteResponse("connection closed in the middle of the status line")
        line = wire.strip_eol(line)
        status = _status_line(line) if len(line) <= CACHED_LINE else wire.parse_status_line(line)
        headers = await read_headers(reader)
        # 1xx are interim (100 Continue, 103 Early Hints): the real answer
        # follows. 101 ends HTTP on this connection, so it is the final one.
        if status.status < 200 and status.status != 101:
            continue
        return wire.ResponseHead(status.version, status.status, status.reason, headers)
    raise ProtocolError(f"more than {wire.MAX_INTERIM} interim (1xx) responses")


# A server answers a list's URLs with the same few heads, byte for byte,
# until its Date changes once a second: their parses are kept (pure
# functions of the bytes, immutable results; errors are not kept). Only
# short heads of few fields, and not many of them: at most 128 blocks of
# 1 KiB and 24 fields and 128 status lines of 128 bytes (0.8 MB with their
# parses, by tracemalloc, for blocks of 24 fields of 35 bytes). Across many
# hosts they seldom repeat, and a miss costs a lookup.
CACHED_HEAD = 1024
CACHED_FIELDS = 24
CACHED_LINE = 128
_status_line = functools.lru_cache(maxsize=128)(wire.parse_status_line)
_header_block = functools.lru_cache(maxsize=128)(wire.parse_header_block)


async def read_headers(reader: asyncio.StreamReader) -> tuple[tuple[str, str], ...]:
    # Nearly always the whole head came in one segment and sits in the
    # reader's buffer: take it in one read and parse it whole (a readline()
    # per header line was the largest cost of a check). When it has not all
    # arrived, line by line; both go through the same rules (wire.HeaderLines).
    end = wire.head_end(unread(reader))
    if 0 < end <= wire.MAX_HEAD:
        block = await reader.readexactly(end)
        if end <= CACHED_HEAD and block.count(b"\n") <= CACHED_FIELDS + 1:
            return _header_block(block)
        return wire.parse_header_block(block)
    lines = wire.HeaderLines()
    while True:
        line = await _readline(reader)
        if not line.endswith(b"\n"):
            raise IncompleteResponse("connection closed in the middle of the headers")
        if lines.feed(line):
            return tuple(lines.headers)


async def read_body(
    reader: asyncio.StreamReader, framing: wire.Framing, cap: int, sink: BodySink | None = None
) -> tuple[int, bool]:
    """Read and discard a body framed as `framing`; stop after `cap` bytes.

    Returns (bytes read, whether the body ended where its framing said). A body
    cut short by the server raises IncompleteResponse; a malformed chunk,
    ProtocolError. Run inside `map_exceptions()`.
    """
    if framing.kind == "none":
        return 0, True
    if framing.kind == "content-length":
        assert framing.length is not None
        return await _read_exactly(reader, framing.length, cap, sink)
    if framing.kind == "eof":
        total = 0
        while total <= cap:
            piece = await reader.read(BODY_PIECE)
            if not piece:
                return total, True
            total += len(piece)
            if sink is not None:
                sink.add(piece)
        return total, False
    return await _read_chunked(reader, cap, sink)


async def _read_exactly(
    reader: asyncio.StreamReader, n: int, cap: int, sink: BodySink | None = None
) -> tuple[int, bool]:
    done = 0
    while done < n:
        if done >= cap:
            return done, False
        # What has come, up to a piece: a body check sees a slow body as it
        # comes (readexactly held it back until a whole piece was there).
        piece = await reader.read(min(BODY_PIECE, n - done))
        if not piece:
            raise asyncio.IncompleteReadError(b"", n - done)  # (as readexactly says it)
        if sink is not None:
            sink.add(piece)
        done += len(piece)
    return done, True


async def _read_chunked(
    reader: asyncio.StreamReader, cap: int, sink: BodySink | None = None
) -> tuple[int, bool]:
    total = 0
    while True:
        line = await _readline(reader)
        if not line.endswith(b"\n"):
            raise IncompleteResponse("connection closed in the middle of a chunked body")
        size = wire.parse_chunk_size(wire.strip_eol(line))
        if size == 0:
            await read_headers(reader)  # trailers, with the same limits as headers
            return total, True
        got, complete = await _read_exactly(reader, size, cap - total, sink)
        total += got
        if not complete:
            return total, False
        end = await _readline(reader)
        if end not in (b"\r\n", b"\n"):
            if not end.endswith(b"\n"):
                raise IncompleteResponse("connection closed in the middle of a chunked body")
            raise ProtocolError("chunk data is longer than its chunk size")


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:
        # StreamReader turns LimitOverrunError into ValueError for readline().
        raise ProtocolError(f"response line longer than {wire.MAX_LINE // 1024} KiB") from None


class map_exceptions:
    """Turn the standard library's exceptions into the checker's, in one place.

    `tls_phase` names what a TLS error interrupted, for its detail. (A class,
    not a @contextmanager generator: it is entered for every request, and
    the generator's machinery cost three times as much.)
    """

    __slots__ = ("_tls_phase",)

    def __init__(self, tls_phase: str = "TLS") -> None:
        self._tls_phase = tls_phase

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, CheckError):
            return False  # (CancelledError is a BaseException: it goes on as it is)
        mapped = _mapped(exc, self._tls_phase)
        if mapped is None:
            return False  # not the I/O edge's to map: as it was
        raise mapped from None


def _mapped(exc: Exception, tls_phase: str) -> CheckError | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(_describe_verify_error(exc))
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        hint = " (is this port speaking plain HTTP?)" if reason == "WRONG_VERSION_NUMBER" else ""
        return TLSError(f"{tls_phase} failed: {reason}{hint}")
    if isinstance(exc, socket.gaierror):
        return DNSError(f"name resolution failed: {exc.strerror or exc}")
    if isinstance(exc, asyncio.IncompleteReadError):
        return IncompleteResponse("connection closed before the response was complete")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused("connection refused")
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        said = exc.strerror or str(exc)
        if not said:  # (asyncio's own, for a connection closed under a handshake)
            return ConnectionReset("the server closed the connection")
        return ConnectionReset(f"connection reset by peer ({said})")
    if isinstance(exc, TimeoutError):
        # Our deadlines are outside this block, so this is the kernel's ETIMEDOUT.
        return CheckTimeout("connection timed out (by the operating system)")
    if isinstance(exc, OSError):
        return Unreachable(exc.strerror or str(exc))
    return None


# OpenSSL's X509_V_ERR_* codes, grouped the way a site owner fixes them.
_VERIFY_KINDS = {
    10: "expired certificate",
    9: "certificate not yet valid",
    62: "hostname mismatch",
    64: "hostname mismatch",  # IP address mismatch
    18: "untrusted certificate (self-signed)",
    19: "untrusted certificate (self-signed CA in chain)",
    20: "untrusted certificate (unknown issuer)",
    21: "untrusted certificate (unknown issuer)",
    2: "untrusted certificate (unknown issuer)",
}


def _describe_verify_error(exc: ssl.SSLCertVerificationError) -> str:
    kind = _VERIFY_KINDS.get(getattr(exc, "verify_code", 0), "certificate verification failed")
    return f"{kind}: {getattr(exc, 'verify_message', None) or exc}"


# Four dotted numbers of at most three ASCII digits (a pattern, not a split
# and a generator: 1.6 us against 2.5, on every new connection to a literal).
_DOTTED = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)


def _is_ipv4(host: str) -> bool:
    found = _DOTTED.fullmatch(host)
    return found is not None and max(map(int, found.groups())) <= 255


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
