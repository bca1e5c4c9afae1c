"""One exception family for everything a check can run into.

The report's `error` column is the `category` of the class that was raised, so
adding a failure kind means adding a class here and a line in the README.
Low-level exceptions (OSError, ssl.SSLError, asyncio's) are turned into these
once, at the I/O edge, by `checker.http.client.map_exceptions`.
"""

from __future__ import annotations

from typing import ClassVar


class CheckError(Exception):
    """Base of every failure a check reports. `str(exc)` is the `error_detail`."""

    category: ClassVar[str] = "error"
    # Worth another attempt: the same request may well succeed a moment later.
    transient: ClassVar[bool] = False


class InvalidURL(CheckError):
    category = "invalid_url"


class DNSError(CheckError):
    category = "dns"


class ConnectionRefused(CheckError):
    category = "refused"


class Unreachable(CheckError):
    category = "unreachable"


class CheckTimeout(CheckError, TimeoutError):
    """Also a built-in TimeoutError, so code that catches that one catches ours."""

    category = "timeout"
    transient = True


class ConnectTimeout(CheckTimeout):
    """A new connection not made (TCP connect, TLS handshake) within
    `--connect-timeout`: also what a host that takes so many of a client's
    connections at once does to the others, left in its accept queue
    (haproxy's maxconn: `pool.turned_away_by`)."""


class ConnectionReset(CheckError):
    category = "reset"
    transient = True


class TLSError(CheckError):
    category = "tls"


class ProtocolError(CheckError):
    """The server sent something that is not a valid HTTP/1.x response."""

    category = "protocol"


class IncompleteResponse(ProtocolError):
    """The connection ended before a whole response head arrived (cut off)."""

    transient = True


class NoResponse(IncompleteResponse):
    """The connection ended before any byte of a response: also what a host
    that limits a client's connections does to one too many (squid's
    client_ip_max_connections, node's maxConnections: `pool.turned_away_by`)."""


class ProxyError(CheckError):
    """The proxy, not the site: it refused, dropped us, or would not tunnel."""

    category = "proxy"
    transient = True


class TooManyRedirects(CheckError):
    category = "too_many_redirects"


class BadRedirect(CheckError):
    category = "bad_redirect"


class Interrupted(CheckError):
    """The run was stopped (Ctrl-C, SIGTERM) before this check finished."""

    category = "interrupted"


CATEGORIES: tuple[str, ...] = (
    InvalidURL.category,
    DNSError.category,
    ConnectionRefused.category,
    Unreachable.category,
    CheckTimeout.category,
    ConnectionReset.category,
    TLSError.category,
    ProtocolError.category,
    TooManyRedirects.category,
    BadRedirect.category,
    Interrupted.category,
)
