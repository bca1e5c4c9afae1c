"""Host-name benchmark: checker, aiohttp and curl resolving names through a slow local DNS.

    python3 benchmarks/hostnames.py [--quick] [--repeats N] [--scenarios 20,100,mix,twice]

Every URL names its own host (`http://hN.example.test:PORT/p/N`), which the
system resolver of the processes under test must look up: their
/etc/resolv.conf is replaced, in a private mount namespace of their own
(`unshare -m` + `mount --bind`), by one that points at dns_responder.py on
127.0.0.53, which answers after a fixed delay. Nothing global changes. Reuses
run.py's setup (venv, nginx, sysctls) and measurement. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import run
from run import BENCH, VPY, Job, Server, log

RESPONDER = BENCH / "dns_responder.py"
RESULTS = BENCH / "RESULTS-hostnames.md"
DNS_ADDRESS = "127.0.0.53"
ZONE = "example.test"
CONNECT_TIMEOUT = 5.0  # checker's default --connect-timeout; curl and aiohttp get the same
TOTAL_TIMEOUT = 30.0  # checker --timeout, curl --max-time, aiohttp ClientTimeout(total)
# glibc's own defaults (RES_TIMEOUT 5, RES_DFLRETRY 2), written out: a name that is
# never answered keeps getaddrinfo() waiting 10 s, longer than any --connect-timeout.
RESOLV_CONF = f"nameserver {DNS_ADDRESS}\noptions timeout:5 attempts:2\n"
CONCURRENCY = 200
# T1: names at 100 ms, checker wall / curl wall (paired median) at most this.
T1_BOUND = 1.5
# T2: 10% silent + 10% NXDOMAIN: wall at most this many --connect-timeouts.
T2_FACTOR = 1.5


# --------------------------------------------------------------------------- the responder


@dataclass
class Responder:
    proc: subprocess.Popen[bytes]
    stats_file: Path
    seq: int = 0

    def stats(self) -> dict[str, object]:
        """The counts since the last call (the responder resets them on SIGUSR1)."""
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data: dict[str, object] = json.loads(self.stats_file.read_text())
            except (OSError, ValueError):
                data = {}
            seq = data.get("seq")
            if isinstance(seq, int) and seq > self.seq:
                self.seq = seq
                return data
            time.sleep(0.02)
        raise RuntimeError("the DNS responder did not write its counts")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def dns_query(name: str, qtype: int = 1) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def start_responder(work: Path, key: str, delay_ms: float) -> Responder:
    stats_file = work / f"dns-stats-{key}.json"
    stats_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(RESPONDER), "--listen", DNS_ADDRESS, "--port", "53"]
    cmd += ["--delay-ms", str(delay_ms), "--spread", "--stats-file", str(stats_file)]
    cmd += ["--answer", f"*.{ZONE}", "--nxdomain", f"nx*.{ZONE}", "--silent", f"silent*.{ZONE}"]
    err = (work / f"dns-{key}.log").open("wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err, start_new_session=True)
    responder = Responder(proc, stats_file)
    run._cleanups.append(responder.stop)
    # Ready when it answers a query of ours (sent to the loopback address only).
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while True:
            if proc.poll() is not None:
                text = (work / f"dns-{key}.log").read_text()
                raise SystemExit(f"dns_responder exited: {text[-500:]}")
            try:
                s.sendto(dns_query(f"probe.{ZONE}"), (DNS_ADDRESS, 53))
                if s.recv(512)[:2] == b"\x42\x42":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"dns_responder does not answer on {DNS_ADDRESS}:53")
    responder.stats()  # reset: the probe is not counted
    return responder


def udp_rcvbuf_errors() -> int:
    """UDP datagrams dropped for a full receive buffer, machine-wide (/proc/net/snmp).

    Counts the clients' sockets too: a stub resolver that sends hundreds of
    queries on one socket can lose the answers arriving in a burst.
    """
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    for names, values in itertools.pairwise(lines):
        if names[0] == "Udp:" and values[0] == "Udp:" and "RcvbufErrors" in names:
            return int(values[names.index("RcvbufErrors")])
    return 0


def namespace(resolv_conf: Path) -> list[str]:
    """A prefix that runs a command with `resolv_conf` as its /etc/resolv.conf.

    unshare -m gives the command a private mount namespace (util-linux makes its
    mounts private, so nothing propagates back); the bind mount is seen in there
    only, and if it fails the command is not run at all (`&&`), so it can never
    fall back to the machine's resolver. unshare and sh exec, so the pid that
    run.measure() waits for and kills is the command's own.
    """
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv_conf)]


def preflight() -> None:
    """Refuse to run where names could leave the machine or bypass the resolver."""
    if Path("/var/run/nscd/socket").exists() or Path("/run/nscd/socket").exists():
        raise SystemExit("nscd is running: getaddrinfo() would ask it, not our resolv.conf")
    hosts: list[str] = []
    for line in Path("/etc/nsswitch.conf").read_text().splitlines():
        if line.split(":", 1)[0].strip() == "hosts":
            hosts = line.split(":", 1)[1].split()
            break
    if "dns" not in hosts or any(h.startswith("resolve") for h in hosts):
        raise SystemExit(f"/etc/nsswitch.conf hosts: {' '.join(hosts)}: want 'files dns'")
    if ZONE in Path("/etc/hosts").read_text():
        raise SystemExit(f"/etc/hosts mentions {ZONE}: the benchmark needs DNS for it")
    if not shutil.which("unshare"):
        raise SystemExit("unshare (util-linux) is missing")


def ensure_aiodns() -> str:
    probe = run.sh([str(VPY), "-c", "import aiodns"], check=False)
    if probe.returncode == 0:
        return "aiodns present in benchmarks/.venv"
    log("pip install aiodns into benchmarks/.venv ...")
    run.sh([str(VPY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "aiodns"], 600)
    return "installed aiodns into benchmarks/.venv"


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    delay_ms: float
    healthy: int  # names hN, answered
    nxdomain: int = 0  # names nxN, NXDOMAIN
    silent: int = 0  # names silentN, never answered
    twice: bool = False  # every healthy name listed twice, with two paths
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)

    @property
    def urls(self) -> int:
        return self.healthy * (2 if self.twice else 1) + self.nxdomain + self.silent

    @property
    def names(self) -> int:
        return self.healthy + self.nxdomain + self.silent


def build_scenarios(quick: bool) -> list[Scenario]:
    n = 5_000 // (10 if quick else 1)
    mix = 500 // (10 if quick else 1)
    return [
        Scenario("20", f"{n:,} host names, resolver delay 20 ms", 20, n),
        Scenario("100", f"{n:,} host names, resolver delay 100 ms", 100, n),
        Scenario(
            "mix",
            f"{mix:,} names: 80% healthy, 10% NXDOMAIN, 10% never answered; 20 ms",
            20,
            mix * 8 // 10,
            nxdomain=mix // 10,
            silent=mix // 10,
        ),
        Scenario(
            "twice",
            f"{n // 2:,} host names listed twice (two paths each), 20 ms",
            20,
            n // 2,
            twice=True,
        ),
    ]


def write_lists(scenario: Scenario, port: int, work: Path) -> Job:
    urls = [f"http://h{i}.{ZONE}:{port}/p/{i}" for i in range(scenario.healthy)]
    if scenario.twice:
        urls += [f"http://h{i}.{ZONE}:{port}/q/{i}" for i in range(scenario.healthy)]
    urls += [f"http://nx{i}.{ZONE}:{port}/p/{i}" for i in range(scenario.nxdomain)]
    urls += [f"http://silent{i}.{ZONE}:{port}/p/{i}" for i in range(scenario.silent)]
    # Spread the bad names through the list, as they would be in a real one.
    step = max(1, len(urls) // max(1, scenario.nxdomain + scenario.silent))
    bad = urls[len(urls) - scenario.nxdomain - scenario.silent :]
    good = urls[: len(urls) - len(bad)]
    mixed: list[str] = []
    for i, url in enumerate(good):
        mixed.append(url)
        if bad and i % step == step - 1:
            mixed.append(bad.pop())
    mixed += bad
    list_file = work / f"hosts-{scenario.key}.txt"
    curl_config = work / f"hosts-{scenario.key}.cfg"
    list_file.write_text("".join(u + "\n" for u in mixed))
    curl_config.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in mixed))
    return Job(list_file, curl_config, len(mixed), CONCURRENCY, False, Path("/dev/null"), work)


# --------------------------------------------------------------------------- contenders


@dataclass
class Outcome:
    up: int  # URLs that came out up (only healthy ones can)
    down: Counter[str]  # what the others came out as


@dataclass
class HContender:
    name: str
    command: Callable[[Job, Path], list[str]]
    outcome: Callable[[Job, Path, int], Outcome]


def checker_contender(name: str) -> HContender:
    base = run.checker_contender(name, None)

    def outcome(job: Job, run_dir: Path, code: int) -> Outcome:
        latest = run_dir / "reports" / "latest.json"
        if not latest.exists():
            return Outcome(0, Counter({f"no report (exit {code})": job.urls}))
        report = json.loads(latest.read_text())
        down: Counter[str] = Counter()
        up = 0
        for row in report["results"]:
            if row.get("ok"):
                up += 1
            else:
                down[str(row.get("error") or row.get("status"))] += 1
        return Outcome(up, down)

    def command(job: Job, run_dir: Path) -> list[str]:
        # run.py's command: --timeout 30, --retries 0, HEAD; --connect-timeout is the default 5.
        return base.command(job, run_dir)

    return HContender(name, command, outcome)


def aiohttp_contender(aiodns: bool) -> HContender:
    base = run.aiohttp_contender(False)

    def command(job: Job, run_dir: Path) -> list[str]:
        extra = ["--connect-timeout", f"{CONNECT_TIMEOUT:g}"] + (["--aiodns"] if aiodns else [])
        return [*base.command(job, run_dir), *extra]

    def outcome(job: Job, run_dir: Path, code: int) -> Outcome:
        try:
            counts: dict[str, int] = json.loads((run_dir / "stdout").read_text())["counts"]
        except (OSError, ValueError, KeyError):
            return Outcome(0, Counter({f"no result (exit {code})": job.urls}))
        down = Counter({k.removeprefix("error:"): v for k, v in counts.items() if k != "200"})
        return Outcome(counts.get("200", 0), down)

    return HContender("aiohttp (aiodns)" if aiodns else "aiohttp", command, outcome)


CURL_EXIT = {6: "dns", 7: "refused", 28: "timeout"}


def curl_contender() -> HContender:
    def command(job: Job, run_dir: Path) -> list[str]:
        cmd = ["curl", "--parallel", "--parallel-max", str(job.concurrency), "--parallel-immediate"]
        cmd += ["-s", "-I", "--connect-timeout", f"{CONNECT_TIMEOUT:g}"]
        cmd += ["--max-time", f"{TOTAL_TIMEOUT:g}", "-w", "%{http_code} %{exitcode}\\n"]
        return [*cmd, "--config", str(job.curl_config)]

    def outcome(job: Job, run_dir: Path, code: int) -> Outcome:
        up, down = 0, Counter[str]()
        with (run_dir / "stdout").open() as out:
            for line in out:
                status, _, exit_code = line.strip().partition(" ")
                if status == "200":
                    up += 1
                else:
                    num = int(exit_code) if exit_code.isdigit() else -1
                    down[CURL_EXIT.get(num, f"status {status}, curl exit {exit_code}")] += 1
        return Outcome(up, down)

    return HContender("curl", command, outcome)


# --------------------------------------------------------------------------- runs


@dataclass
class RunRecord:
    wall: float
    cpu: float
    rss_mib: float
    up: int
    down: Counter[str]
    dns: dict[str, object]
    killed: bool
    exit_code: int
    command: str

    def all_up(self, scenario: Scenario) -> bool:
        healthy_urls = scenario.healthy * (2 if scenario.twice else 1)
        return not self.killed and self.up == healthy_urls


def run_limit(scenario: Scenario) -> float:
    # Far above any good run, yet bounded for a resolver that serialises lookups:
    # 4 threads x 100 ms per lookup is 125 s for 5,000 names.
    return 90 + scenario.urls * 0.03 + scenario.silent * 3


def run_scenario(
    scenario: Scenario,
    contenders: list[HContender],
    server: Server,
    work: Path,
    repeats: int,
    resolv_conf: Path,
) -> None:
    responder = start_responder(work, scenario.key, scenario.delay_ms)
    job = write_lists(scenario, server.ports["hosts"], work)
    prefix = namespace(resolv_conf)
    probe_sanity(prefix, server.ports["hosts"], scenario)
    responder.stats()
    limit = run_limit(scenario)
    try:
        for repeat in range(repeats):
            for contender in contenders:  # alternate: A B C A B C ...
                run.wait_for_time_wait()
                time.sleep(0.5)
                run.wait_for_quiet()
                run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
                cmd = [*prefix, *contender.command(job, run_dir)]
                drops0 = responder.stats()["udp_drops_total"]  # and reset the counts
                rcvbuf0 = udp_rcvbuf_errors()
                result, code = run.measure(cmd, run_dir, server, limit)
                time.sleep(0.05)  # answers still in flight land in this run's counts
                dns = responder.stats()
                dns["udp_drops"] = int(str(dns["udp_drops_total"])) - int(str(drops0))
                dns["rcvbuf_errors"] = udp_rcvbuf_errors() - rcvbuf0
                outcome = contender.outcome(job, run_dir, code)
                record = RunRecord(
                    result.wall,
                    result.cpu,
                    result.rss_mib,
                    outcome.up,
                    outcome.down,
                    dns,
                    result.error is not None,
                    code,
                    shlex.join(cmd),
                )
                scenario.runs.setdefault(contender.name, []).append(record)
                state = "ok" if record.all_up(scenario) else "NOT ALL HEALTHY UP"
                if record.killed:
                    state = f"KILLED at {limit:.0f} s"
                    stderr = (run_dir / "stderr").read_text(errors="replace").strip()
                    log(f"    stderr: {stderr[-300:]!r}; command: {record.command}")
                log(
                    f"  [{scenario.key}] {repeat + 1}/{repeats} {contender.name:18}"
                    f" {result.wall:7.2f} s cpu {result.cpu:6.2f} s up {outcome.up:5}"
                    f" down {dict(outcome.down)} dns {dns.get('queries')} {dns.get('by_type')}"
                    f" drops {dns['udp_drops']}/{dns['rcvbuf_errors']}"
                    f" pending<={dns.get('max_pending')}"
                    f" exit {code}  {state}"
                )
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        responder.stop()
        run._cleanups.remove(responder.stop)


def probe_sanity(prefix: list[str], port: int, scenario: Scenario) -> None:
    """One healthy name (200) and one NXDOMAIN name (curl exit 6), in the namespace."""
    for name, want in [(f"h0.{ZONE}", "200 0"), (f"nx0.{ZONE}", "000 6")]:
        url = f"http://{name}:{port}/p/0"
        cmd = [*prefix, "curl", "-s", "-I", "-o", "/dev/null", "--connect-timeout", "5"]
        cmd += ["-w", "%{http_code} %{exitcode}", url]
        t0 = time.perf_counter()
        out = run.sh(cmd, timeout=30, check=False).stdout.split()
        lookup = time.perf_counter() - t0  # curl's own timers say 0 for a failed lookup
        if out[:2] != want.split():
            raise SystemExit(f"probe {url}: got {out}, want {want}: {shlex.join(cmd)}")
        log(f"  probe {url}: {' '.join(out[:2])} in {lookup * 1000:.0f} ms")
        if lookup < scenario.delay_ms / 1000 * 0.9:
            raise SystemExit(f"probe {url}: took {lookup:.3f} s, no resolver delay?")


# --------------------------------------------------------------------------- reporting


def paired(runs: list[RunRecord], base: list[RunRecord]) -> float | None:
    ratios = [a.wall / b.wall for a, b in zip(runs, base, strict=False)]
    return statistics.median(ratios) if ratios else None


def table(scenario: Scenario) -> list[str]:
    healthy_urls = scenario.healthy * (2 if scenario.twice else 1)
    lines = [f"### {scenario.key}: {scenario.title}", ""]
    desc = (
        f"{scenario.urls:,} URLs on {scenario.names:,} names ({healthy_urls:,} healthy URLs"
        + (
            f", {scenario.nxdomain} NXDOMAIN, {scenario.silent} never answered"
            if scenario.silent
            else ""
        )
        + f"), concurrency {CONCURRENCY}, HEAD, resolver delay {scenario.delay_ms:g} ms."
    )
    floor = scenario.names * scenario.delay_ms / 1000 / CONCURRENCY
    desc += f" Lookups alone, {CONCURRENCY} at a time: {floor:.2f} s."
    lines += [desc, ""]
    head = ["contender", "runs", "wall s", "CPU s", "peak RSS MiB", "healthy up (worst run)"]
    head += ["down, by error (last run)", "DNS queries (A/AAAA)", "UDP drops (all runs)"]
    head += ["max asks per question"]
    head += ["wall / curl", "wall / aiohttp"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    curl_runs = scenario.runs.get("curl", [])
    aio_runs = scenario.runs.get("aiohttp", [])
    for name, runs in scenario.runs.items():
        wall = statistics.median(r.wall for r in runs)
        killed = sum(r.killed for r in runs)
        worst_up = min(r.up for r in runs)
        last = runs[-1]
        by_type = [r.dns.get("by_type") for r in runs]
        queries = statistics.median(int(str(r.dns.get("queries", 0))) for r in runs)
        a = statistics.median(int(t.get("A", 0)) if isinstance(t, dict) else 0 for t in by_type)
        aaaa = statistics.median(
            int(t.get("AAAA", 0)) if isinstance(t, dict) else 0 for t in by_type
        )
        max_ask = max(int(str(r.dns.get("max_per_question", 0))) for r in runs)
        drops = sum(int(str(r.dns.get("udp_drops", 0))) for r in runs)
        rcvbuf = sum(int(str(r.dns.get("rcvbuf_errors", 0))) for r in runs)
        ok_mark = "" if all(r.all_up(scenario) for r in runs) else " **NO**"
        vs_curl, vs_aio = paired(runs, curl_runs), paired(runs, aio_runs)
        cells = [
            name,
            f"{len(runs)}" + (f" ({killed} killed)" if killed else ""),
            f"{wall:.2f}",
            f"{statistics.median(r.cpu for r in runs):.2f}",
            f"{statistics.median(r.rss_mib for r in runs):.1f}",
            f"{worst_up:,} / {healthy_urls:,}{ok_mark}",
            ", ".join(f"{k} {v:,}" for k, v in last.down.most_common()) or "—",
            f"{queries:,.0f} ({a:,.0f}/{aaaa:,.0f})"
            + (f", **{drops:,} lost before the responder**" if drops else ""),
            f"{rcvbuf:,}",
            str(max_ask),
            "—" if vs_curl is None else f"{vs_curl:.2f}",
            "—" if vs_aio is None else f"{vs_aio:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def verdicts(scenarios: dict[str, Scenario], checker: str, quick: bool) -> list[str]:
    lines = ["## Targets", ""]
    if quick:
        lines += ["(`--quick` sizes: indicative only, the targets are set at full size.)", ""]
    s = scenarios.get("100")
    mine = s.runs.get(checker, []) if s else []
    curl = s.runs.get("curl", []) if s else []
    if s is None or not mine or not curl:
        lines.append("- T1 (names at 100 ms): NOT MEASURED (scenario 100 not run)")
    else:
        ratio = paired(mine, curl)
        all_up = all(r.all_up(s) for r in mine)
        met = ratio is not None and ratio <= T1_BOUND and all_up
        lines.append(
            f"- T1, {s.urls:,} names at 100 ms, concurrency {CONCURRENCY}: every healthy URL up"
            f" in every run: {'yes' if all_up else 'NO'}; wall checker / curl {ratio:.2f},"
            f" target <= {T1_BOUND:.2f}: {'MET' if met else 'NOT MET'}"
        )
    s = scenarios.get("mix")
    mine = s.runs.get(checker, []) if s else []
    if s is None or not mine:
        lines.append("- T2 (silent and NXDOMAIN names): NOT MEASURED (scenario mix not run)")
    else:
        wall = statistics.median(r.wall for r in mine)
        bound = T2_FACTOR * CONNECT_TIMEOUT
        all_up = all(r.all_up(s) for r in mine)
        met = wall <= bound and all_up
        curl = s.runs.get("curl", [])
        ref = f" (curl: {statistics.median(r.wall for r in curl):.2f} s)" if curl else ""
        lines.append(
            f"- T2, {s.urls:,} URLs with {s.silent} never answered and {s.nxdomain} NXDOMAIN:"
            f" every healthy URL up in every run: {'yes' if all_up else 'NO'}; wall"
            f" {wall:.2f} s{ref}, target <= {T2_FACTOR:g} x --connect-timeout ="
            f" {bound:.1f} s: {'MET' if met else 'NOT MET'}"
        )
    return [*lines, ""]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/10 sizes, a smoke test")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--scenarios", default="20,100,mix,twice", help="20,100,mix,twice")
    parser.add_argument(
        "--contenders",
        default="checker,aiohttp,aiohttp-aiodns,curl",
        help="run order, from checker,aiohttp,aiohttp-aiodns,curl",
    )
    args = parser.parse_args()
    args.wanted = [p.strip() for p in args.scenarios.split(",") if p.strip()]
    args.who = [p.strip() for p in args.contenders.split(",") if p.strip()]
    if set(args.wanted) - {"20", "100", "mix", "twice"} or args.repeats < 1:
        parser.error("bad --scenarios or --repeats")
    if set(args.who) - {"checker", "aiohttp", "aiohttp-aiodns", "curl"}:
        parser.error("bad --contenders")
    return args


def main() -> int:
    args = parse_args()
    command, started = run.begin("hostnames.py")
    run._cleanups.append(run._kill_current_child)
    preflight()
    setup = [run.ensure_venv(), ensure_aiodns(), run.ensure_nginx()]
    source_at_start = run.checker_source_digest()
    sysctls = run.Sysctls()
    run._cleanups.append(sysctls.restore)
    run.tune_system(sysctls)
    tmp = Path(tempfile.mkdtemp(prefix="checker-hostnames-"))
    run._cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    try:
        resolv_conf = tmp / "resolv.conf"
        resolv_conf.write_text(RESOLV_CONF)
        server = run.start_nginx(tmp)
        log(f"nginx pid {server.proc.pid if server.proc else '?'}, ports {server.ports}")
        checker_name = run.checker_contenders()[0].name
        makers: dict[str, Callable[[], HContender]] = {
            "checker": lambda: checker_contender(checker_name),
            "aiohttp": lambda: aiohttp_contender(False),
            "aiohttp-aiodns": lambda: aiohttp_contender(True),
            "curl": curl_contender,
        }
        contenders = [makers[w]() for w in args.who]
        scenarios = {s.key: s for s in build_scenarios(args.quick) if s.key in args.wanted}
        for scenario in scenarios.values():
            log(f"scenario {scenario.key}: {scenario.title} ({scenario.urls:,} URLs)")
            run_scenario(scenario, contenders, server, tmp, args.repeats, resolv_conf)
        report = [
            "# checker host-name benchmark results",
            "",
            f"Date: {started:%Y-%m-%d %H:%M} UTC. Command (from the repository root):",
            "",
            f"    {command}",
            "",
            f"Repeats: {args.repeats}, contenders alternating. Medians over all runs"
            " (a run killed at its time limit counts with that limit as its wall)."
            + (" **Quick mode: sizes / 10.**" if args.quick else ""),
            "",
            "## Machine",
            "",
            *run.machine(),
            "## Setup",
            "",
            *[f"- {line}" for line in setup],
            *(
                []
                if run.checker_source_digest() == source_at_start
                else [
                    "- **checker's source changed while the benchmark ran** (the venv install"
                    " is editable): later runs measured newer code than earlier ones"
                ]
            ),
            *[f"- {line}" for line in sysctls.changed],
            f"- Resolver: dns_responder.py on {DNS_ADDRESS}:53 (UDP+TCP), A = 127.1.x.y per"
            " name (nginx's wildcard listener), AAAA: no data, `nx*` NXDOMAIN, `silent*`"
            " never answered. Contenders run under `unshare -m` with this bind-mounted"
            " on /etc/resolv.conf: `" + RESOLV_CONF.strip().replace("\n", "; ") + "`.",
            f"- Every contender: concurrency {CONCURRENCY}, HEAD, connect timeout"
            f" {CONNECT_TIMEOUT:g} s (DNS included), total {TOTAL_TIMEOUT:g} s, no retries.",
            "- `DNS queries` are those the responder saw during the run; `max asks per"
            " question` is the most times one (name, type) was asked in a run (1: every"
            " name looked up once; a never-answered name asked again by the resolver counts).",
            "",
            "## Results",
            "",
        ]
        for scenario in scenarios.values():
            report += table(scenario)
        report += verdicts(scenarios, checker_name, args.quick)
        text = "\n".join(report)
        print(text)
        RESULTS.write_text(text)
        log(f"written to {RESULTS}")
    finally:
        run._run_cleanups()
    return 0


if __name__ == "__main__":
    run.entry(main, "nginx, the responder and the running contender stopped")
