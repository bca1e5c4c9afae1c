"""The run's resolver: threads that follow the run, a cache, shared lookups,
"no answer" bounded from when the system was asked, nothing left behind.

The system's getaddrinfo is replaced by `FakeGetaddrinfo`, a blocking function
whose answers the test releases with events, so nothing here sleeps to make a
point and nothing touches the machine's resolver (but the last tests, which
resolve `localhost` through the real one).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from checker.http.errors import DNSError
from checker.http.resolver import SystemResolver, order_addresses, resolver_threads

pytestmark = pytest.mark.timeout(30)

V4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))
V6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))


class FakeGetaddrinfo:
    """Stands in for socket.getaddrinfo; blocks while a host's gate is closed."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.gates: dict[str, threading.Event] = {}
        self.calls: list[str] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def gate(self, host: str) -> threading.Event:
        return self.gates.setdefault(host, threading.Event())

    def __call__(self, host: str, port: object, **kw: object) -> list[tuple[Any, ...]]:
        with self._lock:
            self.calls.append(host)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            gate = self.gates.get(host)
            if gate is not None:
                gate.wait(20)
            answer = self.answers.get(host, [V4])
            if isinstance(answer, BaseException):
                raise answer
            return list(answer)
        finally:
            with self._lock:
                self.active -= 1


NXDOMAIN = socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_host_is_asked_once_however_many_checks_want_it() -> None:
    fake = FakeGetaddrinfo()
    gate = fake.gate("a.test")
    resolver = SystemResolver(getaddrinfo=fake)
    waiters = [asyncio.create_task(resolver.resolve("a.test", 5)) for _ in range(50)]
    await asyncio.sleep(0.05)
    gate.set()
    answers = await asyncio.gather(*waiters)
    assert fake.calls == ["a.test"]
    assert {a.addresses for a in answers} == {((socket.AF_INET, "127.0.0.1"),)}
    again = await resolver.resolve("a.test", 5)
    assert fake.calls == ["a.test"] and again.ms == 0.0  # a cache hit costs nothing


async def test_no_such_host_is_said_at_once_and_remembered() -> None:
    fake = FakeGetaddrinfo({"nx.test": NXDOMAIN})
    resolver = SystemResolver(getaddrinfo=fake)
    for _ in range(3):
        with pytest.raises(DNSError, match=r"^no such host: nx\.test$"):
            await resolver.resolve("nx.test", 5)
    assert fake.calls == ["nx.test"]


async def test_a_name_that_never_answers_is_a_dns_error_after_the_timeout() -> None:
    fake = FakeGetaddrinfo()
    gate = fake.gate("silent.test")
    resolver = SystemResolver(getaddrinfo=fake)
    start = time.monotonic()
    try:
        with pytest.raises(DNSError, match=r"no answer from the resolver within 0\.3s"):
            await resolver.resolve("silent.test", 0.3)
        assert 0.25 < time.monotonic() - start < 5
        # Another check of the same name joins the lookup still under way.
        with pytest.raises(DNSError, match="no answer"):
            await resolver.resolve("silent.test", 0.1)
        assert fake.calls == ["silent.test"]
    finally:
        gate.set()


async def test_an_answer_that_comes_late_still_serves_the_rest_of_the_run() -> None:
    fake = FakeGetaddrinfo()
    gate = fake.gate("late.test")
    resolver = SystemResolver(getaddrinfo=fake)
    with pytest.raises(DNSError, match="no answer"):
        await resolver.resolve("late.test", 0.1)
    gate.set()
    for _ in range(100):
        if resolver.lookups and "late.test" not in resolver._running:
            break
        await asyncio.sleep(0.01)
    answer = await resolver.resolve("late.test", 0.1)
    assert answer.addresses == ((socket.AF_INET, "127.0.0.1"),)
    assert fake.calls == ["late.test"]


async def test_waiting_for_a_thread_is_not_charged_to_the_lookup() -> None:
    # One thread, held by a slow name: the next name waits for the thread,
    # and that wait must not count against its 0.1 s.
    fake = FakeGetaddrinfo()
    slow = fake.gate("slow.test")
    resolver = SystemResolver(max_threads=1, getaddrinfo=fake)
    first = asyncio.create_task(resolver.resolve("slow.test", 5))
    second = asyncio.create_task(resolver.resolve("quick.test", 0.1))
    await asyncio.sleep(0.4)
    assert not second.done()
    slow.set()
    assert (await second).addresses == ((socket.AF_INET, "127.0.0.1"),)
    await first


async def test_a_lookup_nobody_waits_for_is_dropped_before_it_starts() -> None:
    fake = FakeGetaddrinfo()
    busy = fake.gate("busy.test")
    resolver = SystemResolver(max_threads=1, getaddrinfo=fake)
    first = asyncio.create_task(resolver.resolve("busy.test", 5))
    gone = asyncio.create_task(resolver.resolve("gone.test", 5))
    await asyncio.sleep(0.05)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    busy.set()
    await first
    third = await resolver.resolve("after.test", 5)  # the thread is free again
    assert third.addresses
    assert fake.calls == ["busy.test", "after.test"]


async def test_capacity_follows_the_run() -> None:
    fake = FakeGetaddrinfo()
    hosts = [f"h{i}.test" for i in range(120)]
    gates = [fake.gate(h) for h in hosts]
    resolver = SystemResolver(max_threads=resolver_threads(60), getaddrinfo=fake)
    tasks = [asyncio.create_task(resolver.resolve(h, 10)) for h in hosts]
    for _ in range(200):
        if fake.active == len(hosts):
            break
        await asyncio.sleep(0.01)
    assert fake.most_active == len(hosts)  # every lookup in flight at once
    for g in gates:
        g.set()
    assert len(await asyncio.gather(*tasks)) == len(hosts)


async def test_the_cache_is_bounded() -> None:
    fake = FakeGetaddrinfo()
    resolver = SystemResolver(cache_entries=10, getaddrinfo=fake)
    for i in range(25):
        await resolver.resolve(f"h{i}.test", 5)
    assert len(resolver._cache) == 10
    await resolver.resolve("h0.test", 5)  # forgotten, asked again
    assert fake.calls.count("h0.test") == 2


def test_addresses_are_interleaved_by_family_starting_with_the_first() -> None:
    infos = [
        (socket.AF_INET6, 1, 6, "", ("2001:db8::1", 0, 0, 0)),
        (socket.AF_INET6, 1, 6, "", ("2001:db8::2", 0, 0, 0)),
        (socket.AF_INET6, 1, 6, "", ("2001:db8::1", 0, 0, 0)),  # a duplicate
        (socket.AF_INET, 1, 6, "", ("192.0.2.1", 0)),
        (socket.AF_INET, 1, 6, "", ("192.0.2.2", 0)),
        (socket.AF_INET, 1, 6, "", ("192.0.2.3", 0)),
    ]
    assert [a for _f, a in order_addresses(infos)] == [
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "192.0.2.2",
        "192.0.2.3",
    ]
    assert [a for _f, a in order_addresses(infos[3:4] + infos[:1])] == [
        "192.0.2.1",
        "2001:db8::1",
    ]


def test_a_stuck_lookup_does_not_hold_the_process_at_exit() -> None:
    # The process's own getaddrinfo never returns; the run gives up on it
    # after 0.2 s and the process must end then, not when the lookup would.
    code = """
import asyncio, threading
from checker.http.resolver import SystemResolver
from checker.http.errors import DNSError
def stuck(host, port, **kw):
    threading.Event().wait(60)
async def main():
    r = SystemResolver(getaddrinfo=stuck)
    try:
        await r.resolve("stuck.test", 0.2)
    except DNSError as e:
        print(e)
asyncio.run(main())
"""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert "no answer from the resolver within 0.2s" in done.stdout
    assert time.monotonic() - start < 10


async def test_the_system_resolver_sees_etc_hosts() -> None:
    # /etc/hosts names localhost on every machine this runs on.
    answer = await SystemResolver().resolve("localhost", 5)
    assert (socket.AF_INET, "127.0.0.1") in answer.addresses or (
        socket.AF_INET6,
        "::1",
    ) in answer.addresses
    assert answer.ms > 0


async def test_names_that_never_answer_do_not_hold_back_the_others() -> None:
    # Found by a review: a lookup stuck on a name that never answers kept its
    # thread after its check gave up, and the next names' checks took the
    # rest; then every name waited for a thread (uncharged, so for ever), and
    # healthy sites behind them were held back, or the run never ended.
    fake = FakeGetaddrinfo()
    silent = [fake.gate(f"silent{i}.test") for i in range(6)]
    resolver = SystemResolver(max_threads=2, getaddrinfo=fake)
    try:
        for i in range(6):
            with pytest.raises(DNSError, match="no answer"):
                await asyncio.wait_for(resolver.resolve(f"silent{i}.test", 0.1), 3)
        answer = await asyncio.wait_for(resolver.resolve("healthy.test", 5), 3)
        assert answer.addresses == ((socket.AF_INET, "127.0.0.1"),)
    finally:
        for gate in silent:
            gate.set()


async def test_when_every_thread_is_stuck_the_wait_for_one_is_bounded() -> None:
    # Past its cap of stuck lookups the resolver has no thread to give: a
    # name then waits for one only so long, and says why it was not asked.
    fake = FakeGetaddrinfo()
    silent = [fake.gate(f"silent{i}.test") for i in range(2)]
    resolver = SystemResolver(max_threads=1, max_stuck=1, thread_wait=0.3, getaddrinfo=fake)
    try:
        for i in range(2):
            with pytest.raises(DNSError, match="no answer"):
                await asyncio.wait_for(resolver.resolve(f"silent{i}.test", 0.1), 3)
        with pytest.raises(DNSError, match="held by lookups of names that never answered"):
            await asyncio.wait_for(resolver.resolve("healthy.test", 5), 3)
        assert "healthy.test" not in fake.calls
    finally:
        for gate in silent:
            gate.set()
