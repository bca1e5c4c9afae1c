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

import asyncio
import itertools
import json
import os
from array import array
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

from checker.reports import csv_report, json_report, prom_report
from checker.reports.atomic import Spool, publish_latest, write_atomic
from checker.reports.formats import DEFAULT_FORMATS as DEFAULT_FORMATS
from checker.reports.formats import FORMATS as FORMATS
from checker.reports.journal import Journal
from checker.store.feed import Feed
from checker.store.model import Batch, Change
from checker.summary import Stats

_RAW_DECODE = json.JSONDecoder().raw_decode


def decode_row(raw: bytes) -> Any:
    """`json.loads(raw)`, for a row: the C scanner called at once. json.loads
    on bytes first guesses their encoding and goes through two layers of
    Python (a fifth of what a reporter spends on a row, with the scanner).
    A row with anything unusual (a BOM, whitespace around it, bytes that are
    not UTF-8, not JSON) goes to json.loads, which decides or says why not."""
    try:
        text = raw.decode("utf-8")
        row, end = _RAW_DECODE(text)
        if end == len(text):
            return row
    except ValueError:
        pass
    return json.loads(raw)


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
    not_up = int(run_info.get("total") or 0) - int(run_info.get("up") or 0)
    writer = await ReportWriter.open(base, formats, run_info, store=store, stats=stats, down=not_up)
    try:
        for raw in journal.rows_in_order():
            await writer.add(raw)
        return await writer.finish(run_info, journal, latest=latest)
    finally:
        await writer.discard()


class ReportWriter:
    """Every row once, in input order: CSV, the JSON results, the HTML table
    and its figures, the history database (and the changes). `finish` writes
    what only the whole pass knows and puts the reports in place.

    The page's rows show each URL's trend (uptime, its last results), which
    the database works out for a batch as it stores it; so a batch's table
    rows are rendered when its findings come back, while the database thread
    stores the next batch. At most two batches of rows wait for that.

    `down`: the run's rows that are not up, when known before the rows come
    (see `html_report.Page`); a writer fed while the run goes has None.
    """

    def __init__(
        self,
        base: str,
        formats: Sequence[str],
        spools: dict[str, Spool],
        run_info: dict[str, Any],
        store: Feed | None,
        stats: Stats | None,
        down: int | None,
        batch: int,
        store_rows: int,
    ) -> None:
        self.base = base
        self.formats = formats
        self.spools = spools
        self.store = store
        self.stats = stats
        self.csv_out = csv_report.Writer() if "csv" in spools else None
        self.page = None
        if "html" in spools:
            from checker.reports import html_report  # the largest renderer: only when asked

            self.page = html_report.Page(run_info, down)
        # The encoded length of each row of the page's table, in table order:
        # a row the table takes out again (`Page.evicted`) is left out by it.
        self.table_lengths = array("Q")
        self.json_rows: list[bytes] | None = [] if "json" in spools else None
        self.decode = (
            self.csv_out is not None
            or self.page is not None
            or store is not None
            or stats is not None
        )
        # Only a page with trends to show waits for the database's batches; else
        # the table rows go out at once and the database keeps its own pace
        # (one batch in flight, `store_rows` rows at a time: fewer, larger
        # transactions).
        self.store_rows = store_rows
        self.batch = batch
        self.trends = self.page is not None and store is not None and store.trends
        self.first = True
        self.seq = 0
        self.listed: list[Change] = []  # the changes the reports list (end_pass)
        self.waiting: deque[list[tuple[int, dict[str, Any]]]] = deque()  # rows for the table
        self.batch_rows: list[tuple[int, dict[str, Any]]] = []

    @classmethod
    async def open(
        cls,
        base: str,
        formats: Sequence[str],
        run_info: dict[str, Any],
        *,
        store: Feed | None = None,
        stats: Stats | None = None,
        down: int | None = None,
        batch: int = BATCH,
        store_rows: int = STORE_ROWS,
    ) -> ReportWriter:
        """`batch`: rows between writes (and a batch of the history database
        when the page waits for its trends); `store_rows`: rows a batch of
        the history database otherwise. A writer fed while the run goes (the
        reporter) takes smaller ones of both: what is left when the checks
        end is at most a batch or two, and it is the run's wait."""
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown format {sorted(unknown)[0]}")
        spools: dict[str, Spool] = {}
        try:
            for fmt in ("csv", "json", "html"):
                if fmt in formats:
                    spools[fmt] = await Spool.create(f"{base}.{fmt}")
        except BaseException:
            for spool in spools.values():
                await spool.discard()
            raise
        return cls(base, formats, spools, run_info, store, stats, down, batch, store_rows)

    async def add(self, raw: bytes) -> None:
        """The next row in input order: its result's JSON object."""
        seq = self.seq
        self.seq += 1
        if self.json_rows is not None:
            self.json_rows.append(raw)
        if self.decode:
            row = decode_row(raw)
            if self.csv_out is not None:
                self.csv_out.row(row)
            if self.page is not None:
                self.batch_rows.append((seq, row))
            if self.store is not None:
                self.store.add(row)
            if self.stats is not None:
                self.stats.add_row(seq, row)
        if seq % self.batch == self.batch - 1:
            await self._flush(last=False)

    async def _render(self, found: Batch | None) -> None:
        """The table rows of the oldest waiting batch, with `found`'s trends."""
        rows = self.waiting.popleft()
        if self.page is None:
            return
        from checker.reports import html_report

        trends = found.trends if found is not None else {}
        table = []
        for seq, row in rows:
            html_row = self.page.row(seq, row, trends.get(str(row.get("url"))))
            if html_row is not None:
                data = html_report.encode(html_row)
                self.table_lengths.append(len(data))
                table.append(data)
        if table:
            await self.spools["html"].write(b"".join(table))

    async def _flush(self, last: bool) -> None:
        if self.csv_out is not None:
            await self.spools["csv"].write(self.csv_out.take())
        if self.json_rows:
            rows = b",\n".join(self.json_rows)
            await self.spools["json"].write((b"\n" if self.first else b",\n") + rows)
            self.first = False
            self.json_rows.clear()
        self.waiting.append(self.batch_rows)
        self.batch_rows = []
        store = self.store
        if store is None or not self.trends:
            await self._render(None)
            if store is not None and (store.batched >= self.store_rows or last):
                await store.send()
        else:
            found = await store.send()  # this batch goes; the one before comes back
            if found is not None:
                await self._render(found)

    async def finish(
        self, run_info: dict[str, Any], journal: Journal, *, latest: bool = True
    ) -> list[str]:
        """The rest of the pass, then every report in place; `run_info` is the
        run's header as it ended (the page's and the JSON report's)."""
        await self.end_pass(run_info)
        return await self.publish(run_info, journal, latest=latest)

    async def end_pass(self, run_info: dict[str, Any]) -> None:
        """The rows still waiting, and the database's last batch. When it
        steps states after an earlier complete run, the changes are known
        now: `run_info["changes_total"]` is set."""
        await self._flush(last=True)
        store = self.store
        if store is not None:
            found = await store.close()
            if self.trends:
                await self._render(found)
        if store is not None and store.failed is not None:
            # (Its history is lost: no changes can be said, nor a run before.)
            run_info.pop("previous_run", None)
        elif store is not None and store.policy is not None and run_info.get("previous_run"):
            self.listed = store.changes
            run_info["changes_total"] = store.changes_total

    async def publish(
        self, run_info: dict[str, Any], journal: Journal, *, latest: bool = True
    ) -> list[str]:
        """Every report in place (after `end_pass`).

        The formats are put in place at once, each in its thread (the
        kernel's copy of a spool into its report, and each file's wait for
        the disk, one after another took 37 ms of the run's end on 10,000
        rows); then each `latest.<format>` in order. When one fails, the
        others still finish, the links go up to the failed one, and its
        error is raised."""
        store = self.store
        listed = self.listed
        base = self.base
        jobs: list[Awaitable[None]] = []
        for fmt in self.formats:
            path = f"{base}.{fmt}"
            if fmt == "csv":
                jobs.append(self.spools.pop("csv").publish(path))
            elif fmt == "json":
                head = json_report.head(run_info, listed)
                jobs.append(self.spools["json"].assemble(path, head, json_report.TAIL))
            elif fmt == "html":
                from checker.reports import html_report

                page = self.page
                assert page is not None
                page.run = run_info
                incidents = store.incidents if store is not None else []
                skip = _places(self.table_lengths, page.evicted)
                head = page.head(listed, incidents)
                jobs.append(self.spools["html"].assemble(path, head, html_report.tail(), skip))
            else:
                jobs.append(write_atomic(path, prom_report.render(run_info, journal.results)))
        done = await asyncio.gather(*jobs, return_exceptions=True)
        written: list[str] = []
        for fmt, failed in zip(self.formats, done, strict=True):
            if failed is not None:
                raise failed
            path = f"{base}.{fmt}"
            if latest:
                publish_latest(path, os.path.join(os.path.dirname(base), f"latest.{fmt}"))
            written.append(path)
        return written

    async def discard(self) -> None:
        """Throw away what is not in place (every spool, after `finish`)."""
        for spool in self.spools.values():
            await spool.discard()
        self.spools.clear()


def _places(lengths: array[int], evicted: Sequence[int]) -> list[tuple[int, int]]:
    """The byte ranges of the table rows at places `evicted` (in a spool of
    rows of `lengths`)."""
    if not evicted:
        return []
    starts = [0, *itertools.accumulate(lengths)]
    return [(starts[place], starts[place + 1]) for place in sorted(evicted)]
