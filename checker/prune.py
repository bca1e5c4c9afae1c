"""--keep N / --keep-days D: remove old timestamped reports after a good run.

Only `status-<stamp>.<format>` files are candidates. `latest.*`, the run
index, journals (a dead run's data) and anything else in the folder are never
touched; the newest run is always kept.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

_REPORT = re.compile(r"^status-(\d{8}T\d{6}Z)\.(csv|json|html|prom)$")


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
    ordered = sorted(stamps, reverse=True)  # newest first; the stamp sorts as time
    doomed: set[str] = set()
    if keep is not None:
        doomed.update(ordered[max(keep, 1) :])
    if keep_days is not None:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
        for stamp in ordered[1:]:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if when < cutoff:
                doomed.add(stamp)
    removed = []
    for stamp in sorted(doomed):
        for name in stamps[stamp]:
            path = os.path.join(out_dir, name)
            os.unlink(path)
            removed.append(path)
    return removed
