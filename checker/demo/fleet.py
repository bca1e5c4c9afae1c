"""A fleet of local HTTP/1.1 sites on asyncio streams, for demos and end-to-end tests.

Only the standard library is used, because ``checker demo`` ships in the package.
Each route is configured with a :class:`Route`; every request received is recorded
in :attr:`Fleet.requests` so tests can check exactly what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

_CERTS = Path(__file__).parent / "certs"

# A request line or header line, line ending included, may be at most this long.
_BACKLOG = 1024
_MAX_LINE = 16 * 1024
# The whole request head (and any blank lines before it) may be at most this long.
_MAX_HEAD = 64 * 1024
# A client that never completes the TLS handshake is dropped after this long.
_HANDSHAKE_TIMEOUT = 10.0
# Closing a connection waits this long for a clean (TLS) shutdown, then aborts.
_CLOSE_TIMEOUT = 2.0
_BODY_CHUNK = 64 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HTTP_VERSION = re.compile(r"HTTP/1\.[01]")
_DIGITS = re.compile(r"[0-9]+")
_FORBIDDEN_IN_FIELDS = re.compile(r"[\r\n\0]")


def _check_field_text(text: str) -> None:
    if _FORBIDDEN_IN_FIELDS.search(text):
        raise ValueError(f"CR, LF and NUL are not allowed in a response field: {text!r}")
    text.encode("latin-1")  # raises UnicodeEncodeError: fields are sent as latin-1


@dataclass(frozen=True)
class Route:
    """How one path answers.

    ``reason=None`` sends the standard phrase for ``status``; ``reason=""`` sends no
    phrase at all (``HTTP/1.1 200\\r\\n``). ``raw`` replaces the whole response
    with the given bytes, after which the connection is closed; ``delay`` still applies.
    """

    status: int = 200
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok\n"
    delay: float = 0.0
    head_status: int | None = None
    location: str | None = None
    raw: bytes | None = None

    def __post_init__(self) -> None:
        # Catch configuration mistakes here rather than as a confusing response later.
        for status in (self.status, self.head_status):
            if status is not None and not 100 <= status <= 999:
                raise ValueError(f"status must have three digits: {status}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative: {self.delay}")
        for name, value in self.headers:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name: {name!r}")
            _check_field_text(value)
        _check_field_text(self.reason or "")
        _check_field_text(self.location or "")


@dataclass(frozen=True)
class SeenRequest:
    """A request as the fleet received it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    raw_head: bytes
    tls: bool


def demo_ca_file() -> Path:
    """The CA certificate that signed the demo server certificate."""
    return _CERTS / "ca.pem"


def demo_server_context() -> ssl.SSLContext:
    """A server-side TLS context with the demo certificate for 127.0.0.1, localhost and ::1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(_CERTS / "server.pem")
    return context


class Fleet:
    """HTTP (and optionally HTTPS) servers on ephemeral ports serving ``routes``.

    Use as ``async with Fleet(routes) as fleet:``; :meth:`stop` closes every
    connection, so no socket or task outlives the block.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        https_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        # A host name could resolve to several addresses, each of which would get
        # its own ephemeral port; an address literal keeps one port per server.
        ipaddress.ip_address(host)
        self._routes = dict(routes)
        self._https_context = https_context
        self._host = host
        self.requests: list[SeenRequest] = []
        self._http_server: asyncio.Server | None = None
        self._https_server: asyncio.Server | None = None
        self._dead_socket: socket.socket | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._stopping = False

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening (HTTP, HTTPS if configured) and reserve the dead port."""
        if self._http_server is not None:
            raise RuntimeError("fleet already started")
        self._stopping = False
        try:
            self._http_server = await self._listen(tls=False)
            if self._https_context is not None:
                self._https_server = await self._listen(tls=True)
            self._dead_socket = _reserve_dead_port(self._host)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening and close every client connection, open or mid-request."""
        self._stopping = True
        servers = [s for s in (self._http_server, self._https_server) if s is not None]
        self._http_server = self._https_server = None
        for server in servers:
            server.close()
        await self._close_connections()
        for server in servers:
            # From Python 3.12 this waits for the server's connections, closed above.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await server.wait_closed()
        if self._dead_socket is not None:
            self._dead_socket.close()
            self._dead_socket = None

    @property
    def http_port(self) -> int:
        return _port_of(_running(self._http_server))

    @property
    def https_port(self) -> int | None:
        if self._https_context is None:
            return None
        return _port_of(_running(self._https_server))

    def url(self, path: str) -> str:
        return f"http://{_netloc(self._host, self.http_port)}{path}"

    def https_url(self, path: str) -> str:
        port = self.https_port
        if port is None:
            raise RuntimeError("this fleet has no HTTPS server (no https_context given)")
        return f"https://{_netloc(self._host, port)}{path}"

    def dead_url(self, path: str = "/") -> str:
        """An http URL whose port refuses connections.

        The port stays bound (but never listens) while the fleet runs, so nothing
        else can take it and connecting is refused reliably.
        """
        if self._dead_socket is None:
            raise RuntimeError("fleet is not running")
        return f"http://{_netloc(self._host, _port_of_socket(self._dead_socket))}{path}"

    async def _listen(self, *, tls: bool) -> asyncio.Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._handle_connection(reader, writer, tls=tls)

        # TLS is started inside the handler rather than by the server, so that a
        # connection still in its handshake is tracked and closed by stop() too.
        # A deep accept queue: tests open hundreds of connections at once, and
        # with the default of 100 the kernel drops SYNs and the client's retry
        # after 1 s looks like a slow server.
        return await asyncio.start_server(
            on_connect, self._host, 0, limit=_MAX_LINE, backlog=_BACKLOG
        )

    async def _close_connections(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()  # each handler closes its own connection on the way out
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=2 * _CLOSE_TIMEOUT)
        for task in stuck:
            writer = self._connections.get(task)
            if writer is not None:
                writer.transport.abort()

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        if self._stopping:
            # Accepted just as stop() began, so stop() will not wait for this one.
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("connection handler must run in a task")
        self._connections[task] = writer
        try:
            if tls and not await _start_tls(writer, self._https_context):
                return
            await self._serve(reader, writer, tls=tls)
        except asyncio.CancelledError:
            # Only stop() cancels handlers. Python 3.11's start_server logs a traceback
            # for a handler task that ends cancelled, so end normally instead.
            pass
        finally:
            del self._connections[task]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        try:
            while await self._serve_one(reader, writer, tls=tls):
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away (reset, broken pipe, EOF mid-request, TLS error)
        finally:
            await _close_writer(writer)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> bool:
        """Answer one request; return whether the connection stays open for another."""
        try:
            lines = await _read_head(reader)
            if lines is None:
                return False
            request = _parse_head(lines)
        except _BadRequest:
            await _send(writer, _encode_response(_BAD_REQUEST, head=False, close=True))
            return False
        self.requests.append(
            SeenRequest(request.method, request.target, request.headers, b"".join(lines), tls)
        )
        await _discard_body(reader, request.body_length)

        route = self._routes.get(request.target.partition("?")[0], _NOT_FOUND)
        if route.delay:
            await asyncio.sleep(route.delay)
        if route.raw is not None:
            await _send(writer, route.raw)
            return False
        close = request.wants_close or _route_closes(route)
        await _send(writer, _encode_response(route, head=request.method == "HEAD", close=close))
        return not close


_NOT_FOUND = Route(status=404, body=b"not found\n")
_BAD_REQUEST = Route(status=400, body=b"bad request\n")


class _BadRequest(Exception):
    """The request head is malformed or too large; it is answered with 400."""


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body_length: int
    wants_close: bool


async def _read_head(reader: asyncio.StreamReader) -> list[bytes] | None:
    """Read the request line and headers, through the blank line, endings kept.

    Returns None when the client closes (or sends EOF mid-head) instead of a request.
    """
    lines: list[bytes] = []
    received = 0
    while True:
        line = await _read_line(reader)
        if not line.endswith(b"\n"):
            return None
        received += len(line)
        if received > _MAX_HEAD:
            raise _BadRequest("request head too large")
        blank = line in (b"\r\n", b"\n")
        if blank and not lines:
            continue  # RFC 9112 section 2.2: ignore stray blank lines before a request
        lines.append(line)
        if blank:
            return lines


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readline()
    except ValueError:  # StreamReader's way of saying the line exceeds its limit
        raise _BadRequest("line too long") from None
    if len(line) > _MAX_LINE:
        raise _BadRequest("line too long")
    return line


def _parse_head(lines: list[bytes]) -> _Request:
    request_line, *field_lines = (_strip_eol(line).decode("latin-1") for line in lines[:-1])
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise _BadRequest(f"bad request line: {request_line!r}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not target or not _HTTP_VERSION.fullmatch(version):
        raise _BadRequest(f"bad request line: {request_line!r}")
    headers = tuple(_parse_field(line) for line in field_lines)
    return _Request(
        method=method,
        target=target,
        headers=headers,
        body_length=_body_length(headers),
        wants_close=_wants_close(version, headers),
    )


def _strip_eol(line: bytes) -> bytes:
    return line.removesuffix(b"\n").removesuffix(b"\r")


def _parse_field(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    # Also rejects obsolete line folding and whitespace before the colon.
    if not colon or not _TOKEN.fullmatch(name):
        raise _BadRequest(f"bad header line: {line!r}")
    return name, value.strip(" \t")


def _header_values(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    """Every comma-separated element of the header ``name`` (case-insensitive)."""
    return [
        element.strip(" \t")
        for field_name, value in headers
        if field_name.lower() == name
        for element in value.split(",")
    ]


def _body_length(headers: tuple[tuple[str, str], ...]) -> int:
    lengths = set(_header_values(headers, "content-length"))
    if not lengths:
        return 0
    length = lengths.pop()
    if lengths or not _DIGITS.fullmatch(length):  # conflicting or not a number
        raise _BadRequest("bad Content-Length")
    return int(length)


def _wants_close(version: str, headers: tuple[tuple[str, str], ...]) -> bool:
    if version == "HTTP/1.0":
        return True
    if any(token.lower() == "close" for token in _header_values(headers, "connection")):
        return True
    # Request bodies are not decoded, so after a chunked one the next request's
    # start is unknown: answer this request, then close.
    return bool(_header_values(headers, "transfer-encoding"))


async def _discard_body(reader: asyncio.StreamReader, length: int) -> None:
    while length > 0:
        chunk = await reader.readexactly(min(length, _BODY_CHUNK))
        length -= len(chunk)


def _route_closes(route: Route) -> bool:
    return any(token.lower() == "close" for token in _header_values(route.headers, "connection"))


def _encode_response(route: Route, *, head: bool, close: bool) -> bytes:
    if head and route.head_status is not None:
        # A server refusing HEAD: a bare answer, not the route's headers or length.
        route = Route(status=route.head_status, body=b"")
    body = b"" if head or _is_bodiless(route.status) else route.body
    fields = "".join(f"{name}: {value}\r\n" for name, value in _response_fields(route, close))
    return (_status_line(route) + fields + "\r\n").encode("latin-1") + body


def _status_line(route: Route) -> str:
    reason = _standard_reason(route.status) if route.reason is None else route.reason
    if not reason:
        return f"HTTP/1.1 {route.status}\r\n"
    return f"HTTP/1.1 {route.status} {reason}\r\n"


def _standard_reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""  # no standard phrase for this code


def _is_bodiless(status: int) -> bool:
    """Statuses whose responses never have a body (RFC 9110 section 6.4.1)."""
    return status < 200 or status in (204, 304)


def _response_fields(route: Route, close: bool) -> list[tuple[str, str]]:
    """The automatic fields, then the route's own, which replace automatic ones of the same name."""
    automatic = [("Server", "checker-demo"), ("Date", formatdate(usegmt=True))]
    if not _is_bodiless(route.status):
        # For HEAD too: the length the GET would have had.
        automatic.append(("Content-Length", str(len(route.body))))
    if route.location is not None:
        automatic.append(("Location", route.location))
    if close:
        automatic.append(("Connection", "close"))
    given = {name.lower() for name, _ in route.headers}
    return [field for field in automatic if field[0].lower() not in given] + list(route.headers)


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext | None) -> bool:
    """Upgrade to TLS; return False (connection already closed) if the handshake fails."""
    if context is None:
        raise RuntimeError("TLS connection without an https_context")
    try:
        await writer.start_tls(context, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT)
    except OSError:
        # The event loop has already closed the transport. After a handshake timeout
        # it does not tell the stream, so writer.wait_closed() would never return.
        return False
    return True


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    """Close gracefully if the peer cooperates in time, otherwise abort."""
    closed = False
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
        closed = True
    except (OSError, TimeoutError):
        pass  # wait_closed() re-raises whatever broke the connection
    finally:
        if not closed:
            writer.transport.abort()


def _reserve_dead_port(host: str) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _running(server: asyncio.Server | None) -> asyncio.Server:
    if server is None:
        raise RuntimeError("fleet is not running")
    return server


def _port_of(server: asyncio.Server) -> int:
    return _port_of_socket(server.sockets[0])


def _port_of_socket(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"
