"""SMTP and FTP replies (RFC 5321 4.2, RFC 959 4.2): whole, byte by byte, and
with what follows left for the next reply."""

from __future__ import annotations

import pytest

from checker.protocols.replies import MAX_LINE, Reply, ReplyError, ReplyReader, parse_reply

SMTP = [
    (b"220 mx.example ESMTP ready\r\n", Reply(220, "mx.example ESMTP ready")),
    (
        b"250-mx.example\r\n250-STARTTLS\r\n250 SIZE 1000\r\n",
        Reply(250, "mx.example\nSTARTTLS\nSIZE 1000"),
    ),
    (b"554 5.7.1 no thanks\n", Reply(554, "5.7.1 no thanks")),  # a bare LF
    (b"220-first\r\n220-\r\n220 last\r\n", Reply(220, "first\n\nlast")),
]
FTP = [
    (b"220 ProFTPD ready\r\n", Reply(220, "ProFTPD ready")),
    (
        b"220-Welcome\r\n  to our server\r\n123 not the end\r\n220 ready\r\n",
        Reply(220, "Welcome\n  to our server\n123 not the end\nready"),
    ),
    (b"150-a\r\n150 b\r\n", Reply(150, "a\nb")),  # a preliminary 1xx reply
]


def feed_in(reader: ReplyReader, data: bytes, step: int) -> list[Reply]:
    out = []
    for i in range(0, len(data), step):
        found = reader.feed(data[i : i + step])
        while found is not None:
            out.append(found)
            found = reader.feed(b"")
    return out


@pytest.mark.parametrize(("ftp", "vectors"), [(False, SMTP), (True, FTP)])
@pytest.mark.parametrize("step", [1, 3, 7, 10_000])
def test_fed_whole_byte_by_byte_and_with_leftovers(
    ftp: bool, vectors: list[tuple[bytes, Reply]], step: int
) -> None:
    for data, reply in vectors:
        assert parse_reply(data.splitlines(keepends=True), ftp=ftp) == reply
        reader = ReplyReader(ftp=ftp)
        assert feed_in(reader, data, step) == [reply]
        assert reader.leftover == b""
    # All of them in one stream, and a partial reply left over at the end.
    stream = b"".join(data for data, _ in vectors) + b"250-part"
    reader = ReplyReader(ftp=ftp)
    assert feed_in(reader, stream, step) == [reply for _, reply in vectors]
    assert reader.leftover == b"250-part"


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"HTTP/1.1 400 Bad Request\r\n",  # a port that speaks HTTP
        b"25 short\r\n",
        b"250-a\r\n251 b\r\n",
        b"650 nope\r\n",
    ],
)
def test_what_is_no_smtp_reply(data: bytes) -> None:
    with pytest.raises(ReplyError):
        feed_in(ReplyReader(), data, 1)


def test_bounded_lines_and_replies() -> None:
    with pytest.raises(ReplyError, match="longer than"):
        ReplyReader().feed(b"220 " + b"x" * (MAX_LINE + 1))  # a 1 MiB line stops early
    with pytest.raises(ReplyError, match="lines"):
        ReplyReader().feed(b"220-more\r\n" * 100)  # a greeting that never ends
