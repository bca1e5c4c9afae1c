"""A small SMTP client (RFC 5321) on asyncio streams, for alert mail.

The first half is pure: parsing replies and EHLO keywords, building the
message, dot-stuffing, the AUTH strings; all tested with byte vectors and no
socket. The second half, `send_mail`, is the only code here that touches a
socket. Everything that goes wrong there leaves as a `NotifyError` (low-level
exceptions are mapped once, in `_map_errors`), and the connection is closed on
every path, cancellation included.

Left out on purpose, each because an alert does not need it:
- PIPELINING: one command at a time; an alert is a handful of commands.
- SMTPUTF8: envelope addresses must be ASCII. Subject and body may be anything.
- 8BITMIME: a body that is not short-lined ASCII goes quoted-printable, which
  every server takes.
- MX lookup: `host` is a relay or submission server, as for any mail program.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate, make_msgid

from checker.http.connections import close_stream
from checker.notify.errors import NotifyError
from checker.notify.message import clean
from checker.protocols import replies

# One reply line. RFC 5321 4.5.3.1.5 allows 512 octets; we take 8 times that,
# because some servers send long banners, and refuse beyond.
MAX_LINE = 4096
# Lines in one multi-line reply (a big server's EHLO has about 15).
MAX_REPLY_LINES = 64
# A line of message data may be 998 octets plus CRLF (RFC 5321 4.5.3.1.6).
MAX_DATA_LINE = 998
# How much of a server's reply text an error message quotes.
QUOTE_LIMIT = 200
# After the mail was accepted, QUIT only has this long: a server that does not
# answer it costs nothing but the wait.
QUIT_TIMEOUT = 2.0

_PLAINTEXT_AUTH = (
    "refusing to send the password to {host} over an unencrypted connection; "
    "set starttls (port 587) or tls (port 465) - plain text is allowed only to a loopback host"
)


# ---------------------------------------------------------------- pure parts

# Replies are parsed by `checker.protocols.replies` (shared with the smtp://
# check); here their errors become NotifyError, and SMTP has no 1xx replies.
ReplyLine = replies.ReplyLine


def parse_reply_line(line: bytes) -> ReplyLine:
    """One line of a reply, with or without its line ending."""
    try:
        parsed = replies.parse_reply_line(line)
    except replies.ReplyError:
        parsed = None
    if parsed is None or parsed.code < 200:
        raise NotifyError(f"malformed reply from the server: {_quote(line)}")
    return parsed


def parse_reply(lines: Sequence[bytes]) -> tuple[int, str]:
    """A whole reply: (code, the lines' texts joined with LF)."""
    for line in lines:
        parse_reply_line(line)  # each line well formed, in SMTP's terms
    try:
        reply = replies.parse_reply(lines)
    except replies.ReplyError as exc:
        raise NotifyError(f"malformed reply from the server: {exc}") from None
    return reply.code, reply.text


def describe(code: int, text: str) -> str:
    """A reply as an error message quotes it: one line, cleaned and cut short."""
    # Lines as parse_reply joined them; a CR inside one is shown as "?" by clean.
    joined = " / ".join(text.split("\n"))
    return clean(f"{code} {joined}".rstrip(), QUOTE_LIMIT)


def parse_ehlo(text: str) -> dict[str, str]:
    """The EHLO reply's extensions: {KEYWORD: parameters} (RFC 5321 4.1.1.1).

    The first line is the server's name and greeting, not an extension.
    """
    extensions: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword.startswith("AUTH="):
            # Pre-RFC 4954 syntax some servers still send next to the real one,
            # for old Outlook versions: "AUTH=LOGIN PLAIN".
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if keyword == "AUTH" and "AUTH" in extensions:
            params = f"{extensions['AUTH']} {params}"
        if keyword:
            extensions[keyword] = params.strip()
    return extensions


def auth_mechanisms(extensions: Mapping[str, str]) -> list[str]:
    return extensions.get("AUTH", "").upper().split()


def auth_plain(user: str, password: str) -> str:
    """The AUTH PLAIN argument (RFC 4616): base64 of NUL user NUL password."""
    return _b64(f"\0{user}\0{password}")


def auth_login(text: str) -> str:
    """One AUTH LOGIN answer (the user name, then the password): base64."""
    return _b64(text)


def dot_stuff(message: bytes) -> bytes:
    """The message as DATA sends it, without the final "." line.

    RFC 5321 4.5.2: a line that starts with "." gets one more, so no line of the
    message can be taken for the end of the data; the server removes it again.
    Line endings become CRLF (4.1.1.4: a bare CR or LF must not be sent), and
    the result ends with CRLF so that ".\\r\\n" after it ends the data.
    """
    lines = re.split(rb"\r\n|\r|\n", message)
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def build_message(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    date: str,
    message_id: str,
) -> bytes:
    """A plain-text UTF-8 message (RFC 5322, MIME), CRLF line endings, not dot-stuffed.

    `date` and `message_id` are arguments so that the bytes are a function of
    the inputs (`send_mail` passes `formatdate()` and `make_msgid()`).
    """
    for address in (sender, *recipients):
        check_address(address)
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8", "replace")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    if data.isascii() and all(len(line) <= MAX_DATA_LINE for line in data.split(b"\n")):
        encoding = "7bit"
    else:
        encoding = "quoted-printable"
        # istext: "\n" stays a line break; lines are cut at 76 with soft breaks.
        data = binascii.b2a_qp(data, istext=True)
    headers = [
        ("Date", date),
        ("From", sender),
        ("To", ",\r\n ".join(recipients)),  # folded: one recipient per line
        ("Subject", encode_subject(subject)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", encoding),
        # RFC 3834: a machine wrote this; vacation responders should not answer.
        ("Auto-Submitted", "auto-generated"),
    ]
    for name, value in (("Date", date), ("Message-ID", message_id)):
        if _CONTROL.search(value) or not value.isascii():
            raise ValueError(f"{name} must be printable ASCII: {value!r}")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("ascii") + b"\r\n" + data.replace(b"\n", b"\r\n")


def encode_subject(subject: str) -> str:
    """The Subject field's value: as it is if plain ASCII, else RFC 2047 encoded words."""
    subject = clean(subject, 500)  # one line, whatever the caller passed
    if subject.isascii() and len(subject) <= 900 and "=?" not in subject:
        return subject
    # Folded into encoded words of at most 76 characters, joined by CRLF SP.
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")


# RFC 5321 4.1.2 Path = "<" Mailbox ">": we write the brackets, so an address
# may hold none, nor anything that could end the command line or the path.
_BAD_ADDRESS_CHAR = re.compile(r"[\x00-\x20\x7f<>]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_address(address: str) -> str:
    """`address` if it can go in MAIL FROM / RCPT TO / From / To as it is; else ValueError."""
    if not address:
        raise ValueError("empty mail address")
    bad = _BAD_ADDRESS_CHAR.search(address)
    if bad:
        raise ValueError(f"mail address {address!r} contains {bad.group()!r}")
    if not address.isascii():
        raise ValueError(f"mail address {address!r} is not ASCII (SMTPUTF8 is not supported)")
    if len(address) > 254:
        raise ValueError(f"mail address longer than 254 characters: {address[:40]!r}...")
    return address


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# RFC 5321 4.1.1.1: EHLO takes a domain or an address literal.
_HELO = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\]")


def default_helo_name() -> str:
    """This machine's name for EHLO (and the default sender's domain), or
    "localhost" if it has no usable one. Its fully qualified name, or else
    its host name: many machines map their name to 127.0.0.1 as
    "localhost" first in /etc/hosts, and getfqdn() then says "localhost"
    (a mail from checker@localhost, found by a review)."""
    for name in (socket.getfqdn(), socket.gethostname()):
        if _HELO.fullmatch(name) and name.split(".")[0].lower() != "localhost":
            return name
    return "localhost"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True  # RFC 6761 6.3: always the loopback interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class SMTPConfig:
    """Where and how to send alert mail. Invalid settings raise ValueError here,
    when the command line is read, rather than when the first alert goes out."""

    host: str
    port: int = 25
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False  # EHLO, STARTTLS, and EHLO again over TLS (port 587)
    tls: bool = False  # TLS from the first byte (port 465)
    ssl_context: ssl.SSLContext | None = None  # None: the system's CAs, verifying
    timeout: float = 30.0  # the whole exchange, connect to the server accepting the mail
    helo_name: str = field(default_factory=default_helo_name)

    def __post_init__(self) -> None:
        if not self.host or _BAD_ADDRESS_CHAR.search(self.host):
            raise ValueError(f"bad SMTP host {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"SMTP port {self.port} out of range")
        if isinstance(self.recipients, str):
            raise ValueError("recipients must be a sequence of addresses, not one string")
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.recipients:
            raise ValueError("no mail recipients")
        for address in (self.sender, *self.recipients):
            check_address(address)
        if self.tls and self.starttls:
            raise ValueError("tls (TLS from the start, port 465) and starttls exclude each other")
        if (self.user is None) != (self.password is None):
            raise ValueError("SMTP user and password go together")
        for secret in (self.user, self.password):
            if secret is not None and re.search(r"[\0\r\n]", secret):
                raise ValueError("NUL, CR or LF in the SMTP user or password")
        if not self.timeout > 0:
            raise ValueError(f"SMTP timeout must be positive: {self.timeout}")
        if not _HELO.fullmatch(self.helo_name):
            raise ValueError(f"bad EHLO name {self.helo_name!r}")


# --------------------------------------------------------------- the exchange


async def send_mail(config: SMTPConfig, subject: str, body: str) -> None:
    """Send one plain-text mail to every recipient, or raise NotifyError.

    Returns once the server has accepted the message for all recipients. The
    whole exchange runs under `config.timeout`; QUIT afterwards has a short
    deadline of its own and cannot fail the send.
    """
    plaintext = not (config.tls or config.starttls)
    if config.user is not None and plaintext and not is_loopback(config.host):
        # Checked again on the connection; this way it fails before connecting.
        raise NotifyError(_PLAINTEXT_AUTH.format(host=config.host))
    message = build_message(
        sender=config.sender,
        recipients=config.recipients,
        subject=subject,
        body=body,
        date=formatdate(localtime=True),
        message_id=make_msgid(domain=config.helo_name.strip("[]")),
    )
    context = config.ssl_context or ssl.create_default_context()
    step = _Step(f"connecting to {config.host}:{config.port}")
    session: _Session | None = None
    try:
        async with asyncio.timeout(config.timeout):
            with _map_errors(config, step):
                reader, writer = await asyncio.open_connection(
                    config.host,
                    config.port,
                    ssl=context if config.tls else None,
                    server_hostname=config.host if config.tls else None,
                    limit=MAX_LINE,
                )
                session = _Session(config, context, reader, writer, step)
                await session.deliver(message)
    except BaseException as exc:
        if session is not None:
            await session.close_after(exc)
        if isinstance(exc, TimeoutError) and not isinstance(exc, NotifyError):
            # Our deadline: a kernel timeout was mapped inside `_map_errors`.
            raise NotifyError(f"timed out after {config.timeout:g}s ({step})") from None
        raise
    assert session is not None
    await session.quit()


class _Step:
    """What the exchange is doing, for the message of an error that interrupts it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Session:
    def __init__(
        self,
        config: SMTPConfig,
        context: ssl.SSLContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        step: _Step,
    ) -> None:
        self.config = config
        self.context = context
        self.reader = reader
        self.writer = writer
        self.step = step
        # Whether the last reply was read whole and nothing is owed: then a
        # refusal can be followed by a polite QUIT instead of dropping the line.
        self.in_sync = False

    async def deliver(self, message: bytes) -> None:
        config = self.config
        self.step.text = "waiting for the greeting"
        code, text = await self.read_reply()
        if code != 220:
            raise NotifyError(f"the server refused the session: {describe(code, text)}")
        extensions = await self.hello()
        if config.starttls:
            extensions = await self.start_tls(extensions)
        if config.user is not None and config.password is not None:
            await self.authenticate(extensions, config.user, config.password)
        await self.command(
            f"MAIL FROM:<{config.sender}>", (250,), "sender (MAIL FROM) refused", "MAIL FROM"
        )
        refused = []
        for rcpt in config.recipients:
            code, text = await self.send(f"RCPT TO:<{rcpt}>", "RCPT TO")
            if code not in (250, 251):  # 251: "not local; will forward"
                refused.append(f"{rcpt} ({describe(code, text)})")
        if refused:
            n = len(refused)
            raise NotifyError(f"{n} recipient{'s' if n > 1 else ''} refused: {'; '.join(refused)}")
        await self.command("DATA", (354,), "DATA refused")
        self.step.text = "sending the message"
        self.in_sync = False
        self.writer.write(dot_stuff(message) + b".\r\n")
        await self.writer.drain()
        self.step.text = "waiting for the reply to the message"
        code, text = await self.read_reply()
        if code != 250:
            raise NotifyError(f"message refused: {describe(code, text)}")

    async def hello(self) -> dict[str, str]:
        name = self.config.helo_name
        code, text = await self.send(f"EHLO {name}", "EHLO")
        if code == 250:
            return parse_ehlo(text)
        if 500 <= code < 600:
            # RFC 5321 3.2: a server without the extensions refuses EHLO; HELO then.
            await self.command(f"HELO {name}", (250,), "HELO refused")
            return {}
        raise NotifyError(f"EHLO refused: {describe(code, text)}")

    async def start_tls(self, extensions: Mapping[str, str]) -> dict[str, str]:
        if "STARTTLS" not in extensions:
            raise NotifyError(
                f"{self.config.host}:{self.config.port} does not offer STARTTLS, "
                "and starttls is set (mail and password would go unencrypted)"
            )
        await self.command("STARTTLS", (220,), "STARTTLS refused")
        # Bytes already waiting were sent in plain text before TLS, and would be
        # read as if they came over it: the response injection that RFC 3207
        # section 6 warns about (and CVE-2011-0411). StreamReader has no public
        # way to look, hence the private attribute.
        if getattr(self.reader, "_buffer", b""):
            raise NotifyError("the server sent data after agreeing to STARTTLS; refused")
        self.step.text = "during the TLS handshake"
        self.in_sync = False
        await self.writer.start_tls(self.context, server_hostname=self.config.host)
        self.in_sync = True
        # RFC 3207 4.2: forget what the server said before TLS, and ask again.
        return await self.hello()

    async def authenticate(self, extensions: Mapping[str, str], user: str, password: str) -> None:
        if self.writer.get_extra_info("ssl_object") is None and not is_loopback(self.config.host):
            raise NotifyError(_PLAINTEXT_AUTH.format(host=self.config.host))
        mechanisms = auth_mechanisms(extensions)
        if "PLAIN" in mechanisms:
            await self.command(
                f"AUTH PLAIN {auth_plain(user, password)}", (235,), "authentication failed", "AUTH"
            )
        elif "LOGIN" in mechanisms:
            await self.command("AUTH LOGIN", (334,), "AUTH LOGIN refused")
            await self.command(auth_login(user), (334,), "authentication failed", "AUTH")
            await self.command(auth_login(password), (235,), "authentication failed", "AUTH")
        elif not mechanisms:
            hint = " before STARTTLS (set starttls)" if "STARTTLS" in extensions else ""
            raise NotifyError(f"the server does not offer AUTH{hint}, and a user is set")
        else:
            offered = clean(" ".join(mechanisms), 100)
            raise NotifyError(f"the server offers no AUTH PLAIN or LOGIN (only {offered})")

    async def command(
        self, line: str, expect: tuple[int, ...], failure: str, name: str | None = None
    ) -> tuple[int, str]:
        """Send `line`; a reply other than `expect` raises "failure: <reply>"."""
        code, text = await self.send(line, name or line.split(" ", 1)[0])
        if code not in expect:
            raise NotifyError(f"{failure}: {describe(code, text)}")
        return code, text

    async def send(self, line: str, name: str) -> tuple[int, str]:
        """Send one command line and read its reply. `name` is what errors call it
        (never the line itself, which may carry a password)."""
        if "\r" in line or "\n" in line:
            raise ValueError(f"CR or LF in an SMTP command: {name}")  # a bug, not the server
        self.step.text = f"waiting for the reply to {name}"
        self.in_sync = False
        self.writer.write(line.encode("ascii") + b"\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def read_reply(self) -> tuple[int, str]:
        reply = await read_reply(self.reader, self.step)
        self.in_sync = True
        return reply

    async def close_after(self, exc: BaseException) -> None:
        """Close after `exc`: politely if the server just said no, else at once."""
        if isinstance(exc, NotifyError) and self.in_sync:
            await self.quit()
        else:
            await close_stream(self.writer, abort=True)

    async def quit(self) -> None:
        """QUIT (RFC 5321 4.1.1.10), then close; its failure changes nothing."""
        try:
            async with asyncio.timeout(min(QUIT_TIMEOUT, self.config.timeout)):
                with contextlib.suppress(NotifyError, OSError):
                    self.writer.write(b"QUIT\r\n")
                    await self.writer.drain()
                    await self.read_reply()
        except TimeoutError:
            pass
        finally:
            await close_stream(self.writer)


async def read_reply(
    reader: asyncio.StreamReader, step: object = "reading a reply"
) -> tuple[int, str]:
    """Read one whole reply off `reader` and parse it; `step` is for the error
    message when the server hangs up instead."""
    lines: list[bytes] = []
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            # StreamReader turns LimitOverrunError into ValueError for readline().
            raise NotifyError(f"reply line longer than {MAX_LINE} bytes") from None
        if not line.endswith(b"\n"):
            raise NotifyError(f"the server closed the connection ({step})")
        lines.append(line)
        if parse_reply_line(line).last:
            return parse_reply(lines)
        if len(lines) >= MAX_REPLY_LINES:
            raise NotifyError(f"reply longer than {MAX_REPLY_LINES} lines")


@contextlib.contextmanager
def _map_errors(config: SMTPConfig, step: _Step) -> Iterator[None]:
    """Turn the standard library's exceptions into NotifyError, in one place."""
    where = f"{config.host}:{config.port}"
    try:
        yield
    except (NotifyError, asyncio.CancelledError):
        raise
    except ssl.SSLCertVerificationError as exc:
        detail = getattr(exc, "verify_message", None) or exc
        raise NotifyError(f"TLS certificate of {config.host} not accepted: {detail}") from None
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        hint = ""
        if reason == "WRONG_VERSION_NUMBER":
            hint = " (is tls set for a port that starts in plain text? 587 wants starttls)"
        raise NotifyError(f"TLS failed ({step}): {reason}{hint}") from None
    except socket.gaierror as exc:
        raise NotifyError(f"cannot resolve {config.host}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise NotifyError(f"connection refused by {where}") from None
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        raise NotifyError(f"connection reset by {where} ({step})") from None
    except TimeoutError:
        # Our deadline is outside this block, so this is the kernel's ETIMEDOUT.
        raise NotifyError(f"connection to {where} timed out (by the operating system)") from None
    except OSError as exc:
        raise NotifyError(f"{exc.strerror or exc} ({step}, {where})") from None


def _quote(line: bytes) -> str:
    return clean(replies.quote(line, QUOTE_LIMIT * 2), QUOTE_LIMIT)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
