"""The report formats' names, apart from `output` (which still exports them):
the command line and a run's start need the names, and a run whose reporter
writes its reports never imports the writers."""

from __future__ import annotations

FORMATS = ("csv", "json", "html", "prom")
DEFAULT_FORMATS = ("csv", "json", "html")
