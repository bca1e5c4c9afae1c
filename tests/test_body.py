"""A body for a body check: decompressed within the cap, decoded by its charset (pure)."""

from __future__ import annotations

import gzip
import zlib

from checker.http.body import BodySink, decode


def test_plain_utf8_and_declared_charsets() -> None:
    assert decode("héllo".encode(), True, None, "text/html", 100).text == "héllo"
    latin = decode("héllo".encode("latin-1"), True, None, "text/html; charset=ISO-8859-1", 100)
    assert latin.text == "héllo" and latin.warnings == ()
    quoted = decode("é".encode("cp1252"), True, None, 'text/html; charset="windows-1252"', 100)
    assert quoted.text == "é"
    bad = decode(b"\xff ok", True, None, None, 100)
    assert bad.text == "\ufffd ok"  # replaced, never an exception
    unknown = decode(b"ok", True, None, "text/plain; charset=klingon", 100)
    assert unknown.text == "ok" and "unknown charset 'klingon'" in unknown.warnings[0]


def test_gzip_and_both_kinds_of_deflate() -> None:
    text = "Welcome " * 100
    assert decode(gzip.compress(text.encode()), True, "gzip", None, 10_000).text == text
    assert decode(zlib.compress(text.encode()), True, "deflate", None, 10_000).text == text
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(text.encode()) + raw.flush()
    assert decode(raw_deflate, True, "Deflate", None, 10_000).text == text


def test_a_decompression_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB that inflate to 50 MB
    assert len(bomb) < 100_000
    body = decode(bomb, True, "gzip", None, 1024 * 1024)
    assert len(body.text) == 1024 * 1024 and not body.complete


def test_a_broken_gzip_body_is_read_as_it_came() -> None:
    body = decode(b"not gzip at all", True, "gzip", None, 100)
    assert body.text == "not gzip at all"
    assert "could not be decompressed" in body.warnings[0]


def test_the_sink_keeps_no_more_than_its_cap() -> None:
    sink = BodySink(cap=10)
    for piece in (b"12345", b"67890abc", b"def"):
        sink.add(piece)
    assert bytes(sink.data) == b"1234567890"
