"""Helpers for tests: client options, and raw servers for hostile behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from checker.check import CheckOptions
from checker.http.client import ClientConfig, make_ssl_context
from checker.http.resolver import Resolver, SystemResolver
from checker.results import Result
from checker.targets import Duplicate

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def client_config(
    ca_file: str | None = None,
    *,
    insecure: bool = False,
    connect: float = 2.0,
    resolver: Resolver | None = None,
) -> ClientConfig:
    return ClientConfig(
        ssl_context=make_ssl_context(ca_file=ca_file, insecure=insecure),
        connect_timeout=connect,
        user_agent="checker/test",
        resolver=resolver or SystemResolver(),
    )


def check_options(ca_file: str | None = None, **kw: Any) -> CheckOptions:
    insecure = kw.pop("insecure", False)
    resolver = kw.pop("resolver", None)
    connect = kw.pop("connect", 2.0)
    kw.setdefault("timeout", 3.0)
    client = client_config(ca_file, insecure=insecure, resolver=resolver, connect=connect)
    return CheckOptions(client=client, **kw)


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A server whose every connection runs `handler`; yields its port.

    For behaviour the demo fleet does not have: dripping bytes, resets, half
    closes. Every connection is closed when the block ends.
    """
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
            writers.discard(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_ctx, backlog=1024)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in list(writers):
            w.transport.abort()
        async with asyncio.timeout(5):
            await server.wait_closed()
        await asyncio.sleep(0)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read a request head (through the blank line)."""
    return await reader.readuntil(b"\r\n\r\n")


def slow_pages(
    slow: bytes, slow_s: float, fast_s: float, also: tuple[bytes, float] = (b"", 0.0)
) -> Handler:
    """A kept-alive server answering 200 after `fast_s`, or after `slow_s`
    for a request whose head holds `slow` (b" /hang ": a page that hangs),
    or after `also`'s time for one whose head holds its bytes."""

    async def pages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            other = also[0] and also[0] in request
            await asyncio.sleep(slow_s if slow in request else also[1] if other else fast_s)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    return pages


class RecordingSink:
    """A pool sink that keeps results in memory and refuses a row twice."""

    def __init__(self) -> None:
        self.rows: dict[int, Result] = {}
        self.duplicates: list[Duplicate] = []
        self.flushes = 0

    def add(self, seq: int, result: Result) -> None:
        assert seq not in self.rows, f"row {seq} reported twice"
        self.rows[seq] = result

    def add_duplicate(self, dup: Duplicate) -> None:
        self.duplicates.append(dup)

    async def flush(self) -> None:
        self.flushes += 1


class SwitchableSite:
    """A server answering every request with `self.status` (change it between runs)."""

    def __init__(self, status: bytes = b"200 OK") -> None:
        self.status = status

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 " + self.status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()


Responder = Callable[[int, bytes], bytes]  # (request number on this connection, head) -> response


class KeepAliveServer:
    """Answers every request on a connection with `respond`, counting connections."""

    def __init__(self, respond: Responder, close_after: int | None = None) -> None:
        self.respond = respond
        self.close_after = close_after  # close the socket after this many responses
        self.connections = 0
        self.requests: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            self.requests.append(head)
            n += 1
            writer.write(self.respond(n, head))
            await writer.drain()
            if self.close_after is not None and n >= self.close_after:
                return


def ok(body: bytes = b"") -> Responder:
    return lambda n, head: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(body),
            b"" if head.startswith(b"HEAD") else body,
        )
    )


async def run_list_file(
    tmp_path: Path, urls: list[str], *options: str
) -> dict[str, dict[str, Any]]:
    """`checker check` over `urls` (no retries, a 3 s deadline): the JSON
    report's rows by URL. Any exit but 0 or 1, or a traceback, fails."""
    from tests.test_cli import checker

    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    code, _, err = await checker(
        "check", "urls.txt", "-q", "--retries", "0", "--timeout", "3", *options, cwd=tmp_path
    )
    assert code in (0, 1), err
    assert "Traceback" not in err
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    return {r["url"]: r for r in rows}


async def ended(
    proc: asyncio.subprocess.Process, stdin: bytes | None = None, timeout: float = 45
) -> tuple[int, str, str]:
    """`proc`'s exit code, stdout and stderr once it has ended, `stdin` fed
    to it; killed if it has not ended within `timeout` seconds (every test
    is bounded in time)."""
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Once `condition()` (polled every 20 ms) is true; TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def journal_rows(folder: Path) -> list[int]:
    """The results in each journal under `folder` (its shards' too), as the
    running processes have written them so far."""
    rows = []
    for journal in folder.rglob("*.journal.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            rows.append(journal.read_bytes().count(b'\n{"seq":'))
    return rows


async def journal_with(folder: Path, ok_rows: int = 1, timeout: float = 20) -> Path:
    """The journal of the run going on in `folder`, once it holds `ok_rows`
    results that are up (polled: the run is another process)."""

    def found() -> Path | None:
        journals = list(folder.glob("*.journal.jsonl"))
        if journals and journals[0].read_bytes().count(b'"ok":true') >= ok_rows:
            return journals[0]
        return None

    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0.1)
            journal = await asyncio.to_thread(found)
            if journal is not None:
                return journal
