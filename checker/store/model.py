"""The history's typed records: a result as kept, a URL's state across runs,
a change, the alert policy, an uptime figure."""

from __future__ import annotations

from dataclasses import dataclass

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
class Policy:
    alert_after: int = 1  # consecutive complete runs before a flip is a change
    remind_every: float | None = None  # seconds; None: never remind
    warn_days: int = 14  # --cert-warn-days


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
    # (up, total ms) of its last results, oldest first.
    recent: tuple[tuple[bool, float | None], ...]
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


@dataclass(frozen=True, slots=True)
class RunEntry:
    """A run's line in the run index (`runs.jsonl`), written and read back."""

    started_at: str
    finished_at: str | None
    duration_s: float | None
    total: int
    up: int
    down: int
    not_checked: int
    interrupted: bool
    recovered: bool
    changes: int
    lists: tuple[str, ...]
    reports: tuple[str, ...]  # file names in the report folder
    # A merge's shard runs, "K/N@<started_at>": a later merge takes none of
    # them again (a shard whose job has not run since).
    shard_runs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "total": self.total,
            "up": self.up,
            "down": self.down,
            "not_checked": self.not_checked,
            "interrupted": self.interrupted,
        }
        if self.recovered:
            out["recovered"] = True
        out |= {"changes": self.changes, "lists": list(self.lists), "reports": list(self.reports)}
        if self.shard_runs:
            out["shard_runs"] = list(self.shard_runs)
        return out

    @classmethod
    def from_dict(cls, data: object) -> RunEntry | None:
        """A line read back (None: not one of ours, or torn)."""
        if not isinstance(data, dict) or not isinstance(data.get("started_at"), str):
            return None

        def number(key: str) -> int:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        def names(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        finished, duration = data.get("finished_at"), data.get("duration_s")
        return cls(
            started_at=data["started_at"],
            finished_at=finished if isinstance(finished, str) else None,
            duration_s=float(duration) if isinstance(duration, int | float) else None,
            total=number("total"),
            up=number("up"),
            down=number("down"),
            not_checked=number("not_checked"),
            interrupted=bool(data.get("interrupted")),
            recovered=bool(data.get("recovered")),
            changes=number("changes"),
            lists=names("lists"),
            reports=names("reports"),
            shard_runs=names("shard_runs"),
        )
