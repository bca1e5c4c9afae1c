"""Reports from a journal: status-<stamp>.<format> for each format, and latest.<format>.

The journal is read once, in input order, and each row is decoded once and
fed to every format that needs it (and to the history database, which
finds the changes): reading and decoding every row once per format was a quarter of a run's
CPU. CSV is written straight to its file; the JSON and HTML reports start
with what only the whole pass knows (the changes, the page's charts), so their
rows go to a spool file beside them and the report is assembled from it.
Prometheus groups its samples by metric, so it makes passes of its own (it is
only written on request).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from checker.reports import csv_report, json_report, prom_report
from checker.reports.atomic import Spool, publish_latest, write_atomic
from checker.reports.journal import Journal
from checker.store.feed import Feed
from checker.store.model import Batch, Change
from checker.summary import Stats

FORMATS = ("csv", "json", "html", "prom")
DEFAULT_FORMATS = ("csv", "json", "html")
BATCH = 1024  # rows between writes
STORE_ROWS = 4096  # rows a transaction of the history database, when no page waits for it


async def write_reports(
    base: str,
    formats: Sequence[str],
    run_info: dict[str, Any],
    journal: Journal,
    *,
    store: Feed | None = None,
    latest: bool = True,
    stats: Stats | None = None,
) -> list[str]:
    """Write `base`.<fmt> for each format; point latest.<fmt> at it when `latest`.
    With `stats`, every row is also counted there (a merge's summary, from
    the one pass instead of one more).

    With a `store`, every row also goes into the history database; when it
    steps the URLs' states (a complete run) and there was an earlier complete
    run (`run_info["previous_run"]`), the changes it found go into the
    reports, and `run_info["changes_total"]` is set before they are written.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format {sorted(unknown)[0]}")
    spools: dict[str, Spool] = {}
    try:
        for fmt in ("csv", "json", "html"):
            if fmt in formats:
                spools[fmt] = await Spool.create(f"{base}.{fmt}")
        page = await _one_pass(journal, spools, run_info, store, stats)
        listed: list[Change] = []
        if store is not None and store.policy is not None and run_info.get("previous_run"):
            listed = store.changes
            run_info["changes_total"] = store.changes_total
        written: list[str] = []
        for fmt in formats:
            path = f"{base}.{fmt}"
            if fmt == "csv":
                await spools.pop("csv").publish(path)
            elif fmt == "json":
                body = spools["json"]
                await write_atomic(
                    path, _assemble(json_report.head(run_info, listed), body, json_report.TAIL)
                )
            elif fmt == "html":
                from checker.reports import html_report

                assert page is not None
                incidents = store.incidents if store is not None else []
                await write_atomic(
                    path,
                    _assemble(page.head(listed, incidents), spools["html"], html_report.tail()),
                )
            else:
                await write_atomic(path, prom_report.render(run_info, journal.results))
            if latest:
                publish_latest(path, os.path.join(os.path.dirname(base), f"latest.{fmt}"))
            written.append(path)
        return written
    finally:
        for spool in spools.values():
            await spool.discard()


async def _one_pass(
    journal: Journal,
    spools: dict[str, Spool],
    run_info: dict[str, Any],
    store: Feed | None,
    stats: Stats | None = None,
) -> Any:
    """Every row once: CSV, the JSON results, the HTML table and its figures,
    the history database (and the changes). Returns the HTML `Page` (or None).

    The page's rows show each URL's trend (uptime, its last results), which
    the database works out for a batch as it stores it; so a batch's table
    rows are rendered when its findings come back, while the database thread
    stores the next batch. At most two batches of rows wait for that.
    """
    csv_out = csv_report.Writer() if "csv" in spools else None
    page = None
    if "html" in spools:
        from checker.reports import html_report  # the largest renderer: only when asked

        not_up = int(run_info.get("total") or 0) - int(run_info.get("up") or 0)
        page = html_report.Page(run_info, not_up)
    json_rows: list[bytes] | None = [] if "json" in spools else None
    decode = csv_out is not None or page is not None or store is not None or stats is not None
    # Only a page with trends to show waits for the database's batches; else
    # the table rows go out at once and the database keeps its own pace
    # (one batch in flight, STORE_ROWS rows at a time: fewer, larger
    # transactions).
    trends = page is not None and store is not None and store.trends
    first = True
    waiting: deque[list[tuple[int, dict[str, Any]]]] = deque()  # rows for the table
    batch_rows: list[tuple[int, dict[str, Any]]] = []

    async def render(found: Batch | None) -> None:
        """The table rows of the oldest waiting batch, with `found`'s trends."""
        rows = waiting.popleft()
        if page is None:
            return
        trends = found.trends if found is not None else {}
        table = []
        for seq, row in rows:
            html_row = page.row(seq, row, trends.get(str(row.get("url"))))
            if html_row is not None:
                table.append(html_row)
        if table:
            await spools["html"].write(html_report.encode("".join(table)))

    last = False

    async def flush() -> None:
        nonlocal first, batch_rows
        if csv_out is not None:
            await spools["csv"].write(csv_out.take())
        if json_rows:
            await spools["json"].write((b"\n" if first else b",\n") + b",\n".join(json_rows))
            first = False
            json_rows.clear()
        waiting.append(batch_rows)
        batch_rows = []
        if store is None or not trends:
            await render(None)
            if store is not None and (store.batched >= STORE_ROWS or last):
                await store.send()
        else:
            found = await store.send()  # this batch goes; the one before comes back
            if found is not None:
                await render(found)

    for seq, raw in enumerate(journal.rows_in_order()):
        if json_rows is not None:
            json_rows.append(raw)
        if decode:
            row = json.loads(raw)
            if csv_out is not None:
                csv_out.row(row)
            if page is not None:
                batch_rows.append((seq, row))
            if store is not None:
                store.add(row)
            if stats is not None:
                stats.add_row(seq, row)
        if seq % BATCH == BATCH - 1:
            await flush()
    last = True
    await flush()
    if store is not None:
        found = await store.close()
        if trends:
            await render(found)
    return page


async def _assemble(head: bytes, body: Spool, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    async for piece in body.pieces():
        yield piece
    yield tail
