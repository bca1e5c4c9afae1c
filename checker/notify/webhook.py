"""The webhook channel: POST the alert's JSON with our own HTTP client.

Error messages never repeat the webhook URL: chat and incident services put
their secret token in it (Slack's "/services/T000/B000/XXXX"), and these
messages end up in terminals and cron mail.
"""

from __future__ import annotations

import asyncio

from checker.http.client import ClientConfig, post
from checker.http.errors import CheckError
from checker.notify.errors import NotifyError
from checker.notify.message import clean
from checker.url import URL, URLError, parse_url


def webhook_target(url: str) -> URL:
    """The webhook's URL, or NotifyError saying what is wrong with it: found
    when the run starts (exit 2), not after its checks, every run (an
    `ftp://` one was "sent again by the next run" for ever: found by a
    review)."""
    scheme = url.partition(":")[0].strip().lower()
    if scheme not in ("http", "https"):
        # (Before parse_url: its message for a service URL is a list's rule.)
        raise NotifyError(f"invalid webhook URL: unsupported scheme {scheme!r} (http or https)")
    try:
        return parse_url(url)
    except URLError as exc:
        raise NotifyError(f"invalid webhook URL: {exc}") from None


async def post_webhook(url: str, body: bytes, config: ClientConfig, timeout: float = 10.0) -> int:
    """POST `body` as application/json to `url`; the HTTP status if it is 2xx.

    Anything else, a 3xx included (redirects are not followed: a POST that is
    redirected is not delivered), raises NotifyError.
    """
    target = webhook_target(url)
    try:
        async with asyncio.timeout(timeout):
            head = await post(target, body, "application/json", config)
    except CheckError as exc:  # before TimeoutError: CheckTimeout is both
        raise NotifyError(f"{exc.category}: {exc}") from None
    except TimeoutError:
        raise NotifyError(f"timeout: no answer within {timeout:g}s") from None
    if not 200 <= head.status < 300:
        reason = f" {clean(head.reason, 100)}" if head.reason else ""
        raise NotifyError(f"HTTP {head.status}{reason}")
    return head.status
