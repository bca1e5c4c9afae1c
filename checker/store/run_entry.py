"""A run's line in the run index (`runs.jsonl`).

Apart from `model` (which still exports it): every run writes one (through
`index`), and a run whose reporter stores its results needs none of the
history's other records.
"""

from __future__ import annotations

from dataclasses import dataclass


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
