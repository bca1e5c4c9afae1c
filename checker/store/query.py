"""What `checker history URL` asks of the database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checker.store.db import NAME, HistoryDB
from checker.store.model import Row, Uptime
from checker.url import URLError, dedup_key, parse_url

# (label, days): 24 h from the raw results; 7 and 30 days by UTC day, today
# included, from the daily counts (raw results are only kept --history-days).
WINDOWS = (("24 h", 1), ("7 d", 7), ("30 d", 30))


@dataclass(frozen=True, slots=True)
class URLHistory:
    url: str  # as written in the list
    uptime: tuple[tuple[str, Uptime], ...]  # per window, complete runs only
    down_since: str | None
    recent: tuple[tuple[str, bool, Row], ...]  # (run started_at, complete, result), newest first


def has_history(out_dir: str) -> bool:
    return os.path.exists(os.path.join(out_dir, NAME))


def find(db: HistoryDB, url: str) -> list[tuple[int, str]]:
    """The stored URLs that mean `url`: the same text, or any spelling with the
    same dedup key (`https://PyPI.org` is `https://pypi.org/`)."""
    exact = db.url_ids([url])
    if exact:
        return exact
    try:
        target = parse_url(url.strip())
    except URLError:
        return []
    key = dedup_key(target)
    found = []
    for url_id, text in db.urls_like(target.host):
        try:
            if dedup_key(parse_url(text)) == key:
                found.append((url_id, text))
        except URLError:
            continue
    return found


def url_history(out_dir: str, url: str, last: int, now: datetime | None = None) -> list[URLHistory]:
    now = now or datetime.now(UTC)
    db = HistoryDB.in_folder(out_dir)
    try:
        out = []
        for url_id, text in find(db, url):
            uptime = tuple(
                (
                    name,
                    db.uptime(url_id, now - timedelta(days=1))
                    if days == 1
                    else db.uptime_days(url_id, days, now),
                )
                for name, days in WINDOWS
            )
            out.append(
                URLHistory(text, uptime, db.down_since(url_id), tuple(db.recent(url_id, last)))
            )
        return out
    finally:
        db.close()
