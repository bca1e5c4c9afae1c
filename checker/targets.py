"""URL list files -> targets, read as a stream (a list may hold millions of lines).

A plain list: a line is a URL, a blank, or a ``#`` comment; surrounding
whitespace is trimmed. A CSV list (README, "Lists with columns"): its first
line that is not blank or a comment is a header row naming a `url` column
(and no cell of it holds "://"); each row after it is a URL with its
expectations (`expect.from_cells`). A line that is not a URL we can check, or
a row with a bad cell, becomes a target with `error` set, and is reported,
never sent. The same check met again (on any list: the same URL with the same
expectations) is not checked twice: it is yielded as a `Duplicate` of the
first.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from checker.expect import COLUMNS, PLAIN, ColumnError, Expect, from_cells, split_tags
from checker.fingerprints import FingerprintMap
from checker.url import URL, URLError, dedup_key, parse_url

LIST_FORMATS = ("auto", "plain", "csv")


class ListError(Exception):
    """A list file that cannot be used at all (a usage error, exit code 2)."""


@dataclass(slots=True)  # (not frozen: see checker.url.URL)
class Target:
    seq: int  # position in the report: targets come out in input order
    source: str  # the list file, as given on the command line
    line: int
    text: str  # the URL exactly as written
    url: URL | None  # None when the line is invalid
    error: str | None = None  # why the line is invalid
    expect: Expect | None = None  # a CSV list's expectations (None: a plain line's)


@dataclass(frozen=True, slots=True)
class Duplicate:
    of_seq: int
    source: str
    line: int


def _open(path: str, changed: list[str] | None = None) -> Generator[str, None, None]:
    """The lines of `path`. With `changed`, a file written to while it was
    read (rewritten in place, `cat new > urls.txt`) adds a line there: what
    was read mixes the list before and after."""
    try:
        # utf-8-sig drops a BOM; surrogateescape keeps undecodable bytes so
        # that the line is reported as invalid instead of failing the run.
        with open(path, "rb") as raw:
            # A byte order mark of UTF-16 (Windows' "Unicode" text) says so;
            # else UTF-8, whose BOM utf-8-sig drops.
            utf16 = raw.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            encoding = "utf-16" if utf16 else "utf-8-sig"
            # (surrogateescape cannot escape what UTF-16 cannot decode, an odd
            # last byte or a lone surrogate: U+FFFD then, and the line is
            # invalid rather than the run a traceback.)
            errors = "replace" if utf16 else "surrogateescape"
            f = io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline=None)
            before = os.fstat(f.fileno()) if changed is not None else None
            yield from f
            if changed is not None and before is not None and stat.S_ISREG(before.st_mode):
                after = os.fstat(f.fileno())
                if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size):
                    changed.append(
                        f"{path} was written to while the run read it: its rows may mix"
                        " the list as it was and as it is now"
                    )
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


def check_lists(paths: Iterable[str], *, count: bool = True, wanted: str = "auto") -> int:
    """Fail early, before anything is sent, on a list that cannot be read or holds no URL.

    With `count`, returns the number of entries (URL lines, duplicates
    included), for the progress bar: that reads each list once more. Without,
    each list is read only up to its first entry, and the result is 0.
    """
    total = 0
    for path in paths:
        header = list_format(path, wanted)
        if header is not None:
            rows = _csv_rows(path, header)
            n = sum(1 for _ in rows) if count else int(next(rows, None) is not None)
            if not n:
                raise ListError(f"{path}: no URL in this CSV list (only its header row)")
            total += n if count else 0
            continue
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


def first_url(paths: Iterable[str], wanted: str = "auto") -> str | None:
    """The text of the lists' first entry (read up to it only), or None."""
    for path in paths:
        header = list_format(path, wanted)
        rows = _plain_rows(path) if header is None else _csv_rows(path, header)
        try:
            first = next(rows, None)
        finally:
            rows.close()  # (the file with it)
        if first is not None:
            return first[1]
    return None


def csv_header(line: str) -> list[str] | None:
    """The column names when `line` is a CSV list's header row, else None."""
    found = _header(line)
    return found[0] if found is not None else None


# Commas, or semicolons (what a spreadsheet writes where the comma is the
# decimal sign): the header row says which (a "name;url" header made every
# row a bad host).
_DELIMITERS = (",", ";")


def _header(line: str) -> tuple[list[str], str] | None:
    """(column names, delimiter) when `line` is a CSV list's header row."""
    for delimiter in _DELIMITERS:
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return None
        names = [c.strip().lower() for c in cells]
        if "url" in names and not any("://" in c for c in cells):
            return names, delimiter
    return None


def _delimiter(path: str) -> str:
    """The delimiter of a CSV list's cells: its header row's."""
    lines = _open(path)
    try:
        first = next((line for line in lines if _is_entry(line)), "")
    finally:
        lines.close()
    found = _header(first)
    return found[1] if found is not None else ","


def list_format(path: str, wanted: str = "auto") -> list[str] | None:
    """A CSV list's columns (None: a plain list). With `wanted` "csv", a list
    without a header row is a ListError."""
    if wanted == "plain":
        return None
    lines = _open(path)
    try:
        first = next((line for line in lines if _is_entry(line)), None)
    finally:
        lines.close()
    header = csv_header(first) if first is not None else None
    if header is None and wanted == "csv":
        raise ListError(f"{path}: not a CSV list: its first line is not a header naming 'url'")
    return header


def list_notes(paths: Iterable[str], wanted: str = "auto") -> list[str]:
    """What is wrong with the lists' headers but costs no row: unknown and
    repeated columns (ignored; the rest of the list runs)."""
    notes = []
    for path in paths:
        header = list_format(path, wanted)
        if header is None:
            continue
        seen: set[str] = set()
        for number, name in enumerate(header, start=1):
            if name not in COLUMNS:
                notes.append(f"{path}: column {number} {name!r} is not one checker knows: ignored")
            elif name in seen:
                notes.append(f"{path}: column {name!r} appears twice: the first is used")
            seen.add(name)
    return notes


@dataclass(frozen=True, slots=True)
class Shard:
    """`--shard K/N`: this run checks the URLs whose host falls in shard K."""

    number: int  # K, from 1
    of: int  # N

    @classmethod
    def parse(cls, text: str) -> Shard:
        number, sep, of = text.partition("/")
        try:
            shard = cls(int(number), int(of))
        except ValueError:
            raise ValueError(f"{text!r} is not K/N (such as 2/8)") from None
        if not sep or not 1 <= shard.number <= shard.of:
            raise ValueError(f"{text!r}: K/N with 1 <= K <= N")
        return shard

    def has(self, host: str) -> bool:
        """A stable hash of the host (the same on every machine and run), so
        that a host's URLs, its politeness and its connections stay in one shard."""
        return zlib.crc32(host.lower().encode("utf-8", "surrogateescape")) % self.of == (
            self.number - 1
        )

    def __str__(self) -> str:
        return f"{self.number}/{self.of}"


def read_targets(
    paths: Iterable[str],
    wanted: str = "auto",
    shard: Shard | None = None,
    changed: list[str] | None = None,
) -> Iterator[Target | Duplicate]:
    """Every entry of every list, in order, validated and deduplicated. With a
    `shard`, only the URLs of that shard; invalid lines go to shard 1, and a
    duplicate to its URL's shard (README, "Shards"). `changed` gets a line
    for each list written to while it was read."""
    # Values are row numbers. (Room for 12,000 URLs before a shard grows:
    # 196 KB; from 1,024, the growing took a third of the map's time.)
    seen = FingerprintMap(16384, typecode="I")
    seq = 0
    for path in paths:
        header = list_format(path, wanted)
        rows = _plain_rows(path, changed) if header is None else _csv_rows(path, header, changed)
        for lineno, text, expect, error in rows:
            if error is not None:
                if shard is None or shard.number == 1:
                    yield Target(seq, path, lineno, text, None, error, expect=expect)
                    seq += 1
                continue
            try:
                if not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text):
                    # Keep the report writable: show the bad bytes as U+FFFD.
                    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    raise URLError("line is not valid UTF-8")
                url = parse_url(text)
            except URLError as exc:
                if shard is None or shard.number == 1:
                    yield Target(seq, path, lineno, text, None, str(exc), expect=expect)
                    seq += 1
                continue
            if shard is not None and not shard.has(url.host):
                continue  # another shard's: not even remembered for deduplication
            # (A CSV row with no expectations of its own is the same check as a
            # plain list's line of that URL: it was checked twice, and its
            # Prometheus series written twice: found by a review.)
            key = dedup_key(url)
            if expect is not None and (wanted := expect.key) != _PLAIN_KEY:
                key = f"{key}\x00{wanted}"
            first = seen.setdefault(key, seq)
            if first is not None:
                yield Duplicate(first, path, lineno)
                continue
            yield Target(seq, path, lineno, text, url, expect=expect)
            seq += 1


_Row = tuple[int, str, Expect | None, str | None]  # (line, url text, expectations, error)


def _named(row: dict[str, str]) -> Expect:
    """An invalid row's name and tags, which still say which row it is
    (made for invalid rows only: a valid one's come with its expectations)."""
    return Expect(name=row.get("name") or None, tags=split_tags(row.get("tags", "")))


_PLAIN_KEY = PLAIN.key


# A comment after a URL: "#" after whitespace (a URL holds no whitespace, and
# its fragment's "#" follows no space).
_TRAILING_COMMENT = re.compile(r"\s+#.*\Z", re.S)


def _plain_rows(path: str, changed: list[str] | None = None) -> Generator[_Row, None, None]:
    for lineno, raw in enumerate(_open(path, changed), start=1):
        text = raw.strip()
        if text and not text.startswith("#"):
            if "#" in text:
                text = _TRAILING_COMMENT.sub("", text)
            yield lineno, text, None, None


def _csv_rows(
    path: str, header: list[str], changed: list[str] | None = None
) -> Generator[_Row, None, None]:
    read: list[str] = []  # the lines of the row being read

    def lines() -> Iterator[str]:
        for line in _open(path, changed):
            read.append(line)
            yield line

    reader = csv.reader(lines(), delimiter=_delimiter(path))
    seen_header = False
    start = 1
    for cells in reader:
        lineno, start = start, reader.line_num + 1  # a quoted cell may span lines
        first = read[0] if read else ""
        read.clear()
        if not cells or not "".join(cells).strip():
            continue
        if cells[0].lstrip().startswith("#") and not first.lstrip().startswith('"'):
            continue  # a comment row; a quoted "#1 shop" is a name (RFC 4180)
        if not seen_header:
            seen_header = True  # the header row itself
            continue
        row: dict[str, str] = {}
        for name, cell in zip(header, cells, strict=False):
            if name in COLUMNS and name not in row:
                row[name] = cell.strip()
        text = row.get("url", "")
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            yield lineno, text, None, f"{len(cells)} cells, but the header names {len(header)}"
            continue
        if not text:
            yield lineno, text, _named(row), "column url: empty"
            continue
        try:
            expect = from_cells(row)
        except ColumnError as exc:
            yield lineno, text, _named(row), str(exc)
            continue
        yield lineno, text, expect, None
