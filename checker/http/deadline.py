"""The deadline of one attempt at a check: asyncio.timeout's rules, at a
fraction of its cost.

`asyncio.timeout()` puts a timer on the loop for every attempt and takes it
off again: with its context manager, 3.5 us an attempt, 6% of a run's time on
one host (benchmarks/PROFILE.md). Nearly every attempt ends long before its
deadline. So the open deadlines of a loop are kept in one set, which one timer
sweeps every TICK seconds while any is open: opening and closing a deadline
is a set insertion and removal, and a deadline passes at most TICK late
(on a loop held up, at most TICK after the loop catches up: `_Sweeper._sweep`).

When one passes, what happens is what asyncio.timeout does: its task is
cancelled, and the CancelledError that comes out of the block becomes
TimeoutError, unless the task was also cancelled from elsewhere (the pool
stopping on Ctrl-C), which then goes on as a CancelledError. The resolver
holds a deadline off while a lookup waits for a thread (`reschedule`), as it
did asyncio.timeout's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterator
from types import TracebackType

TICK = 0.05  # seconds between sweeps: how late a deadline may pass (on a loop on time)

# The clock of deadlines: time.monotonic, not the loop's time(). uvloop's is
# libuv's, in whole milliseconds and read once per loop iteration, so a
# deadline set from it could pass a millisecond or more early (CI saw 0.19998 s
# for 0.2). A sweep that comes before a deadline leaves it to the next one.
clock = time.monotonic


class Deadline:
    """`with Deadline(seconds):` around one attempt, inside its task."""

    __slots__ = (
        "_cancelling",
        "_delay",
        "_expired",
        "_sweeper",
        "_task",
        "_when",
        "held",
        "untimed",
    )

    def __init__(self, delay: float) -> None:
        self._delay = delay
        # Seconds it was held off (a wait that is the run's, not the check's:
        # resolver._uncharged), to leave out of the check's time too.
        self.held = 0.0
        # Seconds within it that are not the URL's time either, though they
        # count against it (a body read off after its answer: client._drain).
        self.untimed = 0.0
        self._when: float | None = None
        self._sweeper: _Sweeper | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    def not_timed(self) -> float:
        """Seconds of the attempt to leave out of its time (`held`, `untimed`)."""
        return self.held + self.untimed

    def seconds(self) -> float:
        """How long it is (the check's --timeout)."""
        return self._delay

    def when(self) -> float | None:
        """The `clock()` time it passes at (None: held off)."""
        return self._when

    def reschedule(self, when: float | None) -> None:
        self._when = when

    def expired(self) -> bool:
        return self._expired

    def __enter__(self) -> Deadline:
        loop = self._own_task()
        self._when = clock() + self._delay
        self._sweeper = _sweeper_of(loop)
        self._sweeper.open(self)
        return self

    def _own_task(self) -> asyncio.AbstractEventLoop:
        """Take the current task (and its cancels so far: `_timed_out`);
        its loop."""
        # The loop through the task: each asyncio.get_running_loop() is a
        # getpid() system call, and current_task() makes one already.
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline is for the block of a task")
        self._task = task
        self._cancelling = task.cancelling()
        return task.get_loop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._sweeper is not None
        self._sweeper.close(self)
        if self._expired:
            self._timed_out(exc_type, exc)

    def _timed_out(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        assert self._task is not None
        # Its own cancel undone; a TimeoutError only if nobody else
        # cancelled the task meanwhile (asyncio.Timeout.__aexit__).
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _expire(self) -> None:
        self._expired = True
        assert self._task is not None
        self._task.cancel()


class Exact(Deadline):
    """`with Exact(seconds):` the same rules on a timer of its own: it
    passes when it is due, not at a sweep. For the connect timeout, which
    must end its block before the check's deadline due at the same time
    (client._connect). A plain context manager: asyncio.timeout's async
    one made two coroutines and a reschedule, 4-6 us of each new
    connection (benchmarks/PROFILE.md, nineteenth session)."""

    __slots__ = ("_handle",)

    def __enter__(self) -> Exact:
        loop = self._own_task()
        # (The loop's clock, as asyncio.timeout's: its timers run by it.)
        self._handle = loop.call_at(loop.time() + self._delay, self._expire)
        return self

    def when(self) -> float | None:
        raise NotImplementedError("an exact timeout is not held off")  # (None would say it is)

    def reschedule(self, when: float | None) -> None:
        raise NotImplementedError("an exact timeout is not held off")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        if self._expired:
            self._timed_out(exc_type, exc)


@contextlib.contextmanager
def held_off(deadline: Deadline | None) -> Iterator[None]:
    """`deadline` (a check's, if any) stands still during the block, a wait
    that is the run's and not the check's; then it moves on by the time
    waited, which counts as held (left out of the check's time: total_ms)."""
    when = deadline.when() if deadline is not None else None
    since = clock()
    if deadline is not None:
        deadline.reschedule(None)
    try:
        yield
    finally:
        if deadline is not None and when is not None:
            waited = clock() - since
            deadline.reschedule(when + waited)
            deadline.held += waited


class _Sweeper:
    """The open deadlines of one loop, and the timer that sweeps them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open: dict[Deadline, None] = {}  # (a dict: insertion order, O(1) removal)
        self._timer: asyncio.TimerHandle | None = None
        self._planned = 0.0  # the `clock()` time the next sweep is for

    def open(self, deadline: Deadline) -> None:
        self._open[deadline] = None
        if self._timer is None:
            self._plan()

    def _plan(self) -> None:
        self._planned = clock() + TICK
        self._timer = self._loop.call_later(TICK, self._sweep)

    def close(self, deadline: Deadline) -> None:
        self._open.pop(deadline, None)  # (the timer stops itself once none is open)

    def _sweep(self) -> None:
        # What was due when the sweep was planned for, not when it runs: a
        # loop held up (a busy machine) runs the timers that came due
        # meanwhile in the order they were due, and an exact one due
        # before this deadline (a connect timeout as long as the check's,
        # started just after it) must end its block first, as it would
        # have on time. (It was the check's timeout in 1 of some hundred
        # runs of a test under load.) The deadline goes at the next sweep.
        now = min(clock(), self._planned)
        # One deadline a task a sweep, its innermost (the one opened last),
        # as nested asyncio.timeouts go: an inner block due with its outer
        # one ends in its own TimeoutError. (While a connect timeout was a
        # Deadline inside the check's, the outer went first and a connect
        # that ran out the check's time was the check's timeout: healthy
        # pages down, found by a review.) An outer one still due goes at
        # the next sweep.
        due: dict[object, Deadline] = {}
        for deadline in self._open:
            if deadline._when is not None and deadline._when <= now:
                due[deadline._task] = deadline
        for deadline in due.values():
            del self._open[deadline]
            deadline._expire()
        if self._open:
            self._plan()
        else:
            self._timer = None


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


# The last loop asked about and its sweeper: a run has one loop, and a
# WeakKeyDictionary lookup makes a weak reference each time (one a check).
_last: list[tuple[asyncio.AbstractEventLoop, _Sweeper]] = []


def _sweeper_of(loop: asyncio.AbstractEventLoop) -> _Sweeper:
    if _last and _last[0][0] is loop:
        return _last[0][1]
    sweeper = _SWEEPERS.get(loop)
    if sweeper is None:
        sweeper = _SWEEPERS[loop] = _Sweeper(loop)
    _last[:] = [(loop, sweeper)]
    return sweeper
