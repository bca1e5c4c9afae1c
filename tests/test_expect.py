"""Expectations: status sets, headers, cells of a CSV list, and the verdict (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.check import Attempt
from checker.expect import (
    CellError,
    ColumnError,
    Expect,
    Observed,
    StatusSet,
    from_cells,
    parse_auth,
    parse_headers,
    parse_statuses,
    verdict,
)
from checker.http.wire import ResponseHead
from checker.url import parse_url


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("200", [200], [201, 199]),
        ("200,301-302", [200, 301, 302], [300, 303]),
        ("4xx", [400, 404, 499], [399, 500]),
        (" 2XX , 401 ", [200, 299, 401], [400, 300]),
    ],
)
def test_status_sets(text: str, inside: list[int], outside: list[int]) -> None:
    statuses = parse_statuses(text)
    assert all(s in statuses for s in inside)
    assert not any(s in statuses for s in outside)
    assert None not in statuses


@pytest.mark.parametrize("text", ["", "ok", "200-", "302-301", "600", "6xx", "20x", "99"])
def test_bad_status_sets(text: str) -> None:
    with pytest.raises(CellError):
        parse_statuses(text)


def test_headers_with_secrets_from_the_environment() -> None:
    env = {"TOKEN": "s3cret"}
    assert parse_headers("Authorization: Bearer ${TOKEN}; X-A: 1", env) == (
        ("Authorization", "Bearer s3cret"),
        ("X-A", "1"),
    )
    with pytest.raises(CellError, match="MISSING is not set"):
        parse_headers("X: ${MISSING}", env)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("NoColon", "is not 'Name: value'"),
        ("Bad Name: x", "is not 'Name: value'"),
        ("Host: evil.example", "set by checker itself"),
        ("Content-Length: 5", "set by checker itself"),
        ("X: a\rb", "line break"),
        ("X: ${NL}", "line break"),  # a variable cannot smuggle one in either
    ],
)
def test_bad_headers(text: str, why: str) -> None:
    with pytest.raises(CellError, match=why):
        parse_headers(text, {"NL": "a\nInjected: 1"})


def test_cells_of_a_row() -> None:
    expect = from_cells(
        {
            "url": "https://a.example/",
            "name": "shop",
            "method": "get",
            "expect_status": "200,301-302",
            "contains": "Welcome",
            "not_contains": "Error",
            "regex": r"v\d+",
            "max_ms": "250",
            "cert_min_days": "20",
            "headers": "X-A: 1",
            "tags": "prod; eu",
        }
    )
    assert expect.method == "GET" and expect.name == "shop" and expect.tags == ("prod", "eu")
    assert expect.needs_body and expect.max_ms == 250.0 and expect.cert_min_days == 20
    assert from_cells({"url": "u", "contains": ""}) == Expect()  # empty cells: the defaults


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"expect_status": "2xx,banana"}, "expect_status"),
        ({"max_ms": "fast"}, "max_ms"),
        ({"max_ms": "-1"}, "max_ms"),
        ({"cert_min_days": "1.5"}, "cert_min_days"),
        ({"regex": "([unclosed"}, "regex"),
        ({"method": "POST"}, "method"),
        ({"method": "HEAD", "contains": "x"}, "method"),
        ({"headers": "Host: x"}, "headers"),
    ],
)
def test_bad_cells_name_their_column(cells: dict[str, str], column: str) -> None:
    with pytest.raises(ColumnError) as caught:
        from_cells({"url": "https://a.example/", **cells})
    assert caught.value.column == column
    assert str(caught.value).startswith(f"column {column}: ")


def seen(
    status: int | None = 200,
    body: str | None = None,
    ms: float = 50.0,
    days: int | None = None,
    attempts: int = 1,
    complete: bool = True,
) -> Observed:
    return Observed(status, body, complete, ms, days, attempts)


def test_verdict_plain() -> None:
    assert verdict(Expect(), seen()) == ("up", ())
    assert verdict(Expect(), seen(301)) == ("up", ())
    assert verdict(Expect(), seen(404)) == ("down", ("status 404 not in 200-399",))


def test_verdict_expectations() -> None:
    api = Expect(statuses=parse_statuses("401"))
    assert verdict(api, seen(401)) == ("up", ())
    assert verdict(api, seen(200))[0] == "down"
    page = Expect(contains="Welcome", not_contains="Error")
    assert verdict(page, seen(body="<h1>Welcome</h1>")) == ("up", ())
    assert verdict(page, seen(body="Error: Welcome")) == ("down", ("body contains 'Error'",))
    assert verdict(page, seen(body="x" * 10, complete=False)) == (
        "down",
        ("body lacks 'Welcome' (in the first part read)",),
    )
    slow = Expect(max_ms=100, cert_min_days=30)
    assert verdict(slow, seen(ms=250.4)) == ("degraded", ("took 250 ms, over 100",))
    assert verdict(slow, seen(days=10)) == (
        "degraded",
        ("certificate expires in 10 days, under 30",),
    )
    # Down wins over degraded: what is wrong first.
    assert verdict(Expect(max_ms=1), seen(500, ms=99))[0] == "down"


def test_auth_from_environment_variables_named_in_the_list() -> None:
    env = {"TOKEN": "t0k", "USER": "ops", "PASS": "p:w"}
    assert parse_auth("bearer:TOKEN", env) == "Bearer t0k"
    assert parse_auth("basic:USER:PASS", env) == "Basic b3BzOnA6dw=="  # ops:p:w
    for bad, why in [
        ("bearer:NOPE", "NOPE is not set"),
        ("basic:USER", "'bearer:TOKEN_VAR' or"),
        ("digest:USER:PASS", "'bearer:TOKEN_VAR' or"),
        ("bearer:not-a-name", "is not the name of an environment variable"),
    ]:
        with pytest.raises(CellError, match=why):
            parse_auth(bad, env)


def test_an_auth_cell_adds_the_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "abc")
    expect = from_cells({"url": "u", "headers": "X-A: 1", "auth": "bearer:API_TOKEN"})
    assert expect.headers == (("X-A", "1"), ("Authorization", "Bearer abc"))


@settings(max_examples=400, deadline=None)
@given(
    ranges=st.lists(
        st.tuples(st.integers(100, 599), st.integers(0, 99)), min_size=1, max_size=3
    ).map(lambda rs: tuple((lo, lo + span) for lo, span in rs)),
    status=st.integers(100, 599),
    max_ms=st.none() | st.floats(0, 2000),
    cert_min_days=st.none() | st.integers(0, 60),
    contains=st.none() | st.sampled_from(["ok", "healthy"]),
    total_ms=st.floats(0, 3000),
    cert_days=st.none() | st.integers(-5, 400),
)
def test_an_attempts_state_is_the_verdict(
    ranges: tuple[tuple[int, int], ...],
    status: int,
    max_ms: float | None,
    cert_min_days: int | None,
    contains: str | None,
    total_ms: float,
    cert_days: int | None,
) -> None:
    """Attempt.state's shortcut for a status-only expectation says what verdict says."""
    expect = Expect(
        statuses=StatusSet("x", ranges),
        max_ms=max_ms,
        cert_min_days=cert_min_days,
        contains=contains,
    )
    attempt = Attempt(method="HEAD", final_url=parse_url("http://a.example/"), expect=expect)
    attempt.head = ResponseHead("1.1", status, "R", ())
    attempt.total_ms = total_ms
    attempt.trace.cert_days_left = cert_days
    seen = Observed(status, None, False, total_ms, cert_days, 1)
    assert attempt.state == verdict(expect, seen)
    assert (status in expect.statuses) == any(lo <= status <= hi for lo, hi in ranges)
