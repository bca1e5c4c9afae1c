"""--shard K/N: each check in exactly one shard, by a stable hash of its host;
invalid lines in shard 1; duplicates where their URL is; together, the rows
of one unsharded run."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest

from checker.targets import Duplicate, Shard, Target, read_targets
from tests.helpers import SwitchableSite, raw_server
from tests.test_cli import checker, one_error_line

pytestmark = pytest.mark.timeout(60)


def test_every_line_falls_in_exactly_one_shard(tmp_path: Path) -> None:
    lines = [f"https://host{i}.example/p{j}" for i in range(50) for j in range(3)]
    lines += ["not a url", "https://host7.example/p0", "ftp://x.example/path"]
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(lines) + "\n")
    whole = list(read_targets([str(path)]))
    parts = [list(read_targets([str(path)], shard=Shard(k, 4))) for k in range(1, 5)]

    def where(items: list[Target | Duplicate]) -> list[tuple[str, int]]:
        return sorted((type(i).__name__, i.line) for i in items)

    assert sorted(item for part in parts for item in where(part)) == where(whole)
    assert all(len(p) > 10 for p in parts)  # the hash spreads them
    invalid = [i.line for i in parts[0] if isinstance(i, Target) and i.url is None]
    assert invalid == [151, 153]  # in shard 1 only
    # A host's URLs stay together, whatever else is in the list.
    for part in parts:
        hosts = {i.url.host for i in part if isinstance(i, Target) and i.url is not None}
        assert all(Shard(parts.index(part) + 1, 4).has(h) for h in hosts)


def test_shard_syntax() -> None:
    assert str(Shard.parse("2/8")) == "2/8"
    for bad in ("0/8", "9/8", "2", "a/b", "2/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


async def test_shards_together_are_the_unsharded_run(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        # Distinct host names for 127.0.0.1: the hash is on the host.
        lines = [f"http://127.0.0.{i}:{port}/x" for i in range(1, 25)] + ["bad line here"]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        rows: dict[str, list[tuple[str, int, object]]] = {}
        for name, extra in [("all", []), ("s1", ["--shard", "1/3"])] + [
            (f"s{k}", ["--shard", f"{k}/3"]) for k in (2, 3)
        ]:
            code, out, err = await checker(
                "check", "urls.txt", "--out", name, "--retries", "0", *extra, cwd=tmp_path
            )
            assert code in (0, 1), err
            report = json.loads((tmp_path / name / "latest.json").read_text())
            assert report["run"]["shard"] == (None if name == "all" else f"{name[1]}/3")
            if name != "all":
                assert out.startswith(f"shard {name[1]}/3: checked ")
            rows[name] = [(r["url"], r["line"], r["state"]) for r in report["results"]]
    merged = sorted(rows["s1"] + rows["s2"] + rows["s3"], key=lambda r: r[1])
    assert merged == rows["all"]

    # checker merge: one report, the same rows as the unsharded run.
    shards = [f"s{k}/latest.json" for k in (1, 2, 3)]
    code, out, err = await checker("merge", "merged", *shards, cwd=tmp_path)
    assert code == 1, err  # the bad line: an invalid line is exit 1, as for a run
    assert out.startswith("merged from 3 shards: checked ")
    report = json.loads((tmp_path / "merged" / "latest.json").read_text())
    assert [(r["url"], r["line"], r["state"]) for r in report["results"]] == rows["all"]
    assert report["run"]["merged"] == ["1/3", "2/3", "3/3"] and not report["run"]["interrupted"]
    assert (tmp_path / "merged" / "history.sqlite3").exists()
    assert not list((tmp_path / "merged").glob("*.journal.jsonl"))

    # A shard missing: refused, unless --partial, which reports its lines as not checked.
    code, _, err = await checker("merge", "merged2", *shards[:2], cwd=tmp_path)
    assert code == 2 and "shard 3/3 missing" in one_error_line(err)
    assert not (tmp_path / "merged2" / "latest.json").exists()
    code, out, err = await checker("merge", "merged2", "--partial", *shards[:2], cwd=tmp_path)
    assert code == 1, err
    assert err == "checker: no report of shard 3/3: its lines are reported as not checked\n"
    assert "not checked, see the notes above" in out
    partial = json.loads((tmp_path / "merged2" / "latest.json").read_text())
    assert [r["line"] for r in partial["results"]] == [r[1] for r in rows["all"]]
    skipped = [r for r in partial["results"] if r["error"] == "interrupted"]
    assert skipped and all("shard 3/3" in r["error_detail"] for r in skipped)
    assert partial["run"]["interrupted"] is True
    # The first shard missing: its invalid line is still invalid, and a merge
    # with rows not checked is no all-clear.
    code, _, err = await checker("merge", "merged4", "--partial", *shards[1:], cwd=tmp_path)
    assert code == 1, err
    rows4 = json.loads((tmp_path / "merged4" / "latest.json").read_text())["results"]
    assert [r["error"] for r in rows4 if r["line"] == len(lines)] == ["invalid_url"]
    # Not shards of one list: refused.
    code, _, err = await checker("merge", "merged3", "all/latest.json", cwd=tmp_path)
    assert code == 2 and "not a shard's report" in one_error_line(err)
    code, _, err = await checker("merge", "merged3", shards[0], shards[0], cwd=tmp_path)
    assert code == 2 and "given twice" in one_error_line(err)


async def test_a_bad_shard_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    code, _, err = await checker("check", "urls.txt", "--shard", "5/4", cwd=tmp_path)
    assert code == 2 and "1 <= K <= N" in one_error_line(err)


async def test_merge_alerts_once_and_never_merges_a_shard_run_twice(tmp_path: Path) -> None:
    # Shards made by hand (as cron on two machines would), merged by a third:
    # the merged runs alert on a change, once; a shard report merged already
    # (its machine has not run since) is refused, or "not checked" with
    # --partial, never counted twice (it would confirm --alert-after alone).
    from tests.test_notify import WebhookSink

    site, hook = SwitchableSite(), WebhookSink()
    async with raw_server(site) as port, raw_server(hook) as hook_port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        assert Shard(1, 2).has("localhost") != Shard(1, 2).has("127.0.0.1")
        alert = ("--notify-webhook", f"http://127.0.0.1:{hook_port}/hook")
        shards = [f"s{k}/latest.json" for k in (1, 2)]

        async def run_shards() -> None:
            for k in (1, 2):
                args = ("check", "urls.txt", "--shard", f"{k}/2", "--out", f"s{k}", "-q")
                code, _, err = await checker(*args, "--retries", "0", cwd=tmp_path)
                assert code in (0, 1), err

        await run_shards()
        code, _, err = await checker("merge", "m", *shards, *alert, cwd=tmp_path)
        assert code == 0 and hook.requests == [], err  # the baseline
        site.status = b"503 Service Unavailable"
        await run_shards()
        code, out, err = await checker("merge", "m", *shards, *alert, cwd=tmp_path)
        assert code == 1, err
        assert len(hook.requests) == 1
        changes = json.loads(hook.requests[0][1])["changes"]
        assert sorted(c["url"] for c in changes) == sorted(lines)
        assert "2 changes since the last run:" in out

        # The same reports again: nothing new.
        code, _, err = await checker("merge", "m", *shards, *alert, cwd=tmp_path)
        assert code == 2 and "merged already" in one_error_line(err)
        code, _, err = await checker("merge", "m", "--partial", *shards, *alert, cwd=tmp_path)
        assert code == 2 and "nothing new to merge" in one_error_line(err)
        # One shard ran again: with --partial the other's lines are not checked.
        args = ("check", "urls.txt", "--shard", "1/2", "--out", "s1", "-q", "--retries", "0")
        await checker(*args, cwd=tmp_path)
        code, _, err = await checker("merge", "m", "--partial", *shards, *alert, cwd=tmp_path)
        assert code == 1, err
        assert "merged already" in err
        report = json.loads((tmp_path / "m" / "latest.json").read_text())
        skipped = [r for r in report["results"] if r["error"] == "interrupted"]
        assert len(skipped) == 1 and "merged already" in skipped[0]["error_detail"]
    assert len(hook.requests) == 1  # a partial run alerts nothing


async def test_merge_max_age_takes_an_old_shard_report_for_a_missing_one(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        for k in (1, 2):
            args = ("check", "urls.txt", "--shard", f"{k}/2", "--out", f"s{k}", "-q")
            code, _, err = await checker(*args, cwd=tmp_path)
            assert code == 0, err
    shards = ["s1/latest.json", "s2/latest.json"]
    code, _, err = await checker("merge", "m", "--max-age", "1h", *shards, cwd=tmp_path)
    assert code == 0, err
    await asyncio.sleep(1.1)
    code, _, err = await checker("merge", "m2", "--max-age", "1s", *shards, cwd=tmp_path)
    assert code == 2 and "older than --max-age: s1/latest.json started at " in one_error_line(err)
    assert not (tmp_path / "m2").exists()  # a refused merge leaves no folder
    for bad in ("1", "soon", "0s"):
        code, _, err = await checker("merge", "m2", "--max-age", bad, *shards, cwd=tmp_path)
        assert code == 2 and "--max-age" in one_error_line(err)


def test_a_rows_place_is_read_without_decoding_it(tmp_path: Path) -> None:
    # The merge orders rows by (list, line), read from the start of each
    # row's JSON; names with quotes, backslashes and non-ASCII included, and
    # a row of another layout decoded whole.
    from checker.reports.merge import _rows

    sources = ['lists/a "b".txt', "c:\\d\\e.txt", "ünï.txt", "plain.txt"]
    lines = [
        json.dumps(
            {"url": f'http://h{i}.example/"q"', "source": s, "line": 10 + i, "ok": True},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for i, s in enumerate(sources)
    ]
    # Another layout (spaces after the separators): decoded whole.
    lines.append(json.dumps({"url": "x", "source": "plain.txt", "line": 99, "ok": False}))
    report = tmp_path / "r.json"
    report.write_text('{"run":{},\n"results":[\n' + ",\n".join(lines) + "\n]}\n")
    order = {s: i for i, s in enumerate(sources)}
    for trusted in (True, False):
        got = [(k[0], k[1]) for k in _rows(str(report), order, trusted)]
        assert got == [(0, 10), (1, 11), (2, 12), (3, 13), (3, 99)]


async def shard_reports(tmp_path: Path, lines: list[str], n: int, *extra: str) -> list[str]:
    """Each shard of urls.txt checked into s<K>; their latest.json paths."""
    (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
    for k in range(1, n + 1):
        args = ("check", "urls.txt", "--shard", f"{k}/{n}", "--out", f"s{k}", "-q", *extra)
        code, _, err = await checker(*args, cwd=tmp_path)
        assert code in (0, 1), err
    return [f"s{k}/latest.json" for k in range(1, n + 1)]


async def test_a_damaged_shard_report_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/{i}" for i in range(30)]
        lines += [f"http://127.0.0.1:{port}/{i}" for i in range(30)]
        shards = await shard_reports(tmp_path, lines, 2)
        cut = tmp_path / "cut.json"
        data = (tmp_path / shards[0]).read_bytes()
        cut.write_bytes(data[: len(data) * 2 // 3])  # a copy cut short
        bad = tmp_path / "bad.json"
        bad.write_bytes(re.sub(rb'"line":\d+,', b'"line":"abc",', data, count=1))
        # Damage found only by reading the whole row: broken JSON in its
        # middle, a field of the wrong type, a row that is not an object.
        broken = tmp_path / "broken.json"
        broken.write_bytes(re.sub(rb'"ok":true,', b'"ok":tru,', data, count=1))
        typed = tmp_path / "typed.json"
        typed.write_bytes(re.sub(rb'"total_ms":[0-9.]+', b'"total_ms":"fast"', data, count=1))
        states = tmp_path / "states.json"
        states.write_bytes(re.sub(rb'"state":"up"', b'"state":7', data, count=1))
        # A row taken out, the rest valid JSON (found by a review: merged,
        # its line in no row, the header's totals those of the shard).
        lines_of = data.split(b"\n")
        row = next(i for i, line in enumerate(lines_of) if line.startswith(b'{"url"'))
        dropped = tmp_path / "dropped.json"
        dropped.write_bytes(b"\n".join(lines_of[:row] + lines_of[row + 1 :]))
        for damaged in (
            "cut.json",
            "bad.json",
            "broken.json",
            "typed.json",
            "states.json",
            "dropped.json",
        ):
            code, _, err = await checker("merge", "m", damaged, shards[1], cwd=tmp_path)
            assert code == 2, err
            assert damaged in one_error_line(err)
            assert not (tmp_path / "m").exists()  # nothing written, not even the folder
        # The folder still works: the next merge, and a run in it.
        code, _, err = await checker("merge", "m", *shards, cwd=tmp_path)
        assert code == 0, err
        # Refused into a folder with history (new shard runs, one damaged):
        # its database is not touched.
        shards = await shard_reports(tmp_path, lines, 2)
        data = (tmp_path / shards[0]).read_bytes()
        typed.write_bytes(re.sub(rb'"total_ms":[0-9.]+', b'"total_ms":"fast"', data, count=1))
        history = sqlite3.connect(tmp_path / "m" / "history.sqlite3")
        runs = history.execute("SELECT count(*) FROM runs").fetchone()
        code, _, err = await checker("merge", "m", "typed.json", shards[1], cwd=tmp_path)
        assert code == 2 and "total_ms is not a number" in one_error_line(err)
        assert history.execute("SELECT count(*) FROM runs").fetchone() == runs
        history.close()
        code, _, err = await checker("check", "urls.txt", "--out", "m", "-q", cwd=tmp_path)
        assert code == 0 and err == "", err


async def test_merged_already_holds_across_a_partial_merge_in_between(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        shards = await shard_reports(tmp_path, lines, 2)
        code, _, err = await checker("merge", "m", *shards, "-q", cwd=tmp_path)
        assert code == 0, err
        await checker("check", "urls.txt", "--shard", "2/2", "--out", "s2", "-q", cwd=tmp_path)
        code, _, err = await checker("merge", "m", "--partial", *shards, "-q", cwd=tmp_path)
        assert code == 1 and "merged already" in err, err
        await checker("check", "urls.txt", "--shard", "2/2", "--out", "s2", "-q", cwd=tmp_path)
        # Shard 1's report is still the one the first merge took.
        code, _, err = await checker("merge", "m", *shards, cwd=tmp_path)
    assert code == 2 and "merged already" in one_error_line(err)


async def test_merge_refuses_its_own_shard_folder_and_other_list_formats(
    tmp_path: Path,
) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        shards = await shard_reports(tmp_path, lines, 2)
        code, _, err = await checker("merge", "s1", *shards, cwd=tmp_path)
        assert code == 2 and "a shard's own folder" in one_error_line(err)
        args = ("check", "urls.txt", "--shard", "2/2", "--out", "p2", "-q")
        await checker(*args, "--list-format", "plain", cwd=tmp_path)
        code, _, err = await checker("merge", "m", shards[0], "p2/latest.json", cwd=tmp_path)
        assert code == 2 and "--list-format plain" in one_error_line(err)
        # Other check options: merged, and said.
        await checker(*args, "--timeout", "7", cwd=tmp_path)
        code, _, err = await checker("merge", "m", shards[0], "p2/latest.json", cwd=tmp_path)
    assert code == 0, err
    assert "timeout" in err and "Traceback" not in err
    report = json.loads((tmp_path / "m" / "latest.json").read_text())
    assert report["run"]["options"]["shard"] is None


async def test_a_shard_sends_no_alert_whatever_the_environment_says(tmp_path: Path) -> None:
    from tests.test_notify import WebhookSink

    site, hook = SwitchableSite(), WebhookSink()
    async with raw_server(site) as port, raw_server(hook) as hook_port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        env = {"CHECKER_NOTIFY_WEBHOOK": f"http://127.0.0.1:{hook_port}/hook"}
        await shard_reports(tmp_path, lines, 2)
        site.status = b"503 Service Unavailable"
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        for k in (1, 2):
            args = ("check", "urls.txt", "--shard", f"{k}/2", "--out", f"s{k}", "-q")
            code, _, err = await checker(*args, "--retries", "0", cwd=tmp_path, env=env)
            assert code == 1 and err == "", err
        # Asked for on the command line: still none, and said.
        again = ("check", "urls.txt", "--shard", "1/2", "--out", "s1", "-q", "--retries", "0")
        hook_url = f"http://127.0.0.1:{hook_port}/hook"
        code, _, err = await checker(*again, "--notify-webhook", hook_url, cwd=tmp_path)
        assert code == 1
        assert err == "checker: --shard: a shard sends no alerts; its merge does (checker merge)\n"
    assert hook.requests == []
    assert not (tmp_path / "s1" / "history.sqlite3").exists()  # the merge's to keep


def grown(report: Path, rows: int) -> None:
    """`report` (a shard's, of a 2-line list) made `rows` rows long: its one
    row again and again, on lines of the same parity, as if its list were
    long; its header's totals to match."""
    from checker.reports.recover import read_report_header
    from checker.store.index import report_rows

    head, _ = read_report_header(str(report))
    row = json.loads(next(line for _, line in report_rows(str(report))))
    head.update(total=rows, up=rows, down=0, degraded=0, not_checked=0, invalid=0)
    body = ",\n".join(
        json.dumps({**row, "line": row["line"] + 2 * i}, separators=(",", ":")) for i in range(rows)
    )
    text = '{"run":' + json.dumps(head) + ',\n"changes":[],\n"results":[\n' + body + "\n]}\n"
    report.write_text(text)


async def test_ctrl_c_during_a_merge_waits_for_it(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        shards = await shard_reports(tmp_path, lines, 2)
    for shard in shards:
        # (A merge of 20,000 rows takes 2.6 s here: the signal comes as the
        # merged journal appears, so the merge is under way and not near its end.)
        grown(tmp_path / shard, 10_000)
    merging = tmp_path / "m"  # (the merged journal: the merge has its handlers)
    code, _, err = await checker(
        "merge", "m", *shards, cwd=tmp_path, stop_when=lambda: any(merging.glob("*.journal.jsonl"))
    )
    assert "stopped while merging: the merge was finished first" in err, err
    assert code == 0 and "Traceback" not in err
    report = json.loads((tmp_path / "m" / "latest.json").read_text())
    assert len(report["results"]) == 20_000 and report["run"]["interrupted"] is False
    assert [r["line"] for r in report["results"][:4]] == [1, 2, 3, 4]
    assert not list((tmp_path / "m").glob("*.journal.jsonl"))


async def test_a_merge_killed_as_it_writes_its_reports_leaves_no_hidden_file(
    tmp_path: Path,
) -> None:
    # A merge is written whole or not at all; SIGKILL as it writes leaves its
    # hidden spools, which the next merge into the folder removes.
    import signal

    from tests.killed_child import hidden_reports, killed_writing_reports

    async with raw_server(SwitchableSite()) as port:
        lines = [f"http://localhost:{port}/a", f"http://127.0.0.1:{port}/b"]
        shards = await shard_reports(tmp_path, lines, 2)
    code, err = await killed_writing_reports(tmp_path, "merge", "m", *shards, "-q")
    assert code == -signal.SIGKILL, err
    left = hidden_reports(tmp_path / "m")
    assert [name.split(".")[2] for name in left] == ["csv", "html", "json"], left
    code, _, err = await checker("merge", "m", *shards, "-q", cwd=tmp_path)
    assert code == 0, err  # the killed merge took nothing: its reports are merged now
    assert hidden_reports(tmp_path / "m") == []
