"""A response body for a body check: kept up to a cap, decompressed, decoded. Pure.

Only read when a URL's expectations need it (`contains`, `not_contains`,
`regex`); then the request says `Accept-Encoding: gzip, deflate`, and the body
is decoded here: at most `cap` bytes are kept of what arrives, and at most
`cap` bytes come out of the decompressor too (a few kilobytes of gzip can
inflate to gigabytes: the cap is on the decoded bytes, not only the received
ones). The text is decoded by the charset the server declares (UTF-8 when it
declares none, or one Python does not know), undecodable bytes replaced.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass, field

MAX_BODY = 1024 * 1024  # --max-body default

_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)


@dataclass(slots=True)
class BodySink:
    """What `client` fills while it reads a body it was asked to keep."""

    cap: int = MAX_BODY
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False  # the body ended where its framing said, within the cap

    def add(self, piece: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += piece[:room]


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    complete: bool  # all of it (False: cut at the cap, or cut short by the server)
    warnings: tuple[str, ...] = ()


def decode(
    raw: bytes, complete: bool, content_encoding: str | None, content_type: str | None, cap: int
) -> Body:
    warnings: list[str] = []
    coding = (content_encoding or "").strip().lower()
    data = raw
    if coding in ("gzip", "x-gzip", "deflate"):
        try:
            data, whole = _inflate(raw, coding, cap)
        except zlib.error as exc:
            warnings.append(f"{coding} body could not be decompressed ({exc}); read as it came")
        else:
            complete = complete and whole
    elif coding and coding != "identity":
        warnings.append(f"body in an unknown coding {coding!r}; read as it came")
    charset = "utf-8"
    found = _CHARSET.search(content_type or "")
    if found:
        try:
            charset = codecs.lookup(found.group(1)).name
        except LookupError:
            warnings.append(f"unknown charset {found.group(1)!r}; read as UTF-8")
    return Body(data.decode(charset, errors="replace"), complete, tuple(warnings))


def _inflate(raw: bytes, coding: str, cap: int) -> tuple[bytes, bool]:
    """(decoded bytes, all of them) with at most `cap` bytes out."""
    if coding == "deflate":
        # "deflate" is zlib-wrapped by the standard; some servers send it raw.
        try:
            return _run(zlib.decompressobj(zlib.MAX_WBITS), raw, cap)
        except zlib.error:
            return _run(zlib.decompressobj(-zlib.MAX_WBITS), raw, cap)
    return _run(zlib.decompressobj(zlib.MAX_WBITS | 16), raw, cap)


def _run(inflater: zlib._Decompress, raw: bytes, cap: int) -> tuple[bytes, bool]:
    out = inflater.decompress(raw, cap)
    return out, not inflater.unconsumed_tail and len(out) < cap
