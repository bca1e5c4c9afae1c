"""Reports from a journal: status-<stamp>.<format> for each format, and latest.<format>."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from checker.reports import csv_report, json_report, prom_report
from checker.reports.atomic import publish_latest, write_atomic
from checker.reports.journal import Journal

FORMATS = ("csv", "json", "html", "prom")
DEFAULT_FORMATS = ("csv", "json", "html")


async def write_reports(
    base: str,
    formats: Sequence[str],
    run_info: dict[str, Any],
    journal: Journal,
    *,
    changes: Sequence[dict[str, Any]] = (),
    latest: bool = True,
) -> list[str]:
    """Write `base`.<fmt> for each format; point latest.<fmt> at it when `latest`."""
    written: list[str] = []
    folder = os.path.dirname(base)
    for fmt in formats:
        path = f"{base}.{fmt}"
        chunks: Iterable[bytes]
        if fmt == "json":
            chunks = json_report.render(run_info, journal, changes)
        elif fmt == "csv":
            chunks = csv_report.render(journal.rows_in_order())
        elif fmt == "html":
            from checker.reports import html_report  # the largest renderer: only when asked

            chunks = html_report.render(run_info, journal.results, changes)
        elif fmt == "prom":
            chunks = prom_report.render(run_info, journal.results)
        else:
            raise ValueError(f"unknown format {fmt}")
        await write_atomic(path, chunks)
        if latest:
            publish_latest(path, os.path.join(folder, f"latest.{fmt}"))
        written.append(path)
    return written
