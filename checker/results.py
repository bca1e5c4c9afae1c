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

        Made here a value at a time: this runs for every result, into the
        journal, and the keys are the same every time. Encoding the whole
        dict made the encoder escape all 37 keys anew (6.5 us; this, 3.9).
        Strings go through the encoder's own string escaper."""
        out: list[str] = []
        append = out.append
        for i, value in enumerate(_VALUES(self)):
            if value is None:
                append(_NULL[i])
                continue
            kind = type(value)
            if kind is str:
                append(_KEY[i] + _STRING(value))
            elif kind is bool:
                append(_TRUE[i] if value else _FALSE[i])
            elif kind is int:
                append(_KEY[i] + int.__repr__(value))
            elif kind is float and _FINITE(value):
                append(_KEY[i] + float.__repr__(value))
            elif kind is tuple and not value:
                append(_EMPTY[i])
            elif kind is tuple and type(value[0]) is Hop:
                append(_KEY[i] + _ENCODE([hop.to_dict() for hop in value]))
            else:
                append(_KEY[i] + _ENCODE(value))
        append("}")
        return "".join(out)


# What `to_json` puts before each value (`{"url":`, `,"source":`, ...), and
# before the values that are always written the same.
_KEY = tuple(("{" if i == 0 else ",") + _STRING(name) + ":" for i, name in enumerate(FIELDS))
_NULL = tuple(key + "null" for key in _KEY)
_TRUE = tuple(key + "true" for key in _KEY)
_FALSE = tuple(key + "false" for key in _KEY)
_EMPTY = tuple(key + "[]" for key in _KEY)


def iso(moment: datetime) -> str:
    """UTC, ISO 8601, millisecond precision, with a Z: every time in a report."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_second: list[Any] = [-1, ""]  # the last whole second formatted, and how


def now_iso() -> str:
    """`iso` of now. The date and time to the second are formatted once a
    second: this runs for every result."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


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
