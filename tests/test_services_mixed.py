"""Issue 12's "done when": one list mixing https, tcp, tls, smtp and ftp URLs
against local servers (STARTTLS with a soon-expiring certificate, a 554
greeting) gives the right states, codes, certificate days and error
categories in every report format and in the history, and the certificate
expiry change fires for a STARTTLS certificate as it does for HTTPS."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sqlite3
import ssl
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from checker.demo.fleet import Fleet, Route
from tests.helpers import raw_server
from tests.test_cli import checker
from tests.test_ftp_check import ftp_server
from tests.test_hostile import tls_server
from tests.test_notify import Recorder, _Controller

pytestmark = pytest.mark.timeout(60)


def mail_server(ctx: ssl.SSLContext, port: int = 0) -> Controller:
    """aiosmtpd with STARTTLS on loopback: an ephemeral port, or `port` again."""
    kind = _Controller if port == 0 else Controller
    controller = kind(
        Recorder(), hostname="127.0.0.1", port=port, tls_context=ctx, ready_timeout=10
    )
    controller.start()
    return controller


async def test_a_mixed_list_in_every_format_and_the_history(
    tmp_path: Path, ca: trustme.CA, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    now = dt.datetime.now(dt.UTC)
    forty = tls_server(ca, not_after=now + dt.timedelta(days=40, hours=1))
    five = tls_server(ca, not_after=now + dt.timedelta(days=5, hours=1))

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 no mail from you\r\n")
        await writer.drain()
        await reader.read()

    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    mail = mail_server(forty)
    try:
        async with (
            Fleet({"/": Route()}, https_context=server_tls) as fleet,
            raw_server(listen) as tcp,
            raw_server(listen, server_tls) as tls,
            raw_server(refuse) as spam,
        ):
            with ftp_server() as ftp:
                urls = {
                    "https": fleet.https_url("/"),
                    "tcp": f"tcp://127.0.0.1:{tcp}",
                    "tls": f"tls://127.0.0.1:{tls}",
                    "smtp": f"smtp://127.0.0.1:{mail.port}",
                    "smtp554": f"smtp://127.0.0.1:{spam}",
                    "ftp": f"ftp://127.0.0.1:{ftp}",
                }
                (tmp_path / "mixed.txt").write_text("\n".join(urls.values()) + "\n")
                args = ["check", "mixed.txt", "-q", "--retries", "0", "--ca-file", ca_file]
                args += ["--format", "csv,json,html,prom", "--timeout", "3"]
                code, _, err = await checker(*args, cwd=tmp_path)
                assert code == 1, err
                mail.stop()
                mail = mail_server(
                    five, mail.port
                )  # the same server, its certificate nearer expiry
                code, _, err = await checker(*args, cwd=tmp_path)
                assert code == 1, err
    finally:
        mail.stop()

    reports = tmp_path / "reports"
    report = json.loads((reports / "latest.json").read_text())
    rows = {r["url"]: r for r in report["results"]}
    expect = {
        "https": ("up", 200, None),
        "tcp": ("up", None, None),
        "tls": ("up", None, None),
        "smtp": ("up", 250, None),
        "smtp554": ("down", 554, "smtp"),
        "ftp": ("up", 220, None),
    }
    for name, (state, status, error) in expect.items():
        row = rows[urls[name]]
        assert (row["state"], row["status"], row["error"]) == (state, status, error), name
    assert rows[urls["smtp"]]["cert_days_left"] == 5 and rows[urls["tls"]]["tls_version"]
    # The expiry change, for a certificate met after STARTTLS.
    changes = [(c["url"], c["kind"], c["before"], c["after"]) for c in report["changes"]]
    assert (urls["smtp"], "cert_expiring", 40, 5) in changes
    # Every format has every row.
    table = list(csv.DictReader(io.StringIO((reports / "latest.csv").read_text())))
    assert [r["url"] for r in table] == list(urls.values())
    assert {r["url"]: r["banner"] for r in table}[urls["smtp"]]  # the greeting, in CSV too
    page = (reports / "latest.html").read_text().replace("<wbr>", "")
    assert all(url in page for url in urls.values())
    prom = (reports / "latest.prom").read_text()
    assert f'checker_up{{url="{urls["smtp"]}"}} 1' in prom
    assert f'checker_up{{url="{urls["smtp554"]}"}} 0' in prom
    db = sqlite3.connect(reports / "history.sqlite3")
    try:
        stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        db.close()
    assert stored == 2 * len(urls)
