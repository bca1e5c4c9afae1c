"""Alerts: the messages, mail to a real SMTP server (aiosmtpd) on loopback, the webhook.

aiosmtpd's Controller runs its server in a thread of its own, so the client
under test runs on the test's event loop against a server it does not share a
loop with, as in real life.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from checker.notify import NotifyError, notify, post_webhook
from checker.notify.message import clean, summary_json, summary_text
from checker.notify.smtp import SMTPConfig, send_mail
from checker.store.model import Change
from tests.helpers import client_config, raw_server, read_request

RUN: dict[str, Any] = {
    "started_at": "2024-05-06T10:00:00.000Z",
    "finished_at": "2024-05-06T10:00:05.250Z",
    "checker_version": "0.0.0",
    "options": {"timeout": 10},
    "total": 10,
    "up": 8,
    "down": 2,
    "duplicates": 0,
    "interrupted": False,
    "lists": ["urls.txt"],
}
CHANGE_DICTS: list[dict[str, Any]] = [
    {"url": "https://a.example/", "line": 4, "kind": "down", "before": 200, "after": 503},
    {"url": "https://b.example/", "line": 7, "kind": "down", "before": 200, "after": "timeout"},
    {"url": "https://c.example/", "line": 9, "kind": "up", "before": "refused", "after": 200},
]


def typed(changes: list[dict[str, Any]]) -> list[Change]:
    """Changes as the run hands them over, from their JSON form."""
    out = [Change.from_dict(c) for c in changes]
    assert all(c is not None for c in out)
    return [c for c in out if c is not None]


CHANGES = typed(CHANGE_DICTS)

# ------------------------------------------------------------ the messages


def test_summary_json() -> None:
    changes = [*CHANGE_DICTS, {"url": "u", "line": 1, "kind": "up", "before": 1, "after": 2}]
    body = json.loads(summary_json(RUN, typed(changes)))
    assert body["run"] == {
        "started_at": "2024-05-06T10:00:00.000Z",
        "finished_at": "2024-05-06T10:00:05.250Z",
        "total": 10,
        "up": 8,
        "down": 2,
        "interrupted": False,
        "lists": ["urls.txt"],
    }
    assert body["changes"][:3] == CHANGE_DICTS
    assert body["changes"][3] == {"url": "u", "line": 1, "kind": "up", "before": 1, "after": 2}


def test_summary_json_escapes_what_a_server_sent() -> None:
    raw = summary_json(
        RUN, typed([{"url": "u", "line": 1, "kind": "status", "after": "a\r\nb\x00"}])
    )
    assert b"\r" not in raw and b"\n" not in raw and b"\x00" not in raw
    assert json.loads(raw)["changes"][0]["after"] == "a\r\nb\x00"


def test_summary_text() -> None:
    changes = [
        *CHANGE_DICTS,
        {"url": "https://d.example/", "line": 12, "kind": "status", "before": 200, "after": 301},
        {
            "url": "https://e.example/",
            "line": 13,
            "kind": "final_url",
            "before": "https://e.example/",
            "after": "https://www.e.example/",
        },
        {
            "url": "https://f.example/",
            "line": 20,
            "kind": "cert_expiring",
            "before": 30,
            "after": 9,
        },
    ]
    subject, body = summary_text(RUN, typed(changes))
    assert subject == (
        "checker: 2 down, 1 back up, 1 status change, 1 moved, 1 certificate expiring (6 changes)"
    )
    assert body.splitlines() == [
        "DOWN  https://a.example/ (line 4): 200 -> 503",
        "DOWN  https://b.example/ (line 7): 200 -> timeout",
        "UP    https://c.example/ (line 9): refused -> 200",
        "STATUS https://d.example/ (line 12): 200 -> 301",
        "MOVED https://e.example/ (line 13): https://e.example/ -> https://www.e.example/",
        "CERT  https://f.example/ (line 20): expires in 9 days",
        "",
        "checked 10 URLs: 8 up, 2 down",
        "started 2024-05-06T10:00:00.000Z, finished 2024-05-06T10:00:05.250Z",
        "lists: urls.txt",
    ]


def test_summary_text_subject_counts() -> None:
    assert summary_text(RUN, CHANGES)[0] == "checker: 2 down, 1 back up (3 changes)"
    one = [{"url": "u", "line": 1, "kind": "cert_expiring", "before": None, "after": 1}]
    subject, body = summary_text({**RUN, "interrupted": True}, typed(one))
    assert subject == "checker (interrupted run): 1 certificate expiring (1 change)"
    assert "CERT  u (line 1): expires in 1 day" in body
    assert "the run was interrupted: not every URL was checked" in body
    expired = [{"url": "u", "line": 1, "kind": "cert_expiring", "before": 1, "after": -3}]
    assert "expired 3 days ago" in summary_text(RUN, typed(expired))[1]


def test_summary_text_cleans_what_came_from_outside() -> None:
    hostile = "x\r\nBcc: victim@example.com\u2028\u202e\x1b[2J"
    changes = [{"url": hostile, "line": 1, "kind": "final_url", "before": hostile, "after": "y"}]
    subject, body = summary_text({**RUN, "lists": [hostile]}, typed(changes))
    assert "\r" not in subject and "\n" not in subject
    for line in body.splitlines():
        assert not line.startswith("Bcc")
        assert clean(line, 10_000) == line
    assert body.splitlines()[0] == (
        "MOVED x??Bcc: victim@example.com???[2J (line 1): x??Bcc: victim@example.com???[2J -> y"
    )


def test_summary_text_cuts_long_values_and_many_changes() -> None:
    long = [{"url": "u", "line": 1, "kind": "status", "before": "x" * 5000, "after": 1}]
    assert len(summary_text(RUN, typed(long))[1].splitlines()[0]) < 400
    many = [
        {"url": f"u{i}", "line": i, "kind": "down", "before": 200, "after": 500}
        for i in range(1500)
    ]
    lines = summary_text(RUN, typed(many))[1].splitlines()
    assert "... and 500 more changes (see the reports)" in lines


# --------------------------------------------------------- a real SMTP server

USER, PASSWORD = "alice", "s3cret"


class Recorder:
    """An aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.auth: list[str] = []  # mechanisms that succeeded

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.com>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 queued"

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.auth.append(mechanism)
        return AuthResult(success=ok, handled=False)

    def message(self) -> email.message.EmailMessage:
        assert len(self.envelopes) == 1
        raw = self.envelopes[0].original_content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


class _Controller(Controller):
    """Listens on an ephemeral port: port 0, and the port it got read back
    before the Controller's own start-up check connects to it."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


StartSMTP = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def smtp_server() -> Iterator[StartSMTP]:
    """start(**SMTP options) -> (recorder, port); every server is stopped at the end."""
    controllers: list[Controller] = []

    def start(**kw: Any) -> tuple[Recorder, int]:
        recorder = Recorder()
        controller = _Controller(
            recorder,
            hostname="127.0.0.1",
            port=0,
            server_hostname="mx.test",
            authenticator=recorder.authenticator,
            ready_timeout=10,
            **kw,
        )
        controller.start()
        controllers.append(controller)
        return recorder, controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port with nothing listening: bound, so no one else takes it, never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def config(port: int, **kw: Any) -> SMTPConfig:
    kw.setdefault("recipients", ("ops@example.com", "oncall@example.org"))
    kw.setdefault("timeout", 5.0)
    return SMTPConfig(
        host="127.0.0.1", port=port, sender="checker@example.com", helo_name="client.test", **kw
    )


async def test_plain_delivery(smtp_server: StartSMTP) -> None:
    recorder, port = smtp_server()
    body = "DOWN  https://a.example/ (line 4): 200 -> 503\n.starts with a dot\n.\n..two\nend\n"
    async with asyncio.timeout(10):
        await send_mail(config(port), "checker: 1 down (1 change)", body)
    envelope = recorder.envelopes[0]
    assert envelope.mail_from == "checker@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.org"]
    raw = envelope.original_content
    assert isinstance(raw, bytes)
    assert raw.count(b"\n") == raw.count(b"\r\n")  # CRLF, and only CRLF
    msg = recorder.message()
    assert msg["Subject"] == "checker: 1 down (1 change)"
    assert msg["From"] == "checker@example.com"
    assert msg["To"] == "ops@example.com, oncall@example.org"
    assert msg["Message-ID"].endswith("@client.test>")
    assert msg["Date"]
    # Dot-stuffing undone by the server: the lines arrive as they were written.
    assert msg.get_content().replace("\r\n", "\n") == body


async def test_non_ascii_subject_and_body(smtp_server: StartSMTP) -> None:
    recorder, port = smtp_server()
    subject = "checker: 1 down \u2014 stra\u00dfe.example \u2603"
    body = "DOWN  https://stra\u00dfe.example/ (line 1): 200 -> 503\n.dot \u00e9\n"
    async with asyncio.timeout(10):
        await send_mail(config(port), subject, body)
    msg = recorder.message()
    assert msg["Subject"] == subject
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().replace("\r\n", "\n") == body


async def test_refused_recipient(smtp_server: StartSMTP) -> None:
    recorder, port = smtp_server()
    cfg = config(port, recipients=("ops@example.com", "nobody@example.com"))
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(cfg, "s", "b\n")
    assert str(info.value) == (
        "1 recipient refused: nobody@example.com (550 5.1.1 <nobody@example.com>: no such user)"
    )
    assert recorder.envelopes == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_and_auth(
    smtp_server: StartSMTP, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, mechanism: str
) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    recorder, port = smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[other] if mechanism == "LOGIN" else [],
    )
    cfg = config(port, starttls=True, ssl_context=client_tls, user=USER, password=PASSWORD)
    async with asyncio.timeout(10):
        await send_mail(cfg, "over TLS", "hello\n")
    assert recorder.auth == [mechanism]
    assert recorder.message()["Subject"] == "over TLS"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_password_quotes_the_535(
    smtp_server: StartSMTP, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, mechanism: str
) -> None:
    recorder, port = smtp_server(
        tls_context=server_tls,
        auth_exclude_mechanism=["PLAIN"] if mechanism == "LOGIN" else [],
    )
    cfg = config(port, starttls=True, ssl_context=client_tls, user=USER, password="wrong")
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(cfg, "s", "b\n")
    assert str(info.value) == (
        "authentication failed: 535 5.7.8 Authentication credentials invalid"
    )
    assert "wrong" not in str(info.value)
    assert recorder.envelopes == []


async def test_implicit_tls(
    smtp_server: StartSMTP, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this is TLS from the start.
    recorder, port = smtp_server(ssl_context=server_tls, auth_require_tls=False)
    cfg = config(port, tls=True, ssl_context=client_tls, user=USER, password=PASSWORD)
    async with asyncio.timeout(10):
        await send_mail(cfg, "port 465 style", "hello\n")
    assert recorder.auth == ["PLAIN"]
    assert recorder.message()["Subject"] == "port 465 style"


async def test_untrusted_certificate(smtp_server: StartSMTP, server_tls: ssl.SSLContext) -> None:
    recorder, port = smtp_server(tls_context=server_tls)
    cfg = config(port, starttls=True, ssl_context=ssl.create_default_context())
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError, match=r"^TLS certificate of 127\.0\.0\.1 not accepted: "):
            await send_mail(cfg, "s", "b\n")
    assert recorder.envelopes == []


async def test_starttls_not_offered(smtp_server: StartSMTP, client_tls: ssl.SSLContext) -> None:
    _, port = smtp_server()
    cfg = config(port, starttls=True, ssl_context=client_tls)
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError, match="does not offer STARTTLS, and starttls is set"):
            await send_mail(cfg, "s", "b\n")


async def test_auth_in_plain_text_to_loopback(smtp_server: StartSMTP) -> None:
    recorder, port = smtp_server(auth_require_tls=False)
    async with asyncio.timeout(10):
        await send_mail(config(port, user=USER, password=PASSWORD), "s", "b\n")
    assert recorder.auth == ["PLAIN"]


async def test_auth_in_plain_text_elsewhere_is_refused() -> None:
    cfg = SMTPConfig(
        host="192.0.2.1",
        sender="a@example.com",
        recipients=("b@example.com",),
        user="u",
        password="p",
        helo_name="client.test",
    )
    with pytest.raises(
        NotifyError, match=r"^refusing to send the password to 192\.0\.2\.1 over an"
    ):
        await send_mail(cfg, "s", "b\n")  # fails before connecting: TEST-NET is unroutable


async def test_auth_not_offered_before_starttls(
    smtp_server: StartSMTP, server_tls: ssl.SSLContext
) -> None:
    # aiosmtpd offers AUTH only over TLS; the client sends the password only over TLS too,
    # except to loopback, where it finds no AUTH to use.
    _, port = smtp_server(tls_context=server_tls, auth_require_tls=True)
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(config(port, user=USER, password=PASSWORD), "s", "b\n")
    assert str(info.value) == (
        "the server does not offer AUTH before STARTTLS (set starttls), and a user is set"
    )


async def test_connection_refused(dead_port: int) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(config(dead_port), "s", "b\n")
    assert str(info.value) == f"connection refused by 127.0.0.1:{dead_port}"


async def test_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    async with raw_server(silent) as port, asyncio.timeout(10):
        start = time.monotonic()
        with pytest.raises(NotifyError) as info:
            await send_mail(config(port, timeout=0.5), "s", "b\n")
        elapsed = time.monotonic() - start
    assert str(info.value) == "timed out after 0.5s (waiting for the greeting)"
    assert elapsed < 2.0


async def test_cancellation_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns when the client has closed its end
        closed.set()

    async with raw_server(silent) as port, asyncio.timeout(10):
        task = asyncio.create_task(send_mail(config(port, timeout=30), "s", "b\n"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed.wait()


# ------------------------------------------------- scripted servers for the odd cases


def scripted(replies: dict[str, bytes], seen: list[bytes], greeting: bytes = b"220 hi\r\n") -> Any:
    """A raw SMTP server: `replies` by command verb (default "250 ok"), DATA handled."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        while line := await reader.readline():
            seen.append(line)
            verb = re.split(rb"[ :\r\n]", line, maxsplit=1)[0].decode().upper()
            if verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                seen.append(await reader.readuntil(b"\r\n.\r\n"))
            writer.write(replies.get(verb, b"250 ok\r\n"))
            if verb == "QUIT":
                await writer.drain()
                return

    return handler


async def test_helo_when_ehlo_is_refused() -> None:
    seen: list[bytes] = []
    handler = scripted({"EHLO": b"502 5.5.1 not implemented\r\n", "QUIT": b"221 bye\r\n"}, seen)
    async with raw_server(handler) as port, asyncio.timeout(10):
        await send_mail(config(port, recipients=("ops@example.com",)), "s", ".x\n")
    assert seen[:5] == [
        b"EHLO client.test\r\n",
        b"HELO client.test\r\n",
        b"MAIL FROM:<checker@example.com>\r\n",
        b"RCPT TO:<ops@example.com>\r\n",
        b"DATA\r\n",
    ]
    assert seen[5].endswith(b"\r\n\r\n..x\r\n.\r\n")  # dot-stuffed on the wire
    assert seen[6:] == [b"QUIT\r\n"]


async def test_refusal_is_followed_by_quit() -> None:
    seen: list[bytes] = []
    handler = scripted({"MAIL": b"553 5.7.1 sender\r\n", "QUIT": b"221 bye\r\n"}, seen)
    async with raw_server(handler) as port, asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(config(port), "s", "b\n")
    assert str(info.value) == "sender (MAIL FROM) refused: 553 5.7.1 sender"
    assert seen[-1] == b"QUIT\r\n"


async def test_data_after_starttls_is_refused(client_tls: ssl.SSLContext) -> None:
    seen: list[bytes] = []
    replies = {
        "EHLO": b"250-mx.test\r\n250 STARTTLS\r\n",
        "STARTTLS": b"220 go ahead\r\n250 injected\r\n",  # in one write: one segment
    }
    async with raw_server(scripted(replies, seen)) as port, asyncio.timeout(10):
        with pytest.raises(NotifyError, match="sent data after agreeing to STARTTLS"):
            await send_mail(config(port, starttls=True, ssl_context=client_tls), "s", "b\n")


@pytest.mark.parametrize(
    ("greeting", "message"),
    [
        (b"554 5.7.1 go away\r\n", "the server refused the session: 554 5.7.1 go away"),
        (b"HTTP/1.1 400 Bad Request\r\n", "malformed reply from the server: HTTP/1.1 400"),
    ],
)
async def test_bad_greetings(greeting: bytes, message: str) -> None:
    handler = scripted({}, [], greeting=greeting)
    async with raw_server(handler) as port, asyncio.timeout(10):
        with pytest.raises(NotifyError, match=f"^{re.escape(message)}"):
            await send_mail(config(port, timeout=2.0), "s", "b\n")


async def test_server_hangs_up_mid_session() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()  # EHLO, then the connection is dropped

    async with raw_server(rude) as port, asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await send_mail(config(port, timeout=2.0), "s", "b\n")
    assert str(info.value) == "the server closed the connection (waiting for the reply to EHLO)"


# ---------------------------------------------------------------- the webhook


class WebhookSink:
    """A tiny HTTP server handler: reads the head and a Content-Length body, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[bytes, bytes]] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        length = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)\r$", head)
        assert length is not None
        body = await reader.readexactly(int(length.group(1)))
        self.requests.append((head, body))
        writer.write(
            f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()


async def test_webhook_posts_json() -> None:
    sink = WebhookSink()
    body = summary_json(RUN, CHANGES)
    async with raw_server(sink) as port, asyncio.timeout(10):
        status = await post_webhook(f"http://127.0.0.1:{port}/hook?t=1", body, client_config())
    assert status == 200
    [(head, got)] = sink.requests
    assert head.startswith(b"POST /hook?t=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert got == body


async def test_webhook_over_https(server_tls: ssl.SSLContext, ca_file: str) -> None:
    sink = WebhookSink(204)
    async with raw_server(sink, server_tls) as port, asyncio.timeout(10):
        status = await post_webhook(f"https://127.0.0.1:{port}/", b"{}", client_config(ca_file))
    assert status == 204
    assert sink.requests[0][1] == b"{}"


async def test_webhook_error_status() -> None:
    async with raw_server(WebhookSink(500)) as port, asyncio.timeout(10):
        with pytest.raises(NotifyError) as info:
            await post_webhook(f"http://127.0.0.1:{port}/secret-token", b"{}", client_config())
    assert str(info.value) == "HTTP 500 Whatever"


async def test_webhook_refused_and_invalid(dead_port: int) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(NotifyError, match=r"^refused: connection refused$"):
            await post_webhook(f"http://127.0.0.1:{dead_port}/", b"{}", client_config())
    with pytest.raises(NotifyError, match=r"^invalid webhook URL: unsupported scheme 'ftp'"):
        await post_webhook("ftp://example.com/", b"{}", client_config())


async def test_webhook_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as port, asyncio.timeout(10):
        start = time.monotonic()
        with pytest.raises(NotifyError, match=r"^timeout: no answer within 0.3s$"):
            await post_webhook(f"http://127.0.0.1:{port}/", b"{}", client_config(), timeout=0.3)
    assert time.monotonic() - start < 2.0


# ------------------------------------------------------------------ notify()


async def test_notify_sends_to_both(smtp_server: StartSMTP) -> None:
    recorder, smtp_port = smtp_server()
    sink = WebhookSink()
    async with raw_server(sink) as port, asyncio.timeout(10):
        lines = await notify(
            CHANGES,
            RUN,
            webhook=f"http://127.0.0.1:{port}/hook",
            webhook_client=client_config(),
            smtp=config(smtp_port),
        )
    assert lines == ["webhook: sent (HTTP 200)", "mail: sent to 2 recipients"]
    assert json.loads(sink.requests[0][1])["changes"] == CHANGE_DICTS
    msg = recorder.message()
    assert msg["Subject"] == "checker: 2 down, 1 back up (3 changes)"
    assert "DOWN  https://a.example/ (line 4): 200 -> 503" in msg.get_content()


async def test_notify_one_channel_failing(dead_port: int) -> None:
    sink = WebhookSink()
    async with raw_server(sink) as port, asyncio.timeout(10):
        lines = await notify(
            CHANGES,
            RUN,
            webhook=f"http://127.0.0.1:{port}/hook",
            webhook_client=client_config(),
            smtp=config(dead_port, recipients=("ops@example.com",)),
        )
    assert lines == [
        "webhook: sent (HTTP 200)",
        f"mail: failed: connection refused by 127.0.0.1:{dead_port}",
    ]
    assert len(sink.requests) == 1


async def test_notify_both_failing(dead_port: int) -> None:
    async with raw_server(WebhookSink(503)) as port, asyncio.timeout(10):
        lines = await notify(
            CHANGES,
            RUN,
            webhook=f"http://127.0.0.1:{port}/hook",
            webhook_client=client_config(),
            smtp=config(dead_port, recipients=("ops@example.com",)),
        )
    assert lines == [
        "webhook: failed: HTTP 503 Whatever",
        f"mail: failed: connection refused by 127.0.0.1:{dead_port}",
    ]


async def test_notify_without_changes_sends_nothing(smtp_server: StartSMTP) -> None:
    recorder, smtp_port = smtp_server()
    sink = WebhookSink()
    async with raw_server(sink) as port, asyncio.timeout(10):
        lines = await notify(
            [],
            RUN,
            webhook=f"http://127.0.0.1:{port}/hook",
            webhook_client=client_config(),
            smtp=config(smtp_port),
        )
    assert lines == []
    assert sink.requests == [] and recorder.envelopes == []


async def test_notify_without_channels() -> None:
    assert await notify(CHANGES, RUN, webhook=None, webhook_client=None, smtp=None) == []


async def test_notify_webhook_without_client_is_a_bug() -> None:
    with pytest.raises(ValueError, match="webhook_client"):
        await notify(CHANGES, RUN, webhook="http://x/", webhook_client=None, smtp=None)


def test_alerts_say_since_when_what_went_wrong_where_and_which_reports() -> None:
    run = {**RUN, "host": "checker-box", "reports": ["/srv/r/status-x.json"]}
    (down,) = typed(
        [
            {
                **CHANGE_DICTS[0],
                "after": "refused",
                "since": "2024-05-06T10:00:03.000Z",
                "detail": "connection refused",
            }
        ]
    )
    body = json.loads(summary_json(run, [down]))
    assert body["run"]["host"] == "checker-box"
    assert body["run"]["reports"] == ["/srv/r/status-x.json"]
    assert body["changes"][0]["since"] == "2024-05-06T10:00:03.000Z"
    assert body["changes"][0]["detail"] == "connection refused"
    _, text = summary_text(run, [down])
    lines = text.splitlines()
    assert lines[0] == (
        "DOWN  https://a.example/ (line 4): 200 -> refused (connection refused),"
        " since 2024-05-06T10:00:03.000Z"
    )
    assert "checked from checker-box" in lines and "reports: /srv/r/status-x.json" in lines
