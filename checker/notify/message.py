"""What an alert says: the webhook's JSON body and the mail's subject and text.

Pure functions, no I/O. A change is a `store.model.Change` (its kind one of
down, up, still_down, status, final_url, cert_expiring; "still_down" is a
--remind-every reminder); the webhook sends `Change.to_dict()`.

URLs, statuses, error details and redirect targets come from a list file or a
server. In the mail they end up in a subject or in lines of a message that an
SMTP server and a mail reader parse, so every such value goes through `clean`:
a CR or LF there could start a header of its own (header injection), and bidi
or other invisible format characters could make a line read as something else.
The JSON body needs no such care: `json.dumps` escapes every control character.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from checker.store.model import Change

# The run's fields a receiver gets; the rest of the run record (options, version)
# is for the reports.
RUN_FIELDS = ("started_at", "finished_at", "total", "up", "down", "interrupted", "lists")
# Sent when the run has them: where it ran and its report files. (A change is
# sent as `Change.to_dict()`: since when and the error's detail when known.)
RUN_EXTRA = ("host", "reports")

# Kind -> the word that starts its line in the mail. Padded to one width, so the
# URLs line up in a fixed-width font.
_LABELS = {
    "down": "DOWN",
    "up": "UP",
    "still_down": "STILL",
    "degraded": "DEGR",
    "recovered": "OK",
    "status": "STATUS",
    "final_url": "MOVED",
    "cert_expiring": "CERT",
}
# Kind -> how the subject counts it, singular and plural.
_SUBJECT_WORDS = {
    "down": ("down", "down"),
    "up": ("back up", "back up"),
    "still_down": ("still down", "still down"),
    "degraded": ("degraded", "degraded"),
    "recovered": ("no longer degraded", "no longer degraded"),
    "status": ("status change", "status changes"),
    "final_url": ("moved", "moved"),
    "cert_expiring": ("certificate expiring", "certificates expiring"),
}
# Unicode categories never shown as they are: controls (CR, LF, TAB, ESC, C1),
# format characters (bidi overrides, zero-width), line and paragraph separators,
# and lone surrogates (which would not even encode as UTF-8).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# A value longer than this is cut: an error detail or a redirect target from a
# hostile server must not turn one line of the mail into a megabyte.
VALUE_LIMIT = 300
# Changes listed in a mail; a network outage can turn every URL of a big list
# into a change, and mail servers refuse large messages. The webhook gets all.
MAIL_LINES = 1000


def clean(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as one line of printable text: no control or format characters."""
    text = "-" if value is None else str(value)
    text = "".join("?" if unicodedata.category(ch) in _HIDDEN else ch for ch in text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def summary_json(run: Mapping[str, Any], changes: Sequence[Change]) -> bytes:
    """The webhook body: ``{"run": {...}, "changes": [...]}`` as UTF-8 JSON."""
    body = {
        "run": {name: run.get(name) for name in RUN_FIELDS}
        | {name: run[name] for name in RUN_EXTRA if run.get(name)},
        "changes": [change.to_dict() for change in changes],
    }
    # default=str: a value that is not JSON (a datetime, say) is sent as text
    # rather than losing the alert.
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")


def summary_text(run: Mapping[str, Any], changes: Sequence[Change]) -> tuple[str, str]:
    """The mail: (subject, plain-text body), one change per line, then the run."""
    lines = [change_line(change) for change in changes[:MAIL_LINES]]
    if len(changes) > MAIL_LINES:
        lines.append(f"... and {len(changes) - MAIL_LINES} more changes (see the reports)")
    lines.append("")
    lines.extend(run_lines(run))
    return subject_line(run, changes), "\n".join(lines) + "\n"


def subject_line(run: Mapping[str, Any], changes: Sequence[Change]) -> str:
    """``checker: 2 down, 1 back up (3 changes)``."""
    counts = Counter(change.kind for change in changes)
    parts = []
    for kind, (one, many) in _SUBJECT_WORDS.items():
        n = counts.pop(kind, 0)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    other = sum(counts.values())
    if other:
        parts.append(f"{other} other")
    n = len(changes)
    head = "checker (interrupted run)" if run.get("interrupted") else "checker"
    return f"{head}: {', '.join(parts)} ({n} change{'' if n == 1 else 's'})"


def change_line(change: Change) -> str:
    """``DOWN  https://x/ (line 4): 200 -> 503``."""
    kind = change.kind
    label = _LABELS.get(kind, "CHANGE")
    where = clean(change.url) + f" (line {clean(change.line)})"
    before, after = change.before, change.after
    what = _expiry(after) if kind == "cert_expiring" else f"{clean(before)} -> {clean(after)}"
    if change.detail:
        what += f" ({clean(change.detail)})"
    if change.since:
        what += f", since {clean(change.since, 40)}"
    return f"{label:<5} {where}: {what}"


def run_lines(run: Mapping[str, Any]) -> list[str]:
    total, up, down = (clean(run.get(name), 20) for name in ("total", "up", "down"))
    lines = [f"checked {total} URLs: {up} up, {down} down"]
    if run.get("interrupted"):
        lines.append("the run was interrupted: not every URL was checked")
    started, finished = clean(run.get("started_at"), 40), clean(run.get("finished_at"), 40)
    lines.append(f"started {started}, finished {finished}")
    lists = run.get("lists")
    if isinstance(lists, list | tuple) and lists:
        lines.append("lists: " + ", ".join(clean(name) for name in lists))
    if run.get("host"):
        lines.append(f"checked from {clean(run.get('host'), 100)}")
    reports = run.get("reports")
    if isinstance(reports, list | tuple) and reports:
        lines.append("reports: " + ", ".join(clean(name, 500) for name in reports))
    return lines


def _expiry(days: object) -> str:
    if isinstance(days, bool) or not isinstance(days, int):
        return f"expires soon ({clean(days)})"
    if days < 0:
        return f"expired {-days} day{'' if days == -1 else 's'} ago"
    return f"expires in {days} day{'' if days == 1 else 's'}"
