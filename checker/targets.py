"""URL list files -> targets, read as a stream (a list may hold millions of lines).

A line is a URL, a blank, or a ``#`` comment; surrounding whitespace is
trimmed. A line that is not a URL we can check becomes a target with `error`
set, and is reported, never sent. The same URL met again (on any list) is not
checked twice: it is yielded as a `Duplicate` of the first.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from checker.fingerprints import FingerprintMap
from checker.url import URL, URLError, dedup_key, parse_url


class ListError(Exception):
    """A list file that cannot be used at all (a usage error, exit code 2)."""


@dataclass(frozen=True, slots=True)
class Target:
    seq: int  # position in the report: targets come out in input order
    source: str  # the list file, as given on the command line
    line: int
    text: str  # the URL exactly as written
    url: URL | None  # None when the line is invalid
    error: str | None = None  # why the line is invalid


@dataclass(frozen=True, slots=True)
class Duplicate:
    of_seq: int
    source: str
    line: int


def _open(path: str) -> Generator[str, None, None]:
    try:
        # utf-8-sig drops a BOM; surrogateescape keeps undecodable bytes so
        # that the line is reported as invalid instead of failing the run.
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None) as f:
            yield from f
    except FileNotFoundError:
        raise ListError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ListError(f"{path}: is a directory, not a URL list") from None
    except PermissionError:
        raise ListError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ListError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _is_entry(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def check_lists(paths: Iterable[str], *, count: bool = True) -> int:
    """Fail early, before anything is sent, on a list that cannot be read or holds no URL.

    With `count`, returns the number of entries (URL lines, duplicates
    included), for the progress bar: that reads each list once more. Without,
    each list is read only up to its first entry, and the result is 0.
    """
    total = 0
    for path in paths:
        lines = _open(path)
        try:
            entries = (line for line in lines if _is_entry(line))
            n = sum(1 for _ in entries) if count else int(next(entries, None) is not None)
        finally:
            lines.close()  # closes the file at once when we stop at the first entry
        if not n:
            raise ListError(f"{path}: no URL in this list (only blank lines and comments)")
        total += n
    return total if count else 0


def read_targets(paths: Iterable[str]) -> Iterator[Target | Duplicate]:
    """Every entry of every list, in order, validated and deduplicated."""
    seen = FingerprintMap(typecode="I")  # values are row numbers
    seq = 0
    for path in paths:
        for lineno, raw in enumerate(_open(path), start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                if not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text):
                    # Keep the report writable: show the bad bytes as U+FFFD.
                    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    raise URLError("line is not valid UTF-8")
                url = parse_url(text)
            except URLError as exc:
                yield Target(seq, path, lineno, text, None, str(exc))
                seq += 1
                continue
            first = seen.setdefault(dedup_key(url), seq)
            if first is not None:
                yield Duplicate(first, path, lineno)
                continue
            yield Target(seq, path, lineno, text, url)
            seq += 1
