"""The JSON report: {"run": {...}, "results": [...]}, results in input order."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from checker.reports.journal import Journal
from checker.store.model import Change

BATCH = 1024


def head(run: dict[str, Any], changes: Sequence[Change]) -> bytes:
    """The run header line, the changes line, and the opening of the results."""
    return (
        b'{"run":'
        + json.dumps(run, ensure_ascii=False, indent=None).encode("utf-8")
        + b',\n"changes":'
        + json.dumps([c.to_dict() for c in changes], ensure_ascii=False).encode("utf-8")
        + b',\n"results":['
    )


TAIL = b"\n]}\n"


def render(
    run: dict[str, Any], journal: Journal, changes: Sequence[Change] = ()
) -> Iterator[bytes]:
    """One line for the run header, one for all the changes, one per result.

    That layout is relied on (`history.report_rows`): a reader can stream a
    report of a million results a line at a time.
    """
    yield head(run, changes)
    batch: list[bytes] = []
    first = True
    for row in journal.rows_in_order():
        batch.append(row)
        if len(batch) >= BATCH:
            yield (b"\n" if first else b",\n") + b",\n".join(batch)
            first, batch = False, []
    if batch:
        yield (b"\n" if first else b",\n") + b",\n".join(batch)
    yield TAIL
