"""The HTML report: contents, escaping, no network references, the row cap."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.reports import html_report
from checker.reports.html_report import TABLE_MAX_ROWS, Aggregates, esc, render
from checker.results import Result
from checker.store.model import Change

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def sample_run(**over: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "started_at": "2026-11-24T21:49:03.720Z",
        "finished_at": "2026-11-24T21:49:08.120Z",
        "duration_s": 4.4,
        "checker_version": "0.1.0",
        "options": {"method": "HEAD", "timeout": 10.0},
        "lists": ["data/urls.txt"],
        "total": 14,
        "up": 9,
        "down": 5,
        "duplicates": 1,
        "interrupted": False,
        "changes_total": 4,
        "previous_run": "2026-11-24T21:44:02.001Z",
    }
    run.update(over)
    return run


def _ok(line: int, host: str, ms: float, days: int | None = None, **kw: Any) -> Result:
    url = f"https://{host}/"
    return Result(
        url=url,
        source="data/urls.txt",
        line=line,
        ok=True,
        status=kw.pop("status", 200),
        reason=kw.pop("reason", "OK"),
        method="HEAD",
        http_version="1.1",
        final_url=kw.pop("final_url", url),
        attempts=1,
        total_ms=ms,
        ttfb_ms=ms / 2,
        cert_days_left=days,
        cert_not_after="2027-01-01T00:00:00Z" if days is not None else None,
        **kw,
    )


def sample_results() -> list[Result]:
    """A small fleet: every status class, a few error categories, hostile text."""
    return [
        _ok(1, "www.python.org", 84.2, 212, server="nginx", reused=True),
        _ok(2, "example.com", 31.0, 45),
        _ok(3, "docs.example.org", 412.7, 9),
        _ok(4, "slow.example.net", 3120.5, 120),
        _ok(
            5,
            "old.example.com",
            140.0,
            None,
            status=301,
            reason="Moved Permanently",
            final_url="http://old.example.com/",
            warnings=("redirected from https down to http: http://old.example.com/",),
        ),
        _ok(6, "api.example.io", 61.5, 3),
        _ok(7, "cdn.example.io", 22.1, 300),
        _ok(8, "shop.example.com", 1480.0, 61),
        _ok(9, "blog.example.com", 7400.0, 88),
        Result(
            url="https://gone.example.com/page",
            source="data/urls.txt",
            line=10,
            ok=False,
            status=404,
            reason=SCRIPT,
            method="GET",
            head_status=404,
            final_url="https://gone.example.com/page",
            attempts=1,
            total_ms=95.0,
            cert_days_left=-4,
            cert_not_after="2026-11-20T12:00:00Z",
        ),
        Result(
            url="https://broken.example.com/",
            source="data/urls.txt",
            line=11,
            ok=False,
            status=503,
            reason="Service Unavailable",
            error_detail=IMG,
            method="GET",
            attempts=3,
            total_ms=220.0,
            server=IMG,
        ),
        Result(
            url="https://hang.example.net/",
            source="data/urls.txt",
            line=12,
            ok=False,
            error="timeout",
            error_detail="no response within 10 s",
            attempts=3,
            total_ms=10000.0,
        ),
        Result(
            url="https://nxdomain.invalid/",
            source="data/urls.txt",
            line=13,
            ok=False,
            error="dns",
            error_detail="name does not resolve",
            attempts=1,
        ),
        Result(
            url='javascript:"><svg/onload=alert(1)>',
            source="data/urls.txt",
            line=14,
            ok=False,
            error="invalid_url",
            error_detail="unsupported scheme 'javascript'",
        ),
    ]


def sample_rows() -> list[dict[str, Any]]:
    return [r.to_dict() for r in sample_results()]


def sample_changes() -> list[Change]:
    return [c for c in map(Change.from_dict, sample_change_dicts()) if c is not None]


def sample_change_dicts() -> list[dict[str, Any]]:
    return [
        {
            "url": "https://broken.example.com/",
            "line": 11,
            "kind": "down",
            "before": 200,
            "after": 503,
        },
        {"url": "https://example.com/", "line": 2, "kind": "up", "before": "timeout", "after": 200},
        {
            "url": "https://old.example.com/",
            "line": 5,
            "kind": "final_url",
            "before": "https://old.example.com/",
            "after": "http://old.example.com/" + SCRIPT,
        },
        {
            "url": "https://api.example.io/",
            "line": 6,
            "kind": "cert_expiring",
            "before": 30,
            "after": 3,
        },
    ]


def page(
    run: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
    changes: list[Change] | None = None,
) -> str:
    data = sample_rows() if rows is None else rows
    out = render(
        sample_run() if run is None else run,
        lambda: iter(data),
        sample_changes() if changes is None else changes,
    )
    # URLs carry <wbr> break hints (tested on their own below); the other
    # tests read the page's text.
    return b"".join(out).decode("utf-8").replace("<wbr>", "")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


class Tags(HTMLParser):
    """Every start tag and its attributes, and the text of <script> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(text: str) -> Tags:
    parser = Tags()
    parser.feed(text)
    parser.close()
    return parser


def test_document_shell() -> None:
    text = page()
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    csp = (
        "default-src &#x27;none&#x27;; style-src &#x27;unsafe-inline&#x27;; "
        "script-src &#x27;unsafe-inline&#x27;; img-src data:"
    )
    assert f'<meta http-equiv="Content-Security-Policy" content="{csp}">' in text
    metas = [a for t, a in parse(text).tags if t == "meta" and a.get("http-equiv")]
    assert metas[0]["content"] == html_report.CSP
    assert text.rstrip().endswith("</html>")


def test_headline_numbers() -> None:
    text = page()
    head = _section(text, "<header>", "</header>")
    assert "5 of 14 down" in head
    assert "<b>5</b>down</div>" in head
    assert "<b>9</b>up</div>" in head
    assert "<b>14</b>URLs</div>" in head
    assert "<b>4.4 s</b>took" in head
    assert "<b>1</b>duplicate lines" in head
    assert "2026-11-24 21:49:08 UTC" in head
    assert "data/urls.txt" in head
    assert "interrupted" not in head


def test_headline_all_up_and_interrupted_flags() -> None:
    rows = [r.to_dict() for r in sample_results()[:3]]
    text = page(sample_run(total=3, up=3, down=0, duplicates=0), rows, [])
    assert "All 3 up" in text
    assert "duplicate lines" not in text
    text = page(sample_run(interrupted=True, recovered=True))
    head = _section(text, "<header>", "</header>")
    assert "interrupted: not every URL was checked" in head
    assert "recovered from a killed run" in head


def test_changes_listed() -> None:
    text = page()
    box = _section(text, '<details class="changes"', "</details>")
    assert "4 changes</b> since the run of 2026-11-24 21:44:02 UTC" in box
    for c in sample_changes():
        assert html.escape(c.url, quote=True) in box
    assert "went down" in box and "back up" in box
    assert "lands elsewhere" in box and "certificate expiring" in box
    assert "200 → <b>503</b>" in box
    assert "certificate expires in 3 days (was: expires in 30 days)" in box
    # Down first: what a person wants to see first.
    assert box.index("broken.example.com") < box.index("https://example.com/")


def test_changes_counted_beyond_those_listed() -> None:
    changes = [
        Change(f"https://h{i}.example/", i, "status", 200, 302)
        for i in range(html_report.CHANGES_SHOWN + 5)
    ]
    text = page(sample_run(changes_total=12_345), changes=changes)
    assert "12,345 changes" in text
    assert f"and {12_345 - html_report.CHANGES_SHOWN:,} more not listed here" in text
    assert f"h{html_report.CHANGES_SHOWN - 1}.example" in text
    assert f"h{html_report.CHANGES_SHOWN}.example" not in text


def test_no_changes_and_first_run() -> None:
    text = page(sample_run(changes_total=0), changes=[])
    assert "No changes since the run of 2026-11-24 21:44:02 UTC." in text
    run = sample_run()
    del run["changes_total"], run["previous_run"]
    text = page(run, changes=[])
    assert "First run of these lists" in text
    assert "No changes" not in text


def test_every_url_in_the_table() -> None:
    text = page()
    table = _section(text, '<table id="rows">', "</table>")
    for row in sample_rows():
        assert f"<td>{html.escape(row['url'], quote=True)}</td>" in table
    assert table.count("<tr class=d>") == 5
    assert table.count("<tr class=u>") == 9
    heads = re.findall(r'<th data-col="([a-z_]+)"', table)
    assert heads == [name for name, _ in html_report.COLUMNS]
    assert "redirected from https down to http: http://old.example.com/" in table
    assert "<td class=bad>-4</td>" in table  # expired certificate
    # No warnings, and no history (no database): empty cells.
    assert "<td>no</td><td></td><td></td><td></td></tr>" in table
    assert "()" not in table and "[]" not in table
    assert '<p class="note" id="cap">' not in text


def test_charts_present() -> None:
    text = page()
    assert text.count("<svg ") == 2
    status = _section(text, "<h2>Status</h2>", "</svg>")
    for label in ("2xx", "3xx", "4xx", "5xx", "timeout", "dns", "invalid_url"):
        assert f">{label}</text>" in status
    assert "2xx: 8" in status and "3xx: 1" in status and "5xx: 1" in status
    latency = _section(text, "<h2>Response time</h2>", "</svg>")
    for label in (
        "&lt;50",
        "50-100",
        "100-250",
        "250-500",
        "0.5-1 s",
        "1-2.5 s",
        "2.5-5 s",
        "≥5 s",
    ):
        assert f">{label}</text>" in latency
    # 11 checks got a response: the timeout, the DNS failure and the invalid line did not.
    assert "of the 11 checks that got a response" in text


def test_slowest_and_certificates() -> None:
    text = page()
    slow = _section(text, "<h2>Slowest checks</h2>", "</table>")
    urls = re.findall(r'<td class="url">([^<]+)</td>', slow)
    assert urls[:3] == [
        "https://blog.example.com/",
        "https://slow.example.net/",
        "https://shop.example.com/",
    ]
    assert "hang.example.net" not in slow  # a timeout is not a response time
    assert len(urls) == 10
    certs = _section(text, "<h2>Certificates expiring soonest</h2>", "</table>")
    days = re.findall(r'<td class="num">(-?\d+)</td>', certs)
    assert days == ["-4", "3", "9", "45", "61", "88", "120", "212", "300"]
    assert '<tr class="bad"><td class="num">-4</td>' in certs
    assert '<tr class="warn"><td class="num">3</td>' in certs


def test_aggregates_are_bounded() -> None:
    agg = Aggregates()
    for seq in range(5000):
        row = _ok(seq, f"h{seq}.example", float(seq % 7000), days=seq % 400).to_dict()
        agg.add(seq, row)
    assert len(agg.slowest) == html_report.SLOWEST
    assert len(agg.certs) == html_report.CERTS
    assert sorted(ms for ms, *_ in agg.slowest) == [float(4990 + i) for i in range(10)]
    assert sorted(-d for d, *_ in agg.certs) == [0] * 10
    assert sum(agg.latency) == 5000
    assert agg.latency[0] == 50  # 0..49 ms
    assert agg.latency[-1] == 0  # nothing at 5000 ms or more


def test_latency_bins_edges() -> None:
    agg = Aggregates()
    for seq, ms in enumerate([0.3, 49.9, 50.0, 99.0, 250.0, 999.0, 1000.0, 4999.0, 5000.0, 9e5]):
        agg.add(seq, _ok(seq, "a.example", ms).to_dict())
    assert agg.latency == [2, 2, 0, 1, 1, 1, 1, 2]


def test_no_network_references() -> None:
    text = page()
    parsed = parse(text)
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "action", "xlink:href", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, attrs)
    for raw in re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", text, re.IGNORECASE):
        assert not raw.lower().startswith(("http://", "https://", "//")), raw
    assert "url(" not in text.lower()
    assert "@import" not in text
    assert [a for t, a in parsed.tags if t == "link"] == [{"rel": "icon", "href": "data:,"}]
    scripts = [a for t, a in parsed.tags if t == "script"]
    assert scripts == [{}]  # one inline script, no src


def test_hostile_strings_are_text() -> None:
    text = page()
    assert SCRIPT not in text
    assert html.escape(SCRIPT, quote=True) in text
    assert IMG not in text
    assert html.escape(IMG, quote=True) in text
    assert "<img" not in text and "<svg/onload" not in text
    parsed = parse(text)
    tags = {t for t, _ in parsed.tags}
    allowed = {
        "html", "head", "meta", "link", "title", "style", "body", "main", "header", "h1",
        "h2", "p", "span", "div", "b", "details", "summary", "ul", "li", "code", "section",
        "svg", "text", "rect", "line", "table", "thead", "tbody", "tr", "th", "td", "button",
        "input", "label", "script", "wbr",
    }  # fmt: skip
    assert tags <= allowed, tags - allowed
    for _, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], attrs
    # The script is ours alone: the only <script> holds no data from the rows.
    assert len(parsed.scripts) == 1
    assert "example" not in parsed.scripts[0] and "alert" not in parsed.scripts[0]


def test_hostile_strings_in_attributes() -> None:
    row = sample_rows()[9]
    row["source"] = IMG
    other = dict(row, source="other.txt", line=3, url="https://x.example/")
    text = page(sample_run(lists=[IMG, "other.txt"]), [row, other], [])
    # With several lists the list of each row goes in a title attribute.
    assert f'<td title="{html.escape(IMG, quote=True)}">10</td>' in text
    assert IMG not in text
    titles = [a.get("title") for t, a in parse(text).tags if t == "td" and "title" in a]
    assert titles == [IMG, "other.txt"]


def test_strange_values_do_not_break_it() -> None:
    row = sample_rows()[0]
    row["reason"] = "bad \ud800 surrogate"
    row["warnings"] = ["a", "b"]
    row["total_ms"] = None
    text = page(sample_run(finished_at="not a time", duration_s=None), [row], [])
    assert "bad ? surrogate" in text
    assert "<td class=warn>a; b</td>" in text
    assert "not a time" in text


def test_rows_called_twice_with_a_generator_factory() -> None:
    calls = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal calls
        calls += 1
        for r in sample_results():
            yield r.to_dict()

    text = b"".join(render(sample_run(), rows, sample_changes())).decode()
    assert calls == 2
    table = _section(text, '<table id="rows">', "</table>")
    assert table.count("<tr class=") == 14
    assert "5 of 14 down" in text


def test_emitted_in_chunks() -> None:
    base = sample_rows()[0]
    rows = [dict(base, url=f"https://h{i}.example/", line=i) for i in range(3000)]
    chunks = list(render(sample_run(), lambda: iter(rows), []))
    assert all(isinstance(c, bytes) for c in chunks)
    assert len(chunks) >= 3000 // html_report.BATCH + 2
    assert max(len(c) for c in chunks) < 1_000_000


def test_row_cap() -> None:
    up = _ok(1, "a.example", 12.0).to_dict()
    down = Result(url="https://down.example/", source="l", line=0, ok=False, error="dns").to_dict()
    n = TABLE_MAX_ROWS + 2

    def rows() -> Iterator[dict[str, Any]]:
        # Cheap rows: one dict, changed in place (render does not keep them).
        for i in range(n - 1):
            up["url"] = f"https://h{i}.example/"
            up["line"] = i + 1
            yield up
        down["line"] = n
        yield down

    text = b"".join(render(sample_run(total=n, up=n - 1, down=1), rows, [])).decode()
    text = text.replace("<wbr>", "")
    note = _section(text, '<p class="note" id="cap">', "</p>")
    assert f"This table shows {TABLE_MAX_ROWS:,} of {n:,} rows: 2 rows are left out" in note
    assert "The CSV and JSON reports have all of them." in note
    assert "every down row (1) is here, then the first 49,999 up rows" in note
    table = _section(text, '<table id="rows">', "</table>")
    assert text.index('id="cap"') < text.index('<table id="rows">')
    assert table.count("<tr class=") == TABLE_MAX_ROWS
    # The down row is kept even though it is last; the last up rows make room.
    assert "<td>https://down.example/</td>" in table
    assert f"<td>https://h{TABLE_MAX_ROWS - 2}.example/</td>" in table
    assert f"<td>https://h{TABLE_MAX_ROWS - 1}.example/</td>" not in table


def test_row_cap_when_more_rows_are_down_than_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "TABLE_MAX_ROWS", 5)
    rows = sample_rows()  # 9 up, 5 down
    rows += [dict(r, url=r["url"] + "again", line=r["line"] + 14) for r in rows if not r["ok"]]
    text = page(sample_run(total=len(rows), up=9, down=10), rows, [])
    note = _section(text, '<p class="note" id="cap">', "</p>")
    assert "This table shows 5 of 19 rows: 14 rows are left out" in note
    assert "these are the first 5 of the 10 down rows, and no up rows" in note
    table = _section(text, '<table id="rows">', "</table>")
    assert table.count("<tr class=d>") == 5 and "<tr class=u>" not in table
    lines = [int(x) for x in re.findall(r"</td><td>(\d+)</td><td>(?:down|invalid)<", table)]
    assert lines == [10, 11, 12, 13, 14]  # in list order


def test_urls_break_at_their_separators_only() -> None:
    from checker.reports.html_report import esc_url

    assert esc_url("https://a.example/p/q?x=1&y=<2>") == (
        "https://<wbr>a.example/<wbr>p/<wbr>q?<wbr>x=<wbr>1&amp;<wbr>y=<wbr>&lt;2&gt;"
    )
    raw = b"".join(render(sample_run(), lambda: iter(sample_rows()), [])).decode()
    assert "<td>https://<wbr>www.python.org/<wbr></td>" in raw


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans()))
@settings(max_examples=300, database=None)
def test_esc_is_html_escape_with_quotes(value: object) -> None:
    """esc skips html.escape when nothing needs it: the same text either way."""
    assert esc(value) == html.escape(str(value), quote=True)
    assert esc(None) == ""
