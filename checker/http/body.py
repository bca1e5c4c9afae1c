"""A response body for a body check: kept up to a cap, decompressed, decoded. Pure.

Only read when a URL's expectations need it (`contains`, `not_contains`,
`regex`); then the request says `Accept-Encoding: gzip, deflate`, and the body
is decoded here: at most `cap` bytes are kept of what arrives, and at most
`cap` bytes come out of the decompressor too (a few kilobytes of gzip can
inflate to gigabytes: the cap is on the decoded bytes, not only the received
ones). The text is decoded as a browser decodes it (the WHATWG Encoding
standard, in its parts that matter here): a byte order mark first, then the
charset of the Content-Type, then an HTML page's own <meta> charset in its
first 1024 bytes, else UTF-8; labels mean what browsers take them to mean
(`iso-8859-1` and `us-ascii` are windows-1252, `gb2312` is GBK), and
undecodable bytes are replaced. (Decoded as Python reads the labels, pages
whose text every browser shows were "body lacks ...".)
"""

from __future__ import annotations

import codecs
import re
import time
import zlib
from dataclasses import dataclass, field

from checker.http.errors import CheckError

MAX_BODY = 1024 * 1024  # --max-body default

_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# <meta charset="x"> and <meta http-equiv="Content-Type" content="...; charset=x">
# (the HTML prescan, simplified: within the first PRESCAN bytes).
_META = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
PRESCAN = 1024
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# Labels a browser reads otherwise than Python's codec of that name does
# (WHATWG Encoding, "Names and labels"): the superset each stands for.
_AS_BROWSERS_READ = {
    **dict.fromkeys(
        (
            *("iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "ascii", "us-ascii"),
            *("cp819", "ibm819", "iso-ir-100", "csisolatin1", "iso_8859-1:1987", "x-cp1252"),
        ),
        "cp1252",
    ),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "iso_8859-9", "latin5", "l5"), "cp1254"),
    **dict.fromkeys(("tis-620", "iso-8859-11", "iso8859-11", "dos-874"), "cp874"),
    **dict.fromkeys(("gb2312", "csgb2312", "chinese", "x-gbk", "gb_2312-80", "iso-ir-58"), "gbk"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987", "ks_c_5601-1989", "korean", "ksc5601"), "cp949"),
    **dict.fromkeys(
        ("shift_jis", "shift-jis", "sjis", "ms_kanji", "x-sjis", "csshiftjis"), "cp932"
    ),
    **dict.fromkeys(("big5", "csbig5", "x-x-big5", "cn-big5"), "big5hkscs"),
    **dict.fromkeys(("utf-16", "unicode", "ucs-2", "csunicode", "iso-10646-ucs-2"), "utf-16-le"),
}


@dataclass(slots=True)
class BodySink:
    """What `client` fills while it reads a body it was asked to keep."""

    cap: int = MAX_BODY
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False  # the body ended where its framing said, within the cap
    last_at: float = 0.0  # time.monotonic() when its last piece came
    # How it broke off, when it did (framing that cannot be read, a cut, a
    # reset): the check fails with it, its status kept (check._follow).
    broken: CheckError | None = None

    def add(self, piece: bytes) -> None:
        self.last_at = time.monotonic()
        room = self.cap - len(self.data)
        if room > 0:
            self.data += piece[:room]


@dataclass(frozen=True, slots=True)
class Body:
    text: str
    complete: bool  # all of it (False: cut at the cap, or cut short by the server)
    warnings: tuple[str, ...] = ()
    # Why no browser could show it (a body that says gzip and is not): the
    # page is broken, whatever its raw bytes hold.
    broken: str | None = None


def decode(
    raw: bytes, complete: bool, content_encoding: str | None, content_type: str | None, cap: int
) -> Body:
    warnings: list[str] = []
    coding = (content_encoding or "").strip().lower()
    # Codings applied one over another are listed in the order they were
    # applied (RFC 9110 8.4): undone last first, each within the cap.
    codings = [c for c in (part.strip() for part in coding.split(",")) if c not in ("", "identity")]
    data = raw
    broken = None
    if codings and all(c in ("gzip", "x-gzip", "deflate") for c in codings):
        try:
            for layer in reversed(codings):
                data, whole = _inflate(data, layer, cap)
                complete = complete and whole
        except zlib.error as exc:
            broken = f"the body says Content-Encoding {coding} and cannot be decompressed ({exc})"
    elif codings:
        warnings.append(f"body in an unknown coding {coding!r}; read as it came")
    charset, data = _charset(data, content_type, warnings)
    return Body(data.decode(charset, errors="replace"), complete, tuple(warnings), broken)


def _charset(data: bytes, content_type: str | None, warnings: list[str]) -> tuple[str, bytes]:
    """The codec to read `data` with, and `data` without its byte order mark."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, data[len(bom) :]
    found = _CHARSET.search(content_type or "")
    label = found.group(1) if found else None
    if label is None and "html" in (content_type or "html").lower():
        meta = _META.search(data[:PRESCAN])
        if meta is not None:
            label = meta.group(1).decode("ascii")
            if label.lower().startswith(("utf-16", "unicode", "ucs-2")):
                label = "utf-8"  # (its <meta> could be read: it is not UTF-16)
    if label is None:
        return "utf-8", data
    known = _AS_BROWSERS_READ.get(label.lower())
    if known is not None:
        return known, data
    try:
        return codecs.lookup(label).name, data
    except LookupError:
        warnings.append(f"unknown charset {label!r}; read as UTF-8")
        return "utf-8", data


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
