"""URLs as the checker understands them: pure parsing, no I/O.

Every URL that will ever reach a socket comes through `parse_url` (list lines)
or `resolve_location` (redirects), so the rules that keep a hostile URL from
injecting bytes into a request live here, once.

Rules (README, "The URL list"):
- A line without a scheme means ``https://`` (``example.com:8080/health``).
- ``http`` and ``https`` are checked as web pages; ``tcp://host:port`` (the
  port accepts a connection) and ``tls://host:port`` (and a TLS handshake
  succeeds on it) as services. Those two need a port and have no path:
  anything after the port but a lone ``/`` is refused. Other schemes are
  refused.
- CR, LF, NUL, the other ASCII control bytes and spaces anywhere are refused:
  they could end the request line or start a header line. (Non-ASCII
  characters, C1 controls included, are percent-encoded in the path and query,
  so they never reach the wire as raw bytes.)
- Userinfo (``user:pass@host``) is refused rather than stripped: stripping it
  would silently check something other than what the list asked for, and
  sending it would leak a secret into every report.
- The fragment is dropped: it is never sent (RFC 9110 section 4.2.4).
- Hosts are lowercased; internationalised names become punycode with the
  standard library's IDNA 2003 codec (so "straße" maps to "strasse", where
  IDNA 2008 would keep the "ß"; the `idna` package would be one more
  dependency for a rare case). IPv6 zone identifiers are refused.
- Path and query keep their existing percent-escapes; any other byte outside
  RFC 3986's allowed set (non-ASCII as UTF-8, ``"<>\\^`{|}``) is
  percent-encoded.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

DEFAULT_PORTS = {"http": 80, "https": 443}
# Services checked by a connection (and TLS, and a protocol's greeting): no
# path. tcp:// and tls:// need a port; smtp:// is 25, smtps:// 465.
SERVICE_SCHEMES = frozenset({"tcp", "tls", "smtp", "smtps", "ftp", "ftps"})
SERVICE_PORTS = {"smtp": 25, "smtps": 465, "ftp": 21, "ftps": 990}
TLS_SCHEMES = frozenset({"https", "tls", "smtps", "ftps"})
# Per-URL options of a service, in its query: smtp://host?require_tls=1.
SERVICE_OPTIONS = {"smtp": frozenset({"require_tls=1"}), "ftp": frozenset({"require_tls=1"})}


class URLError(ValueError):
    """A URL that cannot be checked; the message says why, for `error_detail`."""


# Not frozen, though nothing changes a URL once made: a frozen dataclass's
# __init__ sets each field through object.__setattr__, and with Target and
# ResponseHead (made for every check too) that was 25,000 instructions of a
# check's 348,000 (valgrind, benchmarks/PROFILE.md, nineteenth session).
# Hashed and compared by its fields, as a frozen one was.
@dataclass(slots=True, unsafe_hash=True)
class URL:
    scheme: str  # "http" or "https"
    host: str  # lowercase ASCII; IPv6 without brackets
    port: int
    target: str  # origin-form request-target: path and query, always starts with "/"
    # Made once, in __post_init__: a check reads each of them several times
    # (the pool's key, the request line, the result row), and as properties
    # they were 3 to 6 us a check (benchmarks/PROFILE.md, thirteenth session).
    # The Host field: host, plus the port when it is not the scheme's default.
    host_header: str = field(init=False, repr=False, compare=False)
    # What a connection (and the per-host cap) is keyed on.
    origin: tuple[str, str, int] = field(init=False, repr=False, compare=False)
    # Whether the target and Host hold nothing that would split a request
    # line (wire.request_line refuses to send a URL without it).
    line_safe: bool = field(init=False, repr=False, compare=False)
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS.get(self.scheme):
            host = f"{host}:{self.port}"
        self.host_header = host
        self.origin = (self.scheme, self.host, self.port)
        self._text = f"{self.scheme}://{host}{self.target}"
        target = self.target
        safe = host.isascii() and target.isascii() and not _UNSAFE.search(host + target)
        self.line_safe = safe

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def host_for_uri(self) -> str:
        return f"[{self.host}]" if self.is_ipv6 else self.host

    @property
    def is_service(self) -> bool:
        """tcp:// or tls://: checked by a connection, not a request."""
        return self.scheme in SERVICE_SCHEMES

    def __str__(self) -> str:
        return self._text


# RFC 3986 appendix B, the one regex that splits any URI reference.
_SPLIT = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_HAS_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEME_COLON = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.S)
# Bytes allowed to stand as they are in a path or query (RFC 3986 pchar, "/" and
# "?"), plus "%" for escapes that are already there.
_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# A path or query of those bytes only, with no "%" (whose escapes are checked).
_AS_IS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
# A DNS label as seen in the wild: letters, digits, hyphens, and underscores
# (not valid in host names, but used, e.g. by service records behind CNAMEs).
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


# Any byte that may end a request line or start a header line (and the space).
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _refuse_unsafe_chars(text: str) -> None:
    found = _UNSAFE.search(text)  # one scan in C: this runs for every list line
    if found is not None:
        ch = found.group()
        what = {" ": "a space", "\r": "a CR", "\n": "an LF", "\x00": "a NUL", "\t": "a tab"}
        raise URLError(f"{what.get(ch, f'control character {ord(ch):#04x}')} in URL")


# The shape of nearly every line of a list: a lowercase http(s) scheme, a
# host name or IPv4 address with maybe a port, and a path and query of
# characters that need no escaping. Such a line gives what the full parse
# gives (tests/test_url.py compares the two), without its splitting,
# escaping and dot-segment passes: 82,000 instructions a list line before.
_PLAIN = re.compile(r"(https?)://([a-z0-9.\-]+(?::[0-9]*)?)(/[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?")


def parse_url(text: str) -> URL:
    """Parse one line of a URL list (already stripped). Bare hosts mean https."""
    plain = _PLAIN.fullmatch(text)
    if plain is not None:
        scheme, authority, target = plain.groups()
        if target is None or "/." not in target:  # (no dot segment to remove)
            host, port = _parse_authority(authority, DEFAULT_PORTS[scheme])
            return URL(scheme, host, port, target or "/")
    return _parse_line(text)


def _parse_line(text: str) -> URL:
    """parse_url, every step taken."""
    if not text:
        raise URLError("empty URL")
    _refuse_unsafe_chars(text)
    if text.startswith("//"):
        text = "https:" + text
    elif not _HAS_SCHEME.match(text):
        m = _SCHEME_COLON.match(text)
        if m and _looks_like_scheme(m.group(1), m.group(2)):
            if m.group(1).lower() in DEFAULT_PORTS:
                raise URLError(f"missing // after {m.group(1)}:")
            # "mailto:x", "javascript:..." - a scheme, not "host:port".
            raise URLError(_unsupported(m.group(1)))
        # No scheme: "example.com", "example.com:8080/health" mean https.
        text = "https://" + text
    return _parse_absolute(text)


def location_of(value: str) -> str:
    """A Location field's value as sent: its bytes (header values are read as
    Latin-1, one character a byte) taken as UTF-8, as browsers take them, so
    that "/café" is followed to /caf%C3%A9, not to a double-encoded
    /caf%C3%83%C2%A9. Bytes that are not UTF-8 are percent-encoded as they
    are (as curl does)."""
    if value.isascii():
        return value
    data = value.encode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in data)


def clean_location(location: str) -> str:
    """A Location as browsers take it (the WHATWG URL parser): spaces and
    control characters around it dropped, tabs and line breaks in it removed.
    A space or control character left inside is percent-encoded when the
    URL is made (a host cannot hold one: that stays refused)."""
    return _TAB_OR_NEWLINE.sub("", location.strip(_C0_AND_SPACE))


def is_clean(text: str) -> bool:
    """No space or control character in `text`."""
    return _UNSAFE.search(text) is None


def resolve_location(base: URL, location: str) -> URL:
    """Resolve a Location field against the URL that returned it (RFC 3986
    5.2), after `clean_location`: a redirect to "/a b" is followed to
    "/a%20b", as a browser and curl do."""
    location = clean_location(location)
    if not location:
        raise URLError("empty Location")
    scheme, authority, path, query, _fragment = _split(location)
    if scheme is not None and scheme.lower() in SERVICE_SCHEMES:
        raise URLError(f"a redirect to {scheme.lower()}:// is not followed")
    if scheme is not None:
        return _parse_absolute(location)
    if authority is not None:  # scheme-relative: "//other.example/x"
        return _parse_absolute(f"{base.scheme}:{location}")
    base_path, _, base_query = base.target.partition("?")
    if path == "":
        new_path = base_path
        new_query = query if query is not None else (base_query if "?" in base.target else None)
    else:
        if path.startswith("/"):
            new_path = _remove_dot_segments(path)
        else:
            new_path = _remove_dot_segments(base_path[: base_path.rfind("/") + 1] + path)
        new_query = query
    target = _encode(new_path or "/") + ("" if new_query is None else "?" + _encode(new_query))
    return URL(base.scheme, base.host, base.port, target)


def _split(text: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    m = _SPLIT.match(text)
    assert m is not None  # the pattern matches every string
    return m.group(1), m.group(2), m.group(3), m.group(4), m.group(5)


def _parse_absolute(text: str) -> URL:
    scheme, authority, path, query, _fragment = _split(text)
    if scheme is None or not _SCHEME.match(scheme):
        raise URLError("no scheme")
    scheme = scheme.lower()
    if scheme in SERVICE_SCHEMES:
        return _parse_service(scheme, authority, path, query)
    if scheme not in DEFAULT_PORTS:
        raise URLError(_unsupported(scheme))
    if not authority:
        raise URLError("no host")
    host, port = _parse_authority(authority, DEFAULT_PORTS[scheme])
    target = _encode(_remove_dot_segments(path) if path else "/")
    if query is not None:
        target += "?" + _encode(query)
    return URL(scheme, host, port, target)


def _parse_service(scheme: str, authority: str | None, path: str, query: str | None) -> URL:
    if not authority:
        raise URLError("no host")
    host, port = _parse_authority(authority, SERVICE_PORTS.get(scheme, 0))
    if not port:
        raise URLError(f"{scheme}:// needs a port ({scheme}://host:port)")
    allowed = SERVICE_OPTIONS.get(scheme, frozenset())
    if path not in ("", "/") or (query is not None and query not in allowed):
        options = f" (options: ?{', ?'.join(sorted(allowed))})" if allowed else ""
        raise URLError(f"{scheme}:// has no path or query: {scheme}://host:port{options}")
    return URL(scheme, host, port, f"?{query}" if query else "")


def _looks_like_scheme(before: str, after: str) -> bool:
    """In "x:y" without "//", is x a scheme rather than a host with a port?

    A port is digits (or empty, meaning the default) followed by a path; a host
    name has a dot. "localhost:abc" is read as a scheme, like "mailto:abc".
    """
    if before.lower() in DEFAULT_PORTS:
        return True  # "http:/x", "http:x": a mistyped URL, not a host named "http"
    if after == "" or after[:1].isdigit() or after[:1] in "/?#":
        return False
    return "." not in before


def _unsupported(scheme: str) -> str:
    checked = "http, https, tcp, tls, smtp, smtps, ftp and ftps"
    return f"unsupported scheme {scheme.lower()!r} ({checked} are checked)"


# A list names the same few hosts over and over: each authority is parsed once
# (a bounded cache, so a list of a million hosts costs no more memory).
@functools.lru_cache(maxsize=1024)
def _parse_authority(authority: str, default_port: int) -> tuple[str, int]:
    if "@" in authority:
        raise URLError("credentials in URL are not supported")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise URLError("unclosed [ in IPv6 host")
        host = _parse_ipv6(authority[1:end])
        rest = authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise URLError("junk after IPv6 host")
        port_text = rest[1:] if rest else None
    else:
        host_text, sep, port_text_ = authority.rpartition(":")
        if not sep:
            host_text, port_text_ = authority, ""
        port_text = port_text_ if sep else None
        host = _parse_reg_name(host_text)
    return host, _parse_port(port_text, default_port)


def _parse_ipv6(text: str) -> str:
    if "%" in text:
        # RFC 6874 zone IDs name an interface of this machine: meaningless in a
        # shared list, and their escaping is a classic source of confusion.
        raise URLError("IPv6 zone identifiers are not supported")
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        raise URLError(f"bad IPv6 address {text!r}") from None


def _parse_port(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise URLError(f"bad port {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise URLError(f"port {port} out of range")
    return port


def _parse_reg_name(text: str) -> str:
    if not text:
        raise URLError("no host")
    if "%" in text:
        raise URLError("percent-escapes in host are not supported")
    # One trailing dot is the DNS root ("example.com."); more is an empty label.
    host = (text[:-1] if text.endswith(".") else text).lower()
    if not host:
        raise URLError("no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise URLError(f"bad internationalised host {text!r}: {exc}") from None
    if len(host) > 253:
        raise URLError("host name longer than 253 characters")
    for label in host.split("."):
        if not _LABEL.match(label):
            raise URLError(f"bad host {text!r}")
    return host


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, on "/"-separated segments."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def _encode(text: str) -> str:
    """Percent-encode what may not appear in a request-target; keep valid escapes."""
    if _AS_IS.fullmatch(text):  # the usual path: nothing to encode (one scan in C)
        return text
    raw = text.encode("utf-8")
    out = bytearray()
    for i, b in enumerate(raw):
        if b == 0x25:  # "%": keep a valid escape, encode a stray one
            if i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
                out.append(b)
            else:
                out += b"%25"
        elif b in _SAFE:
            out.append(b)
        else:
            out += f"%{b:02X}".encode("ascii")
    return out.decode("ascii")


def dedup_key(url: URL) -> str:
    """Two list lines with the same key are the same check."""
    return str(url)
