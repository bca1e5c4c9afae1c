"""smtp:// and smtps://: against aiosmtpd (with and without STARTTLS) and
against hostile peers: a 554 greeting, a greeting that never ends, a port
that speaks HTTP, a server that drops the connection mid-STARTTLS, an expired
certificate after STARTTLS, a server without STARTTLS when it is required."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.helpers import raw_server, run_list_file
from tests.test_hostile import tls_server
from tests.test_notify import StartSMTP, smtp_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)


async def test_aiosmtpd_with_and_without_starttls(
    tmp_path: Path,
    smtp_server: StartSMTP,  # noqa: F811
    ca: trustme.CA,
    ca_file: str,
) -> None:
    soon = tls_server(ca, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5, hours=1))
    _, plain = smtp_server()
    _, secure = smtp_server(tls_context=soon)
    clear, tls = f"smtp://127.0.0.1:{plain}", f"smtp://127.0.0.1:{secure}"
    strict = f"smtp://127.0.0.1:{plain}?require_tls=1"
    rows = await run_list_file(tmp_path, [clear, tls, strict], "--ca-file", ca_file)
    assert (rows[clear]["state"], rows[clear]["status"], rows[clear]["method"]) == (
        "up",
        250,
        "SMTP",
    )
    assert rows[clear]["banner"]  # the greeting's first line
    assert rows[clear]["warnings"] == [
        "the server does not offer STARTTLS: mail to it is sent in clear"
    ]
    assert rows[clear]["tls_version"] is None
    assert rows[tls]["state"] == "up" and rows[tls]["tls_version"]
    assert rows[tls]["cert_days_left"] == 5 and rows[tls]["warnings"] == []
    assert rows[strict]["state"] == "down" and rows[strict]["error"] == "smtp"
    assert rows[strict]["status"] == 250 and rows[strict]["banner"]  # what it really said
    assert "does not offer STARTTLS" in rows[strict]["error_detail"]


async def test_an_expired_certificate_after_starttls(
    tmp_path: Path,
    smtp_server: StartSMTP,  # noqa: F811
    ca: trustme.CA,
    ca_file: str,
) -> None:
    expired = tls_server(ca, not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    _, port = smtp_server(tls_context=expired)
    url = f"smtp://127.0.0.1:{port}"
    rows = await run_list_file(tmp_path, [url], "--ca-file", ca_file)
    assert rows[url]["error"] == "tls"
    assert rows[url]["error_detail"].startswith("expired certificate")


async def say(data: bytes, then_close: bool = False) -> Any:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if not then_close:
            await reader.read()

    return handler


async def starttls_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mx ready\r\n")
    await writer.drain()
    await reader.readline()
    writer.write(b"250-mx\r\n250 STARTTLS\r\n")
    await writer.drain()
    await reader.readline()
    writer.write(b"220 go ahead\r\n")
    await writer.drain()
    await reader.read(5)  # the start of the ClientHello, then gone


async def test_hostile_peers(tmp_path: Path, ca_file: str) -> None:
    async def forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(1000):
            writer.write(b"220-still greeting\r\n")
            await writer.drain()
        await reader.read()

    async with (
        raw_server(await say(b"554 5.7.1 you are not welcome here\r\n")) as refusing,
        raw_server(await say(b"421 4.3.2 too busy, try later\r\n", then_close=True)) as busy,
        raw_server(await say(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as http,
        raw_server(forever) as endless,
        raw_server(await say(b"220 " + b"x" * (1024 * 1024))) as long_line,
        raw_server(starttls_then_drop) as drop,
    ):
        urls = {
            name: f"smtp://127.0.0.1:{port}"
            for name, port in [
                ("554", refusing),
                ("421", busy),
                ("http", http),
                ("endless", endless),
                ("long", long_line),
                ("drop", drop),
            ]
        }
        rows = await run_list_file(tmp_path, list(urls.values()), "--ca-file", ca_file)
    r554 = rows[urls["554"]]
    assert (r554["state"], r554["error"], r554["status"]) == ("down", "smtp", 554)
    assert r554["error_detail"] == "greeting: 554 5.7.1 you are not welcome here"
    assert r554["banner"] == "5.7.1 you are not welcome here"
    assert rows[urls["421"]]["status"] == 421 and rows[urls["421"]]["error"] == "smtp"
    assert rows[urls["http"]]["error"] == "protocol"
    assert rows[urls["http"]]["error_detail"].startswith("not an SMTP reply (the greeting)")
    assert rows[urls["endless"]]["error"] == "protocol"
    assert "longer than 64 lines" in rows[urls["endless"]]["error_detail"]
    assert rows[urls["long"]]["error"] == "protocol"
    assert rows[urls["drop"]]["error"] in ("tls", "reset")
