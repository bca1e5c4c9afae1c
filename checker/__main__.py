"""`python -m checker` is the `checker` command."""

from checker.boot import entry

entry()
