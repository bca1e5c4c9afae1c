"""What a URL is taken to be (up or down) across runs, and what counts as a change.

Pure: `step` takes the stored state of one URL and its result in a complete
run, and returns the new state and the changes it makes. The history database
keeps the states (`url_state`) and calls `step` for every row of every
complete run, so changes and alerts come from one place whatever the report
formats are.

The rules (README, "Changes and alerts"):
- A URL's state only flips after `alert_after` consecutive complete runs saw
  the other state: with 3, a site down in one run and up in the next makes no
  change at all. `since` is when the new state began (its first result).
- A stopped or recovered run never gets here, nor do rows that are not a
  check (a line that is no URL, a check the run never finished).
- While up: degraded (slower than max_ms, a certificate within
  cert_min_days, up only on a retry) or no longer ("degraded", "recovered"),
  likewise after `alert_after` runs in a row (a blip a retry absorbed, in
  one run, alerted "degraded" and then "recovered" under --alert-after 3:
  found by the cron review). Counted in `pending` below zero (-2: two runs
  in a row saw it degraded, or no longer), so that the stored state needs
  no new column; a down result ends that count and starts its own.
- While the state holds: a different status code ("status"), a different
  final URL after redirects ("final_url"), a certificate that came within
  `warn_days` of expiry ("cert_expiring"), each compared with the last result
  that agreed with the state. A URL first seen with its certificate within
  `warn_days` already: "cert_expiring" at once (by the next run, after the
  folder's first).
- `remind_every`: a URL still down that long after its last alert is said
  again ("still_down").
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from checker.results import iso
from checker.store.model import DOWN, UP, Change, Policy, Row, State


def first(row: Row) -> State:
    """The state of a URL seen for the first time: no change to report."""
    return _agreeing(State(UP if row.ok else DOWN, row.checked_at), row)


def step(
    prev: State | None, row: Row, policy: Policy, now: datetime, baseline: bool = True
) -> tuple[State, list[Change]]:
    """The state after `row`, and the changes it makes. `baseline`: the
    folder has an earlier complete run (its first run says no change)."""
    if prev is None:
        state = first(row)
        days = row.cert_days
        if days is None or days > policy.warn_days:
            return state, []
        # Its certificate is within warn_days already: said now (with no
        # "before"), or, in the folder's first run, by the next run (the
        # state keeps no days, so that the next run finds it newly within).
        if baseline:
            return state, [Change(row.url, row.line, "cert_expiring", None, days)]
        return replace(state, cert_days=None), []
    seen = UP if row.ok else DOWN
    if seen != prev.state:
        pending = max(prev.pending, 0) + 1
        pending_since = prev.pending_since if prev.pending > 0 else row.checked_at
        if pending < policy.alert_after:
            return replace(prev, pending=pending, pending_since=pending_since), []
        # Confirmed: the state flips, dated from the first run that saw it.
        since = pending_since or row.checked_at
        change = Change(
            row.url,
            row.line,
            seen,
            prev.outcome,
            row.outcome,
            since=since,
            detail=row.detail if seen == DOWN else None,
        )
        flipped = State(seen, since, reminded_at=_stamp(now) if seen == DOWN else None)
        return _agreeing(flipped, row), [change]
    changes: list[Change] = []
    base = (row.url, row.line)
    if prev.status is not None and row.status is not None and prev.status != row.status:
        changes.append(Change(*base, "status", prev.status, row.status))
    if (
        row.ok
        and prev.final_url
        and row.final_url
        and prev.final_url != row.final_url
        and prev.error is None
        and row.error is None
    ):
        changes.append(Change(*base, "final_url", prev.final_url, row.final_url))
    days, was = row.cert_days, prev.cert_days
    if days is not None and days <= policy.warn_days and (was is None or was > policy.warn_days):
        changes.append(Change(*base, "cert_expiring", was, days))
    held = 0  # runs in a row that saw it degraded (or no longer), not yet a change
    if seen == UP and row.degraded != prev.degraded:
        held = (-prev.pending if prev.pending < 0 else 0) + 1
        if held >= policy.alert_after:
            # Up all along, but no longer as it should be (or as it should again).
            held = 0
            kind = "degraded" if row.degraded else "recovered"
            before, after = ("up", "degraded") if row.degraded else ("degraded", "up")
            changes.append(Change(*base, kind, before, after, detail=row.detail))
    state = _agreeing(prev, row)
    if held:
        since = prev.pending_since if prev.pending < 0 else row.checked_at
        state = replace(state, degraded=prev.degraded, pending=-held, pending_since=since)
    if seen == DOWN and policy.remind_every is not None:
        last = _parse(prev.reminded_at) or _parse(prev.since)
        if last is None or (now - last).total_seconds() >= policy.remind_every:
            changes.append(
                Change(
                    *base,
                    "still_down",
                    prev.outcome,
                    row.outcome,
                    since=prev.since,
                    detail=row.detail,
                )
            )
            state = replace(state, reminded_at=_stamp(now))
    return state, changes


def _agreeing(state: State, row: Row) -> State:
    """`state` with `row` as the last result that agreed with it, and nothing
    pending. (A constructor call: `dataclasses.replace` cost a tenth of
    storing a batch.)"""
    return State(
        state.state,
        state.since,
        row.status,
        row.error,
        row.final_url,
        row.cert_days if row.cert_days is not None else state.cert_days,
        0,
        None,
        state.reminded_at,
        row.degraded,
    )


def _stamp(moment: datetime) -> str:
    return iso(moment)


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
