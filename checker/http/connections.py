"""Idle HTTP/1.1 connections kept for reuse (persistent connections, RFC 9112 9.3).

Reuse is what makes a long list on one host fast, HTTPS most of all: no new
TCP and TLS handshake per URL. The rules that keep it safe live here and in
`client`:

- a connection goes back only after a response whose framing was read exactly
  (the next status line must start where we think it does), that did not say
  `Connection: close`, from an HTTP/1.1 server (or 1.0 with keep-alive);
- it is used at most `max_requests` times, and not after `idle_timeout`
  seconds idle (servers close idle connections; nginx after 75 s, many sooner);
- at most `max_idle` connections stay open in all, the least recently used
  closed first, so a list of a million distinct hosts does not keep a million
  sockets open;
- nothing may be left unread: bytes past the end of a response (a body after
  a HEAD response, a second response) mean the connection is closed, not kept
  (`client` checks after each response, with a warning for the check);
- one whose peer has closed it, or on which bytes arrived while it was idle,
  is dropped when taken (as httpcore asks whether an idle socket is readable);
- a request whose answer on a reused connection is cut off or cannot be
  parsed is sent again on a fresh connection before anything is charged to
  the URL (`client.request_head`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from checker.http.sender import Sender
from checker.http.sender import sender as sender_of_loop

Origin = tuple[str, str, int]

# How long a polite close may take before we drop the connection hard.
CLOSE_TIMEOUT = 1.0


@dataclass(eq=False, slots=True)
class Connection:
    origin: Origin
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: int = 0
    idle_since: float = 0.0
    # What the TLS handshake said, reported again for each request it carries.
    tls: dict[str, object] = field(default_factory=dict)
    ip: str | None = None  # the address it is connected to
    via_proxy: str | None = None  # Proxy-Authorization ("" without) for plain http via a proxy
    # Its loop's sender, found once: finding it costs a getpid() system call
    # (asyncio.get_running_loop), which per request was 2% of a run on one host.
    sender: Sender = field(default_factory=sender_of_loop)

    def usable(self, now: float, idle_timeout: float) -> bool:
        """Still open, quiet since it was put back, and not idle too long.

        An idle connection is readable only if the peer closed it or sent
        bytes nobody asked for; either way it must not carry a request.
        """
        return (
            not self.reader.at_eof()
            and not buffered(self.reader)
            and not self.writer.is_closing()
            and now - self.idle_since < idle_timeout
        )


def unread(reader: asyncio.StreamReader) -> bytes | bytearray:
    """What `reader` has received and not yet handed out (do not change it).

    StreamReader has no public way to ask this; its `_buffer` is where the
    protocol puts what arrives (under uvloop too), and has been since 3.4.
    The one place that looks there.
    """
    return getattr(reader, "_buffer", b"")


def buffered(reader: asyncio.StreamReader) -> int:
    """Bytes received on `reader` and not yet read."""
    return len(unread(reader))


class ConnectionPool:
    # 1000 requests a connection, as nginx allows by default (keepalive_requests,
    # since 1.19.10): at 100, a 100k-URL run on one host reconnected 1,000 times.
    def __init__(self, max_idle: int, max_requests: int = 1000, idle_timeout: float = 4.0) -> None:
        self.max_idle = max_idle
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        self._idle: dict[Origin, list[Connection]] = {}
        self._lru: OrderedDict[Connection, None] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._not_reused: set[Origin] = set()  # hosts whose keep-alive proved broken

    def take(self, origin: Origin) -> Connection | None:
        """An idle connection to `origin` that still looks alive, or None."""
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            del self._lru[conn]
            if conn.usable(now, self.idle_timeout):
                if not stack:
                    del self._idle[origin]
                return conn
            self._close_later(conn)
        self._idle.pop(origin, None)
        return None

    def stop_reusing(self, origin: Origin) -> bool:
        """No more reuse of connections to `origin` in this run (a request on
        one went unanswered where a new connection was answered): its idle
        ones are closed, its next requests say Connection: close. False when
        it was so already."""
        if origin in self._not_reused:
            return False
        self._not_reused.add(origin)
        for conn in self._idle.pop(origin, []):
            del self._lru[conn]
            self._close_later(conn)
        return True

    def put(self, conn: Connection) -> None:
        """Keep `conn` for the next request to its origin (or close it if it
        is spent, or its host's connections are not reused)."""
        if (
            conn.requests >= self.max_requests
            or self.max_idle <= 0
            or conn.origin in self._not_reused
        ):
            self._close_later(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._lru[conn] = None
        while len(self._lru) > self.max_idle:
            oldest, _ = self._lru.popitem(last=False)
            self._idle[oldest.origin].remove(oldest)
            if not self._idle[oldest.origin]:
                del self._idle[oldest.origin]
            self._close_later(oldest)

    def last_request(self, conn: Connection) -> bool:
        """Whether the next request on `conn` is its last (then it says Connection: close)."""
        return conn.requests + 1 >= self.max_requests or conn.origin in self._not_reused

    def __len__(self) -> int:
        return len(self._lru)

    async def close(self) -> None:
        """Close every idle connection and wait for the closes under way."""
        conns = list(self._lru)
        self._lru.clear()
        self._idle.clear()
        await asyncio.gather(*(close_stream(c.writer) for c in conns), *self._closing)

    def _close_later(self, conn: Connection) -> None:
        # Closing waits for the peer (TLS close_notify); the caller should not.
        task = asyncio.create_task(close_stream(conn.writer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def close_stream(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close and wait, bounded: a hostile peer must not hold a close open."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        writer.transport.abort()
