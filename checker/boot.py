"""The `checker` command: a run's reporter started before anything else is
imported (`reports.prestart`), then the command line (`cli`)."""

from __future__ import annotations

import sys


def entry() -> None:
    from checker.reports.prestart import prestart

    prestart(sys.argv[1:])
    from checker.cli import entry as run_command

    run_command()
