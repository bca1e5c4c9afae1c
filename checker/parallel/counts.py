"""The running counts a shard process hands its parent, which draws the bar.

One line per update on the shard's stdout: "<rows> <up> <down>\n", totals so
far (not increments, so that a lost or merged line costs nothing), at most
five times a second and once at the end. It stands where the tqdm bar would
(the recorder calls `update` and `set_postfix_str`).
"""

from __future__ import annotations

import time
from typing import BinaryIO

from checker.summary import Stats

INTERVAL = 0.2  # seconds between lines


class CountsPipe:
    def __init__(self, out: BinaryIO, stats: Stats) -> None:
        self.out = out
        self.stats = stats
        self.rows = 0
        self._last = time.monotonic()
        self._send()  # at once: the parent knows this run has begun (its signals are set)

    def update(self, n: int) -> None:
        self.rows += n
        now = time.monotonic()
        if now - self._last >= INTERVAL:
            self._last = now
            self._send()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        pass  # the parent makes its own from the counts

    def close(self) -> None:
        self._send()

    def _send(self) -> None:
        try:
            self.out.write(b"%d %d %d\n" % (self.rows, self.stats.up, self.stats.down))
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass  # the parent is gone: the run goes on to its report


def parse(line: bytes) -> tuple[int, int, int] | None:
    """A counts line, or None for anything else (never trusted to be whole)."""
    parts = line.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])
