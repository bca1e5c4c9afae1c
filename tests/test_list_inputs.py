"""Lists that can be read only once, and URLs as arguments: `checker check -`,
a FIFO, `/dev/stdin`, `https://a/ https://b/`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import SwitchableSite, ended, journal_with, raw_server

pytestmark = pytest.mark.timeout(60)


async def run(args: list[str], cwd: Path, stdin: bytes | None = None) -> tuple[int, str]:
    """`checker check ARGS --out out`, with `stdin` piped in; (exit code, stderr).
    Asynchronous: the test's own servers run on this event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "checker", "check", *args, "--out", "out", "--format", "json"),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    code, _, err = await ended(proc, stdin)
    return code, err


def rows(cwd: Path) -> list[dict[str, object]]:
    report = json.loads((cwd / "out" / "latest.json").read_text())
    return list(report["results"])


async def test_standard_input(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        urls = f"http://127.0.0.1:{port}/a\nhttp://127.0.0.1:{port}/b\n"
        code, err = await run(["-", "-q"], tmp_path, urls.encode())
        assert code == 0, err
        again, err = await run(["-", "-q"], tmp_path, urls.encode())
    got = rows(tmp_path)
    assert [r["url"] for r in got] == [f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"]
    kept = tmp_path / "out" / "lists" / "stdin.txt"
    assert kept.read_text() == urls and got[0]["source"] == str(Path("out") / "lists" / "stdin.txt")
    # The same piped list is the same list: the second run compares with the first.
    assert again == 0, err
    report = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert report["run"]["changes_total"] == 0


async def test_a_fifo_is_read_once(tmp_path: Path) -> None:
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)
    async with raw_server(SwitchableSite()) as port:

        def feed() -> None:
            with open(fifo, "w") as f:
                f.write(f"http://127.0.0.1:{port}/fifo\n")

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        code, err = await run([str(fifo), "-q"], tmp_path)
        writer.join(5)
    assert code == 0, err
    assert [r["url"] for r in rows(tmp_path)] == [f"http://127.0.0.1:{port}/fifo"]


async def test_urls_as_arguments_are_a_list_of_their_own(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        a, b = f"http://127.0.0.1:{port}/x", f"http://127.0.0.1:{port}/y"
        code, err = await run([a, b, "-q"], tmp_path)
    assert code == 0, err
    assert [(r["url"], r["line"]) for r in rows(tmp_path)] == [(a, 1), (b, 2)]


async def test_an_empty_standard_input_is_a_usage_error_that_leaves_nothing(
    tmp_path: Path,
) -> None:
    code, err = await run(["-"], tmp_path, b"# only a comment\n")
    assert code == 2
    assert err == (
        "checker: error: standard input: no URL in this list (only blank lines and comments)\n"
    )
    assert not (tmp_path / "out").exists()


async def test_two_pipes_with_one_name_keep_both_lists(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    fifos = [tmp_path / "x" / "urls", tmp_path / "y" / "urls"]
    async with raw_server(SwitchableSite()) as port:
        contents = [
            f"http://127.0.0.1:{port}/x1\nhttp://127.0.0.1:{port}/x2\n",
            f"http://127.0.0.1:{port}/y1\n",
        ]
        writers = []
        for fifo, text in zip(fifos, contents, strict=True):
            os.mkfifo(fifo)

            def feed(path: Path = fifo, data: str = text) -> None:
                with open(path, "w") as f:
                    f.write(data)

            writers.append(threading.Thread(target=feed, daemon=True))
            writers[-1].start()
        code, err = await run([str(f) for f in fifos], tmp_path)
        for w in writers:
            w.join(5)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out" / "lists").iterdir()) == [
        "pipe-urls-2.txt",
        "pipe-urls.txt",
    ]
    assert [str(r["url"]).rsplit("/", 1)[1] for r in rows(tmp_path)] == ["x1", "x2", "y1"]


async def test_standard_input_twice_is_a_usage_error(tmp_path: Path) -> None:
    code, err = await run(["-", "-"], tmp_path, b"http://127.0.0.1:1/\n")
    assert code == 2
    assert err == "checker: error: '-' (standard input) is given more than once\n"


async def test_a_killed_piped_run_is_recovered_with_its_own_list(tmp_path: Path) -> None:
    # Run A reads 20 URLs from stdin and is killed with most of them hanging;
    # run B pipes in another list. A's report must still have all 20 rows:
    # its copy of stdin is recovered before B's copy takes its place.
    from checker.demo.fleet import Fleet, Route

    async with Fleet({"/ok": Route(), "/hang": Route(delay=30)}) as fleet:
        first = [fleet.url("/ok")] + [fleet.url(f"/hang?{i}") for i in range(19)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "checker", "check", "-", "--out", "out", "--timeout", "50", "-q"),
            cwd=tmp_path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(("\n".join(first) + "\n").encode())
        proc.stdin.close()
        try:
            await journal_with(tmp_path / "out")
        finally:
            proc.kill()
            await proc.wait()
        code, err = await run(["-", "-q"], tmp_path, (fleet.url("/ok?second") + "\n").encode())
    assert code == 0, err
    assert "an unfinished run's journal became" in err
    killed = sorted((tmp_path / "out").glob("status-*.json"))[0]
    report = json.loads(killed.read_text())
    assert report["run"]["recovered"] is True
    assert report["run"]["total"] == 20 and report["run"]["not_checked"] == 19


async def test_a_list_rewritten_while_the_run_reads_it_is_said(tmp_path: Path) -> None:
    # Found by a review: `cat new > urls.txt` during a run made a report of
    # both versions, without a word.
    from checker.targets import Target, read_targets

    path = tmp_path / "urls.txt"
    path.write_text("".join(f"https://a.example/old{i}\n" for i in range(5000)))
    changed: list[str] = []
    items = read_targets([str(path)], changed=changed)
    first = next(items)
    assert isinstance(first, Target) and first.text.endswith("/old0")
    path.write_text("".join(f"https://a.example/NEW{i}\n" for i in range(6000)))  # in place
    rest = list(items)
    assert rest and changed == [
        f"{path} was written to while the run read it: its rows may mix the list as it was"
        " and as it is now"
    ]
    quiet: list[str] = []
    assert len(list(read_targets([str(path)], changed=quiet))) == 6000 and quiet == []
