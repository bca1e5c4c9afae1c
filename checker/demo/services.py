"""The demo's mail and file servers: just enough SMTP and FTP to be checked.

On ephemeral loopback ports, in the demo's own event loop. The mail server
greets, answers EHLO (without STARTTLS: the check says so in a warning) and
QUIT; the file server greets with a multi-line banner, refuses AUTH TLS, and
answers QUIT. Anything else gets "502 not implemented". Every connection is
closed when the block ends.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from checker.http.connections import close_stream

SMTP_GREETING = b"220 demo.invalid ESMTP checker demo\r\n"
FTP_GREETING = b"220-checker demo files\r\n220 ready\r\n"
# A command line -> the reply, per protocol; None: the reply, then hang up.
SMTP_REPLIES = {b"EHLO": b"250-demo.invalid\r\n250 SIZE 1000000\r\n", b"QUIT": None}
FTP_REPLIES = {b"AUTH": b"502 AUTH TLS not offered here\r\n", b"QUIT": None}


class Services:
    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.smtp_port = 0
        self.ftp_port = 0

    async def __aenter__(self) -> Services:
        self.smtp_port = await self._serve(SMTP_GREETING, SMTP_REPLIES, b"221 bye\r\n")
        self.ftp_port = await self._serve(FTP_GREETING, FTP_REPLIES, b"221 goodbye\r\n")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            await close_stream(writer, abort=True)
        for server in self._servers:
            await server.wait_closed()

    async def _serve(
        self, greeting: bytes, replies: dict[bytes, bytes | None], farewell: bytes
    ) -> int:
        async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                writer.write(greeting)
                await writer.drain()
                while line := await reader.readline():
                    verb = line.split(b" ", 1)[0].strip().upper()
                    answer = replies.get(verb, b"502 not implemented\r\n")
                    writer.write(farewell if answer is None else answer)
                    await writer.drain()
                    if answer is None:
                        break
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
            finally:
                self._writers.discard(writer)
                await close_stream(writer)

        server = await asyncio.start_server(talk, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])
