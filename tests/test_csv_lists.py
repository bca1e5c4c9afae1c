"""CSV lists: columns per URL, bad cells reported without stopping the run, and
the three states with their reasons in every report."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from checker.targets import Duplicate, Target, list_notes, read_targets
from tests.helpers import raw_server, read_request
from tests.test_cli import checker


async def checked_row(tmp_path: Path, lines: str, exit_code: int, *options: str) -> dict[str, Any]:
    """`checker check` of a one-row CSV list (`lines`: its header and row),
    no retries: the exit code must be `exit_code`; the JSON report's row."""
    (tmp_path / "checks.csv").write_text(lines)
    code, _, err = await checker(
        "check", "checks.csv", "-q", "--retries", "0", *options, cwd=tmp_path
    )
    assert code == exit_code, err
    rows: list[dict[str, Any]] = json.loads((tmp_path / "reports" / "latest.json").read_text())[
        "results"
    ]
    (row,) = rows
    return row


pytestmark = pytest.mark.timeout(60)


def targets(tmp_path: Path, text: str, wanted: str = "auto") -> list[Target | Duplicate]:
    path = tmp_path / "urls.csv"
    path.write_text(text)
    return list(read_targets([str(path)], wanted))


def test_a_header_row_naming_url_makes_a_csv_list(tmp_path: Path) -> None:
    found = targets(
        tmp_path,
        "# my checks\n"
        "name,url,expect_status,contains\n"
        "\n"
        'shop,https://shop.example/,200,"Welcome, friend"\n'
        "# a comment row\n"
        "api,https://api.example/v1,401,\n",
    )
    shop, api = found
    assert isinstance(shop, Target) and isinstance(api, Target)
    assert (shop.line, shop.text, api.line) == (4, "https://shop.example/", 6)
    assert shop.expect is not None and shop.expect.contains == "Welcome, friend"
    assert api.expect is not None and 401 in api.expect.statuses and 200 not in api.expect.statuses
    # A plain list whose first line is a URL stays a plain list.
    (plain,) = targets(tmp_path, "https://a.example/,x\n")
    assert isinstance(plain, Target) and plain.expect is None


def test_quoted_cells_may_span_lines_and_the_line_is_where_the_row_starts(tmp_path: Path) -> None:
    found = targets(
        tmp_path, 'url,contains\nhttps://a.example/,"two\nlines"\nhttps://b.example/,x\n'
    )
    a, b = found
    assert isinstance(a, Target) and isinstance(b, Target)
    assert a.expect is not None and a.expect.contains == "two\nlines"
    assert (a.line, b.line) == (2, 4)


def test_bad_cells_are_rows_of_their_own_and_the_rest_runs(tmp_path: Path) -> None:
    found = targets(
        tmp_path,
        "url,expect_status,max_ms\n"
        "https://a.example/,2xx,100\n"
        "https://b.example/,banana,100\n"
        "https://c.example/,200,fast\n"
        ",200,1\n"
        "https://d.example/,200,1,extra\n"
        "not a url,200,1\n",
    )
    a, b, c, empty, extra, bad_url = found
    assert isinstance(a, Target) and a.error is None
    assert isinstance(b, Target) and b.url is None and b.error is not None
    assert b.error.startswith("column expect_status: 'banana' is not a status")
    assert (
        isinstance(c, Target) and c.error == "column max_ms: 'fast' is not a number of milliseconds"
    )
    assert isinstance(empty, Target) and empty.error == "column url: empty"
    assert isinstance(extra, Target) and extra.error == "4 cells, but the header names 3"
    assert isinstance(bad_url, Target) and bad_url.url is None


def test_unknown_and_repeated_columns_are_noted(tmp_path: Path) -> None:
    path = tmp_path / "urls.csv"
    path.write_text("url,colour,url\nhttps://a.example/,red,https://b.example/\n")
    assert list_notes([str(path)]) == [
        f"{path}: column 2 'colour' is not one checker knows: ignored",
        f"{path}: column 'url' appears twice: the first is used",
    ]
    (a,) = read_targets([str(path)])
    assert isinstance(a, Target) and a.text == "https://a.example/"


def test_the_same_url_with_other_expectations_is_another_check(tmp_path: Path) -> None:
    found = targets(
        tmp_path,
        "url,contains\n"
        "https://a.example/,Welcome\n"
        "https://a.example/,Basket\n"
        "https://A.example,Welcome\n",
    )
    assert [type(t).__name__ for t in found] == ["Target", "Target", "Duplicate"]


def test_list_format_forces_either_reading(tmp_path: Path) -> None:
    (plain,) = targets(tmp_path, "url\nhttps://a.example/\n", wanted="plain")[1:]
    assert isinstance(plain, Target) and plain.expect is None  # "url" was a bad line
    with pytest.raises(Exception, match="not a CSV list"):
        targets(tmp_path, "https://a.example/\n", wanted="csv")


BOMB = gzip.compress(b"\0" * 20_000_000)


async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Paths with bodies, statuses, delays and a header check, one request a connection."""
    head = (await read_request(reader)).decode("latin-1")
    path = head.split(" ", 2)[1]
    if "://" in path:  # absolute form, as a proxy of ours passes it on
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    lowered = head.lower()
    status, body, extra = "200 OK", b"", ""
    if path == "/welcome":
        body = b"<html><h1>Welcome home</h1> build v12</html>"
        if "accept-encoding: gzip" in lowered:
            body, extra = gzip.compress(body), "Content-Encoding: gzip\r\n"
    elif path == "/oops":
        body = b"<html>Internal Error</html>"
    elif path == "/api":
        status = "401 Unauthorized"
    elif path == "/slow":
        await asyncio.sleep(0.3)
    elif path.startswith("/private"):
        if "authorization: bearer s3cret-token" not in lowered:
            status = "403 Forbidden"
    elif path == "/bomb":
        body, extra = BOMB, "Content-Encoding: gzip\r\n"
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
        "Content-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def test_a_csv_list_with_mixed_expectations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "s3cret-token")
    async with raw_server(site) as port:
        base = f"http://127.0.0.1:{port}"
        rows = [
            {"name": "home", "url": f"{base}/welcome", "contains": "Welcome"}
            | {"not_contains": "Error", "regex": r"v\d+", "tags": "prod;web"},
            {"name": "oops", "url": f"{base}/oops", "not_contains": "Error"},
            {"name": "api", "url": f"{base}/api", "expect_status": "401", "tags": "api"},
            {"name": "api-wrong", "url": f"{base}/api", "expect_status": "200"},
            {"name": "slow", "url": f"{base}/slow", "max_ms": "100"},
            {"name": "private", "url": f"{base}/private"}
            | {"headers": "Authorization: Bearer ${SHOP_TOKEN}"},
            {"name": "no-token", "url": f"{base}/private?again"},
            {"name": "bomb", "url": f"{base}/bomb", "contains": "never there"},
            {"name": "bad", "url": f"{base}/welcome", "expect_status": "2xx,nope"},
        ]
        columns = ["name", "url", "expect_status", "contains", "not_contains", "regex"]
        columns += ["max_ms", "headers", "tags"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns)
        writer.writeheader()
        writer.writerows(rows)
        (tmp_path / "checks.csv").write_text(buf.getvalue())
        code, out, err = await checker(
            "check", "checks.csv", "--retries", "0", "--max-body", "64k", cwd=tmp_path
        )
    assert code == 1, err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    got = {r["name"] or f"line {r['line']}": r for r in report["results"]}
    assert (got["home"]["state"], got["home"]["reasons"], got["home"]["method"]) == (
        "up",
        [],
        "GET",
    )
    assert got["home"]["tags"] == ["prod", "web"]
    assert (got["oops"]["state"], got["oops"]["reasons"]) == ("down", ["body contains 'Error'"])
    assert (got["api"]["state"], got["api"]["ok"]) == ("up", True)
    assert got["api-wrong"]["reasons"] == ["status 401 not in 200"]
    assert got["slow"]["state"] == "degraded" and got["slow"]["ok"] is True
    assert got["slow"]["reasons"][0].startswith("took ") and "over 100" in got["slow"]["reasons"][0]
    assert got["private"]["state"] == "up"  # the header went out
    assert got["no-token"]["reasons"] == ["status 403 not in 200-399"]
    assert got["bomb"]["state"] == "down"
    assert got["bomb"]["reasons"] == ["body lacks 'never there' (in the first part read)"]
    bad = got["bad"]  # a row that is no check still has its name
    assert bad["error"] == "invalid_url" and bad["state"] is None
    assert bad["error_detail"].startswith("column expect_status: 'nope'")
    assert report["run"]["degraded"] == 1
    # The CSV report has the new columns; the summary counts degraded apart.
    table = list(csv.DictReader(io.StringIO((tmp_path / "reports" / "latest.csv").read_text())))
    assert [r["state"] for r in table] == [r["state"] or "" for r in report["results"]]
    assert "1 degraded" in out
    # The secret was sent, but is written nowhere: reports, database, output.
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            assert b"s3cret-token" not in path.read_bytes(), path
    db = sqlite3.connect(tmp_path / "reports" / "history.sqlite3")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "s3cret-token" not in dump and "s3cret-token" not in out + err


async def test_the_same_expectations_hold_through_a_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_proxy import Proxy

    monkeypatch.setenv("SHOP_TOKEN", "s3cret-token")
    proxy = Proxy()
    async with raw_server(site) as port, raw_server(proxy) as proxy_port:
        base = f"http://127.0.0.1:{port}"
        (tmp_path / "checks.csv").write_text(
            "name,url,contains,not_contains,expect_status,headers\n"
            f"home,{base}/welcome,Welcome,Error,,\n"
            f"oops,{base}/oops,,Error,,\n"
            f"api,{base}/api,,,401,\n"
            f'private,{base}/private,,,,"Authorization: Bearer ${{SHOP_TOKEN}}"\n'
        )
        code, _, err = await checker(
            "check",
            "checks.csv",
            "--retries",
            "0",
            "--proxy",
            f"127.0.0.1:{proxy_port}",
            cwd=tmp_path,
        )
    assert code == 1, err
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    assert [(r["name"], r["state"]) for r in rows] == [
        ("home", "up"),
        ("oops", "down"),
        ("api", "up"),
        ("private", "up"),
    ]
    assert len(proxy.seen) == 4  # every check went through the proxy, in absolute form
    assert all(head.split(b" ")[1].startswith(b"http://127.0.0.1:") for head in proxy.seen)


async def test_a_csv_list_with_only_its_header_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("url,name\n# nothing yet\n")
    code, _, err = await checker("check", "empty.csv", cwd=tmp_path)
    assert code == 2 and "no URL in this CSV list" in err
    assert not (tmp_path / "reports").exists()


async def test_a_body_that_says_gzip_and_is_not_is_down(tmp_path: Path) -> None:
    # Found by a review: read as it came with a warning, its body check
    # passed: up, where curl fails (exit 61) and browsers show an error.
    async def mislabelled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b"<html>Welcome</html>"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async with raw_server(mislabelled) as port:
        row = await checked_row(tmp_path, f"url,contains\nhttp://127.0.0.1:{port}/,Welcome\n", 1)
    assert (row["state"], row["error"]) == ("down", "protocol"), row
    assert "cannot be decompressed" in row["error_detail"]


def test_a_quoted_first_cell_that_starts_with_a_hash_is_a_row(tmp_path: Path) -> None:
    # Found by a review: names like "#1 shop" come out of spreadsheets; the
    # row was skipped as a comment without a word, even quoted.
    found = targets(
        tmp_path,
        'name,url\n"#1 shop",https://shop.example/\n#off,https://off.example/\n'
        '"#2 multi\nline",https://two.example/\n',
    )
    assert [(t.line, t.text) for t in found if isinstance(t, Target)] == [
        (2, "https://shop.example/"),
        (4, "https://two.example/"),
    ]
    first = found[0]
    assert isinstance(first, Target) and first.expect is not None
    assert first.expect.name == "#1 shop"


def test_a_comment_after_a_url_in_a_plain_list(tmp_path: Path) -> None:
    # Found by a review: the README's own example ("example.org   # no scheme
    # means ...") made an invalid line ("a space in URL") on every run.
    path = tmp_path / "urls.txt"
    path.write_text(
        "example.org            # no scheme means https://example.org/\n"
        "https://a.example/page#part\n"  # a fragment is no comment
        "https://b.example/\t# after a tab\n"
        "https://c.example/ x\n"  # still a space in a URL
    )
    found = list(read_targets([str(path)]))
    assert all(isinstance(t, Target) for t in found)
    texts = [(t.text, t.error) for t in found if isinstance(t, Target)]
    assert texts[:3] == [
        ("example.org", None),
        ("https://a.example/page#part", None),
        ("https://b.example/", None),
    ]
    assert texts[3][0] == "https://c.example/ x" and texts[3][1] is not None


async def test_a_body_still_coming_at_the_deadline_is_checked_on_what_came(
    tmp_path: Path,
) -> None:
    # Found by a review (aiohttp StreamResponse): the head and "Welcome" came
    # at once and the rest slowly; the check was a `timeout` with no status,
    # asked again on a new connection (twice the wait), and down.
    async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>Welcome</p>")
        await writer.drain()
        for _ in range(100):  # (10 s, far past the deadline)
            await asyncio.sleep(0.1)
            writer.write(b" " * 64)
            await writer.drain()

    async with raw_server(streaming) as port:
        url = f"http://127.0.0.1:{port}/"
        (tmp_path / "checks.csv").write_text(
            f"name,url,contains\nfound,{url},Welcome\nmissing,{url}?2,Nope\n"
        )
        started = asyncio.get_running_loop().time()
        code, _, err = await checker(
            "check", "checks.csv", "-q", "--retries", "0", "--timeout", "1", cwd=tmp_path
        )
        took = asyncio.get_running_loop().time() - started
    assert code == 1, err
    rows = json.loads((tmp_path / "reports" / "latest.json").read_text())["results"]
    got = {r["name"]: r for r in rows}
    found, missing = got["found"], got["missing"]
    assert (found["state"], found["status"], found["attempts"]) == ("up", 200, 1), found
    assert any("still coming at the deadline" in w for w in found["warnings"])
    assert (missing["state"], missing["status"], missing["error"]) == ("down", 200, None)
    assert missing["reasons"] == ["body lacks 'Nope' (in the first part read)"]
    assert took < 8  # one deadline each, not two (and not the stream's 10 s)


def test_utf16_and_semicolon_lists_are_read(tmp_path: Path) -> None:
    # Found by a review: a list saved as UTF-16 (Windows' "Unicode" text)
    # made rows "a NUL in URL", and a semicolon CSV (a spreadsheet where the
    # comma is the decimal sign) made every row "bad host 'name;url'".
    plain = tmp_path / "u16.txt"
    plain.write_bytes("https://a.example/\r\nhttps://b.example/\r\n".encode("utf-16"))
    got = list(read_targets([str(plain)]))
    assert [(t.text, t.error) for t in got if isinstance(t, Target)] == [
        ("https://a.example/", None),
        ("https://b.example/", None),
    ]
    # An odd byte at its end (a line added with `echo >>`): an invalid line,
    # not a traceback (found by a review).
    with plain.open("ab") as f:
        f.write(b"https://c.example/\n")
    rows = [t for t in read_targets([str(plain)]) if isinstance(t, Target)]
    assert len(rows) == 3 and rows[2].error is not None
    found = targets(tmp_path, 'name;url;expect_status\nshop;https://shop.example/;"200,301"\n')
    (shop,) = found
    assert isinstance(shop, Target) and shop.error is None and shop.text == "https://shop.example/"
    assert shop.expect is not None and shop.expect.name == "shop"
    assert 301 in shop.expect.statuses


@pytest.mark.parametrize(
    ("sent", "timeout"),
    [(b"", "2.5"), (b"<p>Wel", "2.5"), (b"<p>Wel", "1")],
    ids=["nothing", "a part", "a part, --timeout 1"],
)
async def test_a_body_that_stops_coming_is_a_timeout(
    tmp_path: Path, sent: bytes, timeout: str
) -> None:
    # Found by a review of the change above: a frozen app (its head, then
    # no body, or a part and then nothing) passed a not_contains on the
    # empty body: up, where curl times out. And with a --timeout under the
    # 2 s that tell a stream from a frozen body, on the part that came
    # (found by the review after it).
    async def frozen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + sent)
        await writer.drain()
        await asyncio.sleep(30)

    async with raw_server(frozen) as port:
        lines = f"name,url,not_contains\nfrozen,http://127.0.0.1:{port}/,Error\n"
        row = await checked_row(tmp_path, lines, 1, "--timeout", timeout)
    assert (row["state"], row["error"]) == ("down", "timeout"), row
    assert row["error_detail"].startswith(f"the body stopped coming: {len(sent)} bytes")


BROKEN_BODIES = {
    # Two Content-Lengths that disagree (Apache with a `Header add` of one).
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nContent-Length: 12\r\n"
    b"Connection: close\r\n\r\nhello small\n",
    # Chunked, and the body is not in chunks.
    "not chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"hello small\n",
    # Fewer bytes than its Content-Length, then the close.
    "cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\nhello",
}


@pytest.mark.parametrize("column", ["not_contains", "contains", "regex"])
@pytest.mark.parametrize("sent", list(BROKEN_BODIES.values()), ids=list(BROKEN_BODIES))
async def test_a_body_that_breaks_off_fails_its_body_check(
    tmp_path: Path, sent: bytes, column: str
) -> None:
    # Found by a review (Apache's mod_headers): a body whose framing is
    # broken was checked on the bytes read before it broke, with a warning:
    # a not_contains (or a regex `hello`) passed on nothing, up, where curl
    # fails (exit 8, 18, 56) and browsers show an error page; a contains was
    # down with no error. It is `protocol` now, as a body in a coding it does
    # not have is, and its detail says where it broke.
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sent)
        await writer.drain()

    wanted = {"not_contains": "Error", "contains": "hello", "regex": "hello"}[column]
    async with raw_server(broken) as port:
        row = await checked_row(tmp_path, f"url,{column}\nhttp://127.0.0.1:{port}/,{wanted}\n", 1)
    assert (row["state"], row["status"], row["error"]) == ("down", 200, "protocol"), row
    assert row["error_detail"].startswith("the body broke off after "), row


async def test_a_redirect_whose_body_breaks_off_is_followed(tmp_path: Path) -> None:
    # Found by a review of the change above: a 302 whose own body was cut
    # made its body-check row down (protocol), where curl -L and browsers
    # follow it; a hop's body is not judged. Said in a warning.
    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            path = (await read_request(reader)).split(b" ")[1]
            if path == b"/hop":
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: /page\r\nContent-Length: 100\r\n"
                    b"Connection: close\r\n\r\nsee /page"
                )
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nWelcome")
            await writer.drain()

    async with raw_server(site) as port:
        row = await checked_row(tmp_path, f"url,contains\nhttp://127.0.0.1:{port}/hop,Welcome\n", 0)
    assert (row["state"], row["status"], row["final_url"]) == (
        "up",
        200,
        f"http://127.0.0.1:{port}/page",
    ), row
    assert any("a redirect's body: followed, not judged" in w for w in row["warnings"]), row


def test_a_csv_row_with_no_expectations_is_the_plain_lines_check(tmp_path: Path) -> None:
    # Found by a review: a URL in a plain list and in a CSV list (a config
    # file's group is one) with only `url` (or `name`, `tags`) was checked
    # twice, and latest.prom had its series twice (node_exporter refuses
    # the file). One with expectations of its own is another check.
    plain = tmp_path / "plain.txt"
    plain.write_text("https://a.example/\nhttps://b.example/\n")
    csv = tmp_path / "more.csv"
    csv.write_text("name,url,contains\nsite,https://a.example/,\nbody,https://b.example/,Hi\n")
    found = list(read_targets([str(plain), str(csv)]))
    assert [type(t).__name__ for t in found] == ["Target", "Target", "Duplicate", "Target"]
    dup = found[2]
    assert isinstance(dup, Duplicate) and (dup.of_seq, dup.line) == (0, 2)


def test_an_invalid_csv_row_keeps_its_name_and_tags(tmp_path: Path) -> None:
    # Found by a review: a row whose URL was not one (or empty) lost its
    # name in the reports, which the README says are carried into them.
    found = targets(
        tmp_path, "name,url,tags\nshop,not a url,web\nblank,,\nok,https://a.example/,\n"
    )
    rows = [t for t in found if isinstance(t, Target)]
    assert [(t.error is not None, t.expect.name if t.expect else None) for t in rows] == [
        (True, "shop"),
        (True, "blank"),
        (False, "ok"),
    ]
    assert rows[0].expect is not None and rows[0].expect.tags == ("web",)
