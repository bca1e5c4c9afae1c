"""ftp:// and ftps://: the banner, AUTH TLS where the server takes it, QUIT.

An FTP server is up when it greets with 220 (RFC 959 4.2, multi-line replies
included). ftp:// then asks for TLS with `AUTH TLS` (RFC 4217): a 234 answer
upgrades the connection in place, the certificate checked and reported as for
HTTPS; any other answer is a warning, or down with `?require_tls=1`. ftps://
is implicit TLS, from the first byte (port 990). The session ends with QUIT.

What the report says: `status` the last reply's code, `reason` its first
line, `banner` the greeting's first line. A 4xx or 5xx greeting is down
(`error: "ftp"`), with the server's words.
"""

from __future__ import annotations

from checker.http.client import ClientConfig, Trace, connect, upgrade
from checker.http.connections import close_stream
from checker.protocols.replies import ReplyRefused, said
from checker.protocols.session import Outcome, Session
from checker.url import URL


class FTPReplyError(ReplyRefused):
    category = "ftp"


async def check_ftp(url: URL, config: ClientConfig, trace: Trace) -> Outcome:
    reader, writer = await connect(url, config, trace)
    session = Session(reader, writer, "FTP")
    try:
        greeting = await session.reply("the greeting")
        if greeting.code == 120:  # "ready in n minutes", then the real greeting
            greeting = await session.reply("the greeting")
        if greeting.code != 220:
            raise FTPReplyError(f"greeting: {said(greeting)}", greeting.code, greeting.first_line)
        outcome = Outcome(greeting, greeting, url.scheme == "ftps")
        if url.scheme == "ftp":
            answer = await session.command("AUTH TLS")
            if answer.code == 234:
                outcome.last = answer  # (a refusal is a warning; the greeting stands)
                session.before_tls()
                await upgrade(writer, url, config, trace)
                outcome.tls = True
            elif url.target == "?require_tls=1":
                raise FTPReplyError(
                    f"AUTH TLS: {said(answer)} (require_tls=1)", answer.code, greeting.first_line
                )
            else:
                outcome.warnings.append(
                    f"the server does not take AUTH TLS ({said(answer)}): logins to it go in clear"
                )
        await session.quit()
        return outcome
    except ReplyRefused:
        await session.quit()  # it said no, but the conversation still ends politely
        raise
    finally:
        await close_stream(writer)
