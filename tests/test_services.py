"""tcp:// and tls://: a service checked by its connection, its TLS handshake
and, when asked, its first line; through the same lists, pool, deadlines,
reports and states as web pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from pathlib import Path

import pytest
import trustme

from checker.url import URLError, parse_url, resolve_location
from tests.helpers import raw_server
from tests.test_cli import checker
from tests.test_hostile import tls_server

pytestmark = pytest.mark.timeout(60)


def test_service_urls_need_a_port_and_have_no_path() -> None:
    url = parse_url("TCP://Mail.Example:25")
    assert (url.scheme, url.host, url.port, str(url)) == (
        "tcp",
        "mail.example",
        25,
        "tcp://mail.example:25",
    )
    assert str(parse_url("tls://[::1]:993/")) == "tls://[::1]:993"
    for bad, why in [
        ("tcp://mail.example", "needs a port"),
        ("tls://mail.example:993/inbox", "has no path or query"),
        ("tcp://mail.example:25?x=1", "has no path or query"),
        ("gopher://files.example/", "unsupported scheme 'gopher'"),
        ("ftp://files.example/pub", "has no path or query"),
    ]:
        with pytest.raises(URLError, match=why):
            parse_url(bad)
    with pytest.raises(URLError, match="redirect to tcp:// is not followed"):
        resolve_location(parse_url("http://a.example/"), "tcp://a.example:22")


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    await writer.drain()
    await reader.read()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x1b[2J" + b"A" * (1024 * 1024))  # a 1 MiB line, with an escape
    await writer.drain()
    await reader.read()


async def long_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"B" * 2000)  # no line end, and the connection stays open
    await writer.drain()
    await reader.read()


async def test_tcp_services_with_and_without_a_banner(tmp_path: Path) -> None:
    async with (
        raw_server(banner) as ssh,
        raw_server(silent) as quiet,
        raw_server(flood) as big,
        raw_server(long_line) as long,
    ):
        (tmp_path / "services.csv").write_text(
            "name,url,regex\n"
            f"ssh,tcp://127.0.0.1:{ssh},\n"
            f"ssh-banner,tcp://127.0.0.1:{ssh},^SSH-2\\.0-\n"
            f"not-smtp,tcp://127.0.0.1:{ssh},^220 \n"
            f"not-ssh1,tcp://127.0.0.1:{ssh},^SSH-1\\.\\d\n"
            f"quiet,tcp://127.0.0.1:{quiet},\n"
            f"quiet-banner,tcp://127.0.0.1:{quiet},.\n"
            f"big,tcp://127.0.0.1:{big},^A+$\n"
            f"long,tcp://127.0.0.1:{long},^B+$\n"
            "closed,tcp://127.0.0.1:9,\n"
        )
        code, out, err = await checker(
            "check", "services.csv", "--retries", "0", "--timeout", "1", cwd=tmp_path
        )
    assert code == 1, err
    assert "Traceback" not in err
    rows = {
        r["name"]: r
        for r in json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    }
    assert (rows["ssh"]["state"], rows["ssh"]["method"], rows["ssh"]["banner"]) == (
        "up",
        "TCP",
        None,
    )
    assert rows["ssh"]["connect_ms"] is not None and rows["ssh"]["status"] is None
    assert rows["ssh-banner"]["state"] == "up"
    assert rows["ssh-banner"]["banner"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2"
    assert rows["not-smtp"]["state"] == "down"
    assert rows["not-smtp"]["reasons"] == ["first line does not match /^220/"]
    # As the list wrote it (found by a review: its backslashes doubled), and
    # in the summary what decided it, not `None`.
    assert rows["not-ssh1"]["reasons"] == ["first line does not match /^SSH-1\\.\\d/"]
    assert f"  expectation  tcp://127.0.0.1:{ssh}\n" in out
    assert rows["quiet"]["state"] == "up"  # connecting is enough without a banner check
    assert rows["quiet-banner"]["error"] == "timeout"
    assert rows["quiet-banner"]["error_detail"] == "no first line within 1s"
    big = rows["big"]
    assert big["state"] == "down" and big["banner"].startswith("\\x1b[2JAAAA")
    assert len(big["banner"]) <= 200
    # Judged on its first 1,024 bytes once they came, not a timeout (found
    # by a review: it waited for a line end until the deadline).
    assert (rows["long"]["state"], rows["long"]["error"]) == ("up", None), rows["long"]
    assert rows["closed"]["error"] == "refused"


def tls_service(ca: trustme.CA, **cert: object) -> ssl.SSLContext:
    return tls_server(ca, **cert)


async def test_tls_services_report_their_certificate(
    tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    soon = tls_service(ca, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5, hours=1))
    expired = tls_service(ca, not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    async with (
        raw_server(silent, soon) as good,
        raw_server(silent, expired) as old,
        raw_server(banner) as plain,
    ):
        (tmp_path / "tls.csv").write_text(
            "name,url,cert_min_days\n"
            f"imap,tls://127.0.0.1:{good},\n"
            f"imap-30,tls://127.0.0.1:{good},30\n"
            f"old,tls://127.0.0.1:{old},\n"
            f"plain,tls://127.0.0.1:{plain},\n"
        )
        code, _, err = await checker(
            "check",
            "tls.csv",
            "--retries",
            "0",
            "--ca-file",
            ca_file,
            "--timeout",
            "3",
            cwd=tmp_path,
        )
    assert code == 1, err
    rows = {
        r["name"]: r
        for r in json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    }
    imap = rows["imap"]
    assert (imap["state"], imap["method"]) == ("up", "TLS")
    assert imap["tls_version"] and imap["tls_cipher"] and imap["cert_days_left"] == 5
    assert imap["cert_not_after"] and imap["cert_issuer"]
    assert rows["imap-30"]["state"] == "degraded"
    assert rows["imap-30"]["reasons"] == ["certificate expires in 5 days, under 30"]
    assert rows["old"]["error"] == "tls"
    assert rows["old"]["error_detail"].startswith("expired certificate")
    assert rows["plain"]["error"] == "tls"
