"""Reports from a journal: status-<stamp>.<format> for each format, and latest.<format>."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from checker.reports import csv_report, json_report
from checker.reports.atomic import publish_latest, write_atomic
from checker.reports.journal import Journal

FORMATS = ("csv", "json")


async def write_reports(
    base: str,
    formats: Sequence[str],
    run_info: dict[str, Any],
    journal: Journal,
    *,
    latest: bool = True,
) -> list[str]:
    """Write `base`.<fmt> for each format; point latest.<fmt> at it when `latest`."""
    written: list[str] = []
    folder = os.path.dirname(base)
    for fmt in formats:
        path = f"{base}.{fmt}"
        if fmt == "json":
            await write_atomic(path, json_report.render(run_info, journal))
        elif fmt == "csv":
            await write_atomic(path, csv_report.render(journal))
        else:
            raise ValueError(f"unknown format {fmt}")
        if latest:
            publish_latest(path, os.path.join(folder, f"latest.{fmt}"))
        written.append(path)
    return written
