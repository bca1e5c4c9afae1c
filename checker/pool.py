"""The task pool: a fixed set of workers that take the list's lines as they
go, per-host caps, retries with backoff, and a clean stop that still accounts
for every line.

Memory follows the concurrency, not the list: the list is read lazily, a line
at a time, by the worker that is free for it. (Not through a feeder task and a
queue: each check woke the feeder once to read one line and put it, a task's
step, a future and two queue calls a check on the hot path.)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from checker.check import Attempt, CheckOptions, attempt_check, failed_result, make_result
from checker.expect import DOWN
from checker.hosts import HOLD, SLOW_ANSWERS, SLOW_DOWN, SLOW_REFUSAL, HostGate, Told
from checker.hosts import clock as hosts_clock
from checker.http.connections import ConnectionPool
from checker.http.errors import (
    CheckTimeout,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    Interrupted,
    InvalidURL,
    NoResponse,
)
from checker.results import Result
from checker.targets import Duplicate, Target
from checker.url import TLS_SCHEMES, URL

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TURN_LINES = 512  # lines settled without a request in one turn of the loop, at most
INTERNAL_ERROR = "internal_error"
# After a stop, the rows of unread lines are written out this many at a time.
FLUSH_EVERY = 4096


@dataclass(frozen=True, slots=True)
class PoolOptions:
    concurrency: int = 100
    per_host: int = 6
    retries: int = 2
    backoff_base: float = 0.5  # first retry waits about this long, then doubles
    backoff_max: float = 10.0
    retry_after_cap: float = 30.0  # a server's Retry-After is honoured up to this
    reuse: bool = True  # keep connections alive for the next URL on the same origin
    host_interval: float = 0.0  # at least this long between requests to one host
    slow_down_cap: float = 60.0  # the most a 429/503 can space a host's requests


class Sink(Protocol):
    """Where results go as they complete (the journal and the progress bar)."""

    def add(self, seq: int, result: Result) -> None: ...

    def add_duplicate(self, dup: Duplicate) -> None: ...

    async def flush(self) -> None:
        """Write out what has been added (so that it need not stay in memory)."""
        ...


def should_retry(attempt: Attempt) -> bool:
    if attempt.error is not None:
        return attempt.error.transient
    head = attempt.head
    # (Not a status the row expects: a maintenance page's 503 is its answer.)
    return (
        head is not None
        and head.status in RETRY_STATUSES
        and head.status not in attempt.expect.statuses
    )


def head_unanswered(attempt: Attempt) -> bool:
    """A HEAD that timed out after it was sent: on a connection made (and
    its TLS handshake done) or kept alive. (One that timed out connecting
    would not fare better as a GET.)"""
    if attempt.method != "HEAD" or not isinstance(attempt.error, CheckTimeout):
        return False
    trace = attempt.trace
    if trace.reused:
        return True
    if attempt.final_url.scheme in TLS_SCHEMES:
        return trace.tls_ms is not None
    return trace.connect_ms is not None


def silent_on_reuse(attempt: Attempt) -> bool:
    """A request sent on a kept-alive connection that got no answer in time."""
    return isinstance(attempt.error, CheckTimeout) and attempt.trace.reused


# A new connection refused, reset, closed before any answer or not made in
# time (hosts.too_many), not charged to the URL this many times at most.
# (Closed: squid's client_ip_max_connections 4, 1,000 pages at --per-host 20
# --retries 0: 68 to 377 down; node's maxConnections. Not made: haproxy's
# maxconn 4 on TLS leaves the others' handshakes unanswered, 3 to 18 down.)
TOO_MANY = (ConnectionRefused, ConnectionReset, NoResponse, ConnectTimeout)
TURNED_AWAY = 3
# A timeout behind a request the host still worked on (hosts.behind) is not
# charged, this many times at most for a URL, and only while the host's
# last answer is less than BEHIND_WINDOW deadlines old.
BEHIND = 3
BEHIND_WINDOW = 6.0


def turned_away_by(
    attempt: Attempt, key: tuple[str, str, int], told: int | None, slow: bool
) -> bool:
    """Whether the attempt met what a host that limits a client's connections
    does to one too many (hosts.too_many): a new connection refused, reset,
    closed before any answer or not made in time, or its first answer a 429
    or 503 that asks no time and was not `slow` (the page's: a limit refuses
    at once; haproxy's `deny_status 429 if { sc0_conn_cur gt 4 }`: a review
    found 45 of 300 healthy pages down, each 429 read as the host's rate).
    A Retry-After speaks of time: the host's rate, as ever.
    (Not a refusal on a kept-alive connection: a backend failing at random
    does that at any number of connections.)"""
    if attempt.trace.reused:
        return False
    head = attempt.head
    if head is None:
        return isinstance(attempt.error, TOO_MANY)
    return (
        told in SLOW_DOWN
        and not slow
        and attempt.final_url.origin == key
        and head.get("retry-after") is None
    )


def _failure(attempt: Attempt) -> str:
    """What an attempt that is retried met, in a few words."""
    if attempt.error is not None:
        return f"{attempt.error.category} ({attempt.error})"
    reasons = attempt.state[1]
    if reasons:
        return "; ".join(reasons)
    return f"status {attempt.head.status}" if attempt.head is not None else "no answer"


def retry_delay(n: int, attempt: Attempt, opts: PoolOptions) -> float:
    """Exponential backoff with jitter, or the server's Retry-After (capped)."""
    base: float = min(opts.backoff_max, opts.backoff_base * 2.0 ** min(n - 1, 32))
    delay = base / 2 + random.uniform(0, base / 2)
    if attempt.head is not None:
        asked = parse_retry_after(attempt.head.get("retry-after"))
        if asked is not None:
            delay = max(delay, min(asked, opts.retry_after_cap))
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After = HTTP-date / delay-seconds   (RFC 9110 10.2.3)"""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    import email.utils  # (a date here is rare: not at every run's start, http.cookies)

    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # asctime has no zone; HTTP dates are GMT
        moment = moment.replace(tzinfo=UTC)
    when: float = moment.timestamp()
    return max(0.0, when - (time.time() if now is None else now))


class Pool:
    def __init__(self, check_opts: CheckOptions, opts: PoolOptions, sink: Sink) -> None:
        self.check_opts = check_opts
        self.opts = opts
        self.sink = sink
        # Always there: even without a cap that binds, a host that answers 429
        # is slowed down (and only that host: see `hosts`).
        self.hosts = HostGate(
            min(opts.per_host, opts.concurrency),
            opts.host_interval,
            opts.slow_down_cap,
            max_parked=4 * opts.concurrency,
        )
        # At most one idle connection per worker: more could never be in use at once.
        self.connections = ConnectionPool(max_idle=opts.concurrency) if opts.reuse else None
        self._in_flight: dict[int, Target] = {}
        self._turn_lines = 0  # lines settled in this turn of the loop (`_settled`)
        self._turn_ends = False  # and the turn's end is due

    async def run(self, items: Iterator[Target | Duplicate], stop: asyncio.Event) -> bool:
        """Check every item; return True when `stop` cut the run short.

        Whether it finishes or is stopped, every item of `items` ends up in the
        sink exactly once (stopped ones as `interrupted`). If reading `items`
        fails, every worker is stopped and the error is raised: the workers,
        which read it, live and die together in one task group.
        """
        everything = asyncio.create_task(self._all(items))
        stopper = asyncio.create_task(stop.wait())
        try:
            try:
                await asyncio.wait((everything, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopper
                if not everything.done():
                    everything.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await everything
            if not everything.cancelled():
                everything.result()  # a failed list (or a bug in a worker) is raised here
                return False
            await self._account_for_the_rest(items)
            return True
        finally:
            if self.connections is not None:
                await self.connections.close()

    async def _all(self, items: Iterator[Target | Duplicate]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.opts.concurrency):
                    group.create_task(self._worker(items))
        except BaseExceptionGroup as failed:
            # Workers turn every check's exception into a row, so what gets
            # here is the list's (read by each worker): one error, raised as
            # itself.
            raise failed.exceptions[0] from None

    async def _worker(self, items: Iterator[Target | Duplicate]) -> None:
        """Check the list's next URL while there is one. The workers share
        `items`: each takes the next line when it is free (a generator is
        never entered twice at once: nothing awaits inside it)."""
        hosts = self.hosts
        for item in items:
            target = self._to_check(item)
            if target is None:
                await self._settled()
                continue
            assert target.url is not None
            key = target.url.origin
            # A host that has its share of checks going takes this URL into its
            # backlog, and this worker goes on with another URL.
            self._in_flight[target.seq] = target  # (while it waits for its host too)
            if not hosts.admit(key) and not await hosts.enter(key, target):
                del self._in_flight[target.seq]  # the host's backlog has it now
                await self._settled()
                continue
            current: Target | None = target
            while current is not None:
                self._in_flight[current.seq] = current
                try:
                    result = await self._check(current, key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug in checker: report it, lose no row
                    traceback.print_exc(file=sys.stderr)
                    detail = f"{type(exc).__name__}: {exc}"
                    result = failed_result(current, INTERNAL_ERROR, detail)
                del self._in_flight[current.seq]
                self.sink.add(current.seq, result)
                current = hosts.leave(key)  # the host's backlog, while it has one

    async def _settled(self) -> None:
        """A line settled without a request (a duplicate, an invalid line, a
        URL left in its host's backlog): after TURN_LINES of those in one
        turn of the loop, by all the workers together, each worker waits
        for the next turn. (Each worker counting its own let all of them go
        on in the same turn: behind 300,000 invalid lines the loop turned
        13 times, a healthy site's answer waited 4.7 s, and it was down,
        `timeout`; a Ctrl-C took 3.3 s to be heard. Found by a review.)"""
        self._turn_lines += 1
        if self._turn_lines >= TURN_LINES:
            if not self._turn_ends:
                self._turn_ends = True
                asyncio.get_running_loop().call_soon(self._next_turn)
            await asyncio.sleep(0)

    def _next_turn(self) -> None:
        self._turn_lines, self._turn_ends = 0, False

    async def _check(self, target: Target, key: tuple[str, str, int]) -> Result:
        assert target.url is not None
        n = 1
        method: str | None = None
        said: list[str] = []  # what the pool did, for the row's warnings
        # The method of a request that a kept-alive connection left
        # unanswered: after it, this check's attempts go on new connections
        # of their own, and that attempt is not charged to the URL.
        silent: str | None = None
        silent_at: tuple[str, str, int] = key  # the origin whose connection it was
        anew = False  # this attempt is the one on a new connection after it
        # Attempts in a row told to slow down (429, 503); those that were the
        # host's rate, not the URL's health, are not charged when an attempt
        # after the host's pace is answered.
        slowed = 0
        excusable = 0  # those of them that were the host's rate (hosts.told)
        head_later = False  # the first of them a HEAD whose GET came after the pace
        head_refused: int | None = None  # that HEAD's status (the row's head_status)
        refused_at = 0.0  # the host's penalty when the last of them was sent
        refused_method = ""  # and its method
        holding = 0.0  # the penalty this URL holds its host to (hosts.hold)
        free = 0  # attempts not charged to the URL
        # Refusals while a host that had answered well refused every request
        # (none answered well since this URL's first refusal came back): a
        # limit by the minute, an outage. Not charged to the URL's retries,
        # up to hosts.WINDOW after its last good answer: its retries ran out
        # inside the host's window (a limit of 40 a 30 s window, 429: a
        # healthy page down).
        # 429s and Retry-Afters are the host's rate (`free`); plain 503s
        # (`waited`) still make an answer after them degraded.
        first_heard = 0.0  # when the first of this URL's refusals in a row came back
        # What the attempts retried met, said on the row when a later one is
        # up (a degraded row said only "up only on attempt 2": found by a review).
        earlier: list[str] = []
        turned = 0  # attempts turned away by the host's limit of connections (not charged)
        page = False  # its 503s are the page's, not the host's pace (hosts.Told.PAGE)
        gave_up = False  # the host refused everything too long to wait (hosts.Told.REFUSING)
        # Its last refusal (429, 503) came while other requests to the host
        # were in flight: its last attempt goes alone (hosts.alone).
        # (Or it timed out so while most of the host's requests did: a server
        # with two workers and a 3 s page, --per-host 10, 30 pages: 24 down.)
        crowded = ""
        # One of its attempts timed out while the host answered quickly one
        # sent after it (hosts.overtaken): its page hangs, it never goes alone.
        hangs = False
        waited = 0
        waited_out = 0  # all of them, for the warning
        # Its timeouts behind a request the host was still working on
        # (hosts.behind): not charged, up to BEHIND.
        behind_n = 0
        own: list[float] = []  # when its attempts that timed out were sent
        stalled: float | None = None  # a timeout behind another's: when it came
        given: float | None = None  # its own request given up on, others behind it
        timed_out_at = (0.0, True)  # (when its last attempt was sent, and whether reused)
        window = BEHIND_WINDOW * self.check_opts.timeout  # (hosts.behind's)
        try:
            while True:
                if stalled is not None or given is not None:
                    await self.hosts.after_stall(
                        key, stalled or hosts_clock(), given, window, self._probe
                    )
                    # (A probe sent after its request on a kept-alive connection
                    # was answered at once: its page hangs on its own, and
                    # that timeout is charged. Not one on a new connection: a
                    # host at its limit of connections leaves those waiting.)
                    sent_at, on_reuse = timed_out_at
                    if on_reuse and self.hosts.probed_quickly(key, sent_at):
                        hangs = True
                        if stalled is not None:
                            behind_n, free = behind_n - 1, free - 1
                # The host's pace (--host-interval, slower after 429/503) is kept
                # before the attempt: waiting for it does not eat into its deadline.
                paced = self.hosts.paced(key, first=holding > 0)
                if paced is None:
                    paced = await self.hosts.pace(key, first=holding > 0)
                last = n - free - waited > self.opts.retries
                # (After its own request held others behind it: alone.)
                solo = (last and bool(crowded)) or (given is not None and not hangs)
                if solo:
                    # (After a timeout, the host may still work on what was
                    # given up on: up to one deadline more for that.)
                    drain = self.check_opts.timeout if crowded == "timeout" else 0.0
                    await self.hosts.alone(key, drain)
                sent = hosts_clock()
                mark = self.hosts.begin(key)
                try:
                    attempt = await attempt_check(
                        target.url,
                        self.check_opts,
                        None if silent else self.connections,
                        target.expect,
                        method,
                        # A HEAD told to slow down (429, 503) gets its GET after
                        # the host's pace while retries are left, not at once:
                        # at once doubled the load on a host that said it had
                        # too much. The last attempt's GET still comes at once.
                        slow_down_later=not last,
                    )
                except BaseException:
                    self.hosts.end(key, mark)
                    raise
                finally:
                    if solo:
                        self.hosts.release(key)
                timed_out = isinstance(attempt.error, CheckTimeout)
                reused = attempt.trace.reused
                hangs = hangs or (timed_out and self.hosts.overtaken(key, sent, reused))
                behind = (
                    timed_out
                    and not hangs
                    and behind_n < BEHIND
                    and self.hosts.behind(key, sent, own, window)
                )
                if timed_out:
                    own.append(sent)
                stalled = hosts_clock() if behind else None
                timed_out_at = (sent, reused)
                # (Only on a host that answers of late: on one that stopped,
                # nothing waits behind it, and each going alone held it.)
                stays = timed_out and not behind and not hangs
                given = sent if stays and self.hosts.answering(key, window) else None
                # (Its final URL, when on the same host, is a page to probe it
                # with: hosts.after_stall.)
                final = attempt.final_url if attempt.final_url.origin == key else None
                others, _ = self._end(key, mark, attempt, sent, final)
                head = attempt.head
                if behind:
                    behind_n, free = behind_n + 1, free + 1
                if solo and crowded:
                    said.append(
                        "its last attempt went alone (no other request to the host in"
                        f" flight): the {crowded} before it came while others were"
                    )
                if anew:
                    # Charged after all when the new connection got no answer
                    # either: then the URL is slow or down, not the reuse. And
                    # when its host answered on kept-alive connections before:
                    # its reuse works, and the silence was the page's (caddy,
                    # a page whose HEAD never answers: up, and the host's
                    # reuse stopped, where on a new connection it was degraded).
                    assert self.connections is not None  # (a silence is on reuse only)
                    reuse_works = self.connections.reuse_works(silent_at)
                    excused = attempt.head is not None and not reuse_works
                    anew, free = False, free + int(excused)
                    said.append(self._answered_anew(silent_at, attempt, silent or "", reuse_works))
                # (A status the row expects is its answer, no slow-down: a
                # maintenance page's 503.)
                told = head.status if head and head.status not in attempt.expect.statuses else None
                fresh = not slowed  # (its URL not refused just before)
                if excusable and attempt.ok:
                    # Answered after the host's pace: the refusals before it
                    # that were the host's rate are not the URL's (nginx's
                    # limit_req; HEAD 503 and GET 200 servers).
                    free += excusable
                    if attempt.method == refused_method and holding:
                        # (The same request refused as the pace came down, then
                        # answered when asked slower: the host's rate. Not a
                        # HEAD refused and its GET answered: HEAD 503, GET 200
                        # servers refuse at any pace; nor a refusal at the pace
                        # a refusal had set: one brief episode.)
                        self.hosts.proven(key, refused_at)
                    if excusable > head_later:  # (a HEAD's GET later says so already)
                        said.append(
                            f"{excusable} earlier attempt{'s' if excusable > 1 else ''} refused"
                            " by the host's rate (429/503) not counted: answered at its pace"
                        )
                turned_away = False  # (refused for the host's limit: asked again, whatever it was)
                # (A limit refuses at once. Timed for a refusal only: turned_away_by
                # asks for nothing else.)
                slow = told in SLOW_DOWN and (page or hosts_clock() - sent >= SLOW_REFUSAL)
                if turned < TURNED_AWAY and turned_away_by(attempt, key, told, slow):
                    # (A close before any answer is a reset that said less.)
                    reset = isinstance(attempt.error, (ConnectionReset, NoResponse))
                    unmade = sent if isinstance(attempt.error, ConnectTimeout) else None
                    cap = self.hosts.too_many(
                        key, others, answered=head is not None, reset=reset, unmade=unmade
                    )
                    if cap:
                        turned += 1
                        turned_away = True
                        # Not charged: asked again within the cap. The idle
                        # connections go (the host counts them too).
                        free += 1
                        if self.connections is not None:
                            self.connections.drop_idle(key)
                        error = attempt.error
                        how = (
                            f"answered {told}"
                            if error is None
                            else "closed unanswered"
                            if isinstance(error, NoResponse)
                            else f"not made in time ({error})"
                            if isinstance(error, ConnectTimeout)
                            else error.category
                        )
                        # (`others`: those sent while it was in flight, so
                        # more at times than the cap: "in flight meanwhile".)
                        said.append(
                            f"a new connection was {how} with {others} other"
                            f" request{'s' if others > 1 else ''} to the host in flight"
                            f" meanwhile: at most {cap} at once to it from now on"
                        )
                said_of_pace = Told.ANSWER
                if head is not None and not turned_away:
                    # (Not one turned away by its limit of connections: that
                    # is no rate, and a pace would space out the checks that
                    # its cap still lets go at once.)
                    # (A Retry-After counts with a refusal only: hosts.told.)
                    asked = None
                    if told in SLOW_DOWN:
                        asked = parse_retry_after(head.get("retry-after"))
                    said_of_pace = self.hosts.told(
                        key,
                        told,
                        min(asked, self.opts.slow_down_cap) if asked else None,
                        sent,
                        paced,
                        fresh,
                        page,
                        attempt.trace.reused,
                    )
                    if said_of_pace is Told.REFUSING and not gave_up:
                        gave_up = True
                        said.append(
                            "the host answered nothing well for"
                            f" {self.hosts.give_up:g} s, only refusals (429/503):"
                            " they are its answer, not waited out any longer"
                        )
                    if said_of_pace is Told.PAGE and not page:
                        page = True
                        said.append(
                            f"{told} after {hosts_clock() - sent:.1f} s while the host answered"
                            " other pages well: this page's failure, not the host's pace"
                        )
                crowded = ""
                if others > 0 and not turned_away:
                    # (Not one the host's refusing everything: no use alone.)
                    if told in SLOW_DOWN and said_of_pace not in (Told.PAGE, Told.REFUSING):
                        crowded = "refusal"
                    elif timed_out and self.hosts.overloaded(key) and not hangs:
                        crowded = "timeout"
                if turned_away:
                    pass  # (neither the URL's refusal nor an answer: its count goes on)
                elif told in SLOW_DOWN:
                    rate = said_of_pace in (Told.RATE, Told.CAME_DOWN)
                    waiting = (
                        slowed > 0
                        and said_of_pace not in (Told.NOT_PACE, Told.PAGE, Told.REFUSING)
                        and self.hosts.refusing_all(key, first_heard)
                    )
                    if not slowed:
                        first_heard = hosts_clock()
                    slowed, head_later = slowed + 1, head_later or attempt.get_later
                    if waiting:
                        free, waited, waited_out = free + rate, waited + (not rate), waited_out + 1
                    else:
                        # (A HEAD's 503 with its GET after the pace is excused
                        # as it was: servers that refuse HEAD alone.)
                        excusable += int(rate or attempt.get_later)
                    refused_at, refused_method = paced, attempt.method
                    # (Refused as the pace came down: the last good one was
                    # twice it at least; until it is asked again, no faster
                    # than HOLD times. Refused at the pace a refusal set, the
                    # penalty doubles: no hold.)
                    came_down = said_of_pace is Told.CAME_DOWN
                    holding = self.hosts.hold(key, HOLD * paced if came_down else 0.0, holding)
                else:
                    slowed, head_later, excusable, refused_at = 0, False, 0, 0.0
                    holding = self.hosts.hold(key, 0.0, holding) if holding else 0.0
                if attempt.get_later and head is not None and not turned_away:
                    method, head_refused = "GET", head.status
                    said.append(f"HEAD answered {head.status}; a GET decided after the host's pace")
                if silent is None and not behind and silent_on_reuse(attempt):
                    # The host took the request on a kept-alive connection and
                    # went silent (servers without real keep-alive answer a
                    # connection's first request only, and neither close it nor
                    # say Connection: close). Not the URL's fault, as a cut-off
                    # answer there is not (client.request_head): asked again at
                    # once on a new connection, whatever --retries says, and not
                    # charged if answered. A HEAD is asked again as a GET: that
                    # one answer also decides a server that never answers HEAD.
                    silent, anew = attempt.method, True
                    silent_at = attempt.final_url.origin  # (after a redirect: another host's)
                    if attempt.method == "HEAD":
                        method = "GET"
                    n += 1
                    continue
                if method is None and head_unanswered(attempt):
                    # The server took the HEAD and gave no answer in time: the
                    # GET that confirms a down URL had no time left in that
                    # attempt, so the next is a GET (servers that never answer
                    # HEAD exist), even with no retry left: that GET is the
                    # confirmation, not a retry.
                    method = "GET"
                    said.append("HEAD got no answer in time; a GET was tried next")
                    if n > self.opts.retries:
                        n += 1
                        continue
                again = turned_away or should_retry(attempt)
                if n - free - waited > self.opts.retries or not again:
                    if behind_n:
                        said.append(
                            f"{behind_n} attempt{'s' if behind_n > 1 else ''} not counted: timed"
                            " out behind a request the host had not answered (one given up on,"
                            " sent before it), nor any sent after that"
                        )
                    if waited_out:
                        said.append(
                            f"{waited_out} attempt{'s' if waited_out > 1 else ''} not counted:"
                            " the host refused every request meanwhile (429/503)"
                        )
                    if earlier and attempt.state[0] != DOWN:
                        said += earlier
                    attempt.warnings[:0] = said
                    if attempt.head_status is None and attempt.method == "GET":
                        attempt.head_status = head_refused
                    return make_result(target, attempt, n, free)
                earlier.append(f"attempt {n} failed: {_failure(attempt)}")
                if stalled is None:  # (after one behind another's: hosts.after_stall)
                    await asyncio.sleep(retry_delay(n, attempt, self.opts))
                if turned_away:
                    await self.hosts.within_cap(key)
                n += 1
        finally:
            if holding:  # (settled: down, up, or the run stopped)
                self.hosts.hold(key, 0.0, holding)

    def _end(
        self,
        key: tuple[str, str, int],
        mark: int,
        attempt: Attempt,
        sent: float,
        url: URL | None = None,
        new_counts: bool = True,
    ) -> tuple[int, bool]:
        """hosts.end for an attempt sent at `sent` (hosts.begin's `mark`):
        the others in flight meanwhile, and whether it was answered well in
        under hosts.SLOW_ANSWERS of the deadline. `new_counts`: an answer on
        a new connection says the host serves (not for a probe, below)."""
        timed_out = isinstance(attempt.error, CheckTimeout)
        head = attempt.head
        took = (hosts_clock() - sent) / self.check_opts.timeout
        heard = timed_out or head is not None
        reused = attempt.trace.reused
        served = head is not None and head.status not in SLOW_DOWN and (new_counts or reused)
        others = self.hosts.end(
            key, mark, timed_out, took, sent if heard else None, served, reused, url
        )
        return others, served and took < SLOW_ANSWERS

    async def _probe(self, url: URL) -> bool | None:
        """A HEAD for a page its host answered well and quickly, on a kept-
        alive connection, while URLs wait to ask again behind a request it
        was given up on (hosts.after_stall); not a row. Whether it was
        answered well in under hosts.SLOW_ANSWERS of the deadline on one;
        None: none sent (no connection to it is idle). Not on a new
        connection: a host at its limit of connections leaves new ones
        unaccepted while it answers on those it holds, and then one
        answered at once only had a place freed for it (nor is one that
        found its idle connection closed and went on a new one a sign)."""
        key = url.origin
        if self.connections is None or not self.connections.has_idle(key):
            return None
        mark = self.hosts.begin(key)
        sent = hosts_clock()
        try:
            attempt = await attempt_check(url, self.check_opts, self.connections, None, "HEAD")
        except BaseException:
            self.hosts.end(key, mark)
            raise
        return self._end(key, mark, attempt, sent, new_counts=False)[1]

    def _answered_anew(
        self, origin: tuple[str, str, int], attempt: Attempt, silent: str, reuse_works: bool
    ) -> str:
        """The warning of the attempt made on a new connection after a kept-
        alive one went silent; when it was answered, the host's connections
        are not reused for the rest of the run, unless `reuse_works`."""
        how = f"{silent} on a kept-alive connection got no answer in time"
        again = "a GET" if silent == "HEAD" else "the request"
        if attempt.head is None:
            return f"{how}; {again} on a new connection got none either"
        if reuse_works:
            return (
                f"{how}; {again} on a new connection was answered: the host answered"
                " on kept-alive connections before, so the silence was the page's"
            )
        assert self.connections is not None
        if self.connections.stop_reusing(origin):
            return (
                f"{how}; {again} on a new connection was answered: this host's"
                " connections are no longer reused in this run"
            )
        return f"{how}; {again} on a new connection was answered"

    async def _account_for_the_rest(self, items: Iterator[Target | Duplicate]) -> None:
        """After a stop: a row for what was in flight, waiting for its host,
        or not yet read.

        The rows are handed to the sink as they are made and the sink is let
        to write them out as it goes, so that stopping a long list early costs
        no more memory than running it.
        """
        stopped = "the run was stopped before this check finished"
        for target in self._in_flight.values():
            self.sink.add(target.seq, failed_result(target, Interrupted.category, stopped))
        self._in_flight.clear()
        left = self.hosts.parked()  # waiting in a host's backlog
        not_started = "not checked: the run was stopped first"
        for target in left:
            self.sink.add(target.seq, failed_result(target, Interrupted.category, not_started))
        for count, item in enumerate(items):
            unread = self._to_check(item)
            if unread is not None:
                self.sink.add(unread.seq, failed_result(unread, Interrupted.category, not_started))
            if count % FLUSH_EVERY == FLUSH_EVERY - 1:
                await self.sink.flush()

    def _to_check(self, item: Target | Duplicate) -> Target | None:
        """Settle what needs no request (duplicates, invalid lines); return the rest."""
        if isinstance(item, Duplicate):
            self.sink.add_duplicate(item)
            return None
        if item.url is None:
            self.sink.add(item.seq, failed_result(item, InvalidURL.category, item.error or ""))
            return None
        return item
