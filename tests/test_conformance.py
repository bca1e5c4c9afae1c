"""llhttp's response test vectors, as a client reads them.

See tests/conformance/README.md for their origin, license and fields. Every
case runs: either as llhttp expects, or as listed in DELIBERATE with the reason
(and then our own documented behaviour is asserted instead).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from checker.http import client, wire
from checker.http.errors import CheckError, IncompleteResponse, ProtocolError

_DATA = Path(__file__).parent / "conformance" / "llhttp-responses.jsonl"
VECTORS = [json.loads(line) for line in _DATA.read_text(encoding="utf-8").splitlines()]

# id -> (what we do instead, why). "ok" means we read the head and report its status.
DELIBERATE: dict[str, tuple[str, str]] = {
    "invalid-16-only-lfs-present-and-no-body": (
        "ok",
        "bare LF line endings: RFC 9112 2.2 lets a recipient accept them, browsers do, and "
        "calling a site down that every browser shows would be a false alarm",
    ),
    "invalid-18-only-lfs-present": ("ok", "bare LF line endings, as above"),
    "sample-11-no-carriage-ret": ("ok", "bare LF line endings, as above"),
    "sample-02-rtsp-response": ("protocol", "RTSP is not HTTP: a web check that gets it is broken"),
    "sample-03-ice-response": ("protocol", "ICE is not HTTP, likewise"),
    "sample-18-http-version-0-9": ("protocol", "only HTTP/1.0 and HTTP/1.1 status lines are valid"),
    "lenient-version-01-invalid-http-version-lenient": (
        "protocol",
        "lenient-only case: HTTP/5.6 is refused, as in llhttp's strict mode",
    ),
    "invalid-09-bare-cr-after-response-line-lenient": (
        "protocol",
        "lenient-only case: a bare CR is refused, as in llhttp's strict mode",
    ),
    "transfer-encoding-01-trailing-space-on-chunked-body": (
        "body",
        "whitespace after a chunk size (ESP32 devices, some load balancers): h11, undici and "
        "curl read it; llhttp refuses it where a proxy could be smuggled past, and a client "
        "that forwards nothing cannot be",
    ),
}


async def _read(
    raw: bytes, method: str
) -> tuple[wire.ResponseHead, wire.Framing, asyncio.StreamReader]:
    reader = asyncio.StreamReader(limit=wire.MAX_LINE)
    reader.feed_data(raw)
    reader.feed_eof()
    head = await client.read_head(reader, client.Trace(), time.perf_counter())
    return head, wire.framing(head, method), reader


def _reason(v: dict[str, Any]) -> str:
    return "" if v["expect_reason"] is None else v["expect_reason"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
async def test_vector(v: dict[str, Any]) -> None:
    raw = base64.b64decode(v["raw"])
    method = "HEAD" if v["meta"].get("skipBody") else "GET"
    async with asyncio.timeout(5):
        if v["id"] in DELIBERATE:
            what, _why = DELIBERATE[v["id"]]
            if what == "protocol":
                with pytest.raises(ProtocolError):
                    await _read(raw, method)
            elif what == "body":  # the head as llhttp reads it, and the whole body
                head, framing, reader = await _read(raw, method)
                assert head.status == v["expect_status"]
                with client.map_exceptions():
                    _, complete = await client.read_body(reader, framing, 1 << 20)
                assert complete
            else:
                head, _, _ = await _read(raw, method)
                assert head.status == 200 and head.reason == "OK"
            return

        if v["expect_error"] and v["error_phase"] == "head":
            with pytest.raises(ProtocolError):
                await _read(raw, method)
            return

        head, framing, reader = await _read(raw, method)
        assert head.status == v["expect_status"]
        assert head.reason == _reason(v)
        assert head.version == v["http_version"]
        assert wire.framing(head, "GET").kind == v["framing"]  # the field is GET's framing

        if v["error_phase"] == "body":
            with pytest.raises(ProtocolError), client.map_exceptions():
                await client.read_body(reader, framing, 1 << 20)
        elif v["at_eof"] == "truncated-body" and method == "GET":
            # (For a HEAD, llhttp's truncation is in the pipelined message after
            # ours; one response per request, we never read that far.)
            with pytest.raises(IncompleteResponse), client.map_exceptions():
                await client.read_body(reader, framing, 1 << 20)
        else:
            with client.map_exceptions():
                _, complete = await client.read_body(reader, framing, 1 << 20)
            assert complete


def test_every_deliberate_case_exists() -> None:
    ids = {v["id"] for v in VECTORS}
    assert set(DELIBERATE) <= ids
    assert len(VECTORS) == 85


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
async def test_vector_one_byte_at_a_time(v: dict[str, Any]) -> None:
    """The same verdict when the bytes trickle in: errors stay CheckErrors."""
    raw = base64.b64decode(v["raw"])
    reader = asyncio.StreamReader(limit=wire.MAX_LINE)

    async def feed() -> None:
        for i in range(len(raw)):
            reader.feed_data(raw[i : i + 1])
            await asyncio.sleep(0)
        reader.feed_eof()

    async with asyncio.timeout(5):
        feeder = asyncio.create_task(feed())
        try:
            head = await client.read_head(reader, client.Trace(), time.perf_counter())
            outcome: object = head.status
        except CheckError as exc:
            outcome = type(exc)
        await feeder
    expected_error = v["id"] in DELIBERATE and DELIBERATE[v["id"]][0] == "protocol"
    expected_error |= v["id"] not in DELIBERATE and v["expect_error"] and v["error_phase"] == "head"
    if expected_error:
        assert isinstance(outcome, type) and issubclass(outcome, ProtocolError)
    else:
        ours = DELIBERATE.get(v["id"], ("", ""))[0]
        assert outcome == (v["expect_status"] if ours in ("", "body") else 200)
