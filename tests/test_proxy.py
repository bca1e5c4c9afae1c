"""Proxies: which URLs go through one (NO_PROXY), plain http in absolute form,
https through a CONNECT tunnel upgraded in place, credentials never written,
a proxy that fails is the proxy's error; against a small proxy of our own
and against tinyproxy from Debian's packages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checker.http.proxy import ProxyConfigError, ProxySettings, parse_proxy
from checker.url import parse_url
from tests.helpers import SwitchableSite, raw_server
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(60)


# --- which proxy -----------------------------------------------------------------------------


def test_the_environment_and_no_proxy() -> None:
    env = {
        "HTTP_PROXY": "http://proxy.example:3128",
        "https_proxy": "proxy.example:8443",
        "NO_PROXY": "intranet.example, .corp.example,10.0.0.0/8,[::1],127.0.0.1:8080",
    }
    settings = ProxySettings.from_environment(env)
    via = settings.for_url
    assert via(parse_url("http://a.example/")) == parse_proxy("proxy.example:3128", "x")
    https = via(parse_url("https://a.example/"))
    assert https is not None and (https.host, https.port) == ("proxy.example", 8443)
    for direct in (
        "http://intranet.example/",
        "http://www.intranet.example/",
        "http://corp.example/",
        "http://x.corp.example/",
        "http://10.1.2.3/",
        "http://[::1]:9/",
        "http://127.0.0.1:8080/",
    ):
        assert via(parse_url(direct)) is None, direct
    for proxied in ("http://notintranet.example/", "http://127.0.0.1:8081/", "http://11.0.0.1/"):
        assert via(parse_url(proxied)) is not None, proxied
    assert (
        ProxySettings.from_environment({**env, "NO_PROXY": "*"}).for_url(
            parse_url("http://a.example/")
        )
        is None
    )
    # --proxy is both, and wins over the environment.
    both = ProxySettings.from_environment(env, "http://other.example:1")
    assert both.http == both.https and both.http is not None and both.http.port == 1


def test_credentials_become_a_header_and_are_never_shown() -> None:
    proxy = parse_proxy("http://user:p%40ss@proxy.example:3128/", "--proxy")
    assert proxy.authorization == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert proxy.shown == "proxy.example:3128" and "p@ss" not in repr(proxy)
    with pytest.raises(ProxyConfigError, match=r"only http:// proxies") as caught:
        parse_proxy("socks5://user:secret@proxy.example:1080", "ALL")
    assert "secret" not in str(caught.value)
    with pytest.raises(ProxyConfigError, match="bad port") as caught:
        parse_proxy("http://user:secret@proxy.example:http", "HTTP_PROXY")
    assert "secret" not in str(caught.value)


# --- a proxy of our own ----------------------------------------------------------------------


class Proxy:
    """CONNECT tunnels and absolute-form requests, forwarded as they are."""

    def __init__(self, refuse_connect: bool = False) -> None:
        self.seen: list[bytes] = []  # each request head it got
        self.refuse_connect = refuse_connect

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.seen.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if method == b"CONNECT":
            if self.refuse_connect:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            host, _, port = target.rpartition(b":")
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            first = b""
        else:
            authority = target.split(b"//", 1)[1].split(b"/", 1)[0]
            host, _, port = authority.rpartition(b":")
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            first = head
        up_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()


async def run_through(
    tmp_path: Path, urls: list[str], *options: str
) -> tuple[int, list[dict[str, object]], str]:
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    code, _, err = await checker(
        "check", "urls.txt", "-q", "--retries", "0", *options, cwd=tmp_path
    )
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    return code, rows, err


async def test_plain_http_goes_in_absolute_form_with_the_proxys_credentials(
    tmp_path: Path,
) -> None:
    proxy = Proxy()
    async with raw_server(SwitchableSite()) as site, raw_server(proxy) as port:
        url = f"http://127.0.0.1:{site}/health"
        code, rows, err = await run_through(
            tmp_path, [url], "--proxy", f"http://ops:s3cret@127.0.0.1:{port}"
        )
    assert code == 0, err
    assert rows[0]["state"] == "up"
    (head,) = proxy.seen
    assert head.startswith(f"HEAD {url} HTTP/1.1\r\n".encode())
    assert b"\r\nProxy-Authorization: Basic b3BzOnMzY3JldA==\r\n" in head
    assert_nowhere(tmp_path, "s3cret")


async def test_https_goes_through_a_connect_tunnel_and_checks_the_certificate(
    tmp_path: Path, server_tls: object, ca_file: str
) -> None:
    import ssl

    assert isinstance(server_tls, ssl.SSLContext)
    proxy = Proxy()
    async with raw_server(SwitchableSite(), server_tls) as site, raw_server(proxy) as port:
        url = f"https://localhost:{site}/"
        code, rows, err = await run_through(
            tmp_path, [url], "--proxy", f"127.0.0.1:{port}", "--ca-file", ca_file
        )
    assert code == 0, err
    assert rows[0]["state"] == "up" and rows[0]["tls_version"]
    assert proxy.seen[0].startswith(f"CONNECT localhost:{site} HTTP/1.1\r\n".encode())


async def test_no_proxy_goes_direct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Proxy()
    async with raw_server(SwitchableSite()) as site, raw_server(proxy) as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", f"127.0.0.1:{site}")
        code, rows, err = await run_through(
            tmp_path, [f"http://127.0.0.1:{site}/", f"http://localhost:{site}/"]
        )
    assert code == 0, err
    assert [r["state"] for r in rows] == ["up", "up"]
    assert len(proxy.seen) == 1 and b"localhost" in proxy.seen[0]  # only the other host


async def test_a_proxy_that_fails_is_the_proxys_error(
    tmp_path: Path, server_tls: object, ca_file: str
) -> None:
    import ssl

    assert isinstance(server_tls, ssl.SSLContext)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        async with (
            raw_server(SwitchableSite(), server_tls) as site,
            raw_server(Proxy(refuse_connect=True)) as port,
        ):
            url = f"https://localhost:{site}/"
            code, rows, err = await run_through(
                tmp_path, [url], "--proxy", f"127.0.0.1:{port}", "--ca-file", ca_file
            )
            assert code == 1, err
            assert rows[0]["error"] == "proxy"
            assert rows[0]["error_detail"] == (
                f"proxy 127.0.0.1:{port} answered 403 Forbidden to CONNECT localhost:{site}"
            )
            dead = f"127.0.0.1:{closed.getsockname()[1]}"
            code, rows, err = await run_through(tmp_path, [url], "--proxy", dead)
    finally:
        closed.close()
    assert code == 1, err
    assert rows[0]["error"] == "proxy"
    assert str(rows[0]["error_detail"]).startswith(f"proxy {dead}: connection refused")


def assert_nowhere(tmp_path: Path, secret: str) -> None:
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file() and not path.name.startswith("history.sqlite3"):
            assert secret.encode() not in path.read_bytes(), path
    db = sqlite3.connect(tmp_path / "reports" / "history.sqlite3")
    try:
        assert secret not in "\n".join(db.iterdump())
    finally:
        db.close()


# --- tinyproxy -------------------------------------------------------------------------------

TINYPROXY = shutil.which("tinyproxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def tinyproxy(tmp_path: Path) -> Iterator[int]:
    """tinyproxy in the foreground on loopback, with a config of our own;
    stopped by its process id."""
    port = free_port()
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
        f'LogLevel Info\nLogFile "{tmp_path / "tinyproxy.log"}"\nMaxClients 20\n'
    )
    proc = subprocess.Popen(
        [str(TINYPROXY), "-d", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("tinyproxy did not start")
            time.sleep(0.05)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.skipif(TINYPROXY is None, reason="tinyproxy is not installed (CI: apt-get install)")
async def test_through_tinyproxy(tmp_path: Path, server_tls: object, ca_file: str) -> None:
    import ssl

    assert isinstance(server_tls, ssl.SSLContext)
    async with (
        raw_server(SwitchableSite()) as plain,
        raw_server(SwitchableSite(), server_tls) as tls,
    ):
        with tinyproxy(tmp_path) as port:
            urls = [f"http://127.0.0.1:{plain}/a", f"https://localhost:{tls}/b"]
            code, rows, err = await run_through(
                tmp_path, urls, "--proxy", f"127.0.0.1:{port}", "--ca-file", ca_file
            )
    assert code == 0, err
    assert [r["state"] for r in rows] == ["up", "up"]
    assert rows[1]["tls_version"]
    log = (tmp_path / "tinyproxy.log").read_text(errors="replace")
    assert "CONNECT" in log  # the https check went through it
