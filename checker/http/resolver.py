"""Name resolution for a run: the system resolver, on threads that scale with
the run, behind a per-run cache that shares lookups in flight.

Why not `loop.getaddrinfo`: it runs on a small shared pool (libuv's 4 threads
under uvloop, asyncio's default executor otherwise, shared with aiofiles), so
at a resolver delay of 100 ms a run of 5,000 host names resolved 20 names a
second, and the wait for a thread ran inside the connect deadline: healthy
sites came out as `timeout`. A lookup that was no longer wanted still ran, and
the process waited for all of them before it could exit.

So here:

- lookups run on daemon threads of our own, started as they are needed up to
  `max_threads` (the run sets it from `--concurrency`), so capacity follows
  the run, and a thread stuck on a name that never answers neither holds the
  process at exit nor holds back other names: once every check that wanted
  its answer has given up on it, one more thread may start in its place (up
  to `max_stuck` of them), and when even those are all stuck, a name waits
  for a thread at most `thread_wait` seconds and says why it was not asked;
- a lookup waiting for a thread that nobody wants any more is dropped before
  it starts;
- the time a lookup waits for a thread is not charged to anyone: the
  `timeout` ("no answer from the resolver within N s") counts from the moment
  a thread asks the system;
- each host is looked up once per run: answers (and "no such host") are kept
  in a bounded LRU cache for the run's life, and checks that ask for a name
  whose lookup is under way wait for that one instead of asking again.

`socket.getaddrinfo` keeps the system's meaning of a name (/etc/hosts,
nsswitch, resolv.conf and its search domains): checker sees what curl and the
browser see.

The client only needs `Resolver` (one method); tests pass their own to play a
slow, silent, lying or dual-stack resolver without touching the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from checker.http.deadline import Deadline, held_off
from checker.http.errors import DNSError

# (address family, address): what a connection attempt needs besides the port.
Address = tuple[int, str]
GetAddrInfo = Callable[..., list[tuple[Any, ...]]]

# The deadline of the check now running in this task, if any: waiting for a
# resolver thread is not charged to it (see `SystemResolver._wait`).
check_deadline: ContextVar[Deadline | None] = ContextVar("check_deadline", default=None)

# A thread that has had no lookup for this long ends; the next one starts anew.
THREAD_IDLE_EXIT = 10.0
# Threads started beside those stuck on names that never answered (each
# lookup the checks have given up on, while it still runs), at most.
MAX_STUCK = 1024
# How long a name waits for a thread when every one is stuck (past MAX_STUCK).
THREAD_WAIT = 60.0
# Hosts remembered per run. A list that revisits a host does so within a few
# thousand lines in practice; past this the least recently used is forgotten
# (and looked up again if it comes back). About 300 bytes an entry.
CACHE_ENTRIES = 16_384


def resolver_threads(concurrency: int) -> int:
    """Threads for a run of `concurrency` workers: one lookup per worker, and as
    many again for lookups stuck on names that never answer."""
    return max(8, min(1024, 2 * concurrency))


@dataclass(frozen=True, slots=True)
class Resolved:
    addresses: tuple[Address, ...]
    # Time this check waited for the answer: 0.0 when the cache had it.
    ms: float


class Resolver(Protocol):
    async def resolve(self, host: str, timeout: float) -> Resolved:
        """Addresses for `host` in the order to try them; raises DNSError.

        `timeout` bounds the wait for an answer once the system has been asked.
        """
        ...


def describe_gaierror(host: str, exc: socket.gaierror) -> str:
    if exc.errno == socket.EAI_NONAME:
        return f"no such host: {host}"
    if exc.errno == getattr(socket, "EAI_NODATA", object()):
        return f"no address for host: {host}"
    if exc.errno == socket.EAI_AGAIN:
        return f"the resolver could not answer for {host} (temporary failure)"
    return f"name resolution failed for {host}: {exc.strerror or exc}"


@dataclass(eq=False)
class _Lookup:
    """One lookup of one host, shared by every check that asks while it runs."""

    host: str
    started: asyncio.Future[float]  # perf_counter when a thread took it
    done: asyncio.Future[tuple[Address, ...]]
    waiters: int = 0
    # Set on the loop's thread, read on the lookup's: nobody wants it any more.
    abandoned: threading.Event = field(default_factory=threading.Event)
    # Every check that wanted it gave up while a thread still runs it.
    stuck: bool = False


class SystemResolver:
    """`socket.getaddrinfo` on threads of our own, with a per-run cache.

    `getaddrinfo` is the seam for tests of the threads, the cache and the
    sharing.
    """

    def __init__(
        self,
        max_threads: int = 256,
        cache_entries: int = CACHE_ENTRIES,
        getaddrinfo: GetAddrInfo = socket.getaddrinfo,
        max_stuck: int = MAX_STUCK,
        thread_wait: float = THREAD_WAIT,
    ) -> None:
        self.cache_entries = cache_entries
        self.thread_wait = thread_wait
        self._threads = _Threads(max_threads, getaddrinfo, max_stuck)
        self._cache: OrderedDict[str, tuple[Address, ...] | DNSError] = OrderedDict()
        self._running: dict[str, _Lookup] = {}
        self.lookups = 0  # asked of the system, for tests and benchmarks

    async def resolve(self, host: str, timeout: float) -> Resolved:
        cached = self._cache.get(host)
        if cached is not None:
            self._cache.move_to_end(host)
            if isinstance(cached, DNSError):
                raise DNSError(str(cached))
            return Resolved(cached, 0.0)
        lookup = self._running.get(host)
        if lookup is None:
            lookup = self._start(host)
        return await self._wait(lookup, timeout)

    def _start(self, host: str) -> _Lookup:
        loop = asyncio.get_running_loop()
        lookup = _Lookup(host, loop.create_future(), loop.create_future())
        # Read the outcome even when every waiter has gone, so that asyncio
        # never logs "exception was never retrieved".
        lookup.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._running[host] = lookup
        self.lookups += 1
        self._threads.submit(lookup, loop, self._finish)
        return lookup

    def _finish(self, lookup: _Lookup, outcome: tuple[Address, ...] | DNSError) -> None:
        """On the loop's thread, when the system answered (or gave up)."""
        if lookup.stuck:
            self._threads.unstuck()
        if self._running.get(lookup.host) is lookup:
            del self._running[lookup.host]
        self._cache[lookup.host] = outcome
        self._cache.move_to_end(lookup.host)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        if not lookup.done.done():
            if isinstance(outcome, DNSError):
                lookup.done.set_exception(outcome)
            else:
                lookup.done.set_result(outcome)

    async def _wait(self, lookup: _Lookup, timeout: float) -> Resolved:
        lookup.waiters += 1
        asked = time.perf_counter()
        try:
            # Waiting for a thread is the run's business, not this host's: the
            # check's own deadline stands still meanwhile.
            try:
                started = await _uncharged(lookup.started, self.thread_wait)
            except TimeoutError:
                raise DNSError(
                    f"not looked up: no resolver thread came free within {self.thread_wait:g}s"
                    f" for {lookup.host}, every one held by lookups of names that never answered"
                ) from None
            since = max(started, asked)
            left = timeout - (time.perf_counter() - since)
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    addresses = await asyncio.shield(lookup.done)
            except TimeoutError:
                if lookup.done.done():  # it answered as the clock ran out
                    addresses = lookup.done.result()
                else:
                    raise DNSError(
                        f"no answer from the resolver within {timeout:g}s for {lookup.host}"
                    ) from None
            return Resolved(addresses, round((time.perf_counter() - since) * 1000, 3))
        finally:
            lookup.waiters -= 1
            if lookup.waiters == 0 and not lookup.started.done():
                # Nobody wants it and no thread has taken it: drop it.
                lookup.abandoned.set()
                lookup.started.cancel()
                if self._running.get(lookup.host) is lookup:
                    del self._running[lookup.host]
            elif lookup.waiters == 0 and not lookup.done.done() and not lookup.stuck:
                # Nobody wants it and a thread is stuck on it: that thread
                # is not counted against the others.
                lookup.stuck = True
                self._threads.stuck()


async def _uncharged(started: asyncio.Future[float], limit: float) -> float:
    """Wait for `started` (at most `limit` seconds: TimeoutError) with the
    check's deadline (if any) held off, then move that deadline on by the
    time waited, and count it as held (not the check's time: total_ms)."""
    if started.done():
        return started.result()
    with held_off(check_deadline.get()):
        async with asyncio.timeout(limit):
            return await asyncio.shield(started)


class _Threads:
    """Daemon threads calling getaddrinfo, one per lookup in flight, up to a cap.

    Daemon threads, because a lookup cannot be cancelled once the C library
    has it: the process must be able to end while one is stuck on a resolver
    that never answers.
    """

    def __init__(self, max_threads: int, getaddrinfo: GetAddrInfo, max_stuck: int) -> None:
        self.max_threads = max(1, max_threads)
        self.max_stuck = max(0, max_stuck)
        self._getaddrinfo = getaddrinfo
        self._stuck = 0  # threads running lookups nobody waits for any more
        self._jobs: queue.SimpleQueue[
            tuple[
                _Lookup,
                asyncio.AbstractEventLoop,
                Callable[[_Lookup, tuple[Address, ...] | DNSError], None],
            ]
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._queued = 0

    def submit(
        self,
        lookup: _Lookup,
        loop: asyncio.AbstractEventLoop,
        finish: Callable[[_Lookup, tuple[Address, ...] | DNSError], None],
    ) -> None:
        with self._lock:
            self._queued += 1
            cap = self.max_threads + min(self._stuck, self.max_stuck)
            start = self._queued > self._idle and self._threads < cap
            if start:
                self._threads += 1
        self._jobs.put((lookup, loop, finish))
        if start:
            self._start_thread()

    def stuck(self) -> None:
        """A running lookup nobody waits for: one more thread may start."""
        with self._lock:
            self._stuck += 1
            wanted = self._queued > self._idle and self._stuck <= self.max_stuck
            if wanted:
                self._threads += 1
        if wanted:  # (a lookup already waits for a thread: this one is its)
            self._start_thread()

    def _start_thread(self) -> None:
        threading.Thread(target=self._serve, name="checker-resolver", daemon=True).start()

    def unstuck(self) -> None:
        """That lookup ended (its thread takes the next one, or ends idle)."""
        with self._lock:
            self._stuck -= 1

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=THREAD_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    # Re-check under the lock: a job may have come as we gave up.
                    if self._queued == 0:
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            self._run(*job)

    def _run(
        self,
        lookup: _Lookup,
        loop: asyncio.AbstractEventLoop,
        finish: Callable[[_Lookup, tuple[Address, ...] | DNSError], None],
    ) -> None:
        if lookup.abandoned.is_set():
            return
        try:
            loop.call_soon_threadsafe(_set_started, lookup, time.perf_counter())
        except RuntimeError:
            return  # the loop is closed: the run is over
        outcome: tuple[Address, ...] | DNSError
        try:
            infos = self._getaddrinfo(lookup.host, None, type=socket.SOCK_STREAM)
            outcome = order_addresses(infos)
            if not outcome:
                outcome = DNSError(f"no address for host: {lookup.host}")
        except socket.gaierror as exc:
            outcome = DNSError(describe_gaierror(lookup.host, exc))
        except (OSError, UnicodeError, ValueError) as exc:
            outcome = DNSError(f"name resolution failed for {lookup.host}: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(finish, lookup, outcome)


def _set_started(lookup: _Lookup, when: float) -> None:
    if not lookup.started.done():
        lookup.started.set_result(when)


def order_addresses(infos: Sequence[tuple[Any, ...]]) -> tuple[Address, ...]:
    """getaddrinfo's answers, deduplicated, interleaved by family (RFC 8305 4).

    The first family is the one the system put first (RFC 6724 ordering);
    then the other family and back, so one dead family costs one attempt.
    """
    first: list[Address] = []
    other: list[Address] = []
    seen: set[Address] = set()
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        pair = (int(family), str(sockaddr[0]))
        if pair in seen:
            continue
        seen.add(pair)
        (first if not first or first[0][0] == pair[0] else other).append(pair)
    ordered: list[Address] = []
    for i in range(max(len(first), len(other))):
        ordered.extend(x[i] for x in (first, other) if i < len(x))
    return tuple(ordered)
