"""The run index and the JSON reports read back.

Each finished run appends one line to `<out>/runs.jsonl` (time, totals, the
lists it checked, its report files). What changed between runs is no longer
worked out here: the history database keeps each URL's state and finds the
changes (`store.state`); this module serves the index, the reports' result
lines (importing old reports, `checker report`), and `checker history` when
there is no database to ask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import aiofiles

from checker.store.run_entry import RunEntry
from checker.url import URLError, dedup_key, parse_url

RUN_INDEX = "runs.jsonl"
MAX_CHANGES = 10_000  # listed in a report; the rest are counted


def lists_key(lists: Iterable[str]) -> list[str]:
    """The lists of a run as absolute paths: the same lists from another cwd match."""
    return [os.path.abspath(p) for p in lists]


def index_entry(run: dict[str, Any], lists: list[str], reports: Iterable[str]) -> RunEntry:
    """A run's line in the run index, from its report's run header."""
    entry = RunEntry.from_dict(
        {
            **run,
            "changes": run.get("changes_total", 0),
            "lists": lists,
            "reports": [os.path.basename(p) for p in reports],
        }
    )
    assert entry is not None, "a run header always has its started_at"
    return entry


async def append_run(out_dir: str, entry: RunEntry) -> None:
    line = json.dumps(entry.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
    # One write of one short line in append mode: concurrent appenders (there
    # are none, the run lock sees to that) could not interleave within it.
    async with aiofiles.open(os.path.join(out_dir, RUN_INDEX), "a", encoding="utf-8") as f:
        await f.write(line)


def read_runs(out_dir: str) -> list[RunEntry]:
    """The run index, oldest first; a torn or foreign line is skipped."""
    runs = []
    try:
        with open(os.path.join(out_dir, RUN_INDEX), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = RunEntry.from_dict(json.loads(line))
                except ValueError:
                    continue
                if entry is not None:
                    runs.append(entry)
    except FileNotFoundError:
        pass
    return runs


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


def url_history(out_dir: str, url: str, last: int) -> list[tuple[RunEntry, dict[str, Any] | None]]:
    """(run entry, that run's row for `url` or None) for the last `last` runs that have a report.

    `url` matches a row written in any spelling that means the same URL (the
    rule deduplication uses: `https://PyPI.org` is `https://pypi.org/`).
    """
    out: list[tuple[RunEntry, dict[str, Any] | None]] = []
    same = _same_url(url)
    for entry in reversed(read_runs(out_dir)):
        path = next(
            (os.path.join(out_dir, n) for n in entry.reports if n.endswith(".json")),
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
