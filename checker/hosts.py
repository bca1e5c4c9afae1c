"""Politeness per host: a cap on checks at once, a minimum interval between
requests, a slower pace after 429 or 503, and a backlog so that a slow host
never holds up the workers the other hosts need.

Keyed by origin (scheme, host, port). A worker asks to `enter` a host with a
URL: when the host already has `limit` checks going, the URL joins the host's
backlog and the worker goes on to another URL; a worker leaving the host
takes the next URL of its backlog (`leave`) before it lets go of its place.
So at most `limit` workers are busy with one host, whatever the list's order.
The backlogs hold at most `max_parked` URLs in all (memory follows the
concurrency, not the list): past that, a worker waits for a place in its
host, as it would without backlogs.

Before each request, `pace` waits until the host's next allowed start: the
run's `--host-interval` after the previous start, or longer after the host
said 429 Too Many Requests or 503 (`told`): the wait then doubles from 1 s up
to `cap` (at least what Retry-After asked, within the cap), and halves again
with each answer that is not one of those, down to what the host is known to
need (its floor: a host that refuses a new URL at a faster pace than it had
answered well at since its last refusal, or whose refused URL is answered when asked
again slower, limits its rate, and is not taken faster than 1.5 times that
pace; the floor shrinks by 5% with each good answer, so a limit that ends
lets the pace come back). While a URL refused at a pace waits to be asked
again, it holds its host to three times that pace (`hold`), and its request
goes first. A plain 503 after as long a quiet as the host once needed after a
refusal does not slow it (a backend failing at random), and a host that
answered nothing well for NOT_A_RATE seconds keeps no pace (it is down, not
limiting a rate). A host that answered well and then refuses every request
has the pool wait for it, up to WINDOW, rather than charge the URLs
(`refusing_all`). A 503 that took SLOW_REFUSAL or more while the host
answered well a request sent after it is the page's, and keeps no pace
(`Told.PAGE`).

A host that refuses or resets a new connection, or answers its first
request 429 or 503 asking no time, while other requests to it are in flight
limits the connections a client may hold (haproxy's sc_conn_cur, with a
reject or a deny_status; iptables' connlimit; nghttpx): its cap comes down
(`too_many`), for the rest of the run, the attempt is not charged, and the
check asks again only within the cap (`within_cap`). A URL refused while
other requests to its host were in flight, or timed out so on a host that
is `overloaded`, is asked its last time alone (`alone`, `release`; in
flight: `begin`, `end`). A timeout behind a request given up on that the
host has not answered, nor any sent after it, is the host's queue, not the
URL's page (`behind`): such a URL asks again once the host answers again
(a probe asks a page it answered quickly), and the URL it waited behind
asks again once the host is done with it (`after_stall`).

Entries live while a host has checks, a backlog, or a pace to keep, so a list
of a million distinct hosts leaves no million entries behind.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from checker.targets import Target
from checker.url import URL

# The clock of the pace: "at least S seconds between starts" on a clock that
# counts finer than uvloop's (whole milliseconds, read once an iteration).
clock = time.monotonic

Origin = tuple[str, str, int]

SLOW_DOWN = frozenset({429, 503})
FIRST_PENALTY = 1.0  # seconds after a first 429 without a Retry-After
RECHECK = 0.25  # a paced wait looks again this often (the penalty may have shrunk)
# A host that limits its rate, refusing a request sent at a pace of P
# seconds, is not taken faster than FLOOR_MARGIN * P again; that floor
# shrinks by FLOOR_DECAY with each good answer (a limit that ends, or one
# that was only for a while, lets the pace come back: it halved only every
# 60 s, and a host limited for 10 s kept a run of 300 URLs at 96 s).
FLOOR_MARGIN = 1.5
FLOOR_DECAY = 0.95
# A URL refused at a pace of P holds its host to HOLD * P until it is asked
# again and settled: the pace had come down by halves, so the last one
# answered was 2P at least, and a limit lies between P and 2P.
HOLD = 3.0
# A plain 503 says nothing of a rate when the host had long enough since its
# last good answer that no limit it has shown explains it (found by a
# review: a backend failing every other request looked like a limit at each
# step, and its pace ratcheted to the cap: 10 URLs took 76 s, not 13):
# QUIET_MARGIN times the shortest wait that got it answering again after a
# refusal (`_Host.refill`). Then the pace does not slow further for it.
# (1.5 let the pace grow to 1.5-2 s a request against such a backend, 25
# URLs 74 s; at 1.0, 50 s; nginx's limit_req all up either way.)
QUIET_MARGIN = 1.0
# And a host that answered nothing well for NOT_A_RATE seconds, whatever
# the pace, is not limiting a rate but down (maintenance): its 503s are its
# state, and it keeps no pace (it doubled to the cap, and 60 URLs took
# hours). A limit that says so (429, Retry-After) keeps slowing it.
NOT_A_RATE = 20.0
# A host that answered well and then refuses every request may be a limit by
# the minute whose window is used up: for up to WINDOW seconds after its last
# good answer, the URLs it refuses are not charged for it (`refusing_all`,
# pool.Pool._check: a URL's three attempts fell in one 30 s window, and a
# healthy page was down), and its 503s are not taken for it being down.
WINDOW = 60.0
# A host that answered nothing well for GIVE_UP seconds (since its last good
# answer, or its first request), though it says it limits a rate (429, a
# Retry-After): no limit by the minute refuses for two of its windows, and
# waiting that out took hours (a client blocked with 429, a limit by the
# hour: its pace doubled to the cap, 60 s, and 20 URLs had not all been
# asked after 15 minutes). Its refusals are then its answer: charged to the
# URLs (`Told.REFUSING`), and no pace for them.
GIVE_UP = 2 * WINDOW
# A 503 that came SLOW_REFUSAL seconds or more after its request while the
# host answered well a request sent after it is the page's (varnish's
# "Backend fetch failed" for a backend slower than its first_byte_timeout,
# with a Retry-After: 5), not the host's pace: found by a review, 2 such
# pages among 100 good ones doubled the host's pace to 60 s and the run took
# 271 s. (A limit refuses at once; a request sent at about the same time
# may be let through before it, and its refusal is not the page's.)
SLOW_REFUSAL = 1.0
# The share of a host's requests of late that timed out, each settled one
# weighing TIMEOUTS_WEIGHT: from OVERLOADED on, with its answers taking
# SLOW_ANSWERS of the deadline or more, the host takes on more than it
# serves, and a URL that timed out while others were in flight is asked
# its last time alone (`alone`).
TIMEOUTS_WEIGHT = 0.2
OVERLOADED = 0.5
SLOW_ANSWERS = 0.25  # (and its answers took this share of the deadline)
QUICK_ANSWERS = 0.5  # answers under this share of the deadline raise an overloaded host's cap
GIVEN_UP_KEPT = 64  # requests timed out a host may still work on, counted at most


# The answers on kept-alive connections whose times `too_many` reads.
SERVED = 64


def _most_at_once(spans: deque[tuple[float, float]]) -> int:
    """The most of these (start, end) spans that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:  # (an end before a start at the same time)
        now += step
        most = max(most, now)
    return most


class Told(enum.Enum):
    """What an answer says of the host's pace (`HostGate.told`)."""

    ANSWER = "not a refusal"
    URL = "a refusal that says nothing of a rate: the URL's, and slower"
    RATE = "the host's rate (429, Retry-After): not the URL's"
    CAME_DOWN = "refused at a faster pace than it had answered well at: its rate"
    NOT_PACE = "refused after a quiet no limit it has shown explains: the URL's"
    REFUSING = "a rate's refusal, though nothing was answered well for GIVE_UP: the URL's"
    PAGE = "a slow 503 while the host answered others well: the page's, no pace"


@dataclass(slots=True)
class _Host:
    active: int = 0
    backlog: deque[Target] = field(default_factory=deque)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    next_at: float = 0.0  # clock() time before which no request starts (a slow-down)
    started: float = float("-inf")  # clock() time the last paced request started
    penalty: float = 0.0  # seconds added between requests after 429/503
    penalized_at: float = float("-inf")  # clock() time a 429/503 last doubled it
    floor: float = 0.0  # the penalty it needs (a rate limit learned)
    # The slowest pace (penalty) it answered well at since its last 429/503
    # (-1: none): a refusal at a faster one is its rate, not the URL.
    accepted: float = -1.0
    # The penalties that URLs refused and not yet settled hold the host to
    # (`hold`): the largest applies.
    holds: list[float] = field(default_factory=list)
    held: float = 0.0
    first: int = 0  # requests of URLs that hold it, waiting for their turn
    # When its last good answer was sent (its first request's, until one),
    # and the shortest time from a refusal to the good answer after it (one
    # asked after the refusal was heard): what the host's limit, if it has
    # one, has shown it needs.
    good_sent: float | None = None
    first_sent: float = float("inf")
    refill: float = float("inf")
    refused_sent: float = float("-inf")  # when the last refusal was asked
    refused_heard: float = float("-inf")  # and came back
    refill_open: bool = False  # no good answer asked since that refusal yet
    cap: int = 0  # checks at once, when lowered (`too_many`; 0: the gate's limit)
    # Checks turned away by its limit of connections, waiting for a place
    # within the cap to ask again (`within_cap`).
    turned: deque[asyncio.Future[None]] = field(default_factory=deque)
    # When its last answers on kept-alive connections were sent and heard:
    # the most of them at once is what it served (`too_many`'s floor).
    served: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=SERVED))
    resets_all: bool = False  # it reset a connection alone, never answering well
    kept_alive: bool = False  # it answered well on a kept-alive connection
    in_flight: int = 0  # requests sent and not yet settled (`begin`, `end`)
    begun: int = 0  # and all those sent
    solo: bool = False  # one request goes alone: no other starts (`alone`)
    refusing: bool = False  # it refused everything for GIVE_UP: no pace (`Told.REFUSING`)
    solo_wanted: int = 0  # requests waiting to go alone
    timeouts: float = 0.0  # the share of its requests of late that timed out (`end`)
    took: float = 0.0  # and what those it answered took, a share of the deadline
    # Checks at once while it is `overloaded` (0: no such cap), and its
    # quick answers in a row since it last came down or rose (`end`).
    load_cap: int = 0
    quick: int = 0
    lowered_at: float = 0.0  # (when it last came down)
    # The times between its answers while it had others to work on (what a
    # request costs it), when it last answered, and when the requests given
    # up on (timed out) since were sent (`end`): a server works on those too,
    # and one asked alone after them waited behind them (`alone`).
    gaps: float = 0.0  # (their sum, and how many: answers come in bunches)
    gaps_n: int = 0
    answered_at: float = 0.0
    given_up: deque[float] | None = None
    # When the last request it answered in under SLOW_ANSWERS was sent: one
    # that timed out before it was answered, sent before that, is not behind
    # a load (`overtaken`).
    quick_sent: float = 0.0
    # And on a new connection: one on a new connection is overtaken only by
    # such (a server at its limit of connections leaves a new one unaccepted
    # and answers on those it holds: h2o's max-connections).
    quick_sent_new: float = 0.0
    # Checks waiting to ask again after a timeout behind a request given up
    # on, and when the last of them went as the host's probe (`after_stall`).
    behind_waiting: int = 0
    probe_at: float = float("-inf")
    # A page it answered well in under SLOW_ANSWERS, of late: what a probe
    # asks (`after_stall`).
    quick_url: URL | None = None
    probed_quickly: float = float("-inf")  # when the last probe answered so was sent


class HostGate:
    def __init__(
        self, limit: int, interval: float = 0.0, cap: float = 60.0, max_parked: int = 400
    ) -> None:
        self.limit = limit
        self.interval = interval
        self.cap = cap
        self.give_up = GIVE_UP  # (a test's shorter one: set before the gate is made)
        self.max_parked = max_parked
        self._parked = 0
        self._hosts: dict[Origin, _Host] = {}
        self._calls = 0

    def admit(self, key: Origin) -> bool:
        """`enter` without a coroutine when the host has a place (True: the
        caller checks its URL now); False: `enter` decides. (An `enter` that
        never waits still cost a coroutine: 0.8 us a check.)"""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host()
        if host.active < self._limit(host):
            host.active += 1
            return True
        return False

    async def enter(self, key: Origin, target: Target) -> bool:
        """True: the caller checks `target` now. False: it is in the host's
        backlog, and a worker already in the host will check it."""
        if self.admit(key):
            return True
        host = self._hosts[key]
        if self._parked < self.max_parked:
            host.backlog.append(target)
            self._parked += 1
            return False
        # Every backlog is full: wait for a place in this host (handed over
        # by a worker that leaves it).
        waiting = asyncio.get_running_loop().create_future()
        host.waiters.append(waiting)
        try:
            await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled():
                host.active -= 1  # handed over, but the run is stopping
            else:
                host.waiters.remove(waiting)
            raise
        return True

    def leave(self, key: Origin) -> Target | None:
        """The next URL of the host's backlog for the caller to check (keeping
        its place), or None once it has let go (or handed its place over)."""
        host = self._hosts[key]
        if host.active > self._limit(host):
            # (Lowered meanwhile: this place goes; the others take the backlog.)
            host.active -= 1
            return None
        if host.turned:
            # (A check turned away by its limit waits for it: it goes first.)
            held = host.active
            host.active -= 1
            self._admit(host)
            if host.active == held:
                return None  # (handed over)
            host.active += 1  # (none waits still: the backlog, as ever)
        if host.backlog:
            self._parked -= 1
            return host.backlog.popleft()
        while host.waiters:
            waiting = host.waiters.popleft()
            if not waiting.done():
                waiting.set_result(None)  # its place, as it is
                return None
        host.active -= 1
        self._forget(key, host)
        return None

    def paced(self, key: Origin, first: bool = False) -> float | None:
        """`pace`'s answer without a coroutine when the request need not wait
        (no interval, penalty, hold, slow-down or going alone, none first):
        most of a run's. None: await `pace`."""
        host = self._hosts.get(key)
        if host is None:
            return 0.0
        if (
            self.interval
            or host.penalty
            or host.held
            or host.next_at
            or host.solo
            or host.solo_wanted
            or (host.first and not first)
        ):
            return None
        return 0.0

    async def pace(self, key: Origin, first: bool = False) -> float:
        """Wait until the host's next request may start: the interval (and
        any penalty) after the last one started, and not before a slow-down
        said to wait (`told`). Re-read as it waits, not booked ahead: a
        penalty that shrinks meanwhile (good answers) shortens the wait (six
        retries booked 32 s apart were spaced 32 s though each was answered
        200), and the requests due in one turn of a held-up loop still start
        a gap apart (each start moves `started` before the next looks).
        `first`: a URL that holds the host (`hold`) goes before the others
        that wait (it was starved behind them, holding all of them slow).
        Returns the penalty it kept, holds included (for `told`)."""
        host = self._hosts.get(key)
        if host is None:
            return 0.0
        host.first += first
        try:
            while True:
                gap = self.interval + max(host.penalty, host.held)
                due = max(host.started + gap, host.next_at) if gap > 0 else host.next_at
                wait = due - clock()
                if wait <= 0 and (first or not host.first) and not (host.solo or host.solo_wanted):
                    break
                # (uvloop's timers may end a millisecond early: look again.)
                await asyncio.sleep(min(wait, RECHECK) if wait > 0 else RECHECK / 10)
        finally:
            host.first -= first
        if gap > 0 or host.next_at > 0:
            host.started = clock()
        return max(host.penalty, host.held)

    def told(
        self,
        key: Origin,
        status: int | None,
        retry_after: float | None,
        sent: float | None = None,
        paced: float = 0.0,
        fresh: bool = False,
        page: bool = False,
        reused: bool = False,
    ) -> Told:
        """What the host answered: slow down after 429/503, speed up again
        after. `sent`: the `clock()` time the request went (None: now). A
        429 or 503 doubles the penalty only for a request sent after the
        last one that set it: six answers to one burst are one signal, not
        six doublings (1 s became 32). `paced`: the penalty the request was
        sent at (`pace`); `fresh`: its URL was not just refused itself.
        A fresh URL refused at a faster pace than the host had answered well
        at since its last refusal says the host limits its rate: its floor.
        (Not a broken page refused again, nor a second refusal of one brief
        episode, nor a refusal at the pace it answered at: those would slow
        a host for good.)

        Returns what the answer says (`Told`): a refusal that is the host's
        rate (RATE, CAME_DOWN) is not charged to the URL when it is asked
        again and answered. A backend that fails every other request refuses
        at any pace: its 503s are the URL's (URL: degraded when answered on
        a retry, as ever), and once it refuses after a quiet that its limit,
        if it were one, would have taken (NOT_PACE), it is not slowed
        further for them. Nor is a host that said 429 (or Retry-After) to
        everything for GIVE_UP (REFUSING): its refusals are the URLs'. A
        503 that took SLOW_REFUSAL or more while the host answered well a
        request sent after it is the page's (PAGE): no pace for it, nor for
        the page's 503s after it (`page`)."""
        host = self._hosts.get(key)
        if host is None:
            return Told.ANSWER
        # (The clock is read for a refusal only: an answer costs none.)
        sent = clock() if sent is None else sent
        if status in SLOW_DOWN:
            now = clock()
            if status == 503 and (
                page
                or (
                    host.good_sent is not None
                    and host.good_sent > sent
                    and now - sent >= SLOW_REFUSAL
                )
            ):
                return Told.PAGE
            # (Only refusals: until a good answer, every answer is one.)
            host.first_sent = min(host.first_sent, sent)
            # (Since its last good answer, or its first request.)
            since = sent - (host.first_sent if host.good_sent is None else host.good_sent)
            said_rate = status == 429 or retry_after is not None
            if said_rate and since >= self.give_up:
                # Not waited out any longer: no pace, and what was due after
                # the last refusal's pace is due now. Kept so until it
                # answers well, idle meanwhile or not (`_idle`): forgotten,
                # its next URLs waited out another GIVE_UP.
                host.penalty = host.floor
                host.next_at = min(host.next_at, now + host.floor)
                host.refusing = True
                return Told.REFUSING
            if not said_rate:
                if since >= (NOT_A_RATE if host.good_sent is None else WINDOW):
                    host.penalty = host.floor  # down, not limiting: no pace for it
                    return Told.NOT_PACE
                if since >= QUIET_MARGIN * host.refill:
                    return Told.NOT_PACE  # no slower for it
            came_down = paced < host.accepted
            rate = status == 429 or retry_after is not None or came_down
            if paced > 0 and fresh and came_down:
                # (Refused at a faster pace than it had just answered at; at
                # the pace it answered at, it is more likely a backend that
                # fails at random: found by a review.)
                host.floor = min(self.cap, max(host.floor, FLOOR_MARGIN * paced))
            host.accepted = -1.0
            host.refused_sent = max(host.refused_sent, sent)
            host.refused_heard, host.refill_open = now, True
            if sent >= host.penalized_at:
                # 1 s at first; twice what it was once the host has a pace
                # (at 10 a second, each refusal as the floor shrank cost a
                # second's pace again, and 100 pages took 32 s).
                doubled = 2 * host.penalty if host.floor else max(FIRST_PENALTY, 2 * host.penalty)
                wanted = max(doubled, retry_after or 0.0)
                host.penalized_at = now
            else:
                wanted = max(host.penalty, retry_after or 0.0)
            host.penalty = min(self.cap, wanted)
            host.next_at = max(host.next_at, now + host.penalty)
            return Told.CAME_DOWN if came_down else Told.RATE if rate else Told.URL
        if host.refill_open and sent >= host.refused_heard:
            # The first good answer asked after a refusal was heard: the
            # host needed at most this long after it to answer again.
            host.refill = min(host.refill, sent - host.refused_sent)
            host.refill_open = False
        host.good_sent = sent if host.good_sent is None else max(host.good_sent, sent)
        host.refusing = False
        host.kept_alive |= reused
        if reused:
            host.served.append((sent, clock()))
        host.accepted = max(host.accepted, paced)
        if host.floor:
            host.floor = host.floor * FLOOR_DECAY if host.floor > 0.01 else 0.0
        if host.penalty:
            halved = host.penalty / 2 if host.penalty > 0.1 else 0.0
            host.penalty = max(halved, host.floor)
        return Told.ANSWER

    def too_many(
        self,
        key: Origin,
        others: int,
        answered: bool = False,
        reset: bool = False,
        unmade: float | None = None,
    ) -> int:
        """A new connection to the host was refused or reset before an answer
        (`answered`: its first answer refused it, asking no time; `unmade`:
        it was not made in time, and this is when it was begun;
        pool.turned_away_by) while `others` requests to it were in flight:
        the host limits a client's connections. Returns its cap (the check
        asks again within it, not charged: the pool bounds how often), or
        0: charged.

        One not made in time counts only when the host answered well a
        request sent after it was begun: it was serving others meanwhile
        (haproxy's maxconn leaves the handshakes of the connections past it
        unanswered, and answers on the ones it took). A host that stopped
        answering altogether is not limiting: its checks are charged, or
        each would wait out TURNED_AWAY more connect deadlines.

        A refused or reset one steps the cap down one (from the checks
        under way, if fewer), for each: nghttpx resets 16 of a burst of 20
        at its limit of 4, and the cap had come down to 19 only, each
        turned away in turn. Not below the most requests it answered at
        once on kept-alive connections of late: a limit counts a connection
        checker closed a little longer, and one turned away then says
        nothing new. Before the host's first good answer, only a reset
        counts (nghttpx, from the first burst; a refused one is a closed
        port), until one comes with no other request in flight: that host
        resets everything, and its cap comes back.

        An answered one brings the cap down to the checks under way, less
        itself: haproxy's deny_status counts every connection, idle ones
        too, when a request comes, and refuses a whole burst that comes at
        once (6 new connections at a limit of 4: all 429); stepping down
        for each took the cap to 1. Only with as many others in flight as
        it answered at once on kept-alive connections of late, or more (a
        limit refuses past it; a backend failing at random fails a request
        on the new connection that replaced one it was refused on as well,
        and took the cap to 1: 300 pages, 58 s, not 20). And only on a host
        that has answered well on a kept-alive connection: one that closes
        every connection answers
        each request on a new one, and a backend failing at random there
        would take the cap down to 1 (10% of 300 pages 503: 72 s, not 30,
        measured with refusals on kept-alive connections counted); and a
        429 or 503 before any good answer may be a backend failing every
        other request, which must not be up."""
        host = self._hosts.get(key)
        if host is None:
            return 0
        if answered:
            if not host.kept_alive or host.active < 2 or others < _most_at_once(host.served):
                return 0
            cap = host.cap or self.limit
            if host.active - 1 < cap:
                host.cap = host.active - 1
                return host.cap
            return cap if host.cap and host.active > host.cap else 0
        if unmade is not None and (host.good_sent is None or host.good_sent <= unmade):
            return 0
        if host.good_sent is None:
            if host.resets_all or not reset:
                return 0
            if not others:
                host.resets_all, host.cap = True, 0
                self._admit(host)
                return 0
        if host.active < 2:
            return 0
        floor = max(1, _most_at_once(host.served))
        host.cap = max(floor, min(host.cap or self.limit, host.active) - 1)
        return host.cap

    async def within_cap(self, key: Origin) -> None:
        """A check turned away by the host's limit of connections (`too_many`)
        asks again only within its cap: while the host has more checks than
        that, it gives its place up and waits for one (those turned away
        asked again at once, holding their places, and each used up its
        turns before the cap came down to the limit: nghttpx, healthy pages
        down)."""
        host = self._hosts.get(key)
        if host is None or host.active <= self._limit(host):
            return
        host.active -= 1
        waiting = asyncio.get_running_loop().create_future()
        host.turned.append(waiting)
        try:
            await waiting
        except asyncio.CancelledError:
            if waiting.cancelled() or not waiting.done():
                host.turned.remove(waiting)
                host.active += 1  # (its place back, for the worker to leave)
            raise

    def _admit(self, host: _Host) -> None:
        """Hand places within the cap to the checks waiting in `within_cap`."""
        while host.turned and host.active < self._limit(host):
            waiting = host.turned.popleft()
            if not waiting.done():
                host.active += 1
                waiting.set_result(None)

    def begin(self, key: Origin) -> int:
        """A request to the host is sent; returns its mark, for `end`."""
        host = self._hosts.get(key)
        if host is None:
            return 0
        host.in_flight += 1
        host.begun += 1
        # (Those in flight now, less those begun so far: `end` adds those
        # begun by then.)
        return host.in_flight - host.begun

    def end(
        self,
        key: Origin,
        mark: int = 0,
        timed_out: bool = False,
        took: float = 0.0,
        sent: float | None = None,
        served: bool = False,
        reused: bool = True,
        url: URL | None = None,
    ) -> int:
        """It is settled (`timed_out`: with no answer in time; else answered
        in `took`, a share of the deadline, or failed); returns how many other
        requests to the host were in flight while it was (from `begin`'s
        `mark`): a burst turned away at once by a limit is settled one by one,
        and the last of them would count none. `sent`: when it was sent, if
        timed out or answered with a status line; `served`: answered, and
        not told to slow down (429, 503)."""
        host = self._hosts.get(key)
        if host is None:
            return 0
        host.in_flight -= 1
        host.timeouts = host.timeouts * (1 - TIMEOUTS_WEIGHT) + TIMEOUTS_WEIGHT * timed_out
        others = mark + host.begun - 1
        if not timed_out:
            host.took = host.took * (1 - TIMEOUTS_WEIGHT) + TIMEOUTS_WEIGHT * took
        if sent is not None:
            self._owed(host, timed_out, others, sent)
            if served and took < SLOW_ANSWERS:
                host.quick_sent = max(host.quick_sent, sent)
                if url is not None:
                    host.quick_url = url
                if not reused:
                    host.quick_sent_new = max(host.quick_sent_new, sent)
        if (
            timed_out
            and others
            and not self._overtaken(host, sent, reused)
            and self._overloaded(host)
        ):
            # Taking on more than it serves: half as many at once, and not
            # again for a request sent before that (a burst given up on is
            # one sign). A server with one thread and 3 s pages took 6 at
            # once past a 10 s deadline and worked, after it, on the requests
            # given up on: 2 of 30 healthy pages down, 12 degraded.
            if sent is None or sent >= host.lowered_at:
                host.load_cap = max(1, min(host.load_cap or self.limit, host.active) // 2)
                host.lowered_at = clock()
            host.quick = 0
        elif host.load_cap and not timed_out:
            # Answers in under half the deadline, four for each check the
            # cap lets go at once, in a row: one more.
            host.quick = host.quick + 1 if took < QUICK_ANSWERS else 0
            if host.quick >= 4 * host.load_cap:
                host.load_cap = (host.load_cap + 1) % self.limit  # (0: at the limit)
                host.quick = 0
                self._admit(host)
        return others

    @staticmethod
    def _owed(host: _Host, timed_out: bool, others: int, sent: float) -> None:
        """Keep `given_up`, `gaps` and `answered_at` (see `_Host`)."""
        if timed_out:
            if host.given_up is None:
                host.given_up = deque(maxlen=GIVEN_UP_KEPT)
            host.given_up.append(sent)
            return
        now = clock()
        if others and host.answered_at:
            host.gaps += now - host.answered_at
            host.gaps_n += 1
        host.answered_at = now
        if host.given_up:
            # (Those sent before this one are done with, first come first
            # served; a server that is not so is waited for a little less.)
            while host.given_up and host.given_up[0] <= sent:
                host.given_up.popleft()

    def _limit(self, host: _Host) -> int:
        """The checks at once the host takes now: the gate's limit, or lower
        for a limit of connections (`too_many`) or a load (`end`)."""
        return min(host.cap or self.limit, host.load_cap or self.limit)

    def behind(self, key: Origin, sent: float, own: list[float], window: float) -> bool:
        """Whether a request sent at `sent` that timed out waited behind one
        sent before it, not its URL's own (`own`: when those that timed out
        were sent), that was given up on and that the host has answered
        nothing sent after since: a server that works its requests in turn
        (one thread, or every worker held) was busy with that one, and this
        timeout says nothing of its own page. Only on a host that answered
        well before, and for `window` seconds after its last answer (a host
        that stopped answering altogether is down, and its URLs are charged
        as ever)."""
        host = self._hosts.get(key)
        if host is None or not host.given_up or not self._answering(host, window):
            return False
        first = min(host.given_up)
        return first < sent and first not in own

    async def after_stall(
        self,
        key: Origin,
        since: float,
        own: float | None,
        window: float,
        probe: Callable[[URL], Awaitable[bool | None]] | None = None,
    ) -> None:
        """Before a URL asks again after a timeout at `since`: a URL whose
        timeout was `behind` another's waits until the host answers again.
        While nothing is in flight to it, one of those waiting has `probe`
        ask a page it answered well and quickly (`quick_url`), one probe at a
        time: a server that works in turn answers it once it is done with
        what it owes, while one whose pages that hang do so each on its own
        answers it at once (`probed_quickly`: the pool charges the timeout
        after all; pages that hang together at the end of a list each
        waited behind another's for the whole window). When `probe` sends
        none (None), the URL goes as the probe itself. A URL whose own
        request sent at `own` was given up on waits until the host answered
        a request sent after it (is done with it: asked again at once, its
        page held a one-thread server 30 s more, and every page behind it
        timed out) and none waits so any more (they go first), or until
        none waits and nothing is in flight. Each for `window` seconds at
        most; the pool then sends the latter alone (`alone`), unless it was
        overtaken meanwhile."""
        host = self._hosts.get(key)
        if host is None:
            return
        end = since + window
        if own is None:
            host.behind_waiting += 1
        try:
            while clock() < end:
                if own is None:
                    if host.answered_at > since:
                        return
                    idle = not host.in_flight
                else:
                    if not host.behind_waiting and (not host.given_up or own not in host.given_up):
                        return
                    idle = not host.in_flight and not host.behind_waiting
                if idle and clock() - host.probe_at >= RECHECK:
                    host.probe_at = sent = clock()
                    if own is not None or probe is None or host.quick_url is None:
                        return
                    quick = await probe(host.quick_url)
                    if quick is None:
                        return
                    if quick:
                        host.probed_quickly = sent
                    continue
                await asyncio.sleep(RECHECK / 5)
        finally:
            if own is None:
                host.behind_waiting -= 1

    def answering(self, key: Origin, window: float) -> bool:
        """Whether the host answered well once, and anything in the last
        `window` seconds (`behind` may excuse a timeout)."""
        host = self._hosts.get(key)
        return host is not None and self._answering(host, window)

    @staticmethod
    def _answering(host: _Host, window: float) -> bool:
        return host.good_sent is not None and clock() - host.answered_at < window

    def probed_quickly(self, key: Origin, sent: float) -> bool:
        """Whether a probe sent after `sent` was answered in under
        SLOW_ANSWERS on a kept-alive connection (`after_stall`)."""
        host = self._hosts.get(key)
        return host is not None and host.probed_quickly > sent

    def overloaded(self, key: Origin) -> bool:
        """Whether most of the host's requests of late timed out, and those it
        answered took a good share of the deadline: a server taking on more
        than it serves. (Not pages that hang on a host that answers the others
        at once: at the end of a list only they are left, all timing out, and
        asked alone each held its host a deadline: 2,000 pages with 20 hung,
        42 s, not 17.)"""
        host = self._hosts.get(key)
        return host is not None and self._overloaded(host)

    def overtaken(self, key: Origin, sent: float, reused: bool = True) -> bool:
        """Whether the host answered quickly a request sent after `sent`
        (one that timed out then waited on its own page, not behind a load:
        node, 300 quick pages, 10 of 7 s and 5 that hang, --per-host 20:
        the hung ones asked alone took 71 s, not 31)."""
        host = self._hosts.get(key)
        return host is not None and self._overtaken(host, sent, reused)

    @staticmethod
    def _overtaken(host: _Host, sent: float | None, reused: bool) -> bool:
        return sent is not None and sent < (host.quick_sent if reused else host.quick_sent_new)

    @staticmethod
    def _overloaded(host: _Host) -> bool:
        return host.timeouts >= OVERLOADED and host.took >= SLOW_ANSWERS

    async def alone(self, key: Origin, drain: float = 0.0) -> None:
        """Wait until no other request to the host is in flight, and hold the
        others back (in `pace`) until `release`: a URL refused while other
        requests were in flight (nginx's limit_conn answers 503 past N at
        once), or timed out so on a host that is `overloaded`, is asked its
        last time alone before it is called down. Up to `drain` seconds more
        for the host to be done with the requests given up on (`_owed`):
        one worker, 0.25 s a page, the lone request came behind four given
        up on, past a deadline of 1 s."""
        host = self._hosts.get(key)
        if host is None:
            return
        host.solo_wanted += 1
        try:
            while host.solo or host.in_flight:
                await asyncio.sleep(RECHECK / 25)
            owed = len(host.given_up or ()) * host.gaps / max(1, host.gaps_n)
            done = min(host.answered_at + owed, clock() + drain)
            while clock() < done and not host.solo:
                await asyncio.sleep(min(RECHECK, done - clock()))
            while host.solo or host.in_flight:
                await asyncio.sleep(RECHECK / 25)
        finally:
            host.solo_wanted -= 1
        host.solo = True

    def release(self, key: Origin) -> None:
        host = self._hosts.get(key)
        if host is not None:
            host.solo = False

    def hold(self, key: Origin, penalty: float, before: float = 0.0) -> float:
        """While a URL refused (429/503) at a pace waits to be asked again,
        the host goes no faster than `penalty` (in place of its hold of
        `before`, if any): the good answers of others halve the penalty
        meanwhile, and its next attempt would be refused again as the pace
        came down (three refusals: down, though the page was fine). Its own,
        not the host's for good: a page that keeps answering 503 lets go
        when it is settled (`hold(key, 0, before)`). Returns the hold, to
        give back as `before`."""
        host = self._hosts.get(key)
        if host is None:
            return 0.0
        if before > 0 and before in host.holds:
            host.holds.remove(before)
        penalty = min(self.cap, penalty)  # (what is kept is what comes back)
        if penalty > 0:
            host.holds.append(penalty)
        host.held = max(host.holds, default=0.0)
        return penalty

    def refusing_all(self, key: Origin, since: float) -> bool:
        """Whether the host, having answered well, answered nothing well
        that was asked at `since` (a `clock()` time) or after, for less than
        WINDOW. (One that never answered well is no limit's window: a broken
        page alone on its host, a host in maintenance.)"""
        host = self._hosts.get(key)
        good = host.good_sent if host is not None else None
        return good is not None and good < since and clock() - good < WINDOW

    def proven(self, key: Origin, refused_at: float) -> None:
        """A URL refused (429/503) at a penalty of `refused_at` was answered
        when asked again slower: the host limits its rate, and is not taken
        faster than FLOOR_MARGIN times that again (its floor). (A page that
        keeps answering 503 is never answered: it sets none.)"""
        host = self._hosts.get(key)
        if host is None or refused_at <= 0:
            return
        host.floor = min(self.cap, max(host.floor, FLOOR_MARGIN * refused_at))
        host.penalty = max(host.penalty, host.floor)

    def penalty(self, key: Origin) -> float:
        host = self._hosts.get(key)
        return host.penalty if host is not None else 0.0

    def parked(self) -> Iterator[Target]:
        """Every URL still in a backlog (for the rows of a stopped run)."""
        for host in self._hosts.values():
            yield from host.backlog
            self._parked -= len(host.backlog)
            host.backlog.clear()

    def _forget(self, key: Origin, host: _Host) -> None:
        if host.active or host.backlog or host.waiters or host.turned:
            return
        self._calls += 1
        now = clock()
        if not host.penalty and self._idle(host, now):
            del self._hosts[key]
        elif self._calls % 1024 == 0:
            # Hosts kept for their pace: drop those whose pace has run out.
            for stale in [k for k, h in self._hosts.items() if self._idle(h, now)]:
                del self._hosts[stale]

    def _idle(self, host: _Host, now: float) -> bool:
        """Nothing going, and no pace left to keep (its next start is free)."""
        return (
            not host.active
            and not host.backlog
            and not host.waiters
            and not host.turned
            and host.next_at <= now
            and host.started + self.interval <= now
            and not host.refusing
        )

    def __len__(self) -> int:
        return len(self._hosts)
