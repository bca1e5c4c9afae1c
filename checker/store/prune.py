"""--keep N / --keep-days D: remove old timestamped reports after a good run.

Only `status-<stamp>.<format>` files are candidates. `latest.*`, the run
index, journals (a dead run's data) and anything else in the folder are never
touched; the newest run is always kept.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

# status-<stamp>[<n>].<format>: n (2, 3, ...) for a later run in the same second.
_REPORT = re.compile(r"^status-((\d{8}T\d{6}Z)\d*)\.(csv|json|html|prom)$")


def prune(
    out_dir: str, keep: int | None, keep_days: float | None, now: datetime | None = None
) -> list[str]:
    """Delete the reports of all but the newest `keep` runs and those older than
    `keep_days`; return the paths removed."""
    stamps: dict[str, list[str]] = {}
    for name in os.listdir(out_dir):
        m = _REPORT.match(name)
        if m:
            stamps.setdefault(m.group(1), []).append(name)
    ordered = sorted(stamps, key=stamp_order, reverse=True)  # newest first
    doomed: set[str] = set()
    if keep is not None:
        doomed.update(ordered[max(keep, 1) :])
    if keep_days is not None:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
        for stamp in ordered[1:]:
            when = datetime.strptime(stamp[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if when < cutoff:
                doomed.add(stamp)
    removed = []
    for stamp in sorted(doomed):
        for name in stamps[stamp]:
            path = os.path.join(out_dir, name)
            os.unlink(path)
            removed.append(path)
    return removed


def stamp_order(stamp: str) -> tuple[str, int]:
    """A stamp sorts as its time, then its run number within that second."""
    number = stamp[16:]
    return stamp[:16], int(number) if number.isdigit() else 1
