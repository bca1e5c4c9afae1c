"""What runs leave behind in a report folder: the journals of runs that did
not end, and the hidden half-written reports (spools).

Apart from `recover` (which still exports these) because every run looks
for them as it starts and almost always finds none: the recovery, with the
report writers and the history it needs, is imported when there is a
journal to recover, or when a run writes its reports itself (no reporter:
`recover.publish`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re

from checker.reports.formats import FORMATS
from checker.reports.journal import held

JOURNAL_SUFFIX = ".journal.jsonl"
# A report on its way into place: `.status-<stamp>.<fmt>.XXXXXXXX`, the
# temporary file beside it that a Spool or write_atomic writes (atomic.py).
_SPOOL = re.compile(r"\.(status-[^.]+)\.(?:" + "|".join(FORMATS) + r")\.[^.]+")
_LATEST_LINK = re.compile(r"\.latest\.(?:" + "|".join(FORMATS) + r")\.(\d+)\.tmp")


def journals(out_dir: str) -> list[str]:
    """The run journals in `out_dir`, in name order (runs that did not end,
    or are still going)."""
    return sorted(glob.glob(os.path.join(glob.escape(out_dir), "status-*" + JOURNAL_SUFFIX)))


def remove_spools(journal: str) -> None:
    """The half-written reports a killed run left (`.status-<stamp>.csv.XXXX`:
    a reporter writes them while the run goes, see reporter.py)."""
    stem = os.path.basename(journal).removesuffix(JOURNAL_SUFFIX)
    folder = os.path.dirname(journal) or "."
    for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.*")):
        with contextlib.suppress(OSError):
            os.unlink(leftover)


def remove_stale_spools(out_dir: str) -> None:
    """Every hidden half-written report in `out_dir` whose run is over: left
    by a run, a --processes run's merge or a `checker merge` killed as it
    wrote them, whatever became of its journal since (recovered, merged
    again from its shards, set aside, or never there). Unlike
    `remove_spools`, which follows a journal being recovered, this is how
    the spools of a journal that is gone are found at all.

    The caller holds the folder's lock, so no run of this folder is
    writing. As recovery does (Journal.reopen), the spools of a run that
    still holds its journal are left alone all the same."""
    try:
        names = os.listdir(out_dir)
    except OSError:
        return
    going: dict[str, bool] = {}  # stamp -> its run still holds its journal
    for name in names:
        found = _SPOOL.fullmatch(name)
        if found is None:
            link = _LATEST_LINK.fullmatch(name)
            if link is not None and not _alive(int(link.group(1))):
                # A latest.<fmt> on its way in (atomic.publish_latest, named
                # by its process), left by a kill between link and rename.
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(out_dir, name))
            continue
        stem = found.group(1)
        if stem not in going:
            going[stem] = held(os.path.join(out_dir, stem + JOURNAL_SUFFIX))
        if not going[stem]:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(out_dir, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (someone else's: alive)
        return True
    return True
