"""Which event loop runs a check: asyncio's own, or uvloop when it is installed.

uvloop (libuv, in C) does the socket work of the event loop in C; on this
project's benchmark it is the larger part of the speed-up over plain asyncio
(benchmarks/RESULTS.md). It is optional: `pip install 'checker[fast]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
LOOPS = ("auto", "asyncio", "uvloop")


class LoopError(Exception):
    """The loop asked for is not available (a usage error)."""


def choose(name: str) -> str:
    """The loop `name` means here: "auto" is uvloop when installed, else asyncio."""
    if name not in LOOPS:
        raise LoopError(f"unknown loop {name!r} (choose from {', '.join(LOOPS)})")
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    if name == "uvloop" and not have_uvloop:
        raise LoopError("uvloop is not installed (pip install 'checker[fast]')")
    if name == "auto":
        return "uvloop" if have_uvloop else "asyncio"
    return name


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run `main` to completion on the loop `loop` ("asyncio" or "uvloop")."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with tuned_gc(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Fewer, cheaper collections while a run goes, which makes a few
    short-lived objects per check (2-3% of a run's CPU went to the collector).
    What is alive when it starts (modules, classes: nearly every object there
    is) is frozen out of the collector's view: it lives as long as the run.
    And the youngest generation is collected every 10,000 allocations, not
    700: the records of a check die young, and cycles are rare among them.
    Both are undone after the run: the process may go on (`cli.main` called
    from a program, or the tests), and must not find its collector changed."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
