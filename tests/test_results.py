"""The result record and its schema stay in step."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

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
