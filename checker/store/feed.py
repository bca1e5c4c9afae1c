"""A run's results into the history database, off the event loop.

The report pass hands every row to `Feed.add`; a batch is written in a worker
thread, one transaction per batch, while the pass goes on rendering the next
(one batch in flight at a time, so memory stays at two batches). For a
complete run each batch also steps its URLs' states (`store.state`), and the
changes come back here: the first MAX_CHANGES kept, all of them counted.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from typing import Any

from checker.history import MAX_CHANGES, read_runs, report_rows
from checker.results import NOT_A_CHECK
from checker.store.db import HistoryDB
from checker.store.model import Change, Policy, Row


def as_row(row: dict[str, Any]) -> Row | None:
    if row.get("error") in NOT_A_CHECK or not isinstance(row.get("url"), str):
        return None
    return Row(
        url=row["url"],
        ok=bool(row.get("ok")),
        status=row.get("status"),
        error=row.get("error"),
        total_ms=row.get("total_ms"),
        checked_at=row.get("checked_at"),
        line=int(row.get("line") or 0),
        detail=row.get("error_detail"),
        final_url=row.get("final_url"),
        cert_days=row.get("cert_days_left"),
    )


class Feed:
    """With a `policy` the rows step their URLs' states and the changes are
    gathered; the states are kept only with `save_states` (a complete run)."""

    def __init__(
        self,
        db: HistoryDB,
        run_id: int,
        batch: int = 2048,
        policy: Policy | None = None,
        now: datetime | None = None,
        save_states: bool = True,
    ) -> None:
        self.db = db
        self.save_states = save_states
        self.run_id = run_id
        self.size = batch
        self.policy = policy
        self.now = now
        self.changes: list[Change] = []
        self.changes_total = 0
        self._batch: list[Row] = []
        self._pending: asyncio.Future[list[Change]] | None = None

    def add(self, row: dict[str, Any]) -> None:
        kept = as_row(row)
        if kept is not None:
            self._batch.append(kept)

    async def flush(self, force: bool = False) -> None:
        if not self._batch or (len(self._batch) < self.size and not force):
            return
        await self._collect()
        batch, self._batch = self._batch, []
        self._pending = asyncio.ensure_future(
            asyncio.to_thread(
                self.db.add_results, self.run_id, batch, self.policy, self.now, self.save_states
            )
        )

    async def close(self) -> None:
        await self.flush(force=True)
        await self._collect()

    async def _collect(self) -> None:
        if self._pending is None:
            return
        found = await self._pending
        self._pending = None
        self.changes_total += len(found)
        self.changes += found[: max(0, MAX_CHANGES - len(self.changes))]


def totals(run: dict[str, Any]) -> dict[str, int]:
    keys = ("total", "up", "down", "not_checked", "invalid")
    return {k: int(run.get(k) or 0) for k in keys}


def import_reports(db: HistoryDB, out_dir: str) -> int:
    """Fill a new database from the JSON reports the run index still names,
    so that nobody loses the history they had. Returns the runs imported."""
    imported = 0
    for entry in read_runs(out_dir):
        name = next((n for n in entry.get("reports", []) if n.endswith(".json")), None)
        if name is None or not os.path.exists(os.path.join(out_dir, name)):
            continue
        run_id = db.add_run(
            started_at=str(entry.get("started_at") or ""),
            lists=json.dumps(entry.get("lists") or []),
            complete=not entry.get("interrupted"),
            totals=totals(entry),
            finished_at=entry.get("finished_at"),
            report=name,
        )
        batch: list[Row] = []
        for _, line in report_rows(os.path.join(out_dir, name)):
            try:
                kept = as_row(json.loads(line))
            except ValueError:
                continue
            if kept is not None:
                batch.append(kept)
            if len(batch) >= 2048:
                db.add_results(run_id, batch)
                batch = []
        if batch:
            db.add_results(run_id, batch)
        imported += 1
    return imported
