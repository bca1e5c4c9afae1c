"""The SMTP client's pure parts, with byte vectors and no sockets."""

from __future__ import annotations

import asyncio
import base64
import email
import email.header
import email.policy
import ssl

import pytest

from checker.notify import NotifyError
from checker.notify.smtp import (
    MAX_LINE,
    SMTPConfig,
    auth_login,
    auth_mechanisms,
    auth_plain,
    build_message,
    check_address,
    describe,
    dot_stuff,
    encode_subject,
    is_loopback,
    parse_ehlo,
    parse_reply,
    parse_reply_line,
    read_reply,
)

# ------------------------------------------------------------------ replies


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"220 mx.example ESMTP ready\r\n"], (220, "mx.example ESMTP ready")),
        ([b"250\r\n"], (250, "")),  # Reply-code [ SP textstring ]: the text is optional
        ([b"250 ok\n"], (250, "ok")),  # bare LF: lenient
        ([b"354 go ahead"], (354, "go ahead")),  # no line ending at all
        (
            [b"250-mx.example\r\n", b"250-PIPELINING\r\n", b"250 AUTH PLAIN LOGIN\r\n"],
            (250, "mx.example\nPIPELINING\nAUTH PLAIN LOGIN"),
        ),
        ([b"250-\r\n", b"250 last\r\n"], (250, "\nlast")),
        ([b"554 5.7.1 caf\xc3\xa9 \xff\r\n"], (554, "5.7.1 caf\u00e9 \ufffd")),
    ],
)
def test_parse_reply(lines: list[bytes], expected: tuple[int, str]) -> None:
    assert parse_reply(lines) == expected


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty reply"),
        ([b"hello\r\n"], "malformed reply from the server: hello"),
        ([b"600 nope\r\n"], "malformed"),  # Reply-code starts with 2..5
        ([b"25 short\r\n"], "malformed"),
        ([b"250x\r\n"], "malformed"),
        ([b"250-a\r\n", b"251 b\r\n"], "codes 250 and 251"),
        ([b"250-a\r\n", b"250-b\r\n"], "continuation"),
        ([b"250 a\r\n", b"250 b\r\n"], "continuation"),
    ],
)
def test_parse_reply_refuses(lines: list[bytes], message: str) -> None:
    with pytest.raises(NotifyError, match=message):
        parse_reply(lines)


def test_parse_reply_line_marks_the_last_line() -> None:
    assert parse_reply_line(b"250-more\r\n").last is False
    assert parse_reply_line(b"250 done\r\n").last is True
    assert parse_reply_line(b"250\r\n").last is True


def test_malformed_reply_is_quoted_without_control_characters() -> None:
    with pytest.raises(NotifyError) as info:
        parse_reply([b"hi\x1b[31m there\r\n"])
    assert "\x1b" not in str(info.value)
    assert "\n" not in str(info.value)


def test_describe_is_one_short_line() -> None:
    assert describe(550, "5.1.1 no such user\nsecond line") == (
        "550 5.1.1 no such user / second line"
    )
    long = describe(554, "x" * 1000)
    assert len(long) == 200 and long.endswith("...")
    assert describe(550, "evil\rSubject: x\x00") == "550 evil?Subject: x?"


def _reader(chunks: list[bytes], *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=MAX_LINE)
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


EHLO_REPLY = b"250-mx.example greets you\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"


async def test_read_reply_all_at_once() -> None:
    code, text = await read_reply(_reader([EHLO_REPLY]))
    assert (code, text) == (250, "mx.example greets you\nSIZE 1000\nSTARTTLS")


async def test_read_reply_one_byte_at_a_time() -> None:
    reader = _reader([EHLO_REPLY[i : i + 1] for i in range(len(EHLO_REPLY))])
    assert await read_reply(reader) == (250, "mx.example greets you\nSIZE 1000\nSTARTTLS")


async def test_read_reply_leaves_the_next_reply() -> None:
    reader = _reader([b"220 hi\r\n250 ok\r\n"])
    assert await read_reply(reader) == (220, "hi")
    assert await read_reply(reader) == (250, "ok")


@pytest.mark.parametrize("data", [b"", b"250-first\r\n", b"250 no newline"])
async def test_read_reply_eof(data: bytes) -> None:
    with pytest.raises(NotifyError, match=r"closed the connection \(waiting for X\)"):
        await read_reply(_reader([data]), "waiting for X")


async def test_read_reply_caps_line_length() -> None:
    with pytest.raises(NotifyError, match="longer than 4096 bytes"):
        await read_reply(_reader([b"250 " + b"x" * MAX_LINE + b"\r\n"]))


async def test_read_reply_caps_line_count() -> None:
    with pytest.raises(NotifyError, match="longer than 64 lines"):
        await read_reply(_reader([b"250-x\r\n" * 100], eof=False))


# --------------------------------------------------------------------- EHLO


def test_parse_ehlo() -> None:
    text = "mx.example greets you\nPIPELINING\nsize 35882577\nAUTH LOGIN PLAIN\n8BITMIME"
    assert parse_ehlo(text) == {
        "PIPELINING": "",
        "SIZE": "35882577",
        "AUTH": "LOGIN PLAIN",
        "8BITMIME": "",
    }
    assert parse_ehlo("just a greeting") == {}


def test_parse_ehlo_old_auth_syntax() -> None:
    ext = parse_ehlo("mx\nAUTH=LOGIN\nAUTH CRAM-MD5 plain")
    assert auth_mechanisms(ext) == ["LOGIN", "CRAM-MD5", "PLAIN"]
    assert auth_mechanisms(parse_ehlo("mx\nAUTH=LOGIN PLAIN")) == ["LOGIN", "PLAIN"]
    assert auth_mechanisms({}) == []


# --------------------------------------------------------------------- AUTH


def test_auth_plain_rfc4616_example() -> None:
    # RFC 4616 section 4: authcid "tim", password "tanstaaftanstaaf", no authzid.
    assert auth_plain("tim", "tanstaaftanstaaf") == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"


def test_auth_plain_and_login_are_utf8() -> None:
    assert base64.b64decode(auth_plain("j\u00fcrgen", "p\u00e4ss")) == (
        b"\0j\xc3\xbcrgen\0p\xc3\xa4ss"
    )
    assert auth_login("alice") == "YWxpY2U="


# ------------------------------------------------------------- dot-stuffing


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", b""),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n"),  # always ends in CRLF, so ".\r\n" can follow
        (b".\r\n", b"..\r\n"),  # the line that would end the data
        (b".hidden\r\n..two\r\nmid.dle\r\n", b"..hidden\r\n...two\r\nmid.dle\r\n"),
        (b"lf\n.dot\ncr\rend", b"lf\r\n..dot\r\ncr\r\nend\r\n"),  # bare CR/LF -> CRLF
        (b"a\r\n\r\n.\r\n", b"a\r\n\r\n..\r\n"),
    ],
)
def test_dot_stuff(message: bytes, expected: bytes) -> None:
    assert dot_stuff(message) == expected


# ------------------------------------------------------------------ message

DATE = "Mon, 06 May 2024 10:00:00 +0000"
MSGID = "<1.2.3@checker.example>"


def _build(subject: str = "checker: 1 down (1 change)", body: str = "hello\n") -> bytes:
    return build_message(
        sender="checker@example.com",
        recipients=["ops@example.com", "oncall@example.org"],
        subject=subject,
        body=body,
        date=DATE,
        message_id=MSGID,
    )


def test_build_message_bytes() -> None:
    assert _build(body="DOWN  https://x/ (line 4): 200 -> 503\n.dot\n") == (
        b"Date: Mon, 06 May 2024 10:00:00 +0000\r\n"
        b"From: checker@example.com\r\n"
        b"To: ops@example.com,\r\n oncall@example.org\r\n"
        b"Subject: checker: 1 down (1 change)\r\n"
        b"Message-ID: <1.2.3@checker.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"Auto-Submitted: auto-generated\r\n"
        b"\r\n"
        b"DOWN  https://x/ (line 4): 200 -> 503\r\n"
        b".dot\r\n"  # not stuffed yet: that is dot_stuff's job
    )


def test_build_message_has_only_crlf_line_endings() -> None:
    raw = _build(body="one\ntwo\r\nthree\rfour")
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.count(b"\r") == raw.count(b"\r\n")
    assert raw.endswith(b"three\r\nfour\r\n")


def test_non_ascii_body_is_quoted_printable_and_round_trips() -> None:
    body = "Stra\u00dfe \u2192 503\n.dot stays\n" + "x" * 2000 + "\n"
    raw = _build(body=body)
    assert raw.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content().replace("\r\n", "\n") == body


def test_non_ascii_subject_is_rfc2047_encoded() -> None:
    subject = "checker: 1 down \u2014 Stra\u00dfe " + "\u00e9" * 80
    raw = _build(subject=subject)
    assert raw.isascii()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == subject
    encoded = encode_subject(subject)
    assert encoded.startswith("=?utf-8?")
    assert all(len(line) <= 78 for line in encoded.split("\r\n"))


def test_subject_cannot_inject_a_header() -> None:
    raw = _build(subject="hi\r\nBcc: victim@example.com\n\u202eevil")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "hi??Bcc: victim@example.com??evil"


def test_ascii_subject_that_looks_encoded_is_encoded() -> None:
    assert encode_subject("=?utf-8?q?x?=").startswith("=?utf-8?")
    assert encode_subject("plain") == "plain"


@pytest.mark.parametrize(
    "address",
    ["", "a\r\nRCPT TO:<x@y>", "a@b>", "<a@b", "a b@c", "a\x00@b", "j\u00fcrgen@example.com"],
)
def test_check_address_refuses(address: str) -> None:
    with pytest.raises(ValueError):
        check_address(address)
    with pytest.raises(ValueError):
        SMTPConfig(host="mx.example", sender=address or "", recipients=("ok@example.com",))
    with pytest.raises(ValueError):
        SMTPConfig(host="mx.example", sender="ok@example.com", recipients=(address,))


# ------------------------------------------------------------------- config


def test_config_defaults_and_repr_hides_password() -> None:
    config = SMTPConfig(
        host="mx.example",
        sender="a@example.com",
        recipients=("b@example.com",),
        user="alice",
        password="hunter2",
    )
    assert config.port == 25 and config.timeout == 30.0
    assert config.helo_name  # this machine's name, or "localhost"
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"recipients": ()}, "no mail recipients"),
        ({"recipients": "b@example.com"}, "not one string"),
        ({"tls": True, "starttls": True}, "exclude each other"),
        ({"user": "alice"}, "go together"),
        ({"user": "alice", "password": "a\r\nb"}, "CR or LF"),
        ({"port": 0}, "out of range"),
        ({"timeout": 0}, "positive"),
        ({"helo_name": "bad name"}, "bad EHLO name"),
        ({"host": "mx.example\r\n"}, "bad SMTP host"),
    ],
)
def test_config_refuses(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "host": "mx.example",
        "sender": "a@example.com",
        "recipients": ("b@example.com",),
        **kw,
    }
    with pytest.raises(ValueError, match=message):
        SMTPConfig(**args)  # type: ignore[arg-type]


def test_config_takes_a_list_of_recipients() -> None:
    config = SMTPConfig(host="h", sender="a@b", recipients=["c@d", "e@f"])  # type: ignore[arg-type]
    assert config.recipients == ("c@d", "e@f")
    assert SMTPConfig(host="h", sender="a@b", recipients=("c@d",), helo_name="[127.0.0.1]")
    assert SMTPConfig(
        host="h", sender="a@b", recipients=("c@d",), ssl_context=ssl.create_default_context()
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("a.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("mail.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_header_decoding_sanity() -> None:
    # The encoded subject decodes with the standard library's own decoder too.
    words = email.header.decode_header(encode_subject("\u00e9t\u00e9"))
    assert str(email.header.make_header(words)) == "\u00e9t\u00e9"


@pytest.mark.parametrize(
    ("fqdn", "host", "expected"),
    [
        ("mail.example.org", "mail", "mail.example.org"),
        ("localhost", "web7", "web7"),  # the host name mapped to 127.0.0.1 as "localhost"
        ("localhost.localdomain", "web7.example", "web7.example"),
        ("localhost", "localhost", "localhost"),
        ("bad_name", "also bad", "localhost"),
    ],
)
def test_the_default_helo_name(
    monkeypatch: pytest.MonkeyPatch, fqdn: str, host: str, expected: str
) -> None:
    # Found by a review: mail went from checker@localhost wherever getfqdn()
    # said so, though the machine had a name.
    import socket

    from checker.notify.smtp import default_helo_name

    monkeypatch.setattr(socket, "getfqdn", lambda: fqdn)
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    assert default_helo_name() == expected
