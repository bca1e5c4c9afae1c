"""Cookies that a check's redirects set, sent back on its later hops. Pure.

Sites behind a cookie gate (a bot check, a load balancer's session, "cookies
required") answer a first visit with a redirect to the same URL and a
Set-Cookie, and the page once the cookie comes back. A browser follows; a
client without cookies loops until it gives up (checker called such sites
down: "redirect loop"). So one check keeps the cookies its responses set,
for its own hops only (never another URL's check, never the next run):

- host-only: a cookie goes back to the host that set it (a Domain attribute
  is not widened to its siblings: nothing is sent anywhere it was not set);
- `Secure` ones only over https; `Max-Age` of zero or less, or an `Expires`
  in the past, removes one; the path is not matched (one check, one site).
"""

from __future__ import annotations

import time

from checker.url import URL

MAX_COOKIES = 50  # per host, in one check: a site that sets more is not a gate


class Jar:
    def __init__(self) -> None:
        self._hosts: dict[str, dict[str, tuple[str, bool]]] = {}  # host -> name -> (value, secure)

    def take(self, url: URL, set_cookie: list[str], now: float | None = None) -> None:
        """The Set-Cookie fields of a response from `url` (RFC 6265 5.2, in short)."""
        for field in set_cookie:
            pair, *attributes = field.split(";")
            name, eq, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if not eq or not name or not _printable(name + value):
                continue
            secure, gone = False, False
            for attribute in attributes:
                key, _, arg = attribute.partition("=")
                key, arg = key.strip().lower(), arg.strip()
                if key == "secure":
                    secure = True
                elif key == "max-age" and arg.lstrip("-").isdigit():
                    gone = int(arg) <= 0
                elif key == "expires" and not gone:
                    gone = _past(arg, time.time() if now is None else now)
            cookies = self._hosts.setdefault(url.host, {})
            if gone:
                cookies.pop(name, None)
            elif name in cookies or len(cookies) < MAX_COOKIES:
                cookies[name] = (value, secure)

    def header(self, url: URL) -> str | None:
        """The Cookie field for a request to `url`, or None."""
        cookies = self._hosts.get(url.host)
        if not cookies:
            return None
        tls = url.scheme == "https"
        pairs = [f"{n}={value}" for n, (value, secure) in cookies.items() if tls or not secure]
        return "; ".join(pairs) or None

    def state(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """What it holds, to tell a redirect back to a URL with new cookies
        (a gate) from a loop."""
        return tuple(
            (host, tuple(sorted((n, v) for n, (v, _) in cookies.items())))
            for host, cookies in sorted(self._hosts.items())
        )


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _past(date: str, now: float) -> bool:
    # (Imported here: email.utils, with calendar and the rest, was 8 ms of
    # a run's start-up on a slow machine, for an Expires few redirects carry.)
    import email.utils

    try:
        moment = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return False
    return moment.timestamp() <= now if moment.tzinfo else False
