"""Running totals of a check run, and the summary a person reads at the end."""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checker.expect import DEGRADED
from checker.results import INVALID, NOT_CHECKED, Result

if TYPE_CHECKING:  # (the history's records: not imported by every command)
    from checker.store.model import Change

SLOWEST = 5
NAMED = 20  # down URLs (and invalid lines) named in the summary; the rest are counted


@dataclass
class Stats:
    total: int = 0  # rows: distinct URLs and invalid lines
    up: int = 0  # degraded included: it answered as expected
    degraded: int = 0  # up, but slower than max_ms, a certificate too close, or on a retry
    down: int = 0  # checked and not up
    # Not counted as down: a stopped run's unfinished rows say nothing about
    # their sites, and an invalid line is the list's fault, not a site's.
    not_checked: int = 0
    invalid: int = 0
    duplicates: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    _slowest: list[tuple[float, int, str]] = field(default_factory=list)
    # The first NAMED down rows and invalid lines in list order, for the
    # summary: (-seq, url or line text, what). Heaps keyed on -seq keep the
    # earliest lines whatever order the checks finish in.
    _down: list[tuple[int, str, str]] = field(default_factory=list)
    _invalid: list[tuple[int, str, str]] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """The counts a report's run header carries."""
        return {
            "total": self.total,
            "up": self.up,
            "degraded": self.degraded,
            "down": self.down,
            "not_checked": self.not_checked,
            "invalid": self.invalid,
        }

    def add(self, seq: int, result: Result) -> None:
        self.count(seq, result.ok, result.status, result.error, result.total_ms, result.url)
        if result.state == DEGRADED:
            self.degraded += 1
        if not result.ok:
            what = decided(result.error, result.status, result.reasons)
            self._name(seq, result.url, what, result.error, result.source, result.line)

    def add_row(self, seq: int, row: dict[str, Any]) -> None:
        """The same, from a result read back from a journal or report."""
        self.count(seq, row["ok"], row["status"], row["error"], row["total_ms"], row["url"])
        if row.get("state") == DEGRADED:
            self.degraded += 1
        if not row["ok"]:
            what = decided(row["error"], row["status"], row.get("reasons") or ())
            self._name(seq, row["url"], what, row["error"], row["source"], row["line"])

    def _name(
        self, seq: int, url: str, what: str, error: str | None, source: str, line: int
    ) -> None:
        if error == NOT_CHECKED:
            return
        if error == INVALID:
            heap, item = self._invalid, (-seq, url, f"{source}:{line}")
        else:
            heap, item = self._down, (-seq, url, what)
        if len(heap) < NAMED:
            heapq.heappush(heap, item)
        else:
            heapq.heappushpop(heap, item)

    @property
    def named_down(self) -> list[tuple[str, str]]:
        """(url, error category or status) of the first NAMED down rows, in list order."""
        return [(url, what) for _, url, what in sorted(self._down, reverse=True)]

    @property
    def named_invalid(self) -> list[tuple[str, str]]:
        """(line text, "file:line") of the first NAMED invalid lines, in list order."""
        return [(text, where) for _, text, where in sorted(self._invalid, reverse=True)]

    def count(
        self,
        seq: int,
        ok: bool,
        status: int | None,
        error: str | None,
        total_ms: float | None,
        url: str,
    ) -> None:
        self.total += 1
        if ok:
            self.up += 1
        elif error == NOT_CHECKED:
            self.not_checked += 1
        elif error == INVALID:
            self.invalid += 1
        else:
            self.down += 1
        if error:
            self.by_class[error] += 1
        elif status is not None:
            name = _CLASS.get(status)
            if name is None:
                name = _CLASS[status] = f"{status // 100}xx"
            self.by_class[name] += 1
        if total_ms is not None and error is None:
            slowest = self._slowest
            if len(slowest) < SLOWEST:
                heapq.heappush(slowest, (total_ms, -seq, url))
            elif total_ms >= slowest[0][0]:  # (a faster one would go straight out)
                heapq.heappushpop(slowest, (total_ms, -seq, url))

    @property
    def slowest(self) -> list[tuple[float, str]]:
        return [(ms, url) for ms, _, url in sorted(self._slowest, reverse=True)]


# "2xx" for each status met: made once, not for every result.
_CLASS: dict[int, str] = {}


def decided(error: str | None, status: int | None, reasons: Sequence[str]) -> str:
    """What made a row down, in a word: its error, its status, or
    "expectation" (a body check, a service's first line): a banner that did
    not match printed `None`, and a body check `200` (found by a review)."""
    if error:
        return error
    if status is not None and (not reasons or reasons[0].startswith("status ")):
        return str(status)
    return "expectation" if reasons else "-"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` safe for a terminal: a list line may hold control bytes (an ESC
    would drive the terminal), shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_KIND = {
    "down": "DOWN",
    "up": "UP",
    "still_down": "STILL",
    "degraded": "DEGR",
    "recovered": "OK",
    "status": "STATUS",
    "final_url": "MOVED",
    "cert_expiring": "CERT",
}
SHOW_CHANGES = 20


def describe_change(change: Change) -> str:
    kind = change.kind
    what = (
        f"certificate expires in {change.after} days"
        if kind == "cert_expiring"
        else f"{shown(str(change.before))} -> {shown(str(change.after))}"
    )
    if kind in ("down", "still_down") and change.since:
        what += f", down since {shown(change.since)}"
    if kind in ("down", "still_down", "degraded") and change.detail:
        # (What decided it: "200 -> 200" alone said nothing of a body check.)
        what += f": {shown(change.detail)}"
    url = shown(change.url)
    return f"{_KIND.get(kind, kind.upper()):6} {url} (line {change.line}): {what}"


def _shards(merged: Sequence[str]) -> str:
    """ "3 shards" when all of them were merged, else which ones ("1/3, 3/3 of 3")."""
    if not merged:
        return "no shard (every line not checked)"
    of = merged[0].partition("/")[2]
    if of.isdigit() and len(merged) == int(of):
        return f"{len(merged)} shards"
    return f"shards {', '.join(merged)} of {of}"


def format_summary(
    stats: Stats,
    duration_s: float,
    reports: list[str],
    interrupted: bool,
    changes: Sequence[Change] = (),
    changes_total: int | None = None,
    shard: str | None = None,
    merged: Sequence[str] | None = None,
    stopped: bool = True,
) -> str:
    """The closing summary; it leads with what changed since the last run.
    `merged`: the shards a merge took; `stopped`: whether what was not
    checked is so because the run was stopped (else: see the notes)."""
    head = "INTERRUPTED: " if interrupted else ""
    if shard:
        head += f"shard {shard}: "
    if merged is not None:
        head += f"merged from {_shards(merged)}: "
    lines = []
    if changes_total is not None:
        if changes_total:
            lines.append(
                f"{changes_total} change{'s' if changes_total != 1 else ''} since the last run:"
            )
            lines.extend("  " + describe_change(c) for c in changes[:SHOW_CHANGES])
            if changes_total > SHOW_CHANGES:
                lines.append(f"  ... and {changes_total - SHOW_CHANGES} more (see the reports)")
        else:
            lines.append("no changes since the last run")
    checked = stats.total - stats.not_checked - stats.invalid
    extra = []
    if stats.not_checked:
        why = "as the run was stopped" if stopped else "see the notes above"
        extra.append(f"{stats.not_checked} not checked, {why}")
    if stats.invalid:
        extra.append(f"{stats.invalid} invalid line{'s' if stats.invalid != 1 else ''}")
    if stats.duplicates:
        n = stats.duplicates
        extra.append(f"{n} duplicate line{'s' if n != 1 else ''} skipped")
    lines += [
        f"{head}checked {checked} URL{'s' if checked != 1 else ''} "
        f"in {duration_s:.1f}s: {stats.up} up"
        + (f" ({stats.degraded} degraded)" if stats.degraded else "")
        + f", {stats.down} down"
        + (f" ({'; '.join(extra)})" if extra else "")
    ]
    if stats.named_down:
        lines.append("down:")
        lines.extend(f"  {what:>12}  {shown(url)}" for url, what in stats.named_down)
        if stats.down > len(stats.named_down):
            lines.append(f"  ... and {stats.down - len(stats.named_down)} more (see the reports)")
    if stats.named_invalid:
        lines.append("invalid lines (not URLs checker checks):")
        lines.extend(f"  {shown(where)}: {shown(text)}" for text, where in stats.named_invalid)
        if stats.invalid > len(stats.named_invalid):
            more = stats.invalid - len(stats.named_invalid)
            lines.append(f"  ... and {more} more (see the reports)")
    if stats.by_class:
        statuses = sorted(k for k in stats.by_class if k[0].isdigit())
        errors = sorted(
            (k for k in stats.by_class if not k[0].isdigit()), key=lambda k: -stats.by_class[k]
        )
        parts = [f"{k} {stats.by_class[k]}" for k in statuses + errors]
        lines.append("  " + "  ".join(parts))
    if stats.slowest:
        lines.append("slowest:")
        lines.extend(f"  {ms:8.0f} ms  {shown(url)}" for ms, url in stats.slowest)
    if reports:
        lines.append("reports: " + ", ".join(reports))
    return "\n".join(lines)
