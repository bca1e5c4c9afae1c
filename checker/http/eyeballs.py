"""Connecting to a host with several addresses: Happy Eyeballs (RFC 8305).

A dual-stack host whose IPv6 path silently drops packets is common (a
firewall, a broken tunnel). Trying its addresses one after another, each
until the connect deadline, reported such a site as `timeout` without ever
trying its working IPv4 address. So, as RFC 8305 section 5 asks:

- the addresses are tried in the order given (the resolver interleaves the
  families, section 4);
- the next attempt starts when the previous one failed, or after
  `ATTEMPT_DELAY` (250 ms, the RFC's recommended Connection Attempt Delay) if
  it has neither connected nor failed by then, while the earlier ones go on;
- the first to connect wins; every other attempt is cancelled and its socket
  closed;
- when all fail, the error of the first address is raised: it is the one the
  system ranks best, and its failure is the most telling.

Sockets are made here and connected with `loop.sock_connect`, so that no name
lookup can hide in the connect (the addresses are literals already) and every
loser is closed by us. (An address alone, with nothing to race, is connected
by the loop itself: `client._open`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence

from checker.http.errors import CheckError
from checker.http.resolver import Address

ATTEMPT_DELAY = 0.25


async def connect_first(
    addresses: Sequence[Address],
    port: int,
    classify: Callable[[BaseException], CheckError],
    delay: float = ATTEMPT_DELAY,
) -> tuple[socket.socket, Address]:
    """A connected socket to the first of `addresses` that accepts, and which.

    An attempt's exception becomes a CheckError through `classify` (the
    client's one mapping of OS errors). Cancellation closes every socket this
    opened.
    """
    if not addresses:
        raise ValueError("no addresses to connect to")
    errors: dict[int, CheckError] = {}
    attempts: dict[asyncio.Task[socket.socket], int] = {}
    next_index = 0
    try:
        while True:
            if next_index < len(addresses):
                task = asyncio.ensure_future(_attempt(addresses[next_index], port))
                attempts[task] = next_index
                next_index += 1
            if not attempts:
                break
            timeout = delay if next_index < len(addresses) else None
            done, _ = await asyncio.wait(
                attempts, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                index = attempts.pop(task)
                exc = task.exception()
                if exc is None:
                    return task.result(), addresses[index]
                errors[index] = exc if isinstance(exc, CheckError) else classify(exc)
            # A failure or the delay: loop round to start the next address
            # (once both happened, nothing starts twice: next_index moved on).
        raise errors[min(errors)]
    finally:
        for task in attempts:
            task.cancel()
        for task in attempts:
            with contextlib.suppress(BaseException):
                sock = await task
                sock.close()


async def _attempt(address: Address, port: int) -> socket.socket:
    family, host = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockaddr = (host, port, 0, 0) if family == socket.AF_INET6 else (host, port)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock
