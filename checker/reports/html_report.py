"""The HTML report: one self-contained page a person can open from the report folder.

Inline CSS, inline SVG charts and a small inline script (sorting, filtering);
nothing is ever fetched. The Content-Security-Policy meta tag says so and makes
the browser enforce it: even if something slipped through the escaping, it
could not load or send anything.

Everything that came from a list or a server (URLs, reason phrases, error
details, warnings, server names) goes through `html.escape(..., quote=True)`,
in text and attributes alike. The script builds nothing from data: it reads the
table cells back from the DOM.

Lists can hold millions of rows, so rows are never held: the aggregates are
counters, fixed histogram bins and two bounded heaps; the table holds at most
`TABLE_MAX_ROWS` rows. A run feeds its rows once to `Page` (together with the
other formats); `render` reads a stored report's rows twice.
"""

from __future__ import annotations

import heapq
import html
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from checker.expect import DEGRADED
from checker.results import INVALID, NOT_A_CHECK, NOT_CHECKED
from checker.store.model import Change, Incident, Trend

# The table holds at most this many rows. A browser stays responsive sorting and
# filtering ~50,000 rows, and the file stays around 25 MB; the CSV and JSON
# reports always have every row. When rows are left out, down rows are kept
# first (they are what a person opens the page for), then up rows, each in
# input order.
TABLE_MAX_ROWS = 50_000
SLOWEST = 10  # rows in "slowest checks"
CERTS = 10  # rows in "certificates expiring soonest"
CHANGES_SHOWN = 100  # changes listed in the headline; the rest are counted
CERT_WARN_DAYS = 14  # amber below this many days, when the run's options do not say
BATCH = 1024  # table rows per yielded chunk

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

# Latency bins: upper bounds in ms (the last bin is open-ended). Log-ish, so
# that both a fleet of 30 ms answers and a few 4 s ones are visible.
LATENCY_EDGES = (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
LATENCY_LABELS = ("<50", "50-100", "100-250", "250-500", "0.5-1 s", "1-2.5 s", "2.5-5 s", "≥5 s")
LATENCY_COLOURS = (
    "#2da44e",
    "#2da44e",
    "#4ac26b",
    "#bf8700",
    "#d4a72c",
    "#e16f24",
    "#cf222e",
    "#a40e26",
)

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
CLASS_COLOURS = {
    "1xx": "#8c959f",
    "2xx": "#2da44e",
    "3xx": "#0969da",
    "4xx": "#bf8700",
    "5xx": "#cf222e",
    "unknown": "#8c959f",
}
ERROR_COLOUR = "#a40e26"  # every error category: all of them are down

# (field, header is numeric). Numeric columns sort as numbers, empty cells last.
COLUMNS: tuple[tuple[str, bool], ...] = (
    ("url", False),
    ("line", True),
    ("ok", False),
    ("status", True),
    ("reason", False),
    ("error", False),
    ("error_detail", False),
    ("method", False),
    ("final_url", False),
    ("total_ms", True),
    ("cert_days_left", True),
    ("reused", False),
    ("warnings", False),
    ("uptime", True),  # 24 h · 7 d · 30 d, from the history database; sorts by 24 h
    ("recent", False),  # its last results and their times
)
DOWN_NOW = 100  # URLs listed under "Down now", longest down first

# Change kinds, in the order a person wants to read them.
CHANGE_ORDER = {
    "down": 0,
    "still_down": 1,
    "degraded": 2,
    "cert_expiring": 3,
    "status": 4,
    "final_url": 5,
    "recovered": 6,
    "up": 7,
}
CHANGE_LABELS = {
    "down": "went down",
    "still_down": "still down",
    "degraded": "degraded",
    "recovered": "no longer degraded",
    "up": "back up",
    "status": "status changed",
    "final_url": "lands elsewhere",
    "cert_expiring": "certificate expiring",
}


# What html.escape changes: most cells hold none of it, and a search in C is
# a tenth of its five replaces (10 cells a row of the page).
_ESCAPED = re.compile("[&<>\"']")


def esc(value: Any) -> str:
    """Text from a list or a server, safe in text and in quoted attributes."""
    if value is None:
        return ""
    if type(value) is int:  # a status, a line number: nothing to escape
        return str(value)
    text = str(value)
    if _ESCAPED.search(text) is None:
        return text
    return html.escape(text, quote=True)


def esc_url(value: Any) -> str:
    """`esc`, with line-break opportunities after the separators of a URL
    ("/", "?", "&", "="), so that a long URL wraps where a person reads it
    apart, not in the middle of a word. `<wbr>` adds no text: the table's
    filter and sort read the same text as before."""
    text = esc(value)
    for sep in ("/", "?", "&amp;", "="):
        text = text.replace(sep, sep + "<wbr>")
    return text.replace("/<wbr>/<wbr>", "//<wbr>")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Aggregates:
    """What the charts and the top-10 lists need, in bounded memory."""

    rows: int = 0
    up: int = 0
    down: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES) + 1))
    # Min-heap of the SLOWEST largest: (ms, -seq, url, status). -seq: on a tie,
    # the later line is the one pushed out. seq is unique, so the comparison
    # never reaches the url.
    slowest: list[tuple[float, int, str, Any]] = field(default_factory=list)
    # Min-heap on -days of the CERTS smallest days: (-days, -seq, url, not_after).
    certs: list[tuple[int, int, str, Any]] = field(default_factory=list)

    def add(self, seq: int, row: dict[str, Any]) -> None:
        self.rows += 1
        if row.get("ok"):
            self.up += 1
        else:
            self.down += 1
        error, status, ms = row.get("error"), row.get("status"), row.get("total_ms")
        if error:
            self.by_class[str(error)] += 1
        elif isinstance(status, int):
            name = _CLASS.get(status)
            if name is None:
                name = _CLASS[status] = f"{status // 100}xx"
            self.by_class[name] += 1
        else:
            self.by_class["unknown"] += 1
        if status is not None and _is_number(ms):
            self.latency[bisect_right(LATENCY_EDGES, ms)] += 1
            slowest = self.slowest
            if error is None and (len(slowest) < SLOWEST or ms >= slowest[0][0]):
                # (A faster one than the heap's fastest would go straight out.)
                item = (float(ms), -seq, str(row.get("url", "")), status)
                if len(slowest) < SLOWEST:
                    heapq.heappush(slowest, item)
                else:
                    heapq.heappushpop(slowest, item)
        days = row.get("cert_days_left")
        if isinstance(days, int) and not isinstance(days, bool):
            cert = (-days, -seq, str(row.get("url", "")), row.get("cert_not_after"))
            if len(self.certs) < CERTS:
                heapq.heappush(self.certs, cert)
            else:
                heapq.heappushpop(self.certs, cert)


# "2xx" for each status met: made once, not for every row.
_CLASS: dict[int, str] = {}


class Page:
    """The page in one pass over the rows, for a report written with others.

    Feed every row in input order to `row()`: it updates the aggregates and
    returns the row's table HTML, or None when the table leaves it out. The
    part before the table needs the aggregates, so `head()` comes last and the
    caller puts it first.

    Down rows always make the cut; up rows fill what is left, in input order.
    With the number of down rows known up front (`down`), an up row is left
    out as soon as there is no room left for it. Without it (a page written
    while the run goes, before anyone knows), an up row takes a place while
    there is one, and a down row that finds the table full takes the place of
    the latest up row still in it: `evicted` then lists those rows' places in
    the table (the order `row()` returned them), for the caller to leave out.
    Both ways give the same table.
    """

    def __init__(
        self, run: dict[str, Any], down: int | None = None, agg: Aggregates | None = None
    ) -> None:
        self.run = run
        self._aggregate = agg is None
        self.agg = agg if agg is not None else Aggregates()
        options = run.get("options") if isinstance(run.get("options"), dict) else {}
        warn = options.get("cert_warn_days") if isinstance(options, dict) else None
        self.warn_days = warn if isinstance(warn, int) else CERT_WARN_DAYS
        self.multi = len(run.get("lists") or ()) > 1
        self.up_room = max(0, TABLE_MAX_ROWS - down) if down is not None else TABLE_MAX_ROWS
        self.shown = self.ups = 0  # rows in the table now, and of them up
        self._up_places: list[int] = []  # the places of the up rows in the table now
        self.evicted: list[int] = []
        self._down_now: list[tuple[str, int, str, str]] = []

    def row(self, seq: int, row: dict[str, Any], trend: Trend | None = None) -> str | None:
        if self._aggregate:
            self.agg.add(seq, row)
        ok = row.get("ok")
        # (Since when: the history's, or this check's with none yet: a
        # folder's first run, the demo's page, listed nothing under "Down
        # now", found by a review.)
        since = trend.down_since if trend is not None else None
        since = since or row.get("checked_at")
        if since and not ok and row.get("error") not in NOT_A_CHECK:
            entry = (str(since), -seq, str(row.get("url", "")), _outcome(row))
            # Max-heap on since (as its negation is not a string): keep the
            # DOWN_NOW longest down, i.e. the smallest `since`.
            self._down_now.append(entry)
            if len(self._down_now) > 2 * DOWN_NOW:
                self._down_now = sorted(self._down_now)[:DOWN_NOW]
        if ok:
            if self.shown >= TABLE_MAX_ROWS or self.ups >= self.up_room:
                return None
            # Its place: the rows `row()` has returned before it.
            self._up_places.append(self.shown + len(self.evicted))
            self.ups += 1
        elif self.shown >= TABLE_MAX_ROWS:
            if not self._up_places:
                return None
            self.evicted.append(self._up_places.pop())  # the latest up row makes room
            self.ups -= 1
            self.shown -= 1
        self.shown += 1
        return _row(row, self.multi, self.warn_days, trend)

    def head(self, changes: Sequence[Change], incidents: Sequence[Incident] = ()) -> bytes:
        agg = self.agg
        down_now = sorted(self._down_now)[:DOWN_NOW]
        return _encode(
            _head(self.run, agg)
            + _headline(self.run, agg, changes, _down_now(self.run, down_now))
            + '<section class="grid">'
            + (_card("Incidents, last 30 days", _incidents(incidents)) if incidents else "")
            + _card("Status", _status_chart(agg))
            + _card("Response time", _latency_chart(agg))
            + _card("Slowest checks", _slowest_table(agg))
            + _card("Certificates expiring soonest", _certs_table(agg, self.warn_days))
            + "</section>"
            + _table_start(agg)
        )


def _outcome(row: dict[str, Any]) -> str:
    if row.get("error"):
        return str(row.get("error"))
    return f"HTTP {row.get('status')}" if row.get("status") is not None else "down"


def _ago(since: str, now: Any) -> str:
    """How long from `since` to `now` (two ISO stamps), as "2 h 5 min"."""
    try:
        start = datetime.fromisoformat(since)
        end = datetime.fromisoformat(now) if isinstance(now, str) else None
    except ValueError:
        return ""
    if end is None:
        return ""
    return _span((end - start).total_seconds())


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def _down_now(run: dict[str, Any], entries: Sequence[tuple[str, int, str, str]]) -> str:
    """What is down now and since when: the first thing a person looks for."""
    if not entries:
        return ""
    items = "".join(
        f'<li><span class="url">{esc_url(url)}</span> '
        f'<span class="bad">{esc(outcome)}</span> '
        f'<span class="muted">since {esc(_when(since))}'
        f"{' (' + esc(_ago(since, run.get('finished_at'))) + ')' if run.get('finished_at') else ''}"
        "</span></li>"
        for since, _, url, outcome in entries
    )
    down = _count(run, "down", 0)
    more = (
        f'<p class="muted small">{down - len(entries):,} more down: see the table.</p>'
        if down > len(entries)
        else ""
    )
    return f'<section class="down-now"><h2>Down now</h2><ul>{items}</ul>{more}</section>'


def _incidents(incidents: Sequence[Incident]) -> str:
    body = []
    for i in incidents:
        back = _when(i.ended) if i.ended else "still down"
        lasted = _ago(i.started, i.ended) if i.ended else ""
        cause = esc(i.cause) + (f' <span class="muted">{esc(i.detail)}</span>' if i.detail else "")
        body.append(
            f'<tr{"" if i.ended else " class=bad"}><td class="url">{esc_url(i.url)}</td>'
            f"<td>{esc(_when(i.started))}</td><td>{esc(back)}</td>"
            f'<td class="num">{esc(lasted)}</td><td>{cause}</td></tr>'
        )
    return (
        "<table class=mini><tr><th>url</th><th>went down</th><th>came back</th>"
        f"<th>lasted</th><th>error</th></tr>{''.join(body)}</table>"
    )


def render(
    run: dict[str, Any],
    rows: Callable[[], Iterator[dict[str, Any]]],
    changes: Sequence[Change],
) -> Iterator[bytes]:
    """The page, in chunks, from rows read twice. `rows()` must return a fresh
    iterator each call. (For a stored JSON report; a run writes its page in
    one pass with `Page`.)

    `run` is the JSON report's "run" object. When it has `changes_total` or
    `previous_run`, there was a previous run to compare with (`changes` may then
    be empty: no changes); otherwise this is the first run of these lists.
    """
    agg = Aggregates()
    for seq, row in enumerate(rows()):
        agg.add(seq, row)
    page = Page(run, agg.down, agg)
    yield page.head(changes)
    batch: list[str] = []
    for seq, row in enumerate(rows()):
        if page.shown >= TABLE_MAX_ROWS:
            break
        html_row = page.row(seq, row)
        if html_row is not None:
            batch.append(html_row)
        if len(batch) >= BATCH:
            yield _encode("".join(batch))
            batch = []
    yield _encode("".join(batch) + _TAIL)


def _encode(text: str) -> bytes:
    # A lone surrogate (JSON allows "\ud800") must not stop the report.
    return text.encode("utf-8", "replace")


def _when(iso: Any) -> str:
    """ "2026-11-24 21:49:08 UTC" from our ISO stamps; anything else as it is."""
    if not isinstance(iso, str):
        return ""
    try:
        stamp = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if stamp.utcoffset() is not None else "")


def _duration(seconds: Any) -> str:
    if not _is_number(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _count(run: dict[str, Any], key: str, fallback: int) -> int:
    value = run.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def _head(run: dict[str, Any], agg: Aggregates) -> str:
    down = _count(run, "down", agg.down)
    total = _count(run, "total", agg.rows)
    checked = total - _count(run, "not_checked", 0) - _count(run, "invalid", 0)
    title = f"checker: {down} of {checked} down — {_when(run.get('finished_at'))}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty data: icon, so the browser does not go looking for favicon.ico.
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
    )


def _headline(
    run: dict[str, Any], agg: Aggregates, changes: Sequence[Change], down_now: str = ""
) -> str:
    up = _count(run, "up", agg.up)
    degraded = _count(run, "degraded", 0)
    down = _count(run, "down", agg.down)
    total = _count(run, "total", agg.rows)
    dups = _count(run, "duplicates", 0)
    flags = ""
    if run.get("interrupted"):
        flags += '<span class="flag bad">interrupted: not every URL was checked</span>'
    if run.get("recovered"):
        flags += '<span class="flag">recovered from a killed run</span>'
    lists = ", ".join(esc(x) for x in run.get("lists") or ())
    cards = (
        f'<div class="stat {"bad" if down else "good"}"><b>{down:,}</b>down</div>'
        f'<div class="stat good"><b>{up:,}</b>up</div>'
        + (f'<div class="stat warn"><b>{degraded:,}</b>of them degraded</div>' if degraded else "")
        + f"<div class=stat><b>{total:,}</b>URLs</div>"
        f"<div class=stat><b>{esc(_duration(run.get('duration_s')))}</b>took</div>"
    )
    # A stopped run's unfinished rows and the list's invalid lines are not
    # sites that are down: they are counted apart.
    not_checked = _count(run, "not_checked", 0)
    invalid = _count(run, "invalid", 0)
    checked = total - not_checked - invalid
    if not_checked:
        cards += f"<div class=stat><b>{not_checked:,}</b>not checked</div>"
    if invalid:
        cards += f"<div class=stat><b>{invalid:,}</b>invalid lines</div>"
    if dups:
        cards += f"<div class=stat><b>{dups:,}</b>duplicate lines</div>"
    if down:
        verdict = f'<h1 class="bad">{down:,} of {checked:,} down</h1>'
    elif checked == total:
        verdict = f'<h1 class="good">All {total:,} up</h1>'
    else:
        verdict = f'<h1 class="good">All {checked:,} checked up</h1>'
    return (
        f"<header>{verdict}{flags}"
        f'<p class="meta">Checked {esc(_when(run.get("finished_at")))}'
        f" · lists: {lists or '—'}"
        + (f" · shard {esc(run.get('shard'))}" if run.get("shard") else "")
        + _merged(run.get("merged"))
        + f" · checker {esc(run.get('checker_version'))}</p>"
        f'<div class="stats">{cards}</div>{down_now}{_changes(run, changes)}</header>'
    )


def _merged(merged: object) -> str:
    """Which shards a merged run took, and which it lacks (their lines not checked)."""
    if not isinstance(merged, list):
        return ""
    if not merged:
        return " · merged from no shard (every line not checked)"
    of = str(merged[0]).partition("/")[2]
    taken = {str(m) for m in merged}
    count = int(of) if of.isdigit() else 0
    lacking = [f"{k}/{of}" for k in range(1, count + 1) if f"{k}/{of}" not in taken]
    lacking_text = f" ({esc(', '.join(lacking))} not checked)" if lacking else ""
    return f" · merged from shards {esc(', '.join(map(str, merged)))}{lacking_text}"


def _changes(run: dict[str, Any], changes: Sequence[Change]) -> str:
    if not changes and "changes_total" not in run and "previous_run" not in run:
        return '<p class="changes">First run of these lists: nothing to compare with yet.</p>'
    since = _when(run.get("previous_run"))
    since_text = f"since the run of {esc(since)}" if since else "since the last run"
    total = _count(run, "changes_total", len(changes))
    total = max(total, len(changes))
    if total == 0:
        return f'<p class="changes">No changes {since_text}.</p>'
    kinds = Counter(c.kind for c in changes)
    summary = " · ".join(
        f'<span class="k-{esc(k)}">{n:,} {esc(CHANGE_LABELS.get(k, k))}</span>'
        for k, n in sorted(kinds.items(), key=lambda kv: CHANGE_ORDER.get(kv[0], 9))
    )
    ordered = sorted(changes, key=lambda c: CHANGE_ORDER.get(c.kind, 9))
    items = "".join(_change(c) for c in ordered[:CHANGES_SHOWN])
    more = total - min(len(changes), CHANGES_SHOWN)
    tail = f"<li class=muted>… and {more:,} more not listed here</li>" if more > 0 else ""
    return (
        f'<details class="changes" open><summary><b>{total:,} change'
        f"{'s' if total != 1 else ''}</b> {since_text}: {summary}</summary>"
        f"<ul>{items}{tail}</ul></details>"
    )


def _days(days: Any) -> str:
    if not isinstance(days, int):
        return "no certificate" if days is None else esc(days)
    if days < 0:
        return f"expired {-days} day{'s' if days != -1 else ''} ago"
    return f"expires in {days} day{'s' if days != 1 else ''}"


def _change(c: Change) -> str:
    kind = c.kind
    before, after = c.before, c.after
    if kind == "cert_expiring":
        what = f"certificate {_days(after)} (was: {_days(before)})"
    elif kind == "final_url":
        what = f"now lands on <code>{esc(after)}</code> (was <code>{esc(before)}</code>)"
    elif kind in ("down", "up", "still_down", "status", "degraded", "recovered"):
        what = f"{esc(before)} → <b>{esc(after)}</b>"
        if kind != "status" and c.since:
            what += f' <span class="muted">since {esc(_when(c.since))}</span>'
        if c.detail:
            what += f' <span class="muted">({esc(c.detail)})</span>'
    else:
        what = f"{esc(before)} → {esc(after)}"
    return (
        f'<li><span class="tag k-{esc(kind)}">{esc(CHANGE_LABELS.get(kind, kind))}</span> '
        f'<span class="url">{esc_url(c.url)}</span> '
        f'<span class="muted">line {esc(c.line)}</span> {what}</li>'
    )


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h2>{esc(title)}</h2>{body}</div>'


def _status_chart(agg: Aggregates) -> str:
    """Horizontal bars: the four status classes always, then each error category."""
    errors = sorted(
        (k for k in agg.by_class if k not in STATUS_CLASSES), key=lambda k: -agg.by_class[k]
    )
    keys = list(STATUS_CLASSES) + errors
    top = max([agg.by_class[k] for k in keys] + [1])
    bar_h, gap, label_w, bar_w = 22, 8, 140, 260
    height = len(keys) * (bar_h + gap) + gap
    parts = []
    for i, key in enumerate(keys):
        n = agg.by_class[key]
        y = gap + i * (bar_h + gap)
        w = max(2.0, bar_w * n / top) if n else 0.0
        colour = CLASS_COLOURS.get(key, ERROR_COLOUR)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{esc(key)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" '
            f'fill="{colour}"><title>{esc(key)}: {n:,}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="n">{n:,}</text>'
        )
    summary = ", ".join(f"{k} {agg.by_class[k]}" for k in keys)
    return (
        f'<svg class="chart" viewBox="0 0 {label_w + bar_w + 70} {height}" role="img" '
        f'aria-label="{esc("Status: " + summary)}">{"".join(parts)}</svg>'
    )


def _latency_chart(agg: Aggregates) -> str:
    """Vertical bars over the fixed bins, for checks that got a response."""
    answered = sum(agg.latency)
    top = max([*agg.latency, 1])
    width, plot_h, base = 480, 150, 175
    slot = width / len(agg.latency)
    parts = []
    for i, (n, label) in enumerate(zip(agg.latency, LATENCY_LABELS, strict=True)):
        h = max(2.0, plot_h * n / top) if n else 0.0
        x = i * slot + 6
        mid = x + (slot - 12) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{slot - 12:.1f}" height="{h:.1f}" '
            f'rx="3" fill="{LATENCY_COLOURS[i]}"><title>{esc(label)}: {n:,}</title></rect>'
            f'<text x="{mid:.1f}" y="{base - h - 5:.1f}" text-anchor="middle" class="n">'
            f"{n:,}</text>"
            f'<text x="{mid:.1f}" y="{base + 18}" text-anchor="middle">{esc(label)}</text>'
        )
    axis = f'<line x1="0" x2="{width}" y1="{base}" y2="{base}" stroke="#d0d7de"/>'
    return (
        f'<svg class="chart" viewBox="0 0 {width} {base + 26}" role="img" '
        f'aria-label="Response time histogram of {answered} checks">{axis}{"".join(parts)}</svg>'
        f'<p class="muted small">total_ms of the {answered:,} checks that got a response '
        "(ms unless marked s)</p>"
    )


def _ms(value: Any) -> str:
    if not _is_number(value):
        return ""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _slowest_table(agg: Aggregates) -> str:
    if not agg.slowest:
        return '<p class="muted">No check got a response.</p>'
    body = "".join(
        f'<tr><td class="num">{_ms(ms)} ms</td><td>{esc(status)}</td>'
        f'<td class="url">{esc_url(url)}</td></tr>'
        for ms, _, url, status in sorted(agg.slowest, reverse=True)
    )
    return f"<table class=mini><tr><th>total</th><th>status</th><th>url</th></tr>{body}</table>"


def _certs_table(agg: Aggregates, warn_days: int) -> str:
    if not agg.certs:
        return '<p class="muted">No certificates were seen (http only, or not verifying).</p>'
    body = []
    for neg_days, _, url, not_after in sorted(agg.certs, reverse=True):
        days = -neg_days
        cls = ' class="bad"' if days < 0 else (' class="warn"' if days <= warn_days else "")
        body.append(
            f'<tr{cls}><td class="num">{days}</td><td>{esc(_when(not_after)[:10])}</td>'
            f'<td class="url">{esc_url(url)}</td></tr>'
        )
    return (
        "<table class=mini><tr><th>days left</th><th>expires</th><th>url</th></tr>"
        f"{''.join(body)}</table>"
        '<p class="muted small">Negative: already expired.</p>'
    )


def _table_start(agg: Aggregates) -> str:
    if agg.rows > TABLE_MAX_ROWS:
        if agg.down >= TABLE_MAX_ROWS:
            kept = f"down rows come first: these are the first {TABLE_MAX_ROWS:,} of the "
            kept += f"{agg.down:,} down rows, and no up rows"
        else:
            kept = f"every down row ({agg.down:,}) is here, then the first "
            kept += f"{TABLE_MAX_ROWS - agg.down:,} up rows"
        note = (
            f'<p class="note" id="cap">This table shows {TABLE_MAX_ROWS:,} of {agg.rows:,} rows: '
            f"{agg.rows - TABLE_MAX_ROWS:,} rows are left out ({kept}, in list order). "
            "The CSV and JSON reports have all of them.</p>"
        )
    else:
        note = ""
    heads = "".join(
        f'<th data-col="{name}"{" data-type=num" if num else ""}>'
        f'<button type="button">{name.replace("_", "_<wbr>")}</button></th>'
        for name, num in COLUMNS
    )
    return (
        f'<section><h2>Every URL</h2>{note}<div class="tools">'
        '<input id="q" type="search" placeholder="Filter: any text in the row" '
        'aria-label="Filter rows">'
        '<label><input id="only-down" type="checkbox"> only down</label>'
        f'<span id="shown" class="muted">{min(agg.rows, TABLE_MAX_ROWS):,} rows</span></div>'
        f'<div class="scroll"><table id="rows"><thead><tr>{heads}</tr></thead><tbody>'
    )


def _not_up(row: dict[str, Any]) -> str:
    error = row.get("error")
    if error == NOT_CHECKED:
        return "not checked"
    return "invalid" if error == INVALID else "down"


def _row(row: dict[str, Any], multi: bool, warn_days: int, trend: Trend | None = None) -> str:
    ok = bool(row.get("ok"))
    days = row.get("cert_days_left")
    days_cls = ""
    if isinstance(days, int):
        days_cls = " class=bad" if days < 0 else (" class=warn" if days <= warn_days else "")
    warnings = row.get("warnings")
    if isinstance(warnings, list | tuple):
        warnings = "; ".join(str(w) for w in warnings)
    warn_cls = " class=warn" if warnings else ""
    # With several lists, line numbers are ambiguous: the list goes in a tooltip.
    line_title = f' title="{esc(row.get("source"))}"' if multi else ""
    degraded = ok and row.get("state") == DEGRADED
    # What decided the state: the error's detail, or the expectations' reasons.
    reasons = row.get("reasons")
    detail = row.get("error_detail") or (
        "; ".join(str(r) for r in reasons) if isinstance(reasons, list | tuple) else None
    )
    return (
        f"<tr class={('g' if degraded else 'u') if ok else 'd'}>"
        f"<td>{esc_url(row.get('url'))}</td>"
        f"<td{line_title}>{esc(row.get('line'))}</td>"
        f"<td>{('degraded' if degraded else 'up') if ok else _not_up(row)}</td>"
        f"<td>{esc(row.get('status'))}</td>"
        f"<td>{esc(row.get('reason'))}</td>"
        f"<td>{esc(row.get('error'))}</td>"
        f"<td>{esc(detail)}</td>"
        f"<td>{esc(row.get('method'))}</td>"
        f"<td>{esc_url(row.get('final_url'))}</td>"
        f"<td>{_ms(row.get('total_ms'))}</td>"
        f"<td{days_cls}>{esc(days)}</td>"
        f"<td>{'yes' if row.get('reused') else 'no'}</td>"
        f"<td{warn_cls}>{esc(warnings)}</td>"
        f"{_trend_cells(trend)}</tr>"
    )


def _trend_cells(trend: Trend | None) -> str:
    """Uptime over 24 h · 7 d · 30 d, and the last results as a strip (up
    green, down red) under a sparkline of their times. Nothing from a server
    goes in here: numbers only."""
    if trend is None:
        return "<td></td><td></td>"
    shown = [f"{p:g}" if p is not None else "-" for p in trend.uptime]
    uptime = (
        f'<td title="uptime: 24 h · 7 d · 30 d (complete runs)">{" · ".join(shown)}</td>'
        if any(p is not None for p in trend.uptime)
        else "<td></td>"
    )
    return uptime + f"<td>{_history_svg(trend.recent)}</td>"


# The strip's bars, by position (4 px apart): made once, joined per row.
_BARS = [f"M{i * 4} 12h3v4h-3z" for i in range(64)]


def _history_svg(recent: str) -> str:
    """`recent`: a Trend's (its text read here, in the one walk over it)."""
    if not recent:
        return ""
    results = recent.split(" ")[-len(_BARS) :]
    # One walk over the results (this runs for every row of a page with history).
    ups: list[str] = []
    downs: list[str] = []
    times: list[tuple[int, float]] = []
    for i, item in enumerate(results):
        if item[0] == "1":
            ups.append(_BARS[i])
            if len(item) > 2:
                times.append((i, float(item[2:])))
        else:
            downs.append(_BARS[i])
    label = f"last {len(results)}: {len(ups)} up, {len(downs)} down"
    line = ""
    if times:
        low = min([ms for _, ms in times])
        high = max([ms for _, ms in times])
        scale = 8 / ((high - low) or 1.0)
        # Whole pixels: the line is 16 px high, finer steps would not show.
        points = " ".join([f"{i * 4 + 2},{9 - round((ms - low) * scale)}" for i, ms in times])
        line = f'<polyline points="{points}"/>'
        label += f"; {_ms(low)} to {_ms(high)} ms"
    return (
        f'<svg class="hist" viewBox="0 0 {len(results) * 4} 16" role="img" aria-label="{label}">'
        + (f'<path class="su" d="{"".join(ups)}"/>' if ups else "")
        + (f'<path class="sd" d="{"".join(downs)}"/>' if downs else "")
        + line
        + "</svg>"
    )


# Colours from a GitHub-like palette. The big table scrolls in its own box, so
# that its header can stick to the top of it. Its rows are CSS grids with one
# fixed column template rather than table rows: a table's layout depends on
# every cell, so 50,000 rows took ~20 s to load and ~10 s to re-sort in
# headless chromium; independent rows let `content-visibility: auto` skip the
# rows off screen (~2 s and ~1 s). `tr[hidden]` must be restated: author
# `display` beats the browser's own `[hidden] {display: none}`.
_CSS = """
:root{--fg:#1f2328;--mut:#656d76;--bd:#d0d7de;--bg:#f6f8fa;--good:#1a7f37;--bad:#cf222e;
--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",
Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1440px;margin:0 auto;padding:24px}
h1{font-size:28px;margin:0 0 4px}h2{font-size:15px;margin:0 0 12px}
.good{color:var(--good)}.bad{color:var(--bad)}.warn{color:var(--warn)}
.muted{color:var(--mut)}.small{font-size:12px;margin:4px 0 0}
.meta{color:var(--mut);margin:0 0 16px}
.flag{display:inline-block;margin:0 0 8px;padding:2px 10px;border-radius:12px;
background:#ddf4ff;color:#0969da;font-weight:600}.flag.bad{background:#ffebe9;color:var(--bad)}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.stat{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:10px 18px;
min-width:120px;color:var(--mut)}
.stat b{display:block;font-size:24px;color:var(--fg);font-variant-numeric:tabular-nums}
.stat.good b{color:var(--good)}.stat.bad b{color:var(--bad)}.stat.warn b{color:var(--warn)}
.changes{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:10px 16px;margin:0}
.changes summary{cursor:pointer}.changes ul{margin:8px 0 0;padding-left:0;list-style:none;
max-height:320px;overflow:auto}.changes li{padding:3px 0;border-top:1px solid var(--bg)}
.tag{display:inline-block;min-width:150px;font-size:12px;font-weight:600}
.k-down,.k-still_down{color:var(--bad)}.k-up{color:var(--good)}.k-cert_expiring{color:var(--warn)}
.k-status,.k-final_url{color:#0969da}.k-degraded{color:var(--warn)}.k-recovered{color:var(--good)}
code{font-size:12px;overflow-wrap:anywhere}.url{overflow-wrap:anywhere;min-width:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px;margin:20px 0}
.card{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:14px 16px;min-width:0}
.chart{width:100%;max-width:560px;height:auto;font-size:13px;fill:var(--fg)}
.chart .n{fill:var(--mut);font-size:12px}
table{border-collapse:collapse;width:100%}
td,th{padding:4px 8px;text-align:left;vertical-align:top;border-bottom:1px solid var(--bg)}
.mini td,.mini th{font-size:13px}.mini th{color:var(--mut);font-weight:600}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.bad td{background:#ffebe9}tr.warn td{background:#fff8c5}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:8px 14px}
.tools{display:flex;gap:16px;align-items:center;margin:0 0 10px}
#q{flex:0 1 420px;padding:6px 10px;font:inherit;border:1px solid var(--bd);border-radius:6px}
.scroll{max-height:80vh;overflow:auto;background:#fff;border:1px solid var(--bd);border-radius:8px}
#rows{display:block;min-width:1160px;font-size:13px}#rows thead,#rows tbody{display:block}
#rows thead{position:sticky;top:0;z-index:1;background:#eaeef2}
#rows tr{display:grid;grid-template-columns:minmax(0,2fr) 6em 4.5em 4.5em minmax(0,1fr) 7em
minmax(0,1.6fr) 5em minmax(0,2fr) 5em 5em 5em minmax(0,1.4fr) 11em 7em}
.hist{width:80px;max-width:100%;height:16px}.su{fill:var(--good)}.sd{fill:var(--bad)}
.hist polyline{fill:none;stroke:#0969da;stroke-width:1}
.down-now{background:#fff;border:1px solid var(--bd);border-left:4px solid var(--bad);
border-radius:8px;padding:10px 16px;margin:0 0 12px}.down-now ul{margin:0;padding-left:0;
list-style:none;max-height:320px;overflow:auto}.down-now li{padding:3px 0}
#rows tbody tr{content-visibility:auto;contain-intrinsic-size:auto 2.2em}
#rows tr[hidden]{display:none}
#rows td{overflow-wrap:anywhere;min-width:0}
#rows th{padding:0;display:flex;align-items:flex-end}
#rows th button{all:unset;flex:1;padding:7px 8px;cursor:pointer;font-weight:600}
#rows th[data-type=num]{text-align:right}
#rows th[aria-sort=ascending] button::after{content:"\\a0▲"}
#rows th[aria-sort=descending] button::after{content:"\\a0▼"}
#rows td:nth-child(2),#rows td:nth-child(4),#rows td:nth-child(10),
#rows td:nth-child(11){text-align:right;font-variant-numeric:tabular-nums}
#rows tr.u td:nth-child(3){color:var(--good);font-weight:600}
#rows tr.d{background:#fff5f5}#rows tr.d td:nth-child(3){color:var(--bad);font-weight:600}
#rows tr.u{box-shadow:inset 3px 0 var(--good)}#rows tr.d{box-shadow:inset 3px 0 var(--bad)}
#rows tr.g{box-shadow:inset 3px 0 var(--warn)}
#rows tr.g td:nth-child(3){color:var(--warn);font-weight:600}
#rows td.bad{color:var(--bad);font-weight:600}#rows td.warn{color:var(--warn);font-weight:600}
#rows td:nth-child(13){font-weight:400}
#rows td:nth-child(14){white-space:nowrap;font-variant-numeric:tabular-nums}
#rows tbody tr:hover{background:#f3f7ff}
@media (max-width:720px){
main{padding:12px}h1{font-size:22px}
.grid{grid-template-columns:minmax(0,1fr)}
.stat{min-width:0;flex:1 1 40%;padding:8px 12px}
.tools{flex-wrap:wrap}#q{flex:1 1 100%}.tag{display:block;min-width:0}
#rows{min-width:0}
#rows tr{grid-template-columns:repeat(3,minmax(0,1fr))}
#rows td:first-child,#rows th:first-child{grid-column:1/-1}#rows td:first-child{font-weight:600}
#rows td:nth-child(9),#rows th:nth-child(9){grid-column:span 2}
#rows td:nth-child(2),#rows td:nth-child(4),#rows td:nth-child(10),
#rows td:nth-child(11),#rows th[data-type=num]{text-align:left}
}
"""

# Sorting and filtering. It reads the cells it sorts and filters from the DOM:
# no data is ever written into the script.
_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("rows");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);  // input order, kept
  var texts = null;  // each row's text, lower-cased, made on the first filter
  var q = document.getElementById("q");
  var onlyDown = document.getElementById("only-down");
  var shown = document.getElementById("shown");

  function filter() {
    var needle = q.value.trim().toLowerCase();
    var down = onlyDown.checked;
    var n = 0;
    if (needle && texts === null) {
      texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
    }
    for (var i = 0; i < rows.length; i++) {
      var keep = (!down || rows[i].className === "d") &&
        (!needle || texts[i].indexOf(needle) !== -1);
      rows[i].hidden = !keep;
      if (keep) { n++; }
    }
    var all = rows.length.toLocaleString("en-US");
    shown.textContent = n === rows.length ? all + " rows" :
      n.toLocaleString("en-US") + " of " + all + " rows";
  }

  var timer = 0;
  q.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(filter, 120);
  });
  onlyDown.addEventListener("change", filter);

  table.tHead.addEventListener("click", function (event) {
    var th = event.target.closest("th");
    if (!th) { return; }
    var col = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var keyed = rows.map(function (r, i) {
      var t = r.cells[col].textContent;
      var k = null;
      if (t !== "") {
        k = numeric ? parseFloat(t) : t.toLowerCase();
        if (numeric && isNaN(k)) { k = null; }
      }
      return [k, i, r];
    });
    keyed.sort(function (a, b) {
      // Empty cells last in both directions; ties keep input order.
      if (a[0] === null || b[0] === null) {
        return (a[0] === null) - (b[0] === null) || a[1] - b[1];
      }
      var c = numeric ? a[0] - b[0] : (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
      return c * dir || a[1] - b[1];
    });
    var heads = table.tHead.rows[0].cells;
    for (var j = 0; j < heads.length; j++) { heads[j].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var frag = document.createDocumentFragment();
    keyed.forEach(function (x) { frag.appendChild(x[2]); });
    body.appendChild(frag);
  });
})();
"""

_TAIL = f"</tbody></table></div></section></main><script>{_SCRIPT}</script></body></html>\n"


def tail() -> bytes:
    """What follows the last table row."""
    return _encode(_TAIL)


def encode(text: str) -> bytes:
    return _encode(text)
