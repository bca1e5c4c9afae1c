"""The run's TLS context, made at its first handshake (client.LazyContext),
and the start of a handshake."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from checker.check import attempt_check
from checker.demo.fleet import Fleet, Route
from checker.http import client
from checker.http.client import ClientConfig, LazyContext
from checker.url import parse_url
from tests.helpers import check_options, raw_server, run_list_file

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


async def test_a_list_without_https_never_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the system's CAs were loaded for a list without https://")

    # The 15 ms this saves: loading the system's CA certificates.
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", refuse)
    async with Fleet({"/": Route()}) as fleet:
        rows = await run_list_file(tmp_path, [fleet.url("/")])
    (row,) = rows.values()
    assert row["state"] == "up"


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
