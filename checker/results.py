"""The result record: one per checked URL (or invalid line), and its schema.

`FIELDS` is the column order of the CSV report and the key order of each JSON
result; the README's schema table documents the same list.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import math
import operator
import time
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from checker.http.errors import Interrupted, InvalidURL

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_STRING = json.encoder.encode_basestring  # the encoder's own escaper (C), as _ENCODE uses
_FINITE = math.isfinite  # NaN and the infinities: as the encoder writes them
_INT = int.__repr__  # (a bool is an int: to_json tests the type first)
_FLOAT = float.__repr__

# Rows that are not the outcome of checking a URL, and so never "down": a row
# its run never finished (stopped or killed), and a line that is not a URL.
NOT_CHECKED = Interrupted.category
INVALID = InvalidURL.category
NOT_A_CHECK = frozenset({NOT_CHECKED, INVALID})

FIELDS: tuple[str, ...] = (
    "url",
    "source",
    "line",
    "ok",
    "state",
    "status",
    "reason",
    "error",
    "error_detail",
    "method",
    "head_status",
    "http_version",
    "final_url",
    "ip",
    "redirects",
    "attempts",
    "dns_ms",
    "connect_ms",
    "tls_ms",
    "ttfb_ms",
    "total_ms",
    "reused",
    "checked_at",
    "content_length",
    "server",
    "tls_version",
    "tls_cipher",
    "cert_subject",
    "cert_issuer",
    "cert_not_after",
    "cert_days_left",
    "warnings",
    "reasons",
    "name",
    "tags",
    "banner",
    # Last, always: the journal splices the later lines' list in (journal.py).
    "duplicates",
)


_VALUES = operator.attrgetter(*FIELDS)


@dataclass(frozen=True, slots=True)
class Hop:
    """One redirect followed: `url` answered `status` and sent us to `location`."""

    status: int
    url: str
    location: str

    def to_dict(self) -> dict[str, Any]:
        """As the reports write it (the `redirects` field's items)."""
        return {"status": self.status, "url": self.url, "location": self.location}


# Not frozen: a frozen dataclass sets each of these 37 fields through
# object.__setattr__, 2.7 us a record against 0.5 (one record a check). Nothing
# changes a Result once made; nothing hashes one.
@dataclass(slots=True)
class Result:
    url: str  # exactly as written in the list
    source: str  # the list file it came from
    line: int
    ok: bool  # up or degraded
    state: str | None = None  # "up", "degraded", "down"; None: no check (invalid, not checked)
    status: int | None = None
    reason: str | None = None
    error: str | None = None
    error_detail: str | None = None
    method: str | None = None
    head_status: int | None = None
    http_version: str | None = None
    final_url: str | None = None
    ip: str | None = None  # the address the final request went to
    redirects: tuple[Hop, ...] = ()
    attempts: int = 0
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    total_ms: float | None = None
    reused: bool = False  # the final request went on a kept-alive connection
    checked_at: str | None = None
    content_length: int | None = None
    server: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_not_after: str | None = None
    cert_days_left: int | None = None
    # Things a person should know even when the check is up, e.g. a redirect
    # from https down to http.
    warnings: tuple[str, ...] = ()
    # What decided a degraded or down state, when an expectation did (expect.verdict).
    reasons: tuple[str, ...] = ()
    name: str | None = None  # a CSV list's name column
    tags: tuple[str, ...] = ()  # and its tags
    banner: str | None = None  # tcp:// or tls://: the first line, when asked for
    # Later lines of the lists that named the same URL ("file:line"); they are
    # checked once and reported here, on the first line's row.
    duplicates: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Keys in `FIELDS` order. (Not dataclasses.asdict: its deep copy was the
        largest cost of the hot path in a profile.)"""
        row = dict(zip(FIELDS, _VALUES(self), strict=True))
        row["redirects"] = [hop.to_dict() for hop in self.redirects]
        row["warnings"] = list(self.warnings)
        row["duplicates"] = list(self.duplicates)
        row["reasons"] = list(self.reasons)
        row["tags"] = list(self.tags)
        return row

    def to_json(self) -> str:
        """One line of JSON, keys in `FIELDS` order: what `json.dumps` makes of
        `to_dict()` (ensure_ascii off, no spaces), byte for byte.

        This runs for every result, into the journal. The encoder on the
        whole dict escaped all 37 keys anew each time (6.5 us). A loop over
        the values that tested each one's type took 72,000 instructions a row
        (valgrind), a sixth of a check's own. So each field has its line
        here: its key a constant, None tested first, then the type it is
        declared with (by `__class__`: a call of `type()` costs as much as
        the rest of the test), and `_piece` for anything else it may hold.
        A float is finite when `x - x == 0.0` (inf - inf and NaN are NaN),
        as the encoder wants it. (Field by field as `FIELDS`:
        tests/test_results.py checks the two agree.)"""
        (
            url,
            source,
            line,
            ok,
            state,
            status,
            reason,
            error,
            error_detail,
            method,
            head_status,
            http_version,
            final_url,
            ip,
            redirects,
            attempts,
            dns_ms,
            connect_ms,
            tls_ms,
            ttfb_ms,
            total_ms,
            reused,
            checked_at,
            content_length,
            server,
            tls_version,
            tls_cipher,
            cert_subject,
            cert_issuer,
            cert_not_after,
            cert_days_left,
            warnings,
            reasons,
            name,
            tags,
            banner,
            duplicates,
        ) = _VALUES(self)
        return "".join(
            (
                (
                    '{"url":null'
                    if url is None
                    else '{"url":' + _STRING(url)
                    if url.__class__ is str
                    else _piece(0, url)
                ),
                (
                    ',"source":null'
                    if source is None
                    else ',"source":' + _STRING(source)
                    if source.__class__ is str
                    else _piece(1, source)
                ),
                (
                    ',"line":null'
                    if line is None
                    else ',"line":' + _INT(line)
                    if line.__class__ is int
                    else _piece(2, line)
                ),
                (',"ok":true' if ok is True else ',"ok":false' if ok is False else _piece(3, ok)),
                (
                    ',"state":null'
                    if state is None
                    else ',"state":' + _STRING(state)
                    if state.__class__ is str
                    else _piece(4, state)
                ),
                (
                    ',"status":null'
                    if status is None
                    else ',"status":' + _INT(status)
                    if status.__class__ is int
                    else _piece(5, status)
                ),
                (
                    ',"reason":null'
                    if reason is None
                    else ',"reason":' + _STRING(reason)
                    if reason.__class__ is str
                    else _piece(6, reason)
                ),
                (
                    ',"error":null'
                    if error is None
                    else ',"error":' + _STRING(error)
                    if error.__class__ is str
                    else _piece(7, error)
                ),
                (
                    ',"error_detail":null'
                    if error_detail is None
                    else ',"error_detail":' + _STRING(error_detail)
                    if error_detail.__class__ is str
                    else _piece(8, error_detail)
                ),
                (
                    ',"method":null'
                    if method is None
                    else ',"method":' + _STRING(method)
                    if method.__class__ is str
                    else _piece(9, method)
                ),
                (
                    ',"head_status":null'
                    if head_status is None
                    else ',"head_status":' + _INT(head_status)
                    if head_status.__class__ is int
                    else _piece(10, head_status)
                ),
                (
                    ',"http_version":null'
                    if http_version is None
                    else ',"http_version":' + _STRING(http_version)
                    if http_version.__class__ is str
                    else _piece(11, http_version)
                ),
                (
                    ',"final_url":null'
                    if final_url is None
                    else ',"final_url":' + _STRING(final_url)
                    if final_url.__class__ is str
                    else _piece(12, final_url)
                ),
                (
                    ',"ip":null'
                    if ip is None
                    else ',"ip":' + _STRING(ip)
                    if ip.__class__ is str
                    else _piece(13, ip)
                ),
                (
                    ',"redirects":[]'
                    if redirects.__class__ is tuple and not redirects
                    else _piece(14, redirects)
                ),
                (
                    ',"attempts":null'
                    if attempts is None
                    else ',"attempts":' + _INT(attempts)
                    if attempts.__class__ is int
                    else _piece(15, attempts)
                ),
                (
                    ',"dns_ms":null'
                    if dns_ms is None
                    else ',"dns_ms":' + _FLOAT(dns_ms)
                    if dns_ms.__class__ is float and dns_ms - dns_ms == 0.0
                    else _piece(16, dns_ms)
                ),
                (
                    ',"connect_ms":null'
                    if connect_ms is None
                    else ',"connect_ms":' + _FLOAT(connect_ms)
                    if connect_ms.__class__ is float and connect_ms - connect_ms == 0.0
                    else _piece(17, connect_ms)
                ),
                (
                    ',"tls_ms":null'
                    if tls_ms is None
                    else ',"tls_ms":' + _FLOAT(tls_ms)
                    if tls_ms.__class__ is float and tls_ms - tls_ms == 0.0
                    else _piece(18, tls_ms)
                ),
                (
                    ',"ttfb_ms":null'
                    if ttfb_ms is None
                    else ',"ttfb_ms":' + _FLOAT(ttfb_ms)
                    if ttfb_ms.__class__ is float and ttfb_ms - ttfb_ms == 0.0
                    else _piece(19, ttfb_ms)
                ),
                (
                    ',"total_ms":null'
                    if total_ms is None
                    else ',"total_ms":' + _FLOAT(total_ms)
                    if total_ms.__class__ is float and total_ms - total_ms == 0.0
                    else _piece(20, total_ms)
                ),
                (
                    ',"reused":true'
                    if reused is True
                    else ',"reused":false'
                    if reused is False
                    else _piece(21, reused)
                ),
                (
                    ',"checked_at":null'
                    if checked_at is None
                    else ',"checked_at":' + _STRING(checked_at)
                    if checked_at.__class__ is str
                    else _piece(22, checked_at)
                ),
                (
                    ',"content_length":null'
                    if content_length is None
                    else ',"content_length":' + _INT(content_length)
                    if content_length.__class__ is int
                    else _piece(23, content_length)
                ),
                (
                    ',"server":null'
                    if server is None
                    else ',"server":' + _STRING(server)
                    if server.__class__ is str
                    else _piece(24, server)
                ),
                (
                    ',"tls_version":null'
                    if tls_version is None
                    else ',"tls_version":' + _STRING(tls_version)
                    if tls_version.__class__ is str
                    else _piece(25, tls_version)
                ),
                (
                    ',"tls_cipher":null'
                    if tls_cipher is None
                    else ',"tls_cipher":' + _STRING(tls_cipher)
                    if tls_cipher.__class__ is str
                    else _piece(26, tls_cipher)
                ),
                (
                    ',"cert_subject":null'
                    if cert_subject is None
                    else ',"cert_subject":' + _STRING(cert_subject)
                    if cert_subject.__class__ is str
                    else _piece(27, cert_subject)
                ),
                (
                    ',"cert_issuer":null'
                    if cert_issuer is None
                    else ',"cert_issuer":' + _STRING(cert_issuer)
                    if cert_issuer.__class__ is str
                    else _piece(28, cert_issuer)
                ),
                (
                    ',"cert_not_after":null'
                    if cert_not_after is None
                    else ',"cert_not_after":' + _STRING(cert_not_after)
                    if cert_not_after.__class__ is str
                    else _piece(29, cert_not_after)
                ),
                (
                    ',"cert_days_left":null'
                    if cert_days_left is None
                    else ',"cert_days_left":' + _INT(cert_days_left)
                    if cert_days_left.__class__ is int
                    else _piece(30, cert_days_left)
                ),
                (
                    ',"warnings":[]'
                    if warnings.__class__ is tuple and not warnings
                    else _piece(31, warnings)
                ),
                (
                    ',"reasons":[]'
                    if reasons.__class__ is tuple and not reasons
                    else _piece(32, reasons)
                ),
                (
                    ',"name":null'
                    if name is None
                    else ',"name":' + _STRING(name)
                    if name.__class__ is str
                    else _piece(33, name)
                ),
                (',"tags":[]' if tags.__class__ is tuple and not tags else _piece(34, tags)),
                (
                    ',"banner":null'
                    if banner is None
                    else ',"banner":' + _STRING(banner)
                    if banner.__class__ is str
                    else _piece(35, banner)
                ),
                (
                    ',"duplicates":[]'
                    if duplicates.__class__ is tuple and not duplicates
                    else _piece(36, duplicates)
                ),
                "}",
            )
        )


# What `to_json` puts before each value (`{"url":`, `,"source":`, ...), and
# before the values that are always written the same.
_KEY = tuple(("{" if i == 0 else ",") + _STRING(name) + ":" for i, name in enumerate(FIELDS))
_NULL = tuple(key + "null" for key in _KEY)
_TRUE = tuple(key + "true" for key in _KEY)
_FALSE = tuple(key + "false" for key in _KEY)
_EMPTY = tuple(key + "[]" for key in _KEY)


def _piece(i: int, value: Any) -> str:
    """Field `i`'s key and value as JSON, for a value of any type."""
    if value is None:
        return _NULL[i]
    kind = type(value)
    if kind is str:
        return _KEY[i] + _STRING(value)
    if kind is bool:
        return _TRUE[i] if value else _FALSE[i]
    if kind is int:
        return _KEY[i] + int.__repr__(value)
    if kind is float and _FINITE(value):
        return _KEY[i] + float.__repr__(value)
    if kind is tuple and not value:
        return _EMPTY[i]
    if kind is tuple and type(value[0]) is Hop:
        return _KEY[i] + _ENCODE([hop.to_dict() for hop in value])
    return _KEY[i] + _ENCODE(value)


def iso(moment: datetime) -> str:
    """UTC, ISO 8601, millisecond precision, with a Z: every time in a report."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_second: list[Any] = [-1, ""]  # the last whole second formatted, and how
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def now_iso() -> str:
    """`iso` of now. The date and time to the second are formatted once a
    second, the milliseconds looked up: this runs for every result."""
    ms = time.time_ns() // 1_000_000
    second = ms // 1000
    if second != _second[0]:
        _second[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return _second[1] + _MILLIS[ms - second * 1000]  # type: ignore[no-any-return]


STATES = (None, "up", "degraded", "down")


@functools.cache
def _kinds() -> dict[str, str]:
    """Each field's kind, read from `Result`'s annotations (so that a field
    added there is checked as it is declared): "text", "whole", "number",
    "flag", "texts" or "hops". Only a merge of reports from elsewhere asks."""
    kinds = {}
    simple = {str: "text", bool: "flag", int: "whole", float: "number"}
    for name, hint in typing.get_type_hints(Result).items():
        if typing.get_origin(hint) is tuple:  # tuple[str, ...] or tuple[Hop, ...]
            kinds[name] = "texts" if typing.get_args(hint)[0] is str else "hops"
            continue
        (kind,) = set(typing.get_args(hint)) - {type(None)} or {hint}  # one type, or it | None
        kinds[name] = simple[kind]
    return kinds


def _of_kind(kind: str, value: Any) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "flag":
        return type(value) is bool
    if kind == "whole":
        return type(value) is int
    if kind == "number":
        return type(value) in (int, float)
    if kind == "texts":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, list) and all(  # hops
        isinstance(h, dict)
        and type(h.get("status")) is int
        and isinstance(h.get("url"), str)
        and isinstance(h.get("location"), str)
        for h in value
    )


_SAID = {
    "text": "is not text",
    "flag": "is not true or false",
    "whole": "is not a whole number",
    "number": "is not a number",
    "texts": "is not a list of text",
    "hops": "are not hops",
}


def row_problem(row: Any) -> str | None:
    """What is wrong with a result read back from a file (a report from
    elsewhere), or None: the fields every reader relies on, of their types."""
    if not isinstance(row, dict):
        return "not an object"
    for name in ("url", "source"):
        if not isinstance(row.get(name), str):
            return f"{name} is not text"
    line = row.get("line")
    if type(line) is not int or line < 1:
        return "line is not a line number"
    if type(row.get("ok")) is not bool:
        return "ok is not true or false"
    if row.get("state") not in STATES:
        return "state is not up, degraded or down"
    kinds = _kinds()
    for name, value in row.items():
        kind = kinds.get(name)
        if value is not None and kind is not None and not _of_kind(kind, value):
            return f"{name} {_SAID[kind]}"
    return None
