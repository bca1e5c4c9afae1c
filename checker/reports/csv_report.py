"""The CSV report: a header row, then one row per result, RFC 4180 quoting.

Cells that a spreadsheet would run as a formula (starting with = + - @, or a
tab or CR) are prefixed with a single quote: a hostile server must not be able
to put a formula in front of whoever opens the report (OWASP, CSV injection).
Only text cells are touched; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from checker.results import FIELDS

BATCH = 1024
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(name: str, value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if name == "redirects":
        text = " ; ".join(f"{hop['status']} {hop['url']} -> {hop['location']}" for hop in value)
    elif isinstance(value, list):
        text = " ; ".join(str(v) for v in value)
    else:
        text = str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


_FORMULA_CHARS = frozenset(_FORMULA_START)


def cells(row: dict[str, Any]) -> list[str | int | float]:
    """`cell` over a whole row, with the common types inline (this runs once per
    row of a report that may have millions): text, nothing, numbers, flags and
    empty lists never call `cell`."""
    out: list[str | int | float] = []
    append = out.append
    get: Callable[[str], Any] = row.get
    for name, value in zip(FIELDS, map(get, FIELDS), strict=True):
        kind = type(value)
        if kind is str:
            append("'" + value if value[:1] in _FORMULA_CHARS else value)
        elif value is None:
            append("")
        elif kind is int or kind is float:
            append(value)
        elif kind is bool:
            append("true" if value else "false")
        elif kind is list and not value:
            append("")
        else:
            append(cell(name, value))
    return out


class Writer:
    """CSV rows into a buffer; `take()` hands over what has been written."""

    def __init__(self) -> None:
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="\r\n")
        self._writer.writerow(FIELDS)

    def row(self, row: dict[str, Any]) -> None:
        self._writer.writerow(cells(row))

    def take(self) -> bytes:
        data = self._buf.getvalue().encode("utf-8")
        self._buf.seek(0)
        self._buf.truncate()
        return data


def render(rows: Iterable[bytes]) -> Iterator[bytes]:
    """`rows`: each result's JSON, in order (a stored JSON report's result lines)."""
    writer = Writer()
    for count, raw in enumerate(rows, start=1):
        writer.row(json.loads(raw))
        if count % BATCH == 0:
            yield writer.take()
    yield writer.take()
