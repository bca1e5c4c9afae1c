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

from checker.http.client import ClientConfig, Trace, connect, upgrade
from checker.http.connections import close_stream
from checker.protocols.replies import ReplyRefused, said
from checker.protocols.session import Outcome, Session
from checker.url import URL

HELO_NAME = "checker.invalid"  # RFC 5321 4.1.4: a name; ours says what we are


class SMTPReplyError(ReplyRefused):
    """A greeting or an answer that is not a yes: the server said no."""

    category = "smtp"


async def check_smtp(url: URL, config: ClientConfig, trace: Trace) -> Outcome:
    reader, writer = await connect(url, config, trace)
    session = Session(reader, writer, "SMTP")
    try:
        greeting = await session.reply("the greeting")
        if greeting.code != 220:
            raise SMTPReplyError(f"greeting: {said(greeting)}", greeting.code, greeting.first_line)
        ehlo = await session.command(f"EHLO {HELO_NAME}")
        if ehlo.code != 250:
            raise SMTPReplyError(f"EHLO: {said(ehlo)}", ehlo.code, greeting.first_line)
        outcome = Outcome(greeting, ehlo, url.scheme == "smtps")
        if url.scheme == "smtp":
            offered = any(
                line.strip().upper().split(" ")[0] == "STARTTLS"
                for line in ehlo.text.split("\n")[1:]
            )
            if offered:
                answer = await session.command("STARTTLS")
                if answer.code != 220:
                    raise SMTPReplyError(
                        f"STARTTLS: {said(answer)}", answer.code, greeting.first_line
                    )
                session.before_tls()
                await upgrade(writer, url, config, trace)
                outcome.tls = True
                outcome.last = await session.command(f"EHLO {HELO_NAME}")
                if outcome.last.code != 250:
                    raise SMTPReplyError(
                        f"EHLO after STARTTLS: {said(outcome.last)}",
                        outcome.last.code,
                        greeting.first_line,
                    )
            elif url.target == "?require_tls=1":
                raise SMTPReplyError(
                    "the server does not offer STARTTLS (require_tls=1)",
                    ehlo.code,  # the last reply: nothing was refused, TLS is missing
                    greeting.first_line,
                )
            else:
                outcome.warnings.append(
                    "the server does not offer STARTTLS: mail to it is sent in clear"
                )
        await session.quit()
        return outcome
    except ReplyRefused:
        await session.quit()  # it said no, but the conversation still ends politely
        raise
    finally:
        await close_stream(writer)
