"""The `checker` command: a run's reporter started before anything else is
imported (`reports.prestart`), then the command line (`cli`)."""

from __future__ import annotations

import sys


def entry() -> None:
    from checker.limits import open_standard_descriptors
    from checker.reports.prestart import prestart

    # (A closed stdout left so would be given to the reporter's pipe, and
    # the run's output written into the reporter's stdin.)
    open_standard_descriptors()

    prestart(sys.argv[1:])
    try:
        from checker.cli import entry as run_command

        run_command()
    finally:
        from checker.reports.prestart import reap

        reap()
