"""What the protocol sessions share: the next reply off a stream, mapped once,
and what a session comes to."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from checker.http.client import map_exceptions
from checker.http.errors import CheckError, IncompleteResponse, ProtocolError
from checker.protocols.replies import Reply, ReplyError, ReplyReader


async def next_reply(
    reader: asyncio.StreamReader, replies: ReplyReader, step: str, protocol: str
) -> Reply:
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
        raise ProtocolError(f"not an {protocol} reply ({step}): {exc}") from None


@dataclass(slots=True)
class Outcome:
    """What a protocol session came to when the server said yes throughout."""

    greeting: Reply
    last: Reply  # the last reply: the report's status and reason
    tls: bool  # the session ended up encrypted
    warnings: list[str] = field(default_factory=list)


QUIT_WAIT = 1.0  # seconds for QUIT's answer; it changes nothing


class Session:
    """A command-and-reply conversation on one connection (SMTP, FTP)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.replies = ReplyReader(ftp=protocol == "FTP")

    async def reply(self, step: str) -> Reply:
        return await next_reply(self.reader, self.replies, step, self.protocol)

    async def command(self, line: str) -> Reply:
        """Send one command line and read its reply."""
        with map_exceptions():
            self.writer.write(line.encode("ascii") + b"\r\n")
            await self.writer.drain()
        return await self.reply(line.split(" ")[0])

    def before_tls(self) -> None:
        """The connection is about to turn into TLS: nothing may be pending
        (RFC 3207 5, RFC 4217 11), and nothing read before counts after."""
        if self.replies.leftover:
            raise ProtocolError("the server sent data before the TLS handshake")
        self.replies = ReplyReader(ftp=self.protocol == "FTP")

    async def quit(self) -> None:
        """QUIT, not waiting long for its answer, whatever it is."""
        with contextlib.suppress(CheckError, TimeoutError):
            async with asyncio.timeout(QUIT_WAIT):
                await self.command("QUIT")
