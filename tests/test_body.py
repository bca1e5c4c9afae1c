"""A body for a body check: decompressed within the cap, decoded by its charset (pure)."""

from __future__ import annotations

import codecs
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


def test_a_broken_gzip_body_is_broken() -> None:
    # Found by a review: it was read as it came, with a warning, so a body
    # check on it passed (up) where curl fails (exit 61) and browsers show
    # ERR_CONTENT_DECODING_FAILED.
    body = decode(b"not gzip at all", True, "gzip", None, 100)
    assert body.broken is not None and "cannot be decompressed" in body.broken
    assert decode(gzip.compress(b"ok"), True, "gzip", None, 100).broken is None


def test_codings_applied_one_over_another() -> None:
    # Found by a review (Apache, a Content-Encoding header set over
    # mod_deflate's): "gzip, gzip" was an unknown coding, read as it came:
    # a contains failed on a page curl --compressed reads, and a third gzip
    # over two layers passed a not_contains. Codings are undone in the
    # reverse of the order they are listed (RFC 9110 8.4), each as one is.
    text = b"<p>END-MARKER</p>"
    twice = gzip.compress(gzip.compress(text))
    for header in ("gzip, gzip", "x-gzip, gzip", "GZIP,gzip"):
        body = decode(twice, True, header, "text/html", 10_000)
        assert (body.text, body.warnings, body.broken) == (text.decode(), (), None), header
    mixed = gzip.compress(zlib.compress(text))  # deflate first, then gzip
    assert decode(mixed, True, "deflate, gzip", None, 10_000).text == text.decode()
    assert decode(gzip.compress(text), True, "identity, gzip", None, 100).text == text.decode()
    three = decode(twice, True, "gzip, gzip, gzip", None, 10_000)
    assert three.broken is not None and "cannot be decompressed" in three.broken
    unknown = decode(gzip.compress(text), True, "br, gzip", None, 10_000)
    assert unknown.broken is None and "unknown coding 'br, gzip'" in unknown.warnings[0]
    bomb = decode(gzip.compress(gzip.compress(b"\0" * 5_000_000)), True, "gzip, gzip", None, 4096)
    assert len(bomb.text) == 4096 and not bomb.complete  # (the cap holds at each layer)


def test_text_is_decoded_as_browsers_decode_it() -> None:
    # Found by a review: a page whose charset is only in its <meta>, and
    # windows-1252 bytes labelled iso-8859-1 (as nginx's `charset` sends
    # them), were read otherwise than every browser shows them: "body lacks".
    page = '<html><head><meta charset="windows-1252"></head><body>Café</body></html>'
    assert "Café" in decode(page.encode("cp1252"), True, None, "text/html", 1000).text
    equiv = (
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        "<p>Caf\u00e9 M\u00fcller</p>"
    )
    assert "Café Müller" in decode(equiv.encode("latin-1"), True, None, "text/html", 1000).text
    quotes = "It\u2019s open \u2013 5 \u20ac".encode("cp1252")
    for label in ("iso-8859-1", "ISO-8859-1", "us-ascii", "latin1"):
        text = decode(quotes, True, None, f"text/html; charset={label}", 1000).text
        assert text == "It\u2019s open \u2013 5 \u20ac", label
    gbk = "\u4f60\u597d\u7881".encode("gbk")  # (the last is GBK's, not in GB2312)
    assert decode(gbk, True, None, "text/html; charset=gb2312", 1000).text == "\u4f60\u597d\u7881"
    # The byte order mark first: over the header, and with no header at all.
    utf16 = codecs.BOM_UTF16_LE + "Welcome".encode("utf-16-le")
    assert decode(utf16, True, None, None, 1000).text == "Welcome"
    assert decode(utf16, True, None, "text/html; charset=iso-8859-1", 1000).text == "Welcome"
    assert decode(codecs.BOM_UTF8 + b"ok", True, None, None, 1000).text == "ok"
    # The header's charset over the page's <meta>; <meta> only for HTML.
    meta = '<meta charset="iso-8859-1">\u00e9'.encode()
    assert decode(meta, True, None, "text/html; charset=utf-8", 1000).text.endswith("\u00e9")
    assert decode(meta, True, None, "text/plain", 1000).text.endswith("\u00e9")
    latin = '<meta charset="iso-8859-1">\u00e9'.encode("latin-1")
    assert decode(latin, True, None, "text/plain", 1000).text.endswith("\ufffd")


def test_the_sink_keeps_no_more_than_its_cap() -> None:
    sink = BodySink(cap=10)
    for piece in (b"12345", b"67890abc", b"def"):
        sink.add(piece)
    assert bytes(sink.data) == b"1234567890"
