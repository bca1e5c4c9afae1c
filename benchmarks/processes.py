"""Shards on one machine: `check --processes N`, GNU parallel + `merge`, the merge's memory.

    python3 benchmarks/processes.py [--quick] [--repeats N] [--no-memory]

Reuses run.py's setup (benchmarks/.venv, its own nginx on loopback ports, the
sysctls) and its measurement (os.wait4 of each child: wall, the CPU of the
whole process tree, peak RSS; nginx's CPU from /proc). Every run writes the
default formats (csv,json,html + the history database) into a fresh --out
folder, and is checked: exit code, run header, and every row of the merged
report. Prints Markdown tables, also written to benchmarks/RESULTS-processes.md
(RESULTS-processes-quick.md with --quick). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import run
from run import BENCH, CHECKER_BIN, Server, log

RESULTS = BENCH / "RESULTS-processes.md"
RESULTS_QUICK = BENCH / "RESULTS-processes-quick.md"
PARALLEL = shutil.which("parallel")
# Targets (the verdicts are computed from the runs, never written in).
SPEEDUP_TARGET = 1.6  # --processes 2 checks/s over --processes 1, distinct hosts
MERGE_RSS_TARGET_KIB = 65_536  # 64 MiB: the merge of 4 shards of 1,000,000 URLs
MERGE_SHARE_TARGET = 0.25  # "well under the checks' time": merge wall <= 1/4 of the shards'
ONE_HOST_URLS = 30_000
DISTINCT_URLS = 10_000  # run.distinct_host() has 10,000 addresses
MEMORY_URLS = 1_000_000
MEMORY_SHARDS = 4
PARALLEL_SHARDS = 2
PARALLEL_NAME = f"GNU parallel {PARALLEL_SHARDS} shards + merge"


# --------------------------------------------------------------------------- processes


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root`, from /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


_kill_group = run._kill_current_child


def _kill_current_tree() -> None:
    """run.py's kill of the measured child's process group, plus its descendants by pid.

    GNU parallel starts each job in a process group of its own, which a kill of
    parallel's group does not reach: its jobs (and their checker) are found
    from /proc before the group is killed, and killed by their own pids.
    """
    tree = [pid for root in run._current_child for pid in _descendants(root)]
    _kill_group()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- reports


def check_report(path: Path, urls: int, rows: bool) -> tuple[dict[str, object], str | None]:
    """The run header of a JSON report and what is wrong with it, if anything.

    With `rows`, every result line is read too (one per line, see json_report):
    there must be `urls` of them, lines 1..urls in list order, every one ok.
    """
    if not path.exists():
        return {}, f"no {path.name}"
    header = run.read_run_header(path)
    problems = []
    counts = {k: header.get(k) for k in ("total", "up", "down", "not_checked", "invalid")}
    if (header.get("total"), header.get("up")) != (urls, urls) or header.get("interrupted"):
        shown = ", ".join(f"{k}={v}" for k, v in counts.items())
        problems.append(f"run header {shown}, interrupted={header.get('interrupted')}")
    if rows:
        seen = 0
        not_ok = 0
        out_of_order: list[int] = []
        lines: set[int] = set()
        with path.open("rb") as f:
            for raw in f:
                if raw.rstrip().endswith(b'"results":['):
                    break
            for raw in f:
                text = raw.strip().rstrip(b",")
                if not text.startswith(b"{"):
                    continue  # the closing ]}
                row = json.loads(text)
                seen += 1
                line = row.get("line")
                lines.add(line)
                if line != seen and len(out_of_order) < 3:
                    out_of_order.append(line)
                if not row.get("ok"):
                    not_ok += 1
        missing = urls - len(lines & set(range(1, urls + 1)))
        if seen != urls or missing:
            problems.append(f"{seen:,} result rows for {urls:,} URLs, {missing:,} lines missing")
        if out_of_order:
            problems.append(f"rows out of list order (lines {out_of_order} among the first)")
        if not_ok:
            problems.append(f"{not_ok:,} rows not ok")
    return header, "; ".join(problems) or None


def check_folder(out: Path, formats: tuple[str, ...]) -> str | None:
    """What the report folder lacks of what a user gets (latest.<format>, the database)."""
    wanted = [f"latest.{fmt}" for fmt in formats] + ["history.sqlite3"]
    missing = [name for name in wanted if not (out / name).exists()]
    leftover = out / ".shards"
    if leftover.exists() and any(leftover.iterdir()):
        missing.append(".shards/ not removed")
    return ", ".join(missing) or None


# --------------------------------------------------------------------------- runs


@dataclass
class Outcome:
    """One run of one contender (GNU parallel's: its shards and its merge together)."""

    wall: float
    cpu: float
    rss_kib: float
    nginx_s: float
    other_share: float
    shards_wall: float | None = None
    merge_wall: float | None = None
    rows_per_shard: list[object] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def of(cls, result: run.RunResult) -> Outcome:
        """The figures of one measured command (run.py's RunResult)."""
        return cls(
            result.wall,
            result.cpu,
            result.rss_mib * 1024,
            result.server_share * result.wall,
            result.other_share,
        )


def _measure(
    cmd: list[str], step_dir: Path, server: Server, limit: float
) -> tuple[run.RunResult, int, str]:
    """run.measure in a folder of its own; also the child's stderr."""
    step_dir.mkdir()
    try:
        result, code = run.measure(cmd, step_dir, server, limit)
    except OSError as exc:
        return run.RunResult(0, 0, 0, 0, 0, 0, f"could not start: {exc}"), -1, ""
    stderr = (step_dir / "stderr").read_text(errors="replace").strip()
    return result, code, stderr


def _fail(result: run.RunResult, code: int, stderr: str, cmd: list[str], why: str) -> str:
    text = f"exit {code}" + (f", {result.error}" if result.error else "") + f", {why}"
    if stderr:
        text += f"; stderr: {stderr[-400:]!r}"
    return text + f"; command: {shlex.join(cmd)}"


def run_processes(
    processes: str, list_file: Path, urls: int, run_dir: Path, server: Server, limit: float
) -> Outcome:
    out = run_dir / "reports"
    cmd = [str(CHECKER_BIN), "check", str(list_file), "--out", str(out), "-q"]
    cmd += ["--processes", processes]
    result, code, stderr = _measure(cmd, run_dir / "check", server, limit)
    outcome = Outcome.of(result)
    problems = [p for p in (result.error,) if p]
    if code != 0:
        problems.append(f"exit code {code} (0 expected: every URL is up)")
    if result.error is None:
        _, wrong = check_report(out / "latest.json", urls, rows=True)
        problems += [p for p in (wrong, check_folder(out, ("csv", "json", "html"))) if p]
    elif stderr:
        problems.append(f"stderr: {stderr[-400:]!r}")
    if stderr and not problems:
        problems.append(f"stderr not empty under -q: {stderr[-400:]!r}")
    if problems:
        outcome.error = _fail(result, code, stderr, cmd, "; ".join(problems))
    return outcome


def run_parallel(
    list_file: Path, urls: int, run_dir: Path, server: Server, limit: float
) -> Outcome:
    """The README's recipe: GNU parallel runs the shards, then `checker merge`."""
    shards, out = run_dir / "shards", run_dir / "reports"
    checker, lst, folder = (shlex.quote(str(p)) for p in (CHECKER_BIN, list_file, shards))
    job = (
        f"{checker} check {lst} --shard {{}}/{PARALLEL_SHARDS} --out {folder}/{{}} -q; [ $? -le 1 ]"
    )
    keys = [str(k) for k in range(1, PARALLEL_SHARDS + 1)]
    cmd = [str(PARALLEL), "--will-cite", job, ":::", *keys]
    first, code, stderr = _measure(cmd, run_dir / "step-shards", server, limit)
    outcome = Outcome.of(first)
    outcome.shards_wall = first.wall
    problems: list[str] = []
    for key in keys:
        header, _ = check_report(shards / key / "latest.json", urls, rows=False)
        outcome.rows_per_shard.append(header.get("total", "no report"))
    if first.error or code != 0:
        outcome.error = _fail(first, code, stderr, cmd, "the shards failed")
        return outcome
    reports = sorted(str(p) for p in shards.glob("*/latest.json"))
    merge = [str(CHECKER_BIN), "merge", str(out), *reports, "-q"]
    second, code, stderr = _measure(merge, run_dir / "step-merge", server, limit)
    outcome.merge_wall = second.wall
    outcome.wall += second.wall
    outcome.cpu += second.cpu
    outcome.rss_kib = max(outcome.rss_kib, second.rss_mib * 1024)
    outcome.nginx_s += second.server_share * second.wall
    outcome.other_share = (
        first.other_share * first.wall + second.other_share * second.wall
    ) / outcome.wall
    if second.error is None:
        _, wrong = check_report(out / "latest.json", urls, rows=True)
        problems += [p for p in (wrong, check_folder(out, ("csv", "json", "html"))) if p]
    if second.error or code != 0 or problems:
        why = "; ".join(["the merge failed", *problems])
        outcome.error = _fail(second, code, stderr, merge, why)
    return outcome


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    urls: int
    endpoint: str  # run.py's: http (127.0.0.1) or hosts (127.1.x.y)
    results: dict[str, list[Outcome]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


Runner = Callable[[Path, int, Path, Server, float], Outcome]


def contenders(auto: int) -> dict[str, Runner]:
    def processes(n: str) -> Runner:
        return lambda lst, urls, d, server, limit: run_processes(n, lst, urls, d, server, limit)

    found: dict[str, Runner] = {
        "--processes 1": processes("1"),
        "--processes 2": processes("2"),
        f"--processes auto (= {auto})": processes("auto"),
    }
    if PARALLEL:
        found[PARALLEL_NAME] = run_parallel
    return found


def write_list(path: Path, urls: int, make: Callable[[int], str]) -> None:
    with path.open("w") as f:
        for i in range(urls):
            f.write(make(i) + "\n")


def run_scenario(
    scenario: Scenario, runners: dict[str, Runner], server: Server, work: Path, repeats: int
) -> None:
    list_file = work / f"urls-{scenario.key}.txt"
    write_list(list_file, scenario.urls, run.url_maker(scenario.endpoint, server))
    limit = 60 + scenario.urls / 250  # run.py's time limit per run
    scenario.results = {name: [] for name in runners}
    try:
        for repeat in range(repeats):
            for name, runner in runners.items():  # interleaved: A B C D A B C D ...
                waited = run.wait_for_time_wait()
                if waited > 1:
                    scenario.notes.append(f"waited {waited:.0f} s for TIME_WAIT before {name}")
                time.sleep(0.5)  # let nginx finish closing the previous run's connections
                waited = run.wait_for_quiet()
                if waited > 2:
                    log(f"  waited {waited:.0f} s for other processes to go quiet")
                run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
                outcome = runner(list_file, scenario.urls, run_dir, server, limit)
                scenario.results[name].append(outcome)
                split = ""
                if outcome.shards_wall is not None:
                    merge = "—" if outcome.merge_wall is None else f"{outcome.merge_wall:.2f}"
                    split = f" (shards {outcome.shards_wall:.2f} + merge {merge})"
                log(
                    f"  [{scenario.key}] {repeat + 1}/{repeats} {name:34} {outcome.wall:7.2f} s"
                    f"{split} cpu {outcome.cpu:6.2f} s nginx {outcome.nginx_s:5.2f} s"
                    f" other {outcome.other_share:4.0%}"
                    f"  {'ok' if outcome.error is None else 'FAILED: ' + outcome.error}"
                )
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        list_file.unlink(missing_ok=True)


def good(runs: list[Outcome]) -> list[Outcome]:
    return [r for r in runs if r.error is None]


def speedup(runs: list[Outcome], base: list[Outcome]) -> float | None:
    """Median over rounds of checks/s over the base's in the same round (both good)."""
    ratios = [
        b.wall / a.wall
        for a, b in zip(runs, base, strict=False)
        if a.error is None and b.error is None
    ]
    return statistics.median(ratios) if ratios else None


def scenario_table(scenario: Scenario) -> list[str]:
    lines = [f"### {scenario.title}", ""]
    lines += [
        f"{scenario.urls:,} URLs; `checker check LIST --out <fresh dir> -q` with checker's"
        " defaults otherwise (HEAD, concurrency 100 shared out between the processes,"
        " per-host 6, retries 2; reports csv,json,html + history database).",
        "",
    ]
    if scenario.skipped:
        return [*lines, f"**Skipped:** {scenario.skipped}", ""]
    head = ["contender", "runs ok", "wall s", "checks/s", "checker CPU s", "nginx CPU s"]
    head += ["peak RSS MiB", "other CPU", "checks/s vs --processes 1", "shards s", "merge s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = scenario.results.get("--processes 1", [])
    failures = []
    for name, runs in scenario.results.items():
        ok = good(runs)
        cells = [name, f"{len(ok)}/{len(runs)}"]
        if not ok:
            cells += ["FAILED"] + [""] * (len(head) - 3)
        else:
            wall = statistics.median(r.wall for r in ok)
            ratio = speedup(runs, base)
            shards = [r.shards_wall for r in ok if r.shards_wall is not None]
            merges = [r.merge_wall for r in ok if r.merge_wall is not None]
            cells += [
                f"{wall:.2f}",
                f"{scenario.urls / wall:,.0f}",
                f"{statistics.median(r.cpu for r in ok):.2f}",
                f"{statistics.median(r.nginx_s for r in ok):.2f}",
                f"{statistics.median(r.rss_kib for r in ok) / 1024:.1f}",
                f"{statistics.median(r.other_share for r in ok):.0%}",
                "—" if ratio is None else f"{ratio:.2f}x",
                f"{statistics.median(shards):.2f}" if shards else "—",
                f"{statistics.median(merges):.2f}" if merges else "—",
            ]
        lines.append("| " + " | ".join(cells) + " |")
        failures += [
            f"- {name}, round {i + 1}: FAILED: {r.error}"
            for i, r in enumerate(runs)
            if r.error is not None
        ]
    lines.append("")
    if failures:
        lines += ["Failed runs (left out of the figures):", "", *failures, ""]
    split = {
        " + ".join(f"{n:,}" if isinstance(n, int) else str(n) for n in r.rows_per_shard)
        for runs in scenario.results.values()
        for r in runs
        if r.rows_per_shard
    }
    if split:
        scenario.notes.append(
            f"rows per shard (GNU parallel's `--shard K/{PARALLEL_SHARDS}` reports): "
            + ", ".join(sorted(split))
        )
    busiest = max(
        (r.other_share for runs in scenario.results.values() for r in good(runs)), default=0
    )
    if busiest > 0.25:
        scenario.notes.append(
            f"other processes on the machine used up to {busiest:.0%} of a core during"
            " some runs (other CPU): those runs may be slower than checker is"
        )
    return lines + [f"- {note}" for note in dict.fromkeys(scenario.notes)] + [""]


# --------------------------------------------------------------------------- memory


@dataclass
class MemoryStep:
    name: str
    rows: object
    code: int
    wall: float
    cpu: float
    rss_kib: float
    error: str | None


def run_memory(server: Server, work: Path) -> tuple[list[MemoryStep], MemoryStep | None]:
    """MEMORY_URLS over run.py's 10,000 distinct hosts (100 URLs each, so that
    every shard has its share) as MEMORY_SHARDS shards, one after another,
    then the merge."""
    folder = Path(tempfile.mkdtemp(prefix="memory-", dir=work))
    list_file = folder / "urls.txt"
    port = server.ports["hosts"]
    write_list(
        list_file, MEMORY_URLS, lambda i: f"http://{run.distinct_host(i % 10_000)}:{port}/p/{i}"
    )
    limit = 60 + MEMORY_URLS / 250
    steps: list[MemoryStep] = []
    try:
        for k in range(1, MEMORY_SHARDS + 1):
            run.wait_for_time_wait()
            time.sleep(0.5)
            run.wait_for_quiet()
            out = folder / f"s{k}"
            cmd = [str(CHECKER_BIN), "check", str(list_file), "--shard", f"{k}/{MEMORY_SHARDS}"]
            cmd += ["--format", "json", "--out", str(out), "-q"]
            result, code, stderr = _measure(cmd, folder / f"step-{k}", server, limit)
            header, _ = check_report(out / "latest.json", MEMORY_URLS, rows=False)
            rows = header.get("total", "no report")
            problems = [p for p in (result.error,) if p]
            if code != 0:
                problems.append(f"exit code {code}")
            if not header:
                problems.append("no latest.json")
            elif header.get("up") != rows:
                problems.append(f"up={header.get('up')} of total={rows}")
            if stderr:
                problems.append(f"stderr: {stderr[-400:]!r}")
            error = "; ".join(problems) + f"; command: {shlex.join(cmd)}" if problems else None
            step = MemoryStep(
                f"shard {k}/{MEMORY_SHARDS}",
                rows,
                code,
                result.wall,
                result.cpu,
                result.rss_mib * 1024,
                error,
            )
            steps.append(step)
            log(
                f"  [memory] {step.name}: {rows} rows, exit {code}, {step.wall:.2f} s,"
                f" cpu {step.cpu:.2f} s, peak RSS {step.rss_kib:,.0f} KiB"
                f"  {'ok' if error is None else 'FAILED: ' + error}"
            )
        if any(s.error for s in steps):
            return steps, None
        run.wait_for_quiet()
        out = folder / "merged"
        reports = [str(folder / f"s{k}" / "latest.json") for k in range(1, MEMORY_SHARDS + 1)]
        cmd = [str(CHECKER_BIN), "merge", str(out), *reports, "-q"]
        result, code, stderr = _measure(cmd, folder / "step-merge", server, limit)
        log(f"  [memory] merge: exit {code}, {result.wall:.2f} s; reading its {MEMORY_URLS:,} rows")
        header, wrong = check_report(out / "latest.json", MEMORY_URLS, rows=True)
        problems = [
            p for p in (result.error, wrong, check_folder(out, ("csv", "json", "html"))) if p
        ]
        if code != 0:
            problems.append(f"exit code {code}")
        if stderr:
            problems.append(f"stderr: {stderr[-400:]!r}")
        error = "; ".join(problems) + f"; command: {shlex.join(cmd)}" if problems else None
        merge = MemoryStep(
            f"merge of the {MEMORY_SHARDS} (csv,json,html + history)",
            header.get("total", "no report"),
            code,
            result.wall,
            result.cpu,
            result.rss_mib * 1024,
            error,
        )
        log(
            f"  [memory] merge: peak RSS {merge.rss_kib:,.0f} KiB"
            f"  {'ok' if error is None else 'FAILED: ' + error}"
        )
        return steps, merge
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def memory_table(steps: list[MemoryStep], merge: MemoryStep | None) -> list[str]:
    lines = [
        f"### Memory: {MEMORY_URLS:,} URLs on 10,000 hosts, {MEMORY_SHARDS} shards, then `merge`",
        "",
        f"`checker check LIST --shard K/{MEMORY_SHARDS} --format json --out sK -q`, K = 1 to"
        f" {MEMORY_SHARDS} one after another, then `checker merge OUT s*/latest.json -q`"
        " (default formats csv,json,html + history database). One run each.",
        "",
        "| step | rows | exit | wall s | CPU s | peak RSS KiB |",
        "|---|---|---|---|---|---|",
    ]
    for s in [*steps, *([merge] if merge else [])]:
        rows = f"{s.rows:,}" if isinstance(s.rows, int) else str(s.rows)
        cells = [s.name, rows, str(s.code), f"{s.wall:.2f}", f"{s.cpu:.2f}", f"{s.rss_kib:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if steps:
        total = sum(s.wall for s in steps)
        rows = sum(s.rows for s in steps if isinstance(s.rows, int))
        cells = [
            "shards, in all",
            f"{rows:,}",
            "",
            f"{total:.2f}",
            f"{sum(s.cpu for s in steps):.2f}",
        ]
        lines.append(
            "| " + " | ".join([*cells, f"{max(s.rss_kib for s in steps):,.0f} (largest)"]) + " |"
        )
    lines.append("")
    failed = [
        f"- {s.name}: FAILED: {s.error}" for s in [*steps, *([merge] if merge else [])] if s.error
    ]
    if failed:
        lines += ["Failed steps:", "", *failed, ""]
    if steps and merge is None:
        lines += ["The merge was not run: a shard failed.", ""]
    busy = [s for s in steps if isinstance(s.rows, int) and s.rows > 0]
    if steps and len(busy) < len(steps):
        lines += [
            f"- {len(steps) - len(busy)} of the {len(steps)} shard reports are empty: the"
            " merge took its rows from fewer shards than it was given.",
            "",
        ]
    return lines


# --------------------------------------------------------------------------- verdicts


def verdicts(
    scenarios: dict[str, Scenario],
    memory: tuple[list[MemoryStep], MemoryStep | None] | None,
    quick: bool,
) -> list[str]:
    lines = ["## Targets", ""]
    if quick:
        lines += ["(`--quick` sizes: indicative only, the targets are set at full size.)", ""]

    def verdict(label: str, figure: str | None, target: str, met: bool | None) -> None:
        if figure is None or met is None:
            lines.append(f"- {label}: target {target}: NOT MEASURED")
        else:
            lines.append(f"- {label}: {figure}, target {target}: {'MET' if met else 'NOT MET'}")

    for key, title in (("hosts", "distinct hosts"), ("one", "one host")):
        s = scenarios.get(key)
        ratio = None
        if s and not s.skipped:
            ratio = speedup(s.results["--processes 2"], s.results["--processes 1"])
        label = f"{title}, checks/s of --processes 2 / --processes 1 (paired median)"
        if key == "hosts":
            figure = None if ratio is None else f"{ratio:.2f}x"
            met = None if ratio is None else ratio >= SPEEDUP_TARGET
            verdict(label, figure, f">= {SPEEDUP_TARGET}x", met)
        elif ratio is not None:
            lines.append(f"- {label}: {ratio:.2f}x (no target: one host is one shard)")
    if memory is None:
        lines.append("- merge of 4 shards of 1,000,000 URLs: not run (`--no-memory` or `--quick`)")
    else:
        steps, merge = memory
        ok = merge is not None and merge.error is None
        checks = sum(s.wall for s in steps)
        label = f"merge of {MEMORY_SHARDS} shards of {MEMORY_URLS:,} URLs, peak RSS"
        rss = f"{merge.rss_kib:,.0f} KiB" if ok and merge else None
        target = f"<= {MERGE_RSS_TARGET_KIB:,} KiB (64 MiB)"
        verdict(
            label, rss, target, ok and merge is not None and merge.rss_kib <= MERGE_RSS_TARGET_KIB
        )
        share = merge.wall / checks if ok and merge and checks else None
        figure = (
            None
            if share is None or merge is None
            else f"{merge.wall:.2f} s = {share:.0%} of the shards' {checks:.2f} s"
        )
        target = f"well under the checks' time (here: <= {MERGE_SHARE_TARGET:.0%} of it)"
        verdict(
            "merge wall / the shards' check wall",
            figure,
            target,
            None if share is None else share <= MERGE_SHARE_TARGET,
        )
    return [*lines, ""]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sizes / 10, 1 repeat, no memory part; written to RESULTS-processes-quick.md",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds per scenario (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"the merge of {MEMORY_SHARDS} shards of {MEMORY_URLS:,} URLs (several minutes;"
        " default on, off with --quick)",
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.memory = False
    return args


def main() -> int:
    args = parse_args()
    command, started = run.begin("processes.py")
    # measure()'s time limit and the cleanups kill the child's tree, not only its group.
    run._kill_current_child = _kill_current_tree
    run._cleanups.append(_kill_current_tree)

    setup = [run.ensure_venv(), run.ensure_nginx()]
    if PARALLEL:
        setup.append(f"GNU parallel: {PARALLEL}")
    else:
        setup.append("GNU parallel not installed (`apt-get install parallel`): its rows skipped")
        log("GNU parallel is not installed: its contender is skipped")
    source_at_start = run.checker_source_digest()
    load_at_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    sysctls = run.Sysctls()
    run._cleanups.append(sysctls.restore)
    run.tune_system(sysctls)
    tmp = Path(tempfile.mkdtemp(prefix="checker-processes-"))
    run._cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    scale = 10 if args.quick else 1
    cpus = len(os.sched_getaffinity(0))
    auto = cpus if cpus > 2 else 1  # as checker's own `auto` (cli._processes)
    try:
        server = run.start_nginx(tmp)
        log(f"nginx pid {server.proc.pid if server.proc else '?'}, ports {server.ports}")
        problems = run.sanity_checks(server)
        one, distinct = ONE_HOST_URLS // scale, DISTINCT_URLS // scale
        scenarios = {
            "one": Scenario("one", f"One host: {one:,} URLs on 127.0.0.1", one, "http"),
            "hosts": Scenario(
                "hosts",
                f"Distinct hosts: {distinct:,} URLs, each on its own 127.1.x.y",
                distinct,
                "hosts",
            ),
        }
        runners = contenders(auto)
        for scenario in scenarios.values():
            if scenario.endpoint in problems:
                scenario.skipped = problems[scenario.endpoint]
                log(f"{scenario.title}: skipped: {scenario.skipped}")
                continue
            log(f"{scenario.title} x{args.repeats}")
            run_scenario(scenario, runners, server, tmp, args.repeats)
        memory = None
        if args.memory:
            if "http" in problems:
                log(f"memory part skipped: {problems['http']}")
            else:
                log(f"memory: {MEMORY_URLS:,} URLs as {MEMORY_SHARDS} shards, then the merge")
                memory = run_memory(server, tmp)
        changed = run.checker_source_digest() != source_at_start
        report = [
            "# checker shard benchmark: `--processes`, GNU parallel + `merge`",
            "",
            f"Date: {started:%Y-%m-%d %H:%M} UTC. Command (from the repository root):",
            "",
            f"    {command}",
            "",
            f"Rounds: {args.repeats}, contenders interleaved (A B C D A B C D ...), each run in"
            " a fresh --out folder. Medians of the good runs."
            + (" **Quick mode: sizes / 10, no memory part.**" if args.quick else ""),
            "",
            "## Machine",
            "",
            *run.machine(),
            f"Load average when the benchmark started: {load_at_start}"
            " (the machine may be shared: see `other CPU`).",
            "",
            "## Setup",
            "",
            *[f"- {line}" for line in setup],
            *(
                [
                    "- **checker's source changed while the benchmark ran** (the venv install"
                    " is editable): later runs measured newer code than earlier ones"
                ]
                if changed
                else []
            ),
            *[f"- {line}" for line in sysctls.changed],
            f"- `--processes auto` is {auto} here ({cpus} usable CPUs: one per CPU, or 1 where"
            " there are two or fewer).",
            "- nginx: run.py's, 1 worker; `nginx CPU s` is its master + worker user + system"
            " time during the run (from /proc), `checker CPU s` the user + system time of the"
            " whole process tree (os.wait4: the shards and, for GNU parallel, perl and the"
            " shells too), `peak RSS MiB` the largest single process of the tree.",
            "- `checks/s vs --processes 1`: for each round, this contender's checks/s over"
            " `--processes 1`'s in the same round, then the median.",
            "",
            "## Results",
            "",
        ]
        for scenario in scenarios.values():
            report += scenario_table(scenario)
        if memory is not None:
            report += memory_table(*memory)
        report += verdicts(scenarios, memory, args.quick)
        text = "\n".join(report)
        print(text)
        out = RESULTS_QUICK if args.quick else RESULTS
        out.write_text(text)
        log(f"written to {out}")
    finally:
        run._run_cleanups()
    return 0


if __name__ == "__main__":
    run.entry(main, "nginx and the running checker stopped")
