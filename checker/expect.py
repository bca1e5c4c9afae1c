"""What healthy means for one URL, and the verdict on a response: pure, no I/O.

A plain list line means "answers 200-399". A CSV list (see `targets`) can say
more per URL, one column each (README, "Lists with columns"):

- `expect_status`: codes and ranges, "200", "200,301-302", "4xx", "2xx,401";
- `contains`, `not_contains`: a substring the body must (not) contain;
- `regex`: a regular expression the body must match (Python `re`, searched);
- `max_ms`: slower than this (total time) is degraded;
- `cert_min_days`: a certificate expiring sooner is degraded;
- `method`: HEAD or GET; `headers`: `Name: value; Name: value`;
- `name`, `tags` (`a;b`): carried into the report.

Three states: `up`, `degraded` (answered as expected, but slower than
`max_ms`, a certificate within `cert_min_days`, or only on a retry), `down`.
`reasons` says which condition decided, in a few words each.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UP = "up"
DEGRADED = "degraded"
DOWN = "down"

MAX_PATTERN = 1000  # characters of a regex (a list is not a place for a program)


class CellError(ValueError):
    """A cell that cannot be used; the message names what is wrong with it."""


@dataclass(frozen=True, slots=True)
class StatusSet:
    """Status codes as written: "200,301-302,4xx" (inclusive ranges)."""

    text: str
    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, status: object) -> bool:
        if isinstance(status, int):
            for lo, hi in self.ranges:  # (a loop, not any(): this runs twice a check)
                if lo <= status <= hi:
                    return True
        return False

    def names_redirect(self, status: int) -> bool:
        """Whether the row expects the redirect `status` (a 3xx) as its
        answer: it names it (`301`, `3xx`, `301-302`) and no 2xx status.
        One that also takes a 2xx (`200,301-302`, `200-399`, the default)
        follows redirects to the final page, as it always did: its body
        check is about that page, and a redirect to a broken page must
        not pass as the redirect."""
        return not any(lo <= 299 and hi >= 200 for lo, hi in self.ranges) and any(
            lo <= status <= hi for lo, hi in self.ranges
        )


DEFAULT_STATUSES = StatusSet("200-399", ((200, 399),))


def parse_statuses(text: str) -> StatusSet:
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if re.fullmatch(r"[1-5]xx", part, re.IGNORECASE):
            hundred = int(part[0]) * 100
            ranges.append((hundred, hundred + 99))
            continue
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text.strip())
            hi = int(hi_text.strip()) if sep else lo
        except ValueError:
            raise CellError(
                f"{part!r} is not a status, a range like 301-302, or a class like 4xx"
            ) from None
        if not (100 <= lo <= hi <= 599):
            raise CellError(f"{part!r} is not a range of statuses between 100 and 599")
        ranges.append((lo, hi))
    if not ranges:
        raise CellError("no status in it")
    return StatusSet(text.strip(), tuple(ranges))


@dataclass(frozen=True, slots=True)
class Expect:
    """One URL's expectations. The defaults are a plain list line's."""

    statuses: StatusSet = DEFAULT_STATUSES
    contains: str | None = None
    not_contains: str | None = None
    regex: re.Pattern[str] | None = None
    max_ms: float | None = None
    cert_min_days: int | None = None
    method: str | None = None  # None: the run's --method
    headers: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def needs_body(self) -> bool:
        return self.contains is not None or self.not_contains is not None or self.regex is not None

    @property
    def key(self) -> str:
        """What makes two rows of the same URL two checks rather than one."""
        return "\x00".join(
            [
                self.statuses.text,
                self.contains or "",
                self.not_contains or "",
                self.regex.pattern if self.regex else "",
                self.method or "",
                repr(self.headers),
                repr(self.max_ms),
                repr(self.cert_min_days),
            ]
        )


PLAIN = Expect()

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # a header name (RFC 9110 5.6.2)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, environ: Mapping[str, str]) -> str:
    """`${NAME}` replaced by the environment variable NAME: how a secret (a
    token, a password) gets into a header without being written in a list,
    an option or a report."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise CellError(f"the environment variable {name} is not set")
        return environ[name]

    return _VARIABLE.sub(lookup, value)


def parse_header(text: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """One `Name: value` (-H, or a part of a `headers` cell)."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), expand(value.strip(), environ)
    if not sep or not _TOKEN.match(name):
        raise CellError(f"{text.strip()!r} is not 'Name: value'")
    if any(ch in value for ch in "\r\n\x00"):
        raise CellError(f"the value of {name} holds a line break or NUL")
    if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
        raise CellError(f"{name} is set by checker itself")
    return name, value


def parse_headers(
    text: str, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """`Name: value; Name: value`. No CR, LF or NUL anywhere (they would end
    the request's header section)."""
    env = os.environ if environ is None else environ
    return tuple(parse_header(part, env) for part in text.split(";") if part.strip())


def headers_of(fields: dict[str, object]) -> tuple[tuple[str, str], ...]:
    found = fields.get("headers", ())
    return found if isinstance(found, tuple) else ()


def parse_auth(text: str, environ: Mapping[str, str]) -> str:
    """`bearer:TOKEN_VAR` or `basic:USER_VAR:PASSWORD_VAR`: the Authorization
    value from the environment variables named (never from the list itself)."""
    kind, _, names = text.strip().partition(":")
    parts = names.split(":")

    def value(name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise CellError(f"{name!r} is not the name of an environment variable")
        if name not in environ:
            raise CellError(f"the environment variable {name} is not set")
        found = environ[name]
        if any(ch in found for ch in "\r\n\x00"):
            raise CellError(f"the environment variable {name} holds a line break or NUL")
        return found

    if kind.lower() == "bearer" and len(parts) == 1:
        return f"Bearer {value(parts[0])}"
    if kind.lower() == "basic" and len(parts) == 2:
        token = f"{value(parts[0])}:{value(parts[1])}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")
    raise CellError("'bearer:TOKEN_VAR' or 'basic:USER_VAR:PASSWORD_VAR'")


def parse_number(text: str, what: str, *, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise CellError(f"{text!r} is not {what}") from None
    if not (0 <= value < float("inf")):
        raise CellError(f"{text!r} is not {what}")
    return value


@dataclass(frozen=True, slots=True)
class Observed:
    """What a check saw, for the verdict."""

    status: int | None  # None: no answer (an error)
    body: str | None  # decoded, when a body expectation asked for it
    body_complete: bool  # False: cut at --max-body
    total_ms: float | None
    cert_days: int | None
    attempts: int
    service: bool = False  # tcp:// or tls://: no status; `body` is the banner line


def verdict(expect: Expect, seen: Observed) -> tuple[str, tuple[str, ...]]:
    """(state, reasons) of an answered check. (A check that got no answer
    is down for its error, not for an expectation.)"""
    down: list[str] = []
    if not seen.service and seen.status not in expect.statuses:
        down.append(f"status {seen.status} not in {expect.statuses.text}")
    if expect.needs_body:
        body = seen.body or ""
        what = "first line" if seen.service else "body"  # a service's banner
        cut = "" if seen.body_complete or seen.service else " (in the first part read)"
        if expect.contains is not None and expect.contains not in body:
            down.append(f"{what} lacks {_quote(expect.contains)}{cut}")
        if expect.not_contains is not None and expect.not_contains in body:
            down.append(f"{what} contains {_quote(expect.not_contains)}")
        if expect.regex is not None and not expect.regex.search(body):
            down.append(f"{what} does not match /{_as_written(expect.regex.pattern, 60)}/{cut}")
    if down:
        return DOWN, tuple(down)
    slow: list[str] = []
    if expect.max_ms is not None and seen.total_ms is not None and seen.total_ms > expect.max_ms:
        slow.append(f"took {seen.total_ms:.0f} ms, over {expect.max_ms:g}")
    if (
        expect.cert_min_days is not None
        and seen.cert_days is not None
        and seen.cert_days < expect.cert_min_days
    ):
        slow.append(f"certificate expires in {seen.cert_days} days, under {expect.cert_min_days}")
    if seen.attempts > 1:
        slow.append(f"up only on attempt {seen.attempts}")
    return (DEGRADED, tuple(slow)) if slow else (UP, ())


def _quote(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return repr(shown)


def _as_written(text: str, limit: int) -> str:
    """A pattern as the list wrote it (repr doubled its backslashes:
    `^SSH-1\\.\\d` for `^SSH-1\\.\\d`, found by a review), control
    characters shown as \\xNN."""
    return printable(text if len(text) <= limit else text[: limit - 3] + "...")


def printable(text: str) -> str:
    """`text` as a report can hold it: what is not printable shown as \\xNN."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def compile_regex(text: str) -> re.Pattern[str]:
    if len(text) > MAX_PATTERN:
        raise CellError(f"longer than {MAX_PATTERN} characters")
    try:
        return re.compile(text)
    except re.error as exc:
        raise CellError(f"not a regular expression: {exc}") from None


def split_tags(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in re.split(r"[;,]", text) if t.strip())


def join(reasons: Sequence[str]) -> str:
    return "; ".join(reasons)


# The columns of a CSV list (README, "Lists with columns").
COLUMNS = (
    "url",
    "name",
    "method",
    "expect_status",
    "contains",
    "not_contains",
    "regex",
    "max_ms",
    "cert_min_days",
    "headers",
    "auth",
    "tags",
)


class ColumnError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column


def from_cells(cells: dict[str, str]) -> Expect:
    """The expectations of one CSV row (column -> stripped cell; empty cells
    mean the default). Raises ColumnError naming the first bad cell."""
    fields: dict[str, object] = {}
    column = ""
    try:
        for column, text in cells.items():
            if not text or column == "url":
                continue
            if column == "expect_status":
                fields["statuses"] = parse_statuses(text)
            elif column in ("contains", "not_contains"):
                fields[column] = text
            elif column == "regex":
                fields["regex"] = compile_regex(text)
            elif column == "max_ms":
                fields["max_ms"] = parse_number(text, "a number of milliseconds")
            elif column == "cert_min_days":
                fields["cert_min_days"] = int(parse_number(text, "a whole number", integer=True))
            elif column == "method":
                if text.upper() not in ("HEAD", "GET"):
                    raise CellError(f"{text!r}: HEAD or GET")
                fields["method"] = text.upper()
            elif column == "headers":
                fields["headers"] = (*parse_headers(text), *headers_of(fields))
            elif column == "auth":
                auth = ("Authorization", parse_auth(text, os.environ))
                fields["headers"] = (*headers_of(fields), auth)
            elif column == "name":
                fields["name"] = text
            elif column == "tags":
                fields["tags"] = split_tags(text)
    except CellError as exc:
        raise ColumnError(column, str(exc)) from None
    expect = Expect(**fields)  # type: ignore[arg-type]
    if expect.needs_body and expect.method == "HEAD":
        raise ColumnError("method", "HEAD has no body for contains, not_contains or regex")
    return expect
