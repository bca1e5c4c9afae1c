"""Requests handed over in one turn of the event loop go out together.

Why: on loopback and in virtual machines the send system call also wakes the
server, and waking an idle peer is most of what a send costs (measured: 5.5 us
a request when sends come back to back, 14 us when each check's own work
spaces them out by 100 us and the server falls asleep between them). Checks
finish in bursts, one per readiness poll; collecting the requests they hand
over during one turn of the loop and writing them in one callback puts the
sends next to each other again, without pipelining and without holding any
request back longer than that turn.

Each request still goes out with `StreamWriter.write` on its own connection;
the caller still awaits `drain()` after handing it over.
"""

from __future__ import annotations

import asyncio
import weakref


class Sender:
    """One per event loop: `send` queues, a `call_soon` callback writes."""

    __slots__ = ("__weakref__", "_loop", "_queue")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: list[tuple[asyncio.StreamWriter, bytes]] = []

    def send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        self._queue.append((writer, data))
        if len(self._queue) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for writer, data in queue:
            if writer.is_closing():
                continue  # its check was cancelled or failed in the meantime
            try:
                writer.write(data)
            except Exception:
                # The reader waiting for this response then sees the
                # connection go instead of waiting out its deadline.
                writer.transport.abort()


_SENDERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sender] = weakref.WeakKeyDictionary()


def sender() -> Sender:
    """The running loop's sender."""
    loop = asyncio.get_running_loop()
    found = _SENDERS.get(loop)
    if found is None:
        found = _SENDERS[loop] = Sender(loop)
    return found
