"""An attempt's deadline (checker/http/deadline.py) keeps asyncio.timeout's
rules: a block that outlives it ends in TimeoutError, at most TICK late; a
cancel from elsewhere stays a cancel; the resolver can hold it off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from checker.http import deadline as module
from checker.http.deadline import TICK, Deadline, Exact

pytestmark = pytest.mark.timeout(30)

LOOPS: list[Factory] = [asyncio.new_event_loop, uvloop.new_event_loop]


T = TypeVar("T")
Factory = Callable[[], asyncio.AbstractEventLoop]


def run(factory: Factory, coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def sweeping(loop: asyncio.AbstractEventLoop) -> bool:
    sweeper = module._SWEEPERS.get(loop)
    return sweeper is not None and sweeper._timer is not None


@pytest.mark.parametrize("factory", LOOPS)
def test_a_block_that_outlives_its_deadline_ends_in_timeout_error(factory: Factory) -> None:
    async def main() -> tuple[float, int, bool]:
        task = asyncio.current_task()
        assert task is not None
        start = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(0.2) as deadline:
            await asyncio.sleep(5)
        assert deadline.expired()
        took = time.perf_counter() - start
        await asyncio.sleep(TICK * 2)
        return took, task.cancelling(), sweeping(asyncio.get_running_loop())

    took, cancelling, still = run(factory, main())
    assert 0.2 <= took <= 0.2 + TICK + 0.1  # at most TICK late (and a loaded machine)
    assert cancelling == 0  # its own cancel undone
    assert not still  # nothing open: no timer left on the loop


@pytest.mark.parametrize("factory", LOOPS)
def test_no_deadline_passes_early(factory: Factory) -> None:
    # uvloop's loop.time() counts whole milliseconds: a deadline set from it
    # passed up to 1 ms early whenever a sweep fell in that millisecond (CI:
    # 0.19998 s for 0.2). 400 deadlines opened at scattered instants, so
    # that some sweep falls just before some deadline.
    async def attempt(tooks: list[float]) -> None:
        start = time.perf_counter()
        with contextlib.suppress(TimeoutError), Deadline(0.1):
            await asyncio.sleep(5)
        tooks.append(time.perf_counter() - start)

    async def main() -> list[float]:
        tooks: list[float] = []
        async with asyncio.TaskGroup() as group:
            for i in range(400):
                group.create_task(attempt(tooks))
                spin = time.perf_counter() + (i % 7) * 0.0001  # 0 to 0.6 ms apart
                while time.perf_counter() < spin:
                    pass
                await asyncio.sleep(0)
        return tooks

    tooks = run(factory, main())
    assert len(tooks) == 400
    assert min(tooks) >= 0.1
    assert max(tooks) <= 0.1 + TICK + 0.2  # (a loaded machine)


@pytest.mark.parametrize("factory", LOOPS)
def test_a_block_that_ends_in_time_is_left_alone(factory: Factory) -> None:
    async def main() -> list[int]:
        done = []
        for i in range(200):
            with Deadline(0.05):
                await asyncio.sleep(0.0005)
            done.append(i)
        return done

    assert run(factory, main()) == list(range(200))


async def ending(task: asyncio.Task[None]) -> str:
    """How an attempt's task ended."""
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    except TimeoutError:
        return "timeout"
    return "finished"


@pytest.mark.parametrize("factory", LOOPS)
def test_a_cancel_from_elsewhere_stays_a_cancel(factory: Factory) -> None:
    async def main() -> str:
        async def attempt() -> None:
            with Deadline(0.3):
                await asyncio.sleep(5)

        task = asyncio.create_task(attempt())
        await asyncio.sleep(0.1)
        task.cancel()  # the pool stopping, before the deadline
        return await ending(task)

    assert run(factory, main()) == "cancelled"


@pytest.mark.parametrize("factory", LOOPS)
def test_cancelled_from_elsewhere_as_it_passes_is_a_cancel(factory: Factory) -> None:
    async def main() -> str:
        async def attempt() -> None:
            with Deadline(0.0) as deadline:
                deadline._expire()  # it passed: the task is cancelled once...
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # ...and once from elsewhere
                await asyncio.sleep(5)

        return await ending(asyncio.create_task(attempt()))

    assert run(factory, main()) == "cancelled"


@pytest.mark.parametrize("factory", LOOPS)
def test_an_exact_one_passes_when_due_and_keeps_the_same_rules(factory: Factory) -> None:
    # The connect timeout's (client._connect): on a timer of its own, not
    # at a sweep; a cancel from elsewhere stays a cancel; ended in time, its
    # timer goes with it.
    async def main() -> tuple[float, int, str, str, str]:
        task = asyncio.current_task()
        assert task is not None
        start = time.perf_counter()
        with pytest.raises(TimeoutError), Exact(0.2) as exact:
            await asyncio.sleep(5)
        assert exact.expired()
        took = time.perf_counter() - start

        async def cancelled_meanwhile() -> None:
            with Exact(0.3):
                await asyncio.sleep(5)

        other = asyncio.create_task(cancelled_meanwhile())
        await asyncio.sleep(0.05)
        other.cancel()

        async def cancelled_as_it_passes() -> None:
            with Exact(0.0) as passing:
                passing._expire()
                this = asyncio.current_task()
                assert this is not None
                this.cancel()
                await asyncio.sleep(5)

        async def in_time() -> None:
            with Exact(0.05):
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.15)  # (its timer, had it stayed, would cancel this)

        return (
            took,
            task.cancelling(),
            await ending(other),
            await ending(asyncio.create_task(cancelled_as_it_passes())),
            await ending(asyncio.create_task(in_time())),
        )

    took, cancelling, meanwhile, as_it_passes, ended = run(factory, main())
    assert 0.199 <= took <= 0.2 + 0.1  # (not TICK late: no sweep)
    assert cancelling == 0
    assert (meanwhile, as_it_passes, ended) == ("cancelled", "cancelled", "finished")


@pytest.mark.parametrize("factory", LOOPS)
def test_a_deadline_held_off_and_moved_on(factory: Factory) -> None:
    async def main() -> float:
        start = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(0.1) as deadline:
            when = deadline.when()
            assert when is not None
            deadline.reschedule(None)  # held off while a lookup waits for a thread
            await asyncio.sleep(0.3)
            deadline.reschedule(when + 0.3)  # moved on by the time waited
            await asyncio.sleep(5)
        return time.perf_counter() - start

    took = run(factory, main())
    assert 0.4 <= took <= 0.4 + TICK + 0.1


@pytest.mark.parametrize("factory", LOOPS)
def test_an_inner_asyncio_timeout_keeps_its_own(factory: Factory) -> None:
    async def main() -> tuple[str, str]:
        inner = outer = "none"
        with Deadline(0.5):
            try:
                async with asyncio.timeout(0.05):  # a connect timeout, shorter
                    await asyncio.sleep(5)
            except TimeoutError:
                inner = "inner"
        try:
            with Deadline(0.1):
                async with asyncio.timeout(5):  # longer than the deadline
                    await asyncio.sleep(5)
        except TimeoutError:
            outer = "deadline"
        return inner, outer

    assert run(factory, main()) == ("inner", "deadline")


@pytest.mark.parametrize("factory", LOOPS)
def test_an_inner_deadline_due_with_its_outer_one_goes_first(factory: Factory) -> None:
    # A connect timeout as long as its check's (--timeout 1: both 1 s): both
    # pass in the same sweep, and the inner block must end in its own
    # TimeoutError (a connect timeout), not the outer's (found by a review:
    # the outer went first, and a host that leaves new connections
    # unanswered while busy was taken for a page that hangs).
    async def main() -> tuple[str, bool, bool]:
        seen = "none"
        with Deadline(0.1) as outer:
            try:
                with Deadline(0.1) as inner:
                    await asyncio.sleep(5)
            except TimeoutError:
                seen = "inner"
            await asyncio.sleep(0)  # (the outer one, still open, has not ended the block)
        return seen, inner.expired(), outer.expired()

    assert run(factory, main()) == ("inner", True, False)


@pytest.mark.parametrize("factory", LOOPS)
def test_a_late_loop_ends_an_inner_timeout_due_first_as_its_own(factory: Factory) -> None:
    # The loop held up past both: a connect timeout due just after its
    # check's deadline (as long, started later) and the sweep planned before
    # either. The sweep runs first, and took the deadline as due (its clock
    # had passed it), though the connect's timeout, exact, would have ended
    # its block first on time: under load, the check's timeout where a
    # connect timeout was meant (1 test run in some hundred).
    async def main() -> tuple[str, bool, bool]:
        seen = "none"
        with Deadline(TICK * 1.2) as outer:
            try:
                async with asyncio.timeout(TICK * 1.3) as inner:  # (after the sweep's TICK)
                    time.sleep(TICK * 4)  # noqa: ASYNC251  (the loop held up: all three overdue)
                    await asyncio.sleep(5)
            except TimeoutError:
                seen = "inner"
            await asyncio.sleep(0)  # (the deadline, still open, has not ended the block)
        return seen, inner.expired(), outer.expired()

    assert run(factory, main()) == ("inner", True, False)


@pytest.mark.parametrize("factory", LOOPS)
def test_a_late_loop_ends_an_inner_exact_one_due_first_as_its_own(factory: Factory) -> None:
    # The same with the connect timeout as client._connect makes it.
    async def main() -> tuple[str, bool, bool]:
        seen = "none"
        with Deadline(TICK * 1.2) as outer:
            try:
                with Exact(TICK * 1.3) as inner:
                    time.sleep(TICK * 4)  # noqa: ASYNC251  (the loop held up)
                    await asyncio.sleep(5)
            except TimeoutError:
                seen = "inner"
            await asyncio.sleep(0)
        return seen, inner.expired(), outer.expired()

    assert run(factory, main()) == ("inner", True, False)


@pytest.mark.parametrize("factory", LOOPS)
def test_an_outer_deadline_still_passes_after_its_inner_one(factory: Factory) -> None:
    async def main() -> str:
        try:
            with Deadline(0.1):
                with contextlib.suppress(TimeoutError), Deadline(0.1):
                    await asyncio.sleep(5)
                await asyncio.sleep(5)  # (the outer one is due: it goes at the next sweep)
        except TimeoutError:
            return "outer"
        return "none"

    start = time.perf_counter()
    assert run(factory, main()) == "outer"
    assert time.perf_counter() - start < 0.1 + 3 * TICK + 0.2


def test_outside_a_task_it_says_so() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(1)
        await loop.run_in_executor(None, lambda: None)
        handle: list[BaseException] = []

        def callback() -> None:
            try:
                deadline.__enter__()
            except RuntimeError as exc:
                handle.append(exc)

        loop.call_soon(callback)
        await asyncio.sleep(0.01)
        assert handle and "task" in str(handle[0])

    asyncio.run(main())
