"""A URL's state across complete runs, and the changes it makes (store.state)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from checker.store.model import Change, Policy, Row, State
from checker.store.state import step

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
UP_ROW = Row(
    url="https://a.example/",
    ok=True,
    status=200,
    error=None,
    total_ms=12.0,
    checked_at="2026-11-01T12:00:00.000Z",
    line=3,
    final_url="https://a.example/",
    cert_days=40,
)
DOWN_ROW = replace(
    UP_ROW, ok=False, status=None, error="timeout", detail="no complete response within 10s"
)


def at(row: Row, minutes: int) -> Row:
    stamp = (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")
    return replace(row, checked_at=stamp.replace("+00:00", "Z"))


def run(rows: list[Row], policy: Policy | None = None) -> tuple[State | None, list[list[Change]]]:
    """Step one URL through `rows`, one complete run each, 5 minutes apart."""
    policy = policy or Policy()
    state: State | None = None
    out = []
    for i, row in enumerate(rows):
        state, changes = step(state, at(row, 5 * i), policy, T0 + timedelta(minutes=5 * i))
        out.append(changes)
    return state, out


def kinds(changes: list[list[Change]]) -> list[list[str]]:
    return [[c.kind for c in run_changes] for run_changes in changes]


def test_a_new_url_is_no_change_whatever_its_state() -> None:
    assert run([UP_ROW])[1] == [[]]
    state, changes = run([DOWN_ROW])
    assert changes == [[]]
    assert state is not None and state.state == "down"


def test_down_and_up_with_what_and_since_when() -> None:
    state, changes = run([UP_ROW, DOWN_ROW, DOWN_ROW, UP_ROW])
    assert kinds(changes) == [[], ["down"], [], ["up"]]
    down = changes[1][0]
    assert (down.url, down.line, down.before, down.after) == (
        "https://a.example/",
        3,
        200,
        "timeout",
    )
    assert down.since == "2026-11-01T12:05:00.000Z"
    assert down.detail == "no complete response within 10s"
    up = changes[3][0]
    assert (up.before, up.after, up.since, up.detail) == (
        "timeout",
        200,
        "2026-11-01T12:15:00.000Z",
        None,
    )
    assert state is not None and state.state == "up" and state.pending == 0


def test_alert_after_needs_that_many_runs_in_a_row_and_dates_from_the_first() -> None:
    policy = Policy(alert_after=3)
    _, changes = run([UP_ROW, DOWN_ROW, DOWN_ROW, DOWN_ROW, DOWN_ROW], policy)
    assert kinds(changes) == [[], [], [], ["down"], []]
    assert changes[3][0].since == "2026-11-01T12:05:00.000Z"  # the first run that saw it


def test_a_flap_shorter_than_alert_after_is_no_change_at_all() -> None:
    policy = Policy(alert_after=2)
    rows = [UP_ROW, DOWN_ROW, UP_ROW, DOWN_ROW, UP_ROW, replace(UP_ROW, status=204)]
    state, changes = run(rows, policy)
    # No down, no up, and the 200s in between are not "status" changes either.
    assert kinds(changes) == [[], [], [], [], [], ["status"]]
    assert state is not None and state.state == "up" and state.pending == 0


def test_coming_back_also_needs_alert_after_runs() -> None:
    policy = Policy(alert_after=2)
    _, changes = run([UP_ROW, DOWN_ROW, DOWN_ROW, UP_ROW, DOWN_ROW, UP_ROW, UP_ROW], policy)
    assert kinds(changes) == [[], [], ["down"], [], [], [], ["up"]]


def test_status_final_url_and_certificate_changes_while_up() -> None:
    moved = replace(UP_ROW, final_url="https://b.example/")
    soon = replace(moved, cert_days=10)
    _, changes = run([UP_ROW, replace(UP_ROW, status=204), moved, soon, replace(soon, cert_days=9)])
    assert kinds(changes) == [[], ["status"], ["status", "final_url"], ["cert_expiring"], []]
    cert = changes[3][0]
    assert (cert.before, cert.after) == (40, 10)


def test_a_renewed_certificate_can_expire_again() -> None:
    soon = replace(UP_ROW, cert_days=10)
    renewed = replace(UP_ROW, cert_days=90)
    _, changes = run([UP_ROW, soon, renewed, soon])
    assert kinds(changes) == [[], ["cert_expiring"], [], ["cert_expiring"]]


def test_status_changes_while_down() -> None:
    bad = replace(UP_ROW, ok=False, status=502)
    _, changes = run([bad, replace(bad, status=503), DOWN_ROW, replace(bad, status=503)])
    # 502 -> 503 is said; an error without a status in between is not compared.
    assert kinds(changes) == [[], ["status"], [], []]


def test_remind_every_says_again_what_is_still_down() -> None:
    policy = Policy(remind_every=15 * 60)
    rows = [UP_ROW] + [DOWN_ROW] * 7
    _, changes = run(rows, policy)
    # Down at minute 5; reminders at 20 and 35 (15 minutes after the last alert).
    assert kinds(changes) == [[], ["down"], [], [], ["still_down"], [], [], ["still_down"]]
    reminder = changes[4][0]
    assert reminder.since == "2026-11-01T12:05:00.000Z"
    assert reminder.detail == "no complete response within 10s"


def test_no_reminders_without_remind_every_or_while_up() -> None:
    _, changes = run([UP_ROW] + [DOWN_ROW] * 5)
    assert kinds(changes) == [[], ["down"], [], [], [], []]
    _, changes = run([UP_ROW] * 5, Policy(remind_every=60))
    assert kinds(changes) == [[]] * 5


def test_a_change_as_the_reports_and_alerts_get_it() -> None:
    change = Change("u", 4, "down", 200, "timeout", since="2026-11-01T12:05:00.000Z", detail="d")
    assert change.to_dict() == {
        "url": "u",
        "line": 4,
        "kind": "down",
        "before": 200,
        "after": "timeout",
        "since": "2026-11-01T12:05:00.000Z",
        "detail": "d",
    }
    assert "since" not in Change("u", 4, "status", 200, 204).to_dict()


def test_degraded_and_recovered_while_up() -> None:
    slow = replace(UP_ROW, degraded=True, detail="took 950 ms, over 800")
    _, changes = run([UP_ROW, slow, slow, UP_ROW, DOWN_ROW, slow])
    assert kinds(changes) == [[], ["degraded"], [], ["recovered"], ["down"], ["up"]]
    degraded = changes[1][0]
    assert (degraded.before, degraded.after, degraded.detail) == (
        "up",
        "degraded",
        "took 950 ms, over 800",
    )


def test_a_certificate_already_expiring_when_first_seen_is_said_once() -> None:
    # Found by a review: a URL first seen with its certificate within
    # --cert-warn-days was never said (the change is a certificate that
    # "now" expires within D days, and there was no "before"), so it went
    # from up to expired, and down, without a word in advance.
    soon = replace(UP_ROW, cert_days=2)
    policy = Policy()
    # A URL new to a folder with history: said at once.
    state, changes = step(None, soon, policy, T0)
    assert [(c.kind, c.before, c.after) for c in changes] == [("cert_expiring", None, 2)]
    state, changes = step(state, at(soon, 5), policy, T0 + timedelta(minutes=5))
    assert changes == []
    # The folder's first run has nothing to compare: its next run says it.
    state, changes = step(None, soon, policy, T0, baseline=False)
    assert changes == [] and state.state == "up"
    state, changes = step(state, at(soon, 5), policy, T0 + timedelta(minutes=5))
    assert [(c.kind, c.before, c.after) for c in changes] == [("cert_expiring", None, 2)]
    _, changes = step(state, at(soon, 10), policy, T0 + timedelta(minutes=10))
    assert changes == []


def test_alert_after_also_damps_degraded_and_recovered() -> None:
    # Found by the cron review: a blip a retry absorbed ("up only on attempt
    # 2") in one run alerted "degraded" at once and "recovered" the next,
    # under --alert-after 3, which was asked for to keep such flaps quiet.
    policy = Policy(alert_after=2)
    blip = replace(UP_ROW, degraded=True, detail="up only on attempt 2")
    state, changes = run([UP_ROW, blip, UP_ROW, blip, UP_ROW], policy)
    assert kinds(changes) == [[], [], [], [], []]
    assert state is not None and (state.degraded, state.pending) == (False, 0)
    # Degraded in two runs in a row: said, then back after two good runs.
    state, changes = run([UP_ROW, blip, blip, blip, UP_ROW, UP_ROW], policy)
    assert kinds(changes) == [[], [], ["degraded"], [], [], ["recovered"]]
    assert state is not None and (state.degraded, state.pending) == (False, 0)


def test_a_down_result_ends_a_degraded_count_and_starts_its_own() -> None:
    policy = Policy(alert_after=2)
    blip = replace(UP_ROW, degraded=True, detail="took 950 ms, over 800")
    _, changes = run([UP_ROW, blip, DOWN_ROW, DOWN_ROW], policy)
    # (Not three runs toward "down": one degraded, then two down.)
    assert kinds(changes) == [[], [], [], ["down"]]
    assert changes[3][0].since == "2026-11-01T12:10:00.000Z"  # the first down run
    _, changes = run([UP_ROW, DOWN_ROW, blip, blip], policy)
    assert kinds(changes) == [[], [], [], ["degraded"]]
    # A status change while a degraded count runs is said as ever.
    _, changes = run([UP_ROW, replace(blip, status=204)], policy)
    assert kinds(changes) == [[], ["status"]]
