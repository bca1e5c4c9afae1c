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
from collections.abc import Iterable, Iterator
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
    """`cell` over a whole row. This runs once per row of a report that may
    have millions, so each field has its line, the type it is declared with
    (`Result`) handled inline: a loop that tested each value's type was the
    largest part of a row's CSV. Anything else a field holds (a row read back
    from a report from elsewhere) goes through `cell`; tests/test_results.py
    checks the two agree on any values."""
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
    ) = map(row.get, FIELDS)
    return [
        ""
        if url is None
        else ("'" + url if url[:1] in _FORMULA_CHARS else url)
        if url.__class__ is str
        else cell("url", url),
        ""
        if source is None
        else ("'" + source if source[:1] in _FORMULA_CHARS else source)
        if source.__class__ is str
        else cell("source", source),
        ""
        if line is None
        else line
        if line.__class__ is int or line.__class__ is float
        else cell("line", line),
        "true" if ok is True else "false" if ok is False else cell("ok", ok),
        ""
        if state is None
        else ("'" + state if state[:1] in _FORMULA_CHARS else state)
        if state.__class__ is str
        else cell("state", state),
        ""
        if status is None
        else status
        if status.__class__ is int or status.__class__ is float
        else cell("status", status),
        ""
        if reason is None
        else ("'" + reason if reason[:1] in _FORMULA_CHARS else reason)
        if reason.__class__ is str
        else cell("reason", reason),
        ""
        if error is None
        else ("'" + error if error[:1] in _FORMULA_CHARS else error)
        if error.__class__ is str
        else cell("error", error),
        ""
        if error_detail is None
        else ("'" + error_detail if error_detail[:1] in _FORMULA_CHARS else error_detail)
        if error_detail.__class__ is str
        else cell("error_detail", error_detail),
        ""
        if method is None
        else ("'" + method if method[:1] in _FORMULA_CHARS else method)
        if method.__class__ is str
        else cell("method", method),
        ""
        if head_status is None
        else head_status
        if head_status.__class__ is int or head_status.__class__ is float
        else cell("head_status", head_status),
        ""
        if http_version is None
        else ("'" + http_version if http_version[:1] in _FORMULA_CHARS else http_version)
        if http_version.__class__ is str
        else cell("http_version", http_version),
        ""
        if final_url is None
        else ("'" + final_url if final_url[:1] in _FORMULA_CHARS else final_url)
        if final_url.__class__ is str
        else cell("final_url", final_url),
        ""
        if ip is None
        else ("'" + ip if ip[:1] in _FORMULA_CHARS else ip)
        if ip.__class__ is str
        else cell("ip", ip),
        "" if redirects.__class__ is list and not redirects else cell("redirects", redirects),
        ""
        if attempts is None
        else attempts
        if attempts.__class__ is int or attempts.__class__ is float
        else cell("attempts", attempts),
        ""
        if dns_ms is None
        else dns_ms
        if dns_ms.__class__ is int or dns_ms.__class__ is float
        else cell("dns_ms", dns_ms),
        ""
        if connect_ms is None
        else connect_ms
        if connect_ms.__class__ is int or connect_ms.__class__ is float
        else cell("connect_ms", connect_ms),
        ""
        if tls_ms is None
        else tls_ms
        if tls_ms.__class__ is int or tls_ms.__class__ is float
        else cell("tls_ms", tls_ms),
        ""
        if ttfb_ms is None
        else ttfb_ms
        if ttfb_ms.__class__ is int or ttfb_ms.__class__ is float
        else cell("ttfb_ms", ttfb_ms),
        ""
        if total_ms is None
        else total_ms
        if total_ms.__class__ is int or total_ms.__class__ is float
        else cell("total_ms", total_ms),
        "true" if reused is True else "false" if reused is False else cell("reused", reused),
        ""
        if checked_at is None
        else ("'" + checked_at if checked_at[:1] in _FORMULA_CHARS else checked_at)
        if checked_at.__class__ is str
        else cell("checked_at", checked_at),
        ""
        if content_length is None
        else content_length
        if content_length.__class__ is int or content_length.__class__ is float
        else cell("content_length", content_length),
        ""
        if server is None
        else ("'" + server if server[:1] in _FORMULA_CHARS else server)
        if server.__class__ is str
        else cell("server", server),
        ""
        if tls_version is None
        else ("'" + tls_version if tls_version[:1] in _FORMULA_CHARS else tls_version)
        if tls_version.__class__ is str
        else cell("tls_version", tls_version),
        ""
        if tls_cipher is None
        else ("'" + tls_cipher if tls_cipher[:1] in _FORMULA_CHARS else tls_cipher)
        if tls_cipher.__class__ is str
        else cell("tls_cipher", tls_cipher),
        ""
        if cert_subject is None
        else ("'" + cert_subject if cert_subject[:1] in _FORMULA_CHARS else cert_subject)
        if cert_subject.__class__ is str
        else cell("cert_subject", cert_subject),
        ""
        if cert_issuer is None
        else ("'" + cert_issuer if cert_issuer[:1] in _FORMULA_CHARS else cert_issuer)
        if cert_issuer.__class__ is str
        else cell("cert_issuer", cert_issuer),
        ""
        if cert_not_after is None
        else ("'" + cert_not_after if cert_not_after[:1] in _FORMULA_CHARS else cert_not_after)
        if cert_not_after.__class__ is str
        else cell("cert_not_after", cert_not_after),
        ""
        if cert_days_left is None
        else cert_days_left
        if cert_days_left.__class__ is int or cert_days_left.__class__ is float
        else cell("cert_days_left", cert_days_left),
        "" if warnings.__class__ is list and not warnings else cell("warnings", warnings),
        "" if reasons.__class__ is list and not reasons else cell("reasons", reasons),
        ""
        if name is None
        else ("'" + name if name[:1] in _FORMULA_CHARS else name)
        if name.__class__ is str
        else cell("name", name),
        "" if tags.__class__ is list and not tags else cell("tags", tags),
        ""
        if banner is None
        else ("'" + banner if banner[:1] in _FORMULA_CHARS else banner)
        if banner.__class__ is str
        else cell("banner", banner),
        "" if duplicates.__class__ is list and not duplicates else cell("duplicates", duplicates),
    ]


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
