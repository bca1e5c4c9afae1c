"""What a run tells the history before anything is stored: the alert policy
and how long raw results are kept.

Apart from `model` and `db` because a run needs these as it starts (its
options, the reporter's `Start`), and the history's records and database
only when it stores its results: a run with a reporter never imports them,
and creating `model`'s records is most of their cost (each dataclass's
methods are compiled as it is made). `model` and `db` still export them.
"""

from __future__ import annotations

from dataclasses import dataclass

HISTORY_DAYS = 14  # raw results kept this long; then one row per URL per day


@dataclass(frozen=True, slots=True)
class Policy:
    alert_after: int = 1  # consecutive complete runs before a flip is a change
    remind_every: float | None = None  # seconds; None: never remind
    warn_days: int = 14  # --cert-warn-days
