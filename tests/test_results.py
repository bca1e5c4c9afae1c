"""The result record and its schema stay in step."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.reports.csv_report import cell, cells
from checker.results import FIELDS, Hop, Result


def test_fields_are_the_dataclass_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(Result)) == FIELDS


def test_to_json_is_asdict_in_field_order() -> None:
    r = Result(
        url="u",
        source="s",
        line=1,
        ok=True,
        status=200,
        redirects=(Hop(301, "a", "b"),),
        warnings=("w",),
        duplicates=("x:1",),
        reused=True,
        reason="é",
    )
    row = json.loads(r.to_json())
    assert list(row) == list(FIELDS)
    assert row == json.loads(json.dumps(dataclasses.asdict(r)))
    assert "é" in r.to_json()  # not escaped: reports stay readable


@given(
    st.fixed_dictionaries(
        {
            name: st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(allow_nan=False),
                st.text(max_size=5),
                st.lists(st.text(max_size=3), max_size=2),
            )
            for name in FIELDS
            if name != "redirects"
        }
    )
)
@settings(max_examples=200, database=None)
def test_csv_fast_path_matches_cell(row: dict[str, object]) -> None:
    row["redirects"] = [{"status": 301, "url": "=a", "location": "b"}]
    assert cells(row) == [cell(name, row.get(name)) for name in FIELDS]


_TEXT = st.text(max_size=6)  # any code point: quotes, controls, lone surrogates, emoji


@given(
    st.fixed_dictionaries(
        {
            name: st.one_of(
                st.none(),
                st.booleans(),
                st.integers(min_value=-(2**70), max_value=2**70),
                st.floats(),  # NaN and the infinities too
                _TEXT,
                st.tuples(_TEXT),
                st.tuples(),
                st.tuples(st.builds(Hop, st.integers(100, 599), _TEXT, _TEXT)),
            )
            for name in FIELDS
        }
    )
)
@settings(max_examples=300, database=None)
def test_to_json_is_what_the_json_encoder_makes_of_the_record(values: dict[str, Any]) -> None:
    record = Result(**values)  # any values: the encoding is what is checked

    def plain(value: object) -> object:
        if isinstance(value, tuple) and value and isinstance(value[0], Hop):
            return [dataclasses.asdict(hop) for hop in value]
        return value

    row = {name: plain(values[name]) for name in FIELDS}
    assert record.to_json() == json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def test_make_result_puts_each_value_under_its_own_field() -> None:
    """make_result passes the record's 37 values by position (for speed):
    each value given its own distinct source lands under its own name."""
    from checker.check import Attempt, make_result
    from checker.expect import Expect
    from checker.http.client import Trace
    from checker.http.errors import CheckTimeout
    from checker.http.wire import ResponseHead
    from checker.targets import Target
    from checker.url import parse_url

    expect = Expect(name="the name", tags=("t1", "t2"))
    url = parse_url("http://example.com/start")
    target = Target(7, "list.txt", 9, "http://example.com/start", url, expect=expect)
    trace = Trace(
        dns_ms=1.5,
        connect_ms=2.5,
        tls_ms=3.5,
        ttfb_ms=4.5,
        tls_version="TLSv1.3",
        tls_cipher="CIPHER",
        cert_subject="CN=subject",
        cert_issuer="CN=issuer",
        cert_not_after="2027-01-01T00:00:00Z",
        cert_days_left=30,
        reused=True,
        ip="192.0.2.1",
    )
    head = ResponseHead("1.0", 200, "Fine", (("server", "srv/1"), ("content-length", "123")))
    attempt = Attempt(
        method="GET",
        final_url=parse_url("http://example.com/end"),
        head=head,
        head_status=405,
        redirects=[Hop(301, "http://example.com/start", "/end")],
        warnings=["w1", "w2", "w1"],
        trace=trace,
        total_ms=5.5,
        expect=expect,
        banner="the banner",
    )
    r = make_result(target, attempt, attempts=3, free=1)
    expected = {
        "url": "http://example.com/start",
        "source": "list.txt",
        "line": 9,
        "ok": True,
        "state": "degraded",
        "status": 200,
        "reason": "Fine",
        "error": None,
        "error_detail": None,
        "method": "GET",
        "head_status": 405,
        "http_version": "1.0",
        "final_url": "http://example.com/end",
        "ip": "192.0.2.1",
        "redirects": (Hop(301, "http://example.com/start", "/end"),),
        "attempts": 3,
        "dns_ms": 1.5,
        "connect_ms": 2.5,
        "tls_ms": 3.5,
        "ttfb_ms": 4.5,
        "total_ms": 5.5,
        "reused": True,
        "content_length": 123,
        "server": "srv/1",
        "tls_version": "TLSv1.3",
        "tls_cipher": "CIPHER",
        "cert_subject": "CN=subject",
        "cert_issuer": "CN=issuer",
        "cert_not_after": "2027-01-01T00:00:00Z",
        "cert_days_left": 30,
        "warnings": ("w1", "w2"),
        "reasons": ("up only on attempt 3",),
        "name": "the name",
        "tags": ("t1", "t2"),
        "banner": "the banner",
        "duplicates": (),
    }
    got = {name: getattr(r, name) for name in FIELDS if name != "checked_at"}
    assert got == expected
    assert r.checked_at is not None and r.checked_at.endswith("Z")

    failed = Attempt(method="HEAD", final_url=url, error=CheckTimeout("no answer in 1s"))
    r = make_result(target, failed, attempts=1)
    assert (r.ok, r.state, r.error, r.error_detail, r.status, r.reason) == (
        False,
        "down",
        "timeout",
        "no answer in 1s",
        None,
        None,
    )


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(_JSON_VALUES, st.sampled_from(["", " ", "\n", "\ufeff"]), st.booleans())
@settings(max_examples=300, database=None)
def test_decode_row_is_json_loads(value: Any, around: str, ascii_only: bool) -> None:
    """The reporter's decode_row gives what json.loads gives, or fails as it
    does: rows whole, with whitespace or a BOM around them, and cut short."""
    from checker.reports.output import decode_row

    text = json.dumps(value, ensure_ascii=ascii_only)
    for raw in ((around + text).encode(), (text + around).encode(), text[:-1].encode()):
        try:
            expected = json.loads(raw)
        except ValueError as exc:
            with pytest.raises(type(exc)):
                decode_row(raw)
            continue
        # (Compared as JSON: a NaN is not equal to itself.)
        assert json.dumps(decode_row(raw)) == json.dumps(expected)
