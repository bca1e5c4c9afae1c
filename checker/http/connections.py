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
- a host that sent bytes nobody asked for (past a response's framing, on an
  idle connection but a 408 as it closes, or an answer on a kept-alive
  connection that could not be read) has its connections no longer reused
  in the run (`stop_reusing`): a late body after a HEAD response, arriving after
  its connection was taken, was read as the next URL's answer (cheroot,
  whose bodies came after the head; a page whose body was a response head
  made 404 pages `up`). A host's first late body can still land in an
  answer before any is seen: then, as a rule, it cannot be read, and the
  request goes again on a new connection; only a body that reads as a
  response head would pass. (Holding each connection out of use for a
  moment after a HEAD, until its host had shown it sends none, caught that
  too, and cost up to --per-host new connections, TLS handshakes, at each
  host's start: not kept.)
- a request whose answer on a reused connection is cut off or cannot be
  parsed is sent again on a fresh connection before anything is charged to
  the URL (`client.request_head`);
- an idle connection is closed for each new connection to its host that has
  waited unanswered for STUCK seconds (and again each STUCK it still waits):
  a server that takes few connections at once
  (lighttpd's server.max-connections, Apache's workers) counts our idle ones
  among them and leaves the new ones in its accept queue, unread, until they
  time out (found by a review: healthy pages down behind lighttpd with
  max-connections 4, and 5-10 s waits behind Apache's event MPM). Each close
  lets the server take one waiting; one at a time each, as a page that is
  only slow looks the same (`_stuck`); and none stays idle past `idle_timeout`
  (`_reap`). (An HTTPS connection waits no more once its handshake is done:
  the server has taken it.)
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
# How long a request on a new connection may wait for its answer while we hold
# idle connections to its host, before they are closed to let the server take
# it. Longer than a TLS handshake and a first answer of a busy run take (200
# handshakes at once, 0.3 s here); a slow page on a server with room only
# costs idle connections their reuse.
STUCK = 1.0
# The hosts whose kept-alive connections answered that a pool remembers.
REUSE_WORKS = 4096
# A new TLS connection to an origin with HANDSHAKES under way, or with
# requests waiting already, waits up to PATIENCE seconds for a connection put
# back (ConnectionPool.begin_handshake).
HANDSHAKES = 16
# (At 250 ms, pages of 1 s at --per-host 200 waited it out at the run's
# start, 184 requests at once: 0.25 s more a run, found by a review.)
PATIENCE = 0.1
TIMES_WEIGHT = 0.25  # of a new handshake's or wait's time in the recent ones


# A process busy this share of a CPU or more, measured over LOAD_WINDOW
# seconds at least, is what its requests wait for (`_Load`).
BUSY = 0.8
LOAD_WINDOW = 0.1


class _Load:
    """Whether this process used most of a CPU of late: its CPU time over the
    wall time, looked at again once LOAD_WINDOW has passed since the first
    question (busy until then: the burst that asks it first is)."""

    __slots__ = ("_at", "_cpu", "_share")

    def __init__(self) -> None:
        self._at: float | None = None  # (from the first question, not the pool's making)
        self._cpu = 0.0
        self._share = 1.0

    def busy(self) -> bool:
        now = time.monotonic()
        if self._at is None:
            self._at, self._cpu = now, time.process_time()
        elif now - self._at >= LOAD_WINDOW:
            cpu = time.process_time()
            self._share = (cpu - self._cpu) / (now - self._at)
            self._at, self._cpu = now, cpu
        return self._share >= BUSY


@dataclass(slots=True)
class _Times:
    """An origin's recent handshakes and waits for a connection, in seconds."""

    handshake: float | None = None
    wait: float = 0.0


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


class Waiting:
    """A request on a new connection, until its answer (`ConnectionPool.waiting`)."""

    __slots__ = ("origin", "spent_at")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        # When an idle connection to its origin was last closed for it.
        self.spent_at = float("-inf")


def unread(reader: asyncio.StreamReader) -> bytes | bytearray:
    """What `reader` has received and not yet handed out (do not change it).

    StreamReader has no public way to ask this; its `_buffer` is where the
    protocol puts what arrives (under uvloop too), and has been since 3.4.
    The one place that looks there.
    """
    return getattr(reader, "_buffer", b"")


def _goodbye(data: bytes | bytearray) -> bool:
    """A 408 Request Timeout: what a server may send as it closes a
    connection that stayed idle (RFC 9110 15.5.9), not a stray answer."""
    return data[:7] == b"HTTP/1." and data[8:13] == b" 408 "


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
        # Hosts that answered a request on a kept-alive connection (`reuse_works`;
        # the latest REUSE_WORKS of them: memory follows no list's length).
        self._reuse_works: dict[Origin, None] = {}
        # Requests on new connections not answered yet, by origin: when each
        # began (its connect), oldest first (`waiting`, `answered`).
        self._fresh: dict[Origin, dict[Waiting, float]] = {}
        self._watching: set[Origin] = set()  # origins with a `_unstick` timer set
        self._reaper: asyncio.TimerHandle | None = None
        # TLS handshakes under way by origin, and the requests that wait for
        # a connection put back instead, oldest first (`begin_handshake`).
        self._handshaking: dict[Origin, int] = {}
        self._turns: dict[Origin, dict[asyncio.Future[Connection | None], None]] = {}
        # How long handshakes to an origin and waits for a connection put
        # back took of late (the latest REUSE_WORKS origins).
        self._times: dict[Origin, _Times] = {}
        self._load = _Load()

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
            if buffered(conn.reader) and not _goodbye(unread(conn.reader)):
                # (Bytes nobody asked for: the host's others may get theirs
                # after they are taken. Its idle ones go with this one.)
                self.stop_reusing(origin)
                return None
        self._idle.pop(origin, None)
        return None

    def stop_reusing(self, origin: Origin) -> bool:
        """No more reuse of connections to `origin` in this run (a request on
        one went unanswered where a new connection was answered; it sent
        bytes nobody asked for): its idle
        ones are closed, its next requests say Connection: close. False when
        it was so already."""
        if origin in self._not_reused:
            return False
        self._not_reused.add(origin)
        self.drop_idle(origin)
        return True

    def reuse_works(self, origin: Origin) -> bool:
        """Whether `origin` answered a request on a kept-alive connection in
        this run (of late): one of its requests that goes unanswered on one
        is the page's, not the reuse's."""
        return origin in self._reuse_works

    def waiting(self, origin: Origin) -> Waiting:
        """A request to `origin` is to go on a new connection: from its
        connect until `answered`, idle connections to `origin` do not stay
        idle while it waits longer than STUCK."""
        token = Waiting(origin)
        self._fresh.setdefault(origin, {})[token] = time.monotonic()
        return token

    def answered(self, token: Waiting) -> None:
        """Its answer came (or it failed). Again is harmless."""
        waits = self._fresh.get(token.origin)
        if waits is not None and waits.pop(token, None) is not None and not waits:
            del self._fresh[token.origin]

    def put(self, conn: Connection) -> None:
        """Keep `conn` for the next request to its origin (or close it if it
        is spent, or its host's connections are not reused, or a new
        connection to its host has waited STUCK for its answer and had none
        closed for it yet)."""
        if conn.requests == 2 and conn.origin not in self._reuse_works:
            self._reuse_works[conn.origin] = None  # (its second request was answered)
            if len(self._reuse_works) > REUSE_WORKS:
                del self._reuse_works[next(iter(self._reuse_works))]
        if (
            conn.requests >= self.max_requests
            or self.max_idle <= 0
            or conn.origin in self._not_reused
        ):
            self._close_later(conn)
            self.gone(conn.origin)
            return
        now = time.monotonic()
        if conn.origin in self._fresh:
            token, due = self._stuck(conn.origin, now)
            if token is not None:
                token.spent_at = now
                self._close_later(conn)  # its place in the server is the waiting one's
                self.gone(conn.origin)
                return
            if due is not None:
                self._watch(conn.origin, due - now)
        conn.idle_since = now
        if self._answer_turn(conn.origin, conn):
            return  # (handed to the oldest request waiting for one)
        self._idle.setdefault(conn.origin, []).append(conn)
        self._lru[conn] = None
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self.idle_timeout, self._reap)
        while len(self._lru) > self.max_idle:
            oldest, _ = self._lru.popitem(last=False)
            self._forget_idle(oldest)
            self._close_later(oldest)

    def begin_handshake(self, origin: Origin, waited: bool = False) -> bool:
        """Whether a new TLS connection to `origin` shakes hands now (counted
        until `handshake_done`), or first waits for a connection put back
        (`wait_turn`): while HANDSHAKES to it are under way or others wait
        already, if waiting pays (`_queue_pays`). `waited`: it waited
        PATIENCE for one in vain, and shakes hands now whatever is under way.

        Why: 200 workers on one host each shook hands at once, 200 full
        handshakes (1.5 ms of CPU each here, as many for the server), where
        16 connections carried the whole list as fast: 2,000 URLs on one
        host took 0.77 of the time. A request that waits has its deadline
        held (the wait is the run's, not the URL's). A connection closed
        after its request rather than put back (the server said close) sends
        the oldest one waiting to shake hands at once. New plain connections
        are not held back: they cost little, and fewer of them slowed a run
        on one host."""
        under_way = self._handshaking.get(origin, 0)
        if (
            not waited
            and (under_way >= HANDSHAKES or origin in self._turns)
            and self._queue_pays(origin, under_way)
        ):
            return False
        self._handshaking[origin] = under_way + 1
        return True

    def _queue_pays(self, origin: Origin, under_way: int) -> bool:
        """Whether a new request to `origin` waits for a connection put back
        rather than shake hands, HANDSHAKES being under way or others
        waiting already: while this process is what the requests wait for
        (a handshake's CPU would be the checks'), or while connections have
        come back to those waiting sooner than new ones were made, of late.

        Found by a review: pages of 30-100 ms kept 16-24 connections busy
        where 50 were asked for, each freed one handed to a waiting request
        within the patience, and the run took 2-2.5 times as long; and
        handshakes slowed by the server held the others up to the patience."""
        if self._load.busy():
            return True
        if under_way >= HANDSHAKES:
            return False  # (they wait on the server, not on this CPU)
        times = self._times.get(origin)
        return times is None or times.handshake is None or times.wait <= times.handshake

    def _timed(self, origin: Origin, handshake: float | None, wait: float | None) -> None:
        """Fold a handshake's or a wait's seconds into `origin`'s recent ones."""
        times = self._times.pop(origin, None) or _Times()
        if handshake is not None:
            old = times.handshake
            times.handshake = handshake if old is None else old + TIMES_WEIGHT * (handshake - old)
        if wait is not None:
            times.wait += TIMES_WEIGHT * (wait - times.wait)
        self._times[origin] = times  # (the newest last: the oldest go past REUSE_WORKS)
        if len(self._times) > REUSE_WORKS:
            del self._times[next(iter(self._times))]

    async def wait_turn(self, origin: Origin) -> Connection | None:
        """Wait for a connection to `origin` put back (returned, taken), at
        most PATIENCE seconds (None: shake hands, `waited`)."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[Connection | None] = loop.create_future()
        waiting = self._turns.setdefault(origin, {})
        waiting[turn] = None
        timer = loop.call_later(PATIENCE, _no_turn, turn)
        since = time.monotonic()
        try:
            conn = await turn
            self._timed(origin, None, time.monotonic() - since)
            return conn
        except BaseException:
            if turn.done() and not turn.cancelled() and (given := turn.result()) is not None:
                self.put(given)  # (handed over as it was cancelled: to the next)
            raise
        finally:
            timer.cancel()
            del waiting[turn]
            if not waiting and self._turns.get(origin) is waiting:
                del self._turns[origin]

    def handshake_done(self, origin: Origin, ok: bool, seconds: float = 0.0) -> None:
        """A handshake counted by `begin_handshake` ended (`ok`: it stands,
        made in `seconds`). One that failed (refused, timed out) sends those
        waiting to shake hands at once: no connection may come back to them."""
        if ok:
            self._timed(origin, seconds, None)
        left = self._handshaking[origin] - 1
        if left:
            self._handshaking[origin] = left
        else:
            del self._handshaking[origin]
        if not ok:
            for turn in self._turns.get(origin, ()):
                _no_turn(turn)

    def gone(self, origin: Origin) -> None:
        """A connection to `origin` in use is closed, not put back (the
        server said close, an error, spent): the oldest request waiting for
        one shakes hands now rather than wait out its patience for it."""
        self._answer_turn(origin, None)

    def _answer_turn(self, origin: Origin, conn: Connection | None) -> bool:
        """End the oldest wait for a connection to `origin` with `conn` (None:
        shake hands); whether any waited."""
        for turn in self._turns.get(origin, ()):
            if not turn.done():
                turn.set_result(conn)
                return True
        return False

    def _stuck(self, origin: Origin, now: float) -> tuple[Waiting | None, float | None]:
        """The oldest request on a new connection to `origin` that has waited
        STUCK, and STUCK since an idle connection was last closed for it;
        else None, and when the next one will be (None: none waits).

        One close at a time each: a server short of places takes one waiting
        connection for each place freed (the oldest, which may be another's:
        then this one asks again a STUCK later; with one close for good, a
        connection could wait out the deadline behind others), while a page
        that is only slow (plain HTTP cannot tell the two apart) costs one
        connection a STUCK, not the host's reuse: closing every idle
        connection while a hung page waited made thousands of new
        connections on a long list, and the ports ran out (found by a review)."""
        due = None
        for token, began in self._fresh[origin].items():  # (oldest first)
            if now - began < STUCK:
                # (Younger ones after it: none of them has waited STUCK.)
                at = began + STUCK
                return None, at if due is None else min(due, at)
            if now - token.spent_at >= STUCK:
                return token, None
            at = token.spent_at + STUCK
            due = at if due is None else min(due, at)
        return None, due

    def _unstick(self, origin: Origin) -> None:
        """Requests on new connections to `origin` may have waited STUCK: an
        idle connection to it goes for each that has had none closed for it;
        look again when the next is due (while any stay idle)."""
        self._watching.discard(origin)
        now = time.monotonic()
        due = None
        while origin in self._idle and origin in self._fresh:
            token, due = self._stuck(origin, now)
            if token is None:
                break
            token.spent_at = now
            self._close_idle(self._idle[origin][-1])
        if due is not None and origin in self._idle:
            self._watch(origin, due - now)

    def _watch(self, origin: Origin, delay: float) -> None:
        """`_unstick` for `origin` in `delay` seconds, unless it is set already."""
        if origin not in self._watching:
            self._watching.add(origin)
            asyncio.get_running_loop().call_later(delay, self._unstick, origin)

    def _close_idle(self, conn: Connection) -> None:
        del self._lru[conn]
        self._forget_idle(conn)
        self._close_later(conn)

    def _forget_idle(self, conn: Connection) -> None:
        """Take `conn` out of its origin's idle stack (not out of the LRU)."""
        stack = self._idle[conn.origin]
        stack.remove(conn)
        if not stack:
            del self._idle[conn.origin]

    def _reap(self) -> None:
        """Close the connections idle for `idle_timeout` (they would not be
        used again, and hold a place in their server); again while any stay."""
        self._reaper = None
        cutoff = time.monotonic() - self.idle_timeout
        stale = [conn for conn in self._lru if conn.idle_since <= cutoff]
        for conn in stale:
            self._close_idle(conn)
        if self._lru:
            self._reaper = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._reap)

    def has_idle(self, origin: Origin) -> bool:
        """Whether a connection to `origin` is idle (it may still turn out
        closed when taken)."""
        return origin in self._idle

    def drop_idle(self, origin: Origin) -> None:
        """Close the idle connections to `origin`."""
        for conn in self._idle.pop(origin, []):
            del self._lru[conn]
            self._close_later(conn)

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
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await asyncio.gather(*(close_stream(c.writer) for c in conns), *self._closing)

    def _close_later(self, conn: Connection) -> None:
        transport = conn.writer.transport
        if transport.get_extra_info("sslcontext") is None and not transport.get_write_buffer_size():
            # Plain TCP with nothing left to send: the loop closes the socket
            # in its next turn without the peer, so no task waits for it (a
            # task a close was 10-20 us of each check on a list of distinct
            # hosts, whose connections all leave the pool this way).
            conn.writer.close()
            return
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


def _no_turn(turn: asyncio.Future[Connection | None]) -> None:
    """End a wait for a connection: none came (`ConnectionPool.wait_turn`)."""
    if not turn.done():
        turn.set_result(None)
