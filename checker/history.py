"""What the runs add up to: the run index, the previous run, and what changed.

Each finished run appends one line to `<out>/runs.jsonl` (time, totals, the
lists it checked, its report files). The next run of the same lists finds the
previous run's JSON report there and compares, URL by URL:

- `down`: it was up and is down now; `up`: it was down and is up again;
- `status`: the status code changed (e.g. 200 -> 301, or 502 -> 503);
- `final_url`: it now ends somewhere else after redirects;
- `cert_expiring`: its certificate now expires within --cert-warn-days (and
  did not at the previous run).

A URL only in one of the two runs is no change. Memory stays small for long
lists: the previous report is indexed as URL fingerprint -> byte offset
(`FingerprintMap`), and a row is read back only when the same URL comes by.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiofiles

from checker.fingerprints import FingerprintMap
from checker.results import NOT_CHECKED
from checker.url import URLError, dedup_key, parse_url

RUN_INDEX = "runs.jsonl"
MAX_CHANGES = 10_000  # listed in a report; the rest are counted


def lists_key(lists: Iterable[str]) -> list[str]:
    """The lists of a run as absolute paths: the same lists from another cwd match."""
    return [os.path.abspath(p) for p in lists]


def index_entry(run: dict[str, Any], lists: list[str], reports: Iterable[str]) -> dict[str, Any]:
    """A run's line in the run index, from its report's run header."""
    entry = {k: run.get(k) for k in ("started_at", "finished_at", "duration_s")}
    entry |= {k: run.get(k, 0) for k in ("total", "up", "down", "not_checked")}
    entry |= {"interrupted": bool(run.get("interrupted"))}
    if run.get("recovered"):
        entry["recovered"] = True
    entry |= {"changes": run.get("changes_total", 0), "lists": lists}
    entry["reports"] = [os.path.basename(p) for p in reports]
    return entry


async def append_run(out_dir: str, entry: dict[str, Any]) -> None:
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    # One write of one short line in append mode: concurrent appenders (there
    # are none, the run lock sees to that) could not interleave within it.
    async with aiofiles.open(os.path.join(out_dir, RUN_INDEX), "a", encoding="utf-8") as f:
        await f.write(line)


def read_runs(out_dir: str) -> list[dict[str, Any]]:
    """The run index, oldest first; a torn or foreign line is skipped."""
    runs = []
    try:
        with open(os.path.join(out_dir, RUN_INDEX), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    runs.append(entry)
    except FileNotFoundError:
        pass
    return runs


def previous_report(out_dir: str, lists: list[str]) -> str | None:
    """The JSON report of the newest earlier run of the same lists, if it still exists."""
    for entry in reversed(read_runs(out_dir)):
        if entry.get("lists") != lists or entry.get("interrupted"):
            # A stopped or recovered run is never the baseline of a change:
            # what it did not finish would read as "down" and then "up".
            continue
        for name in entry.get("reports", []):
            path = os.path.join(out_dir, name)
            if name.endswith(".json") and os.path.exists(path):
                return path
    return None


def report_rows(path: str) -> Iterator[tuple[int, bytes]]:
    """(byte offset, JSON of one result) for each result line of a checker JSON report.

    Our JSON report puts one result per line (see `json_report`), so a report
    of a million rows is read a line at a time, never loaded whole.
    """
    with open(path, "rb") as f:
        offset = 0
        for line in f:
            if line.startswith(b'{"url":'):
                yield offset, line.rstrip(b",\r\n")
            offset += len(line)


@dataclass
class PreviousRun:
    """Use as a context manager: lookups share one open file."""

    path: str
    index: FingerprintMap
    started_at: str | None
    _file: BinaryIO | None = None

    def __enter__(self) -> PreviousRun:
        self._file = open(self.path, "rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def load(cls, path: str) -> PreviousRun:
        index = FingerprintMap()
        decode = json.JSONDecoder().raw_decode
        started_at = None
        for offset, row in report_rows(path):
            url, _ = decode(row.decode("utf-8"), 7)  # just the "url" value
            index.setdefault(url, offset)
        with open(path, "rb") as f:
            first = f.readline()
        if first.startswith(b'{"run":'):
            try:
                started_at = json.loads(first[7:].rstrip(b",\r\n")).get("started_at")
            except ValueError:
                started_at = None
        return cls(path, index, started_at)

    def get(self, url: str) -> dict[str, Any] | None:
        offset = self.index.get(url)
        if offset is None:
            return None
        assert self._file is not None, "use PreviousRun as a context manager"
        self._file.seek(offset)
        row: dict[str, Any] = json.loads(self._file.readline().rstrip(b",\r\n"))
        return row if row.get("url") == url else None  # a fingerprint collision


def _outcome(row: dict[str, Any]) -> object:
    return row.get("error") or row.get("status")


def row_changes(
    before: dict[str, Any], after: dict[str, Any], warn_days: int
) -> list[dict[str, Any]]:
    """What changed for one URL between two runs (pure)."""
    base = {"url": after["url"], "line": after["line"]}
    out = []
    if before["ok"] and not after["ok"]:
        down = {**base, "kind": "down", "before": _outcome(before), "after": _outcome(after)}
        # What a person needs from an alert: since when, and what went wrong.
        if after.get("checked_at"):
            down["since"] = after["checked_at"]
        if after.get("error_detail"):
            down["detail"] = after["error_detail"]
        out.append(down)
    elif not before["ok"] and after["ok"]:
        out.append({**base, "kind": "up", "before": _outcome(before), "after": _outcome(after)})
    elif before.get("status") != after.get("status") and None not in (
        before.get("status"),
        after.get("status"),
    ):
        out.append({**base, "kind": "status", "before": before["status"], "after": after["status"]})
    if (
        before.get("final_url") != after.get("final_url")
        and before.get("final_url")
        and after.get("final_url")
        and after.get("error") is None
        and before.get("error") is None
    ):
        out.append(
            {
                **base,
                "kind": "final_url",
                "before": before["final_url"],
                "after": after["final_url"],
            }
        )
    days, was = after.get("cert_days_left"), before.get("cert_days_left")
    if days is not None and days <= warn_days and (was is None or was > warn_days):
        out.append({**base, "kind": "cert_expiring", "before": was, "after": days})
    return out


class Changes:
    """What changed, row by row against the previous run: the first
    MAX_CHANGES kept, all of them counted."""

    def __init__(self, previous: PreviousRun, warn_days: int) -> None:
        self.previous = previous
        self.warn_days = warn_days
        self.listed: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: dict[str, Any]) -> None:
        if row.get("error") == NOT_CHECKED:
            return  # a stopped run's unfinished row says nothing about its site
        before = self.previous.get(row["url"])
        if before is None or before.get("error") == NOT_CHECKED:
            return
        found = row_changes(before, row, self.warn_days)
        if found:
            self.total += len(found)
            self.listed.extend(found[: max(0, MAX_CHANGES - len(self.listed))])


def compute_changes(
    rows: Iterable[dict[str, Any]], previous: PreviousRun, warn_days: int
) -> tuple[list[dict[str, Any]], int]:
    """(the first MAX_CHANGES changes, how many there are in all)."""
    changes = Changes(previous, warn_days)
    for row in rows:
        changes.add(row)
    return changes.listed, changes.total


def url_history(
    out_dir: str, url: str, last: int
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(run entry, that run's row for `url` or None) for the last `last` runs that have a report.

    `url` matches a row written in any spelling that means the same URL (the
    rule deduplication uses: `https://PyPI.org` is `https://pypi.org/`).
    """
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    same = _same_url(url)
    for entry in reversed(read_runs(out_dir)):
        path = next(
            (os.path.join(out_dir, n) for n in entry.get("reports", []) if n.endswith(".json")),
            None,
        )
        if path is None or not os.path.exists(path):
            continue
        row = None
        for _, line in report_rows(path):
            if same(line):
                row = json.loads(line)
                break
        out.append((entry, row))
        if len(out) >= last:
            break
    return out


def _same_url(url: str) -> Callable[[bytes], bool]:
    """A test of a report's result line: is it `url`, in any spelling?

    The exact text is tried first; otherwise lines that mention the host are
    parsed and compared by dedup key (parsing every line of a long report
    would be slow, and a line that means the same URL names its host).
    """
    exact = b'{"url":' + json.dumps(url, ensure_ascii=False).encode("utf-8") + b","
    try:
        target = parse_url(url.strip())
    except URLError:
        return lambda line: line.startswith(exact)
    key = dedup_key(target)
    hosts = {target.host.encode(), url.strip().lower().encode("utf-8", "replace")}
    hosts = {h.split(b"://")[-1].split(b"/")[0].split(b":")[0] or h for h in hosts}

    def same(line: bytes) -> bool:
        if line.startswith(exact):
            return True
        lowered = line[: line.find(b'","source"')].lower() if b'","source"' in line else b""
        if not any(h in lowered for h in hosts):
            return False
        try:
            text = json.loads(line)["url"]
            return isinstance(text, str) and dedup_key(parse_url(text)) == key
        except (ValueError, KeyError, URLError):
            return False

    return same
