"""smtp:// and smtps://: the greeting, EHLO, STARTTLS where offered, QUIT.

An SMTP server is up when it greets with 220 and answers EHLO with 250
(RFC 5321 4.1.1.1, 4.2). smtp:// upgrades the connection with STARTTLS when
the server offers it (RFC 3207), the certificate checked against the host and
reported like HTTPS's; a server that does not offer it is a warning, or down
with `?require_tls=1`. smtps:// is TLS from the first byte (RFC 8314). The
session always ends with QUIT (not waiting long for its answer).

What the report says: `status` the last reply's code, `reason` its first
line, `banner` the greeting's first line. A 4xx or 5xx greeting is down, its
text in `error_detail`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from checker.http.client import ClientConfig, Trace, connect, map_exceptions, upgrade
from checker.http.connections import close_stream
from checker.http.errors import CheckError, IncompleteResponse, ProtocolError
from checker.protocols.replies import Reply, ReplyError, ReplyReader
from checker.url import URL

HELO_NAME = "checker.invalid"  # RFC 5321 4.1.4: a name; ours says what we are
QUIT_WAIT = 1.0  # seconds for QUIT's answer; it changes nothing


class SMTPReplyError(CheckError):
    """A greeting or an answer that is not a yes: the server said no."""

    category = "smtp"

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return 400 <= self.code <= 499  # "try again later"


@dataclass(slots=True)
class SMTPOutcome:
    greeting: Reply
    last: Reply
    tls: bool  # the session ended up encrypted
    warnings: list[str] = field(default_factory=list)


async def check_smtp(url: URL, config: ClientConfig, trace: Trace) -> SMTPOutcome:
    reader, writer = await connect(url, config, trace)
    replies = ReplyReader()
    try:
        greeting = await _reply(reader, replies, "the greeting")
        if greeting.code != 220:
            raise SMTPReplyError(f"greeting: {_said(greeting)}", greeting.code)
        ehlo = await _command(reader, writer, replies, f"EHLO {HELO_NAME}")
        if ehlo.code != 250:
            raise SMTPReplyError(f"EHLO: {_said(ehlo)}", ehlo.code)
        outcome = SMTPOutcome(greeting, ehlo, url.scheme == "smtps")
        if url.scheme == "smtp":
            offered = any(
                line.strip().upper().split(" ")[0] == "STARTTLS"
                for line in ehlo.text.split("\n")[1:]
            )
            if offered:
                answer = await _command(reader, writer, replies, "STARTTLS")
                if answer.code != 220:
                    raise SMTPReplyError(f"STARTTLS: {_said(answer)}", answer.code)
                if replies.leftover:
                    # RFC 3207 5: nothing may come before the handshake.
                    raise ProtocolError("the server sent data before the STARTTLS handshake")
                await upgrade(writer, url, config, trace)
                outcome.tls = True
                replies = ReplyReader()
                outcome.last = await _command(reader, writer, replies, f"EHLO {HELO_NAME}")
                if outcome.last.code != 250:
                    raise SMTPReplyError(
                        f"EHLO after STARTTLS: {_said(outcome.last)}", outcome.last.code
                    )
            elif url.target == "?require_tls=1":
                raise SMTPReplyError("the server does not offer STARTTLS (require_tls=1)", 530)
            else:
                outcome.warnings.append(
                    "the server does not offer STARTTLS: mail to it is sent in clear"
                )
        await _quit(reader, writer, replies)
        return outcome
    finally:
        await close_stream(writer)


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: ReplyReader, line: str
) -> Reply:
    with map_exceptions():
        writer.write(line.encode("ascii") + b"\r\n")
        await writer.drain()
    return await _reply(reader, replies, line.split(" ")[0])


async def _reply(reader: asyncio.StreamReader, replies: ReplyReader, step: str) -> Reply:
    """The next whole reply; a peer that speaks something else is a protocol error."""
    try:
        found = replies.feed(b"")
        while found is None:
            with map_exceptions():
                data = await reader.read(4096)
            if not data:
                raise IncompleteResponse(f"the server closed the connection ({step})")
            found = replies.feed(data)
        return found
    except ReplyError as exc:
        raise ProtocolError(f"not an SMTP reply ({step}): {exc}") from None


async def _quit(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: ReplyReader
) -> None:
    with contextlib.suppress(CheckError, TimeoutError):
        async with asyncio.timeout(QUIT_WAIT):
            await _command(reader, writer, replies, "QUIT")


def _said(reply: Reply) -> str:
    text = " / ".join(reply.text.split("\n"))
    shown = f"{reply.code} {text}".rstrip()
    return shown if len(shown) <= 200 else shown[:197] + "..."
