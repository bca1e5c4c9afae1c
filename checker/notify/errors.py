"""The one exception an alert channel raises.

Every failure of a channel (a refused connection, a timeout, a TLS failure, a
reply the server should not have sent) leaves `smtp` and `webhook` as a
`NotifyError` whose `str()` is a one-line message a person can act on. It is
kept apart from `checker.http.errors.CheckError` on purpose: a failing alert is
never a result of the run, and `notify()` reports it rather than raising.
"""

from __future__ import annotations


class NotifyError(Exception):
    """An alert could not be delivered; `str(exc)` says why, in one line."""
