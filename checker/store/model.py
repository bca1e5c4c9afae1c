"""The history's typed records: a result as kept, a URL's state across runs,
a change, the alert policy, an uptime figure."""

from __future__ import annotations

from dataclasses import dataclass

# Defined apart, for a run to import without the rest (see each module),
# and exported here as ever.
from checker.store.policy import Policy as Policy
from checker.store.run_entry import RunEntry as RunEntry

UP = "up"
DOWN = "down"


@dataclass(frozen=True, slots=True)
class Row:
    """One result as the history keeps it (and as its state machine reads it)."""

    url: str
    ok: bool
    status: int | None
    error: str | None
    total_ms: float | None
    checked_at: str | None
    # Kept in the URL's state only (see `state`), not in the results table.
    degraded: bool = False
    line: int = 0
    detail: str | None = None  # error_detail
    final_url: str | None = None
    cert_days: int | None = None

    @property
    def outcome(self) -> str | int | None:
        """The error category, else the status: what a change says before/after."""
        return self.error or self.status


@dataclass(frozen=True, slots=True)
class State:
    """A URL's state as stored between runs."""

    state: str  # UP or DOWN, as the alerts last said
    since: str | None  # when that state began
    # The last result that agreed with `state`: what the next one is compared with.
    status: int | None = None
    error: str | None = None
    final_url: str | None = None
    cert_days: int | None = None
    # Consecutive complete runs that saw the other state, and the first of them.
    pending: int = 0
    pending_since: str | None = None
    reminded_at: str | None = None  # when a down alert last went out
    degraded: bool = False  # up, but slow, a certificate too close, or only on a retry

    @property
    def outcome(self) -> str | int | None:
        return self.error or self.status


@dataclass(frozen=True, slots=True)
class Change:
    """One thing worth telling a person, in the reports and the alerts."""

    url: str
    line: int
    # down, up, still_down, degraded, recovered, status, final_url, cert_expiring
    kind: str
    before: object
    after: object
    since: str | None = None  # when the state this change reports began
    detail: str | None = None  # what went wrong (error_detail), for down and still_down

    @classmethod
    def from_dict(cls, data: object) -> Change | None:
        """A change read back from a JSON report (None: not one)."""
        if not isinstance(data, dict):
            return None
        url, line, kind = data.get("url"), data.get("line"), data.get("kind")
        if not isinstance(url, str) or not isinstance(kind, str):
            return None
        since, detail = data.get("since"), data.get("detail")
        return cls(
            url,
            line if isinstance(line, int) else 0,
            kind,
            data.get("before"),
            data.get("after"),
            since if isinstance(since, str) else None,
            detail if isinstance(detail, str) else None,
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "url": self.url,
            "line": self.line,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
        }
        if self.since is not None:
            out["since"] = self.since
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Uptime:
    checks: int
    up: int

    @property
    def percent(self) -> float | None:
        return round(100.0 * self.up / self.checks, 2) if self.checks else None


@dataclass(frozen=True, slots=True)
class Trend:
    """A URL's recent history, for its row in the page."""

    uptime: tuple[float | None, float | None, float | None]  # percent: 24 h, 7 d, 30 d
    # Its last results, oldest first, as the history keeps them (db._pushed):
    # "1:12.5 0 1:9.75", up (1) or down (0), then ":" and the time in ms if
    # it had one. Text, not records: 20 tuples a URL were 12 us a row of the
    # history's thread, for a page that reads each result once
    # (html_report._history_svg).
    recent: str
    down_since: str | None  # when its current run of downs began, if it is down


@dataclass(frozen=True, slots=True)
class Incident:
    """From a URL going down to its coming back (`ended` None: still down)."""

    url: str
    started: str
    ended: str | None
    cause: str | None
    detail: str | None


@dataclass(slots=True)
class Batch:
    """What storing one batch of a run's results found."""

    changes: list[Change]
    trends: dict[str, Trend]
    incidents: list[Incident]


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """A run the history has already (`HistoryDB.recorded`)."""

    report: str | None  # its JSON report's name, if it had one
    complete: bool
    totals: dict[str, int]  # total, up, down, not_checked, invalid
    finished_at: str | None
