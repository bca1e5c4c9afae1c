"""The result record and its schema stay in step."""

from __future__ import annotations

import dataclasses
import json

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
