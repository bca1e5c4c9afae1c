"""`python -m checker` is the `checker` command."""

from checker.cli import entry

entry()
