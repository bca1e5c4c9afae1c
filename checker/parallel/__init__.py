"""`checker check --processes N`: one machine's cores, as N shard runs of one
list under one command (see coordinator)."""

from __future__ import annotations

import glob
import os

SHARDS_DIR = ".shards"  # <out>/.shards/<report name>/<K>/: a --processes run's shards


def shard_dirs(work: str) -> list[str]:
    """The shard folders of one --processes run, in shard order."""
    names = [n for n in os.listdir(work) if n.isdigit()]
    return [os.path.join(work, n) for n in sorted(names, key=int)]


def newest_report(folder: str) -> str | None:
    """The JSON report a shard wrote in its folder (the newest, if several)."""
    found = sorted(glob.glob(os.path.join(glob.escape(folder), "status-*.json")))
    return found[-1] if found else None
