"""SMTP and FTP replies: pure parsing, whole or fed in pieces.

RFC 5321 4.2 (SMTP):
    Reply-line = *( Reply-code "-" [ textstring ] CRLF )
                 Reply-code [ SP textstring ] CRLF
Every line of a multi-line reply carries the same code.

RFC 959 4.2 (FTP): a multi-line reply starts with "123-" and ends with a line
that starts with the same code and a space; the lines between are text and
need not start with a code at all.

Lenient where it costs nothing: any second digit, a bare LF as line end, and
text beyond US-ASCII (UTF-8 greetings exist), decoded with replacement.
Bounded: a line longer than MAX_LINE, or a reply of more than MAX_LINES
lines, is refused (a peer that never ends its greeting must not fill memory).
Used by the alerts' SMTP client and by the smtp:// and ftp:// checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from checker.http.errors import CheckError

MAX_LINE = 4096
MAX_LINES = 64

_LINE = re.compile(rb"([1-5][0-9][0-9])(?:([ -])(.*))?", re.S)


class ReplyError(ValueError):
    """Not a reply as the protocol allows (the message says how)."""


class ReplyRefused(CheckError):
    """A greeting or an answer that is not a yes: the server said no. (Each
    protocol's subclass names its category.)"""

    def __init__(self, message: str, code: int, banner: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.banner = banner  # the greeting's first line, when there was one

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return 400 <= self.code <= 499  # "try again later"


@dataclass(frozen=True, slots=True)
class ReplyLine:
    code: int
    last: bool  # "250 ..." ends a reply; "250-..." says more lines follow
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str  # the lines' texts joined with LF

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]


def strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith(b"\n") else line


def parse_reply_line(line: bytes) -> ReplyLine:
    """One line of a reply, with or without its line ending."""
    m = _LINE.fullmatch(strip_eol(line))
    if m is None:
        raise ReplyError(f"malformed reply line: {quote(line)}")
    text = (m.group(3) or b"").decode("utf-8", "replace")
    return ReplyLine(int(m.group(1)), m.group(2) != b"-", text)


def parse_reply(lines: Sequence[bytes], ftp: bool = False) -> Reply:
    """A whole reply from its lines (each with or without its line ending)."""
    if not lines:
        raise ReplyError("empty reply")
    first = parse_reply_line(lines[0])
    texts = [first.text]
    if first.last:
        if len(lines) > 1:
            raise ReplyError("continuation line missing (lines after the end of a reply)")
        return Reply(first.code, first.text)
    for i, raw in enumerate(lines[1:], start=1):
        last = i == len(lines) - 1
        if ftp:
            m = _LINE.fullmatch(strip_eol(raw))
            ends = m is not None and int(m.group(1)) == first.code and m.group(2) == b" "
            if ends != last:
                raise ReplyError("continuation line missing (or the closing line)")
            texts.append(
                (m.group(3) or b"").decode("utf-8", "replace")
                if ends and m is not None
                else strip_eol(raw).decode("utf-8", "replace")
            )
            continue
        line = parse_reply_line(raw)
        if line.code != first.code:
            # RFC 5321 4.2.1: every line of a reply has the same code.
            raise ReplyError(f"codes {first.code} and {line.code} in one reply")
        if line.last != last:
            raise ReplyError("continuation line missing (or the closing line)")
        texts.append(line.text)
    return Reply(first.code, "\n".join(texts))


class ReplyReader:
    """Replies from bytes fed in pieces of any size; what follows a complete
    reply stays for the next one (`leftover`)."""

    def __init__(self, ftp: bool = False) -> None:
        self.ftp = ftp
        self._buffer = b""
        self._lines: list[bytes] = []
        self._code: int | None = None

    @property
    def leftover(self) -> bytes:
        return self._buffer

    def feed(self, data: bytes) -> Reply | None:
        """The reply that `data` completes, if any (one at a time: feed b""
        to take the next one out of the leftover)."""
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise ReplyError(f"reply line longer than {MAX_LINE} bytes")
                return None
            if end + 1 > MAX_LINE:
                raise ReplyError(f"reply line longer than {MAX_LINE} bytes")
            line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
            if self._ends(line):
                lines, self._lines, self._code = [*self._lines, line], [], None
                return parse_reply(lines, self.ftp)
            self._lines.append(line)
            if len(self._lines) >= MAX_LINES:
                raise ReplyError(f"reply longer than {MAX_LINES} lines")

    def _ends(self, line: bytes) -> bool:
        if self._code is None:
            first = parse_reply_line(line)
            self._code = first.code
            return first.last
        if not self.ftp:
            return parse_reply_line(line).last
        m = _LINE.fullmatch(strip_eol(line))
        return m is not None and int(m.group(1)) == self._code and m.group(2) == b" "


def quote(line: bytes, limit: int = 200) -> str:
    shown = repr(strip_eol(line))[2:-1]
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def said(reply: Reply) -> str:
    """A reply as an error message quotes it: one line, cut short."""
    text = " / ".join(reply.text.split("\n"))
    shown = f"{reply.code} {text}".rstrip()
    return shown if len(shown) <= 200 else shown[:197] + "..."
