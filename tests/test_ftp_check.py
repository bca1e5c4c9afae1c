"""ftp:// and ftps://: against pyftpdlib (plain, and with AUTH TLS through its
TLS_FTPHandler), an implicit-TLS greeting, and peers that say no or are not
FTP at all."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.helpers import raw_server, run_list_file

with warnings.catch_warnings():
    # pyftpdlib still imports the standard library's asyncore on Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    pyftpdlib = pytest.importorskip("pyftpdlib")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def ftp_server(handler_class: Any = None) -> Iterator[int]:
    """pyftpdlib on an ephemeral loopback port, in a thread of this process,
    closed at the end."""
    base = FTPHandler if handler_class is None else handler_class
    handler: Any = type("Handler", (base,), {})  # options per server, not per class
    handler.authorizer = DummyAuthorizer()
    handler.banner = "pyftpdlib ready"
    # An event loop of its own: pyftpdlib's default one is shared by every
    # server of the process, and two threads must not poll one loop.
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    stop = threading.Event()

    def serve() -> None:
        # Polled in short steps, and closed by its own thread (closing its
        # sockets from another thread under its poll is a race).
        try:
            while not stop.is_set():
                server.serve_forever(timeout=0.05, blocking=False)
        finally:
            server.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.address[1])
    finally:
        stop.set()
        thread.join(timeout=10)


async def test_pyftpdlib_plain_and_with_auth_tls(
    tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    tls_handler = type("TLSHandler", (TLS_FTPHandler,), {"certfile": str(pem)})
    with ftp_server(FTPHandler) as plain, ftp_server(tls_handler) as secure:
        clear, tls = f"ftp://127.0.0.1:{plain}", f"ftp://127.0.0.1:{secure}"
        strict = f"ftp://127.0.0.1:{plain}?require_tls=1"
        rows = await run_list_file(tmp_path, [clear, tls, strict], "--ca-file", ca_file)
    assert (rows[clear]["state"], rows[clear]["method"]) == ("up", "FTP")
    assert rows[clear]["banner"] == "pyftpdlib ready"
    assert rows[clear]["warnings"][0].startswith("the server does not take AUTH TLS")
    assert rows[tls]["state"] == "up" and rows[tls]["status"] == 234
    assert rows[clear]["status"] == 220  # the greeting: the refused AUTH TLS is a warning
    assert rows[tls]["tls_version"] and rows[tls]["cert_days_left"] is not None
    assert rows[tls]["warnings"] == []
    assert rows[strict]["state"] == "down" and rows[strict]["error"] == "ftp"


async def test_implicit_tls_and_peers_that_say_no(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    async def greet(data: bytes) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(data)
            await writer.drain()
            if await reader.readline():
                writer.write(b"221 bye\r\n")
                await writer.drain()

        return handler

    async with (
        raw_server(
            await greet(b"220-Welcome\r\n to the archive\r\n220 ready\r\n"), server_tls
        ) as ftps,
        raw_server(await greet(b"421 Too many connections, try later\r\n")) as busy,
        raw_server(await greet(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as http,
    ):
        urls = [f"ftps://127.0.0.1:{ftps}", f"ftp://127.0.0.1:{busy}", f"ftp://127.0.0.1:{http}"]
        rows = await run_list_file(tmp_path, urls, "--ca-file", ca_file)
    implicit = rows[urls[0]]
    assert (implicit["state"], implicit["status"], implicit["banner"]) == ("up", 220, "Welcome")
    assert implicit["tls_version"]
    assert rows[urls[1]]["error"] == "ftp" and rows[urls[1]]["status"] == 421
    assert rows[urls[1]]["error_detail"] == "greeting: 421 Too many connections, try later"
    assert rows[urls[2]]["error"] == "protocol"


async def test_an_expired_certificate_after_auth_tls_and_a_drop_mid_handshake(
    tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    pem = tmp_path / "expired.pem"
    ca.issue_cert(
        "127.0.0.1", not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    ).private_key_and_cert_chain_pem.write_to_path(str(pem))
    tls_handler = type("TLSHandler", (TLS_FTPHandler,), {"certfile": str(pem)})

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        await reader.readline()
        writer.write(b"234 AUTH TLS successful\r\n")
        await writer.drain()
        await reader.read(5)  # the start of the ClientHello, then gone

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-banner\r\n")
        for _ in range(1000):
            writer.write(b" more banner\r\n")
            await writer.drain()
        await reader.read()

    with ftp_server(tls_handler) as expired:
        async with raw_server(drop) as dropping, raw_server(endless) as never:
            urls = [
                f"ftp://127.0.0.1:{expired}",
                f"ftp://127.0.0.1:{dropping}",
                f"ftp://127.0.0.1:{never}",
            ]
            rows = await run_list_file(tmp_path, urls, "--ca-file", ca_file)
    assert rows[urls[0]]["error"] == "tls"
    assert rows[urls[0]]["error_detail"].startswith("expired certificate")
    assert rows[urls[1]]["error"] in ("tls", "reset")
    assert rows[urls[2]]["error"] == "protocol"
    assert "longer than 64 lines" in rows[urls[2]]["error_detail"]
