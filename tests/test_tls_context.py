"""The run's TLS context, made at its first handshake (client.LazyContext),
and the start of a handshake."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from checker import cli
from checker.check import CheckOptions, attempt_check
from checker.demo.fleet import Fleet, Route
from checker.http import client
from checker.http.client import ClientConfig, LazyContext
from checker.http.errors import TLSError
from checker.url import parse_url
from tests.helpers import check_options, raw_server

pytestmark = pytest.mark.timeout(30)


async def test_made_once_for_first_handshakes_at_once(ca_file: str) -> None:
    lazy = LazyContext(ca_file=ca_file)
    made = await asyncio.gather(*(lazy.get() for _ in range(20)))
    assert all(ctx is made[0] for ctx in made)
    ctx = made[0]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # The ca_file's certificate beside the system's (one at least: the file's).
    assert ctx.cert_store_stats()["x509_ca"] >= 1


async def test_insecure_verifies_nothing() -> None:
    ctx = await LazyContext(insecure=True).get()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_a_bad_ca_file_is_found_before_any_check(tmp_path: Path, ca_file: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError):
        LazyContext(ca_file=str(bad)).check()
    with pytest.raises(OSError):
        LazyContext(ca_file=str(tmp_path / "missing.pem")).check()
    LazyContext(ca_file=ca_file).check()
    LazyContext().check()  # no file: nothing to try


async def test_https_check_through_a_lazy_context(ca_file: str, server_tls: ssl.SSLContext) -> None:
    opts = check_options()
    lazy = LazyContext(ca_file=ca_file)
    config = ClientConfig(ssl_context=lazy, connect_timeout=2.0, user_agent="checker/test")
    opts = type(opts)(client=config, timeout=opts.timeout)
    async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
        att = await attempt_check(parse_url(fleet.https_url("/")), opts)
    assert att.ok, att.error
    assert att.trace.cert_issuer is not None


def test_a_list_without_https_never_loads_the_systems_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """15 ms of start-up and 2-3 MB a run without https:// never needs. In
    this process (cli.main), so that the patch holds for the run."""
    loaded: list[object] = []

    def record(self: ssl.SSLContext, *args: Any) -> None:
        loaded.append(args)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", record)
    monkeypatch.chdir(tmp_path)
    try:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{server.server_port}/\n")
        assert cli.main(["check", "urls.txt", "-q", "--retries", "0", "--timeout", "5"]) == 0
        rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
        assert [row["state"] for row in rows] == ["up"]
        assert loaded == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("first", ["https", "http"])
def test_a_list_that_begins_with_https_has_its_context_made_as_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """Made beside the run's start (its thread of its own), not by the first
    handshake while the 200 others wait; a list that begins with http:// has
    it made by its first https:// check, as ever. In this process (cli.main)."""
    made_in: list[str] = []
    real = ssl.SSLContext.load_default_certs

    def record(self: ssl.SSLContext, *args: Any) -> None:
        made_in.append(threading.current_thread().name)
        real(self, *args)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", record)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as unused:  # (a port nothing listens on: refused at once)
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    other = "http" if first == "https" else "https"
    lines = f"{first}://127.0.0.1:{port}/a\n{other}://127.0.0.1:{port}/b\n"
    (tmp_path / "urls.txt").write_text(lines)
    assert cli.main(["check", "urls.txt", "-q", "--retries", "0", "--timeout", "5"]) == 1
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert [row["error"] for row in rows] == ["refused"] * 2
    assert len(made_in) == 1  # once, either way
    assert (made_in[0] == "tls-context") == (first == "https"), made_in


async def test_a_check_is_not_timed_waiting_for_the_context(
    ca_file: str, server_tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ssl.SSLContext.load_default_certs

    def slow(self: ssl.SSLContext, *args: object) -> None:
        time.sleep(0.5)
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", slow)
    lazy = LazyContext(ca_file=ca_file)
    lazy.check()
    config = ClientConfig(ssl_context=lazy, connect_timeout=2.0, user_agent="checker/test")
    opts = CheckOptions(client=config, timeout=3.0)
    async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
        att = await attempt_check(parse_url(fleet.https_url("/")), opts)
    assert att.ok, att.error
    assert att.total_ms < 400  # its own time, not the 500 ms the context took


async def test_the_ca_file_is_read_once(
    tmp_path: Path, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    """A file given as <(cat ca.pem) can be read once; one removed during the
    run must not fail its checks."""
    pem = await asyncio.to_thread(Path(ca_file).read_bytes)
    read, write = os.pipe()
    os.write(write, pem)
    os.close(write)
    copy = tmp_path / "ca.pem"
    await asyncio.to_thread(copy.write_bytes, pem)
    try:
        piped = LazyContext(ca_file=f"/proc/self/fd/{read}")
        piped.check()
        removed = LazyContext(ca_file=str(copy))
        removed.check()
        await asyncio.to_thread(copy.unlink)
        for lazy in (piped, removed):
            config = ClientConfig(ssl_context=lazy, connect_timeout=2.0, user_agent="checker/test")
            async with Fleet({"/": Route()}, https_context=server_tls) as fleet:
                att = await attempt_check(
                    parse_url(fleet.https_url("/")), CheckOptions(client=config, timeout=3.0)
                )
            assert att.ok, att.error
    finally:
        os.close(read)


async def test_a_context_that_cannot_be_made_is_a_tls_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ssl.SSLContext, *args: object) -> None:
        raise ssl.SSLError("no system certificates today")

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", broken)
    lazy = LazyContext()
    for _ in range(2):  # (and the second handshake is told the same)
        with pytest.raises(TLSError, match="cannot make the TLS context"):
            await lazy.get()
    config = ClientConfig(ssl_context=lazy, connect_timeout=2.0, user_agent="checker/test")
    async with Fleet({"/": Route()}) as fleet:  # (plain port: the context fails first)
        port = fleet.http_port
        att = await attempt_check(
            parse_url(f"https://127.0.0.1:{port}/"), CheckOptions(client=config, timeout=3.0)
        )
    assert att.error is not None and att.error.category == "tls", att.error


@pytest.mark.parametrize("scheme", ["https", "tls"])
async def test_a_server_that_speaks_first_is_no_tls_server(
    scheme: str, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its banner, read before the handshake began, is said at once: it used
    to be lost to the handshake, which then waited out the deadline."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        await writer.drain()
        await reader.read()

    opened = client._open

    async def open_slowly(*args: object) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await opened(*args)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)  # the banner arrives before the handshake starts
        return reader, writer

    monkeypatch.setattr(client, "_open", open_slowly)
    async with raw_server(banner) as port:
        att = await attempt_check(
            parse_url(f"{scheme}://127.0.0.1:{port}/"), check_options(ca_file)
        )
    assert att.error is not None and att.error.category == "tls", att.error
    assert "spoke first" in str(att.error) and "SSH-2.0" in str(att.error)
    assert att.total_ms < 2000  # not the 3 s deadline


@pytest.mark.parametrize("chain", [True, False], ids=["leaf and intermediate", "leaf alone"])
async def test_a_ca_file_of_an_intermediate_ca_is_trusted(tmp_path: Path, chain: bool) -> None:
    # Found by a review: --ca-file naming an organisation's issuing CA (not
    # its root) called every site it issued down ("unable to get issuer
    # certificate"), where curl --cacert says 200 (it verifies partial
    # chains, as Python 3.13's default context does).
    import trustme

    root = trustme.CA()
    issuing = root.create_child_ca()
    leaf = issuing.issue_cert("127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if chain:
        leaf.configure_cert(server)
    else:
        leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "leaf.pem"))
        server.load_cert_chain(str(tmp_path / "leaf.pem"), str(tmp_path / "key.pem"))
    ca_file = tmp_path / "issuing.pem"
    issuing.cert_pem.write_to_path(str(ca_file))
    opts = check_options()
    config = ClientConfig(ssl_context=LazyContext(ca_file=str(ca_file)), connect_timeout=2.0)
    opts = type(opts)(client=config, timeout=opts.timeout)
    async with Fleet({"/": Route()}, https_context=server) as fleet:
        att = await attempt_check(parse_url(fleet.https_url("/")), opts)
    assert att.ok, att.error


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_a_handshake_the_server_drops_is_said_at_once(how: str, ca_file: str) -> None:
    # Found by a review: after a failed start_tls the stream's close waited
    # for a connection_lost that never comes, its full second, inside the
    # connect deadline: a reset handshake took 1 s, and with a 1 s timeout
    # came out as `timeout` (retried) instead of `tls`. A close (FIN) was
    # said as "connection reset by peer ()".
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello has come
        if how == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async with raw_server(drop) as port:
        opts = check_options(ca_file, timeout=1.0, connect=1.0)
        att = await attempt_check(parse_url(f"https://127.0.0.1:{port}/"), opts)
    assert att.error is not None and att.error.category == "tls", att.error
    assert "()" not in str(att.error), att.error
    assert ("reset" in str(att.error)) == (how == "reset"), att.error
    assert att.total_ms < 500, att.total_ms  # (it was 1,000 and more)
