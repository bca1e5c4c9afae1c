"""The process's open-file limit, raised to fit the concurrency."""

from __future__ import annotations

import resource

# File descriptors a run needs besides one socket per check: stdio, the journal
# and reports, the event loop's own, resolver threads.
RESERVED_FDS = 64
# RLIM_INFINITY cannot be a soft limit on every system; this is plenty.
CEILING = 1 << 20


def fit_open_files(concurrency: int) -> tuple[int, str | None]:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows.

    Returns the concurrency that fits (lowered if the hard limit is too low)
    and a message for the user when something had to give.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = CEILING if hard == resource.RLIM_INFINITY else hard
    want = min(ceiling, max(soft, concurrency + RESERVED_FDS))
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    fits = max(1, soft - RESERVED_FDS)
    if concurrency > fits:
        return fits, (
            f"concurrency {concurrency} needs about {concurrency + RESERVED_FDS} open files "
            f"but the limit is {soft} (hard limit {hard}); running with concurrency {fits}"
        )
    return concurrency, None
