"""llhttp's response vectors served for real, on kept-alive connections.

A server answers `/case/N` with vector N's bytes, the same to HEAD and to GET
(as servers that send a body after a HEAD response do), and keeps the
connection open when the vector is complete. Each case is checked alone on a
fresh connection first: that is the oracle. Then every case, several times
over and shuffled, goes through the pool with the default settings (HEAD,
connections reused): each row must come out as its case did alone. A row that
differs is an answer read from another case's leftovers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from checker.check import attempt_check
from checker.pool import Pool, PoolOptions
from checker.targets import read_targets
from checker.url import parse_url
from tests.helpers import RecordingSink, check_options, raw_server

pytestmark = pytest.mark.timeout(120)

_DATA = Path(__file__).parent / "conformance" / "llhttp-responses.jsonl"
VECTORS = [json.loads(line) for line in _DATA.read_text(encoding="utf-8").splitlines()]
REPEATS = 3


class Replayer:
    def __init__(self) -> None:
        self.raw = [base64.b64decode(v["raw"]) for v in VECTORS]
        self.complete = [v["at_eof"] == "complete" for v in VECTORS]

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            path = head.split(b" ", 2)[1].decode()
            case = int(path.split("/")[2].split("?")[0])
            writer.write(self.raw[case])
            await writer.drain()
            if not self.complete[case]:
                return  # the vector ends with the connection


def outcome(ok: bool, status: int | None, error: str | None) -> tuple[bool, int | None, str | None]:
    return ok, status, error


@pytest.mark.parametrize("method", ["HEAD", "GET"])
async def test_reuse_never_changes_a_cases_verdict(method: str, tmp_path: Path) -> None:
    opts = check_options(method=method, timeout=2.0, follow_redirects=False)
    async with raw_server(Replayer()) as port:
        alone: dict[int, tuple[bool, int | None, str | None]] = {}
        for i in range(len(VECTORS)):
            att = await attempt_check(parse_url(f"http://127.0.0.1:{port}/case/{i}"), opts)
            status = att.head.status if att.head else None
            alone[i] = outcome(att.ok, status, att.error.category if att.error else None)

        paths = [f"/case/{i}?r={r}" for i in range(len(VECTORS)) for r in range(REPEATS)]
        random.Random(9).shuffle(paths)
        lst = tmp_path / "urls.txt"
        lst.write_text("".join(f"http://127.0.0.1:{port}{p}\n" for p in paths))
        sink = RecordingSink()
        pool = Pool(opts, PoolOptions(concurrency=4, per_host=4, retries=0), sink)
        async with asyncio.timeout(100):
            await pool.run(read_targets([str(lst)]), asyncio.Event())

    wrong: list[dict[str, Any]] = []
    for row in sink.rows.values():
        case = int(row.url.split("/case/")[1].split("?")[0])
        got = outcome(row.ok, row.status, row.error)
        if got != alone[case]:
            wrong.append(
                {
                    "case": VECTORS[case]["id"],
                    "alone": alone[case],
                    "got": got,
                    "detail": row.error_detail,
                    "reused": row.reused,
                }
            )
    assert len(sink.rows) == len(paths)
    assert wrong == []
    # The oracle is not trivially all-up: the panel has downs and errors too.
    assert {o[0] for o in alone.values()} == {True, False}
