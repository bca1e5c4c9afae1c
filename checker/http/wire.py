"""HTTP/1.1 on the wire, as pure functions over bytes (no I/O, no asyncio).

The grammar quoted beside each parser is RFC 9112's; where we accept more than
it allows, the comment says what and why. Every parser either returns a value
or raises `ProtocolError` with a detail a person can act on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from checker.http.errors import ProtocolError
from checker.url import URL

# Limits on what we buffer from one response head. A hostile server hits them
# and gets a `protocol` error instead of our memory; a real one must not:
# they were 16 KiB, 128 lines and 64 KiB, and a site with a 24 KB
# Content-Security-Policy or 130 Set-Cookie fields, which curl (100 KB a
# field) and browsers (Chromium: 256 KB of head) take, was called down. Now
# 64 KiB a line (Python's http.client's), 1,000 lines, 256 KiB in all.
# One status or header line. StreamReader's limit applies to the line without
# its final LF, so a line may be MAX_LINE bytes plus that LF.
MAX_LINE = 64 * 1024
MAX_HEADERS = 1000  # header lines in one head
MAX_HEAD = 256 * 1024  # all header lines of one head together
MAX_INTERIM = 16  # 1xx responses before the final one

# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA          (RFC 9110 5.6.2)
# token = 1*tchar
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# field-vchar = VCHAR / obs-text; field-value allows SP and HTAB inside.
# So every control byte except HTAB is refused, NUL and a bare CR included.
_VERSION = re.compile(rb"[0-9]\.[0-9]")
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class StatusLine:
    version: str  # "1.0" or "1.1"
    status: int
    reason: str


@dataclass(slots=True)  # (not frozen: see checker.url.URL)
class ResponseHead:
    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # (lowercased name, value), in order

    def get(self, name: str) -> str | None:
        """The field's value; repeated fields are combined with ", " (RFC 9110 5.3)."""
        found = None  # (a loop, not a list made each time: read 3 times a check)
        for n, v in self.headers:
            if n == name:
                found = v if found is None else f"{found}, {v}"
        return found

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


def build_request(
    method: str,
    url: URL,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The request head, as bytes ready for `write`."""
    return request_line(method, url) + header_block(tuple(headers))


def request_line(method: str, url: URL, absolute: bool = False) -> bytes:
    """The request line and Host field.

    `url` was validated by `checker.url`; the checks here are a second line of
    defence so that no caller can ever put CR, LF, NUL or a space where it would
    split the request line or start a new header line.
    """
    if method not in _METHODS and not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise ValueError(f"bad method {method!r}")
    # Absolute form (RFC 9112 3.2.2) for a request to a proxy.
    # (The URL looked at its parts once, when it was made: URL.line_safe.)
    if not url.line_safe:
        for part in (url.target, url.host_header):
            if not part.isascii() or _UNSAFE_IN_LINE.search(part):
                raise ValueError(f"unsafe characters in {part!r}")
    target = str(url) if absolute else url.target
    return f"{method} {target} HTTP/1.1\r\nHost: {url.host_header}\r\n".encode()


_METHODS = frozenset({"HEAD", "GET", "POST"})  # tokens, known good
# Control bytes and the space: any of them would split the request line.
_UNSAFE_IN_LINE = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=64)
def header_block(headers: tuple[tuple[str, str], ...]) -> bytes:
    """The other header lines and the blank line that ends the head.

    Cached: a run sends the same few header sets thousands of times, and
    checking them once is enough.
    """
    lines = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("ascii", "replace")):
            raise ValueError(f"bad header name {name!r}")
        if _BAD_VALUE_BYTE.search(value.encode("utf-8")):
            raise ValueError(f"control characters in header {name}")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def strip_eol(line: bytes) -> bytes:
    """Drop the line terminator that readline() kept.

    RFC 9112 2.2 lets a recipient accept a bare LF as a line terminator; many
    embedded servers send one, so we do.
    """
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def parse_status_line(line: bytes) -> StatusLine:
    """status-line = HTTP-version SP status-code SP [ reason-phrase ]   (RFC 9112 4)

    HTTP-version  = HTTP-name "/" DIGIT "." DIGIT ; HTTP-name = %s"HTTP"
    status-code   = 3DIGIT
    reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )

    Lenient where real servers are: the SP after the code may be missing when
    there is no reason (``HTTP/1.1 200``), and the reason may be empty.
    `line` is the line without its terminator (`strip_eol`).
    """
    if not line:
        raise ProtocolError("empty status line")
    if not line.startswith(b"HTTP/"):
        raise ProtocolError(f"not an HTTP/1.x status line: {_show(line)}")
    version = line[5:8]
    if (
        len(version) != 3
        or not version[:1].isdigit()
        or version[1:2] != b"."
        or not version[2:3].isdigit()
    ):
        raise ProtocolError(f"bad HTTP version in status line: {_show(line)}")
    if version not in (b"1.1", b"1.0"):
        raise ProtocolError(f"unsupported HTTP version {version.decode()} in status line")
    if line[8:9] != b" ":
        raise ProtocolError(f"missing space after HTTP version: {_show(line)}")
    code = line[9:12]
    if len(code) != 3 or not code.isdigit() or line[12:13] not in (b"", b" "):
        raise ProtocolError(f"status code is not three digits: {_show(line)}")
    status = int(code)
    # RFC 9110 15: a code outside 100-599 is invalid, and a client "SHOULD
    # process the response as if it had a 5xx" status, not refuse it: it is
    # reported as it came (LinkedIn's 999 to bots), down by the default
    # statuses. Below 100 is not a status at all.
    if status < 100:
        raise ProtocolError(f"status code {status} out of range 100-999")
    reason = line[13:]
    if _BAD_VALUE_BYTE.search(reason):
        raise ProtocolError(f"control characters in reason phrase: {_show(line)}")
    return StatusLine(version.decode("ascii"), status, decode_text(reason))


def decode_text(data: bytes) -> str:
    """Text a server sent, for a report: UTF-8 when it is (servers that send
    non-ASCII reason phrases mostly mean UTF-8), else Latin-1, which maps every
    byte and so never fails. Kept as sent: a reason of " OK" stays " OK"."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_header_line(line: bytes) -> tuple[str, str]:
    """field-line = field-name ":" OWS field-value OWS   (RFC 9112 5)

    Whitespace between the name and the colon ("Server : GoAhead-Webs", as
    embedded devices send) is taken off: RFC 9112 5.1 has servers reject it
    in requests and proxies remove it from responses, because intermediaries
    disagree on what it means; a client that forwards nothing does as curl
    and browsers do (refused, such devices were down).
    The name is returned lowercased, the value with OWS stripped, both decoded
    as Latin-1 so that no byte is lost or can fail to decode.
    """
    name, colon, value = line.partition(b":")
    if not colon:
        raise ProtocolError(f"header line without a colon: {_show(line)}")
    name = name.rstrip(b" \t")
    if not _TOKEN.fullmatch(name):
        raise ProtocolError(f"bad header name: {_show(name)}")
    if _BAD_VALUE_BYTE.search(value):
        raise ProtocolError(f"control characters in header {name.decode('latin-1')}")
    return name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")


def is_obs_fold(line: bytes) -> bool:
    """obs-fold = OWS CRLF RWS: a line that starts with SP or HTAB continues the previous one.

    RFC 9112 5.2: a user agent that receives one in a response must replace it
    with SP before interpreting the value. We unfold rather than reject.
    """
    return line[:1] in (b" ", b"\t")


def unfold(previous: tuple[str, str], line: bytes) -> tuple[str, str]:
    if _BAD_VALUE_BYTE.search(line):
        raise ProtocolError(f"control characters in header {previous[0]}")
    more = line.strip(b" \t").decode("latin-1")
    name, value = previous
    return name, f"{value} {more}" if value and more else value + more


class HeaderLines:
    """The header section, a line at a time, with its limits (RFC 9112 5).

    One place for the rules, whichever way the lines arrive: `feed` takes each
    line with its line ending, and says when the empty line ended the section.
    """

    __slots__ = ("headers", "total")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.total = 0

    def feed(self, line: bytes) -> bool:
        self.total += len(line)
        if self.total > MAX_HEAD:
            raise ProtocolError(f"response headers larger than {MAX_HEAD // 1024} KiB")
        line = strip_eol(line)
        if not line:
            return True
        if is_obs_fold(line):
            if not self.headers:
                raise ProtocolError("first header line starts with whitespace")
            self.headers[-1] = unfold(self.headers[-1], line)
            return False
        if len(self.headers) >= MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} header lines")
        self.headers.append(parse_header_line(line))
        return False


def head_end(buffer: bytes | bytearray) -> int:
    """Where a header section that starts `buffer` ends (just past its empty
    line), or -1 if it has not all arrived. The empty line is CRLF or a bare
    LF (see `strip_eol`), so the section ends at the first LF CRLF or LF LF,
    or at once when the buffer starts with the empty line."""
    if buffer[:1] == b"\n":
        return 1
    if buffer[:2] == b"\r\n":
        return 2
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n")
    if crlf < 0:
        return lf + 2 if lf >= 0 else -1
    if 0 <= lf < crlf:
        return lf + 2
    return crlf + 3


# One header line as the rules take it without a word (no fold, no control
# byte, a token name right before its colon), the OWS before its value left
# out (after it: rstrip); and a whole section of them, ended by the empty
# line, with the same groups made non-capturing (capturing them in a
# repetition made the check a sixth slower). Both go over the section
# decoded as Latin-1, as the fields are: one decode, not two a line.
_FIELD = r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n"
_FIELD_LINE = re.compile(_FIELD)
_PLAIN_BLOCK = re.compile(r"(?:" + _FIELD.replace("(", "(?:").replace("(?:?", "(?") + r")*\r?\n")


def parse_header_block(block: bytes) -> tuple[tuple[str, str], ...]:
    """A whole header section, empty line included (as `head_end` cut it),
    by the same rules and limits as line by line.

    Nearly every head is plain: one scan in C checks that every line is, and
    one more takes the fields out. Anything else (a folded line, a control
    byte, a line or a count over the limits) goes line by line, which says
    what is wrong."""
    if len(block) <= MAX_LINE:
        text = block.decode("latin-1")
        if _PLAIN_BLOCK.fullmatch(text):
            fields = _FIELD_LINE.findall(text)
            if len(fields) <= MAX_HEADERS:
                return tuple([(name.lower(), value.rstrip(" \t")) for name, value in fields])
    lines = HeaderLines()
    start = 0
    while True:
        end = block.find(b"\n", start) + 1
        if end == 0 or end - start > MAX_LINE + 1:
            # (No LF: `head_end` cut it wrong, a bug; too long: as readline() says.)
            raise ProtocolError(f"response line longer than {MAX_LINE // 1024} KiB")
        if lines.feed(block[start:end]):
            if end != len(block):
                raise ValueError("parse_header_block: bytes after the empty line")
            return tuple(lines.headers)
        start = end


def parse_content_length(values: Iterable[str]) -> int | None:
    """Content-Length = 1*DIGIT   (RFC 9110 8.6)

    Repeated fields, or a list (``5, 5``), are accepted only when every value is
    the same; anything else could frame the body two ways and is an error.
    """
    found: int | None = None
    for field in values:
        for item in field.split(","):
            item = item.strip(" \t")
            if not item.isascii() or not item.isdigit():
                raise ProtocolError(f"bad Content-Length {field!r}")
            if len(item) > 18:
                raise ProtocolError(f"Content-Length {item[:20]}... is too large")
            n = int(item)
            if found is not None and n != found:
                raise ProtocolError(f"conflicting Content-Length values {found} and {n}")
            found = n
    return found


# chunk-size = 1*HEXDIG
# chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
# chunk-ext-name = token ; chunk-ext-val = token / quoted-string   (RFC 9112 7.1.1)
_TCHARS = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*"
    + _TCHARS
    + rb"+(?:[ \t]*=[ \t]*(?:"
    + _TCHARS
    + rb'+|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t \x21-\x7e\x80-\xff])*"))?)*)[ \t]*'
)


def parse_chunk_size(line: bytes) -> int:
    """chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF   (RFC 9112 7.1)

    Extensions are checked for form and then ignored (nothing we check depends
    on them). Whitespace at the end of the line ("21  ", as ESP32 devices'
    web server and some load balancers send) is taken as h11, undici and
    curl take it: llhttp refuses it where a proxy could be smuggled past, and
    a client that forwards nothing cannot be. Sizes longer than 16 hex
    digits cannot be real and are refused before `int()`.
    """
    m = _CHUNK_LINE.fullmatch(line)
    if m is None:
        raise ProtocolError(f"bad chunk size line: {_show(line)}")
    size = m.group(1)
    if len(size) > 16:
        raise ProtocolError(f"bad chunk size {_show(size, 20)}: more than 16 hex digits")
    return int(size, 16)


@dataclass(frozen=True, slots=True)
class Framing:
    """How a response's body ends (RFC 9112 6.3)."""

    kind: str  # "none", "content-length", "chunked" or "eof" (until the server closes)
    length: int | None = None  # for "content-length"


def framing(head: ResponseHead, method: str) -> Framing:
    """RFC 9112 6.3, in its order, for a response to `method`."""
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return Framing("none")
    codings = head.get_all("transfer-encoding")
    if codings:
        # Only a final "chunked" frames the body; any other coding list means
        # the body runs to the close. Transfer-Encoding overrides Content-Length.
        last = ",".join(codings).split(",")[-1].strip(" \t").lower()
        return Framing("chunked") if last == "chunked" else Framing("eof")
    length = parse_content_length(head.get_all("content-length"))
    if length is not None:
        return Framing("content-length", length) if length else Framing("none")
    return Framing("eof")


def has_token(value: str | None, token: str) -> bool:
    """Whether a comma-separated list field (Connection, Transfer-Encoding) holds `token`."""
    if not value:
        return False
    token = token.lower()
    return any(item.strip(" \t").lower() == token for item in value.split(","))


def _show(data: bytes, limit: int = 60) -> str:
    """A short, printable rendering of hostile bytes for an error detail."""
    text = repr(data[:limit])[2:-1]
    return text + ("..." if len(data) > limit else "")
