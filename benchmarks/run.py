"""Benchmark checker against aiohttp and curl on a local nginx. See benchmarks/README.md.

    python3 benchmarks/run.py [--quick] [--repeats N] [--scenarios 1,2,3,4a,4b,5]

Sets up its own venv (benchmarks/.venv) and nginx (Debian package), runs every
contender as a child process against 127.0.0.1 only, measures each run with
os.wait4, and prints Markdown tables (also written to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
VPY = VENV / "bin" / "python"
CHECKER_BIN = VENV / "bin" / "checker"
PEER_AIOHTTP = BENCH / "peers" / "aiohttp_check.py"
PEER_MINIMAL = BENCH / "peers" / "minimal_client.py"
TEMPLATE = BENCH / "nginx.conf.template"
RESULTS = BENCH / "RESULTS.md"

PEERS = ["aiohttp", "trustme"]  # benchmark-only; never dependencies of the package
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
CURL_MAX_PARALLEL = 300  # curl clamps --parallel-max to this (tool_getparam.c)
DELAY_S = 0.05

# Everything started here is stopped from here, also on Ctrl-C, SIGTERM or a crash.
_cleanups: list[Callable[[], None]] = []


def _run_cleanups() -> None:
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception as exc:  # one failing cleanup must not skip the others
            print(f"cleanup failed: {exc!r}", file=sys.stderr)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sh(cmd: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


# --------------------------------------------------------------------------- setup


def ensure_venv() -> str:
    """Create or reuse benchmarks/.venv with the project and the peers; say what was done."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    extras = tomllib.loads(pyproject.decode()).get("project", {}).get("optional-dependencies", {})
    if "fast" in extras:
        packages = ["-e", f"{ROOT}[fast]", *PEERS]
    else:  # the extra is not there yet: install what it is meant to bring
        packages = ["-e", str(ROOT), "uvloop", *PEERS]
    # Reinstall when pyproject.toml or the package set changes (e.g. `fast` appears).
    stamp_value = hashlib.sha256(pyproject + repr(packages).encode()).hexdigest()
    stamp = VENV / ".bench-stamp"
    if VPY.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        probe = sh([str(VPY), "-c", "import checker, aiohttp, trustme"], check=False)
        if probe.returncode == 0:
            return f"reused {VENV.relative_to(ROOT)}"
    if not VPY.exists():
        log(f"creating {VENV} ...")
        sh([sys.executable, "-m", "venv", str(VENV)], timeout=300)
    log(f"pip install {' '.join(packages)} ...")
    sh(
        [str(VPY), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
        timeout=900,
    )
    stamp.write_text(stamp_value)
    return f"installed into {VENV.relative_to(ROOT)}: {' '.join(packages)}"


def compile_checker() -> str:
    """checker's modules compiled to bytecode, as an installed package's
    are (pip compiles them); the editable install here is the source tree,
    and with PYTHONDONTWRITEBYTECODE set (this machine sets it) each run
    would compile anew every module without an up-to-date .pyc: a run of
    one URL took 0.52-0.57 s with none, 0.34-0.40 s with all (5 pairs),
    170 ms that aiohttp, installed with its .pyc, never pays."""
    sh([str(VPY), "-m", "compileall", "-q", str(ROOT / "checker")], timeout=300)
    return "checker's modules compiled (compileall), as an installed package's are"


def _nginx_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "nginx":
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def _apt_install(packages: list[str]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    for attempt in range(2):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode == 0:
            return True
        if attempt == 0:  # stale package lists: refresh once, then try again
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
    log(f"apt-get install {' '.join(packages)} failed: {result.stderr.strip()[-300:]}")
    return False


def ensure_nginx() -> str:
    """Install nginx (+ echo module) from Debian if missing; return what was done."""
    if shutil.which("nginx") and ECHO_MODULE.exists():
        return "nginx already installed"
    before = _nginx_pids()
    log("installing nginx from Debian ...")
    # nginx-light depends on the echo module in bookworm; otherwise ask for both.
    _apt_install(["nginx-light"]) or _apt_install(["nginx", "libnginx-mod-http-echo"])
    if not ECHO_MODULE.exists():
        _apt_install(["libnginx-mod-http-echo"])
    if not shutil.which("nginx"):
        _apt_install(["nginx"])
    # Where no policy-rc.d forbids it, the package starts a system nginx on :80.
    # That one is ours to stop: stop it by the pid it wrote, nothing broader.
    pid_file = Path("/run/nginx.pid")
    if pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        if pid not in before and pid in _nginx_pids():
            log(f"stopping the nginx service the package started (pid {pid})")
            os.kill(pid, signal.SIGQUIT)
    if not shutil.which("nginx"):
        raise SystemExit("nginx could not be installed")
    return "installed nginx from Debian" + ("" if ECHO_MODULE.exists() else " (no echo module)")


@dataclass
class Sysctls:
    changed: list[str] = field(default_factory=list)
    originals: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: str) -> None:
        path = Path("/proc/sys") / name.replace(".", "/")
        try:
            old = path.read_text().split()
            if old == value.split():
                return
            path.write_text(value)
        except OSError as exc:
            self.changed.append(f"could not set {name}={value} ({exc.strerror})")
            return
        self.originals[name] = " ".join(old)
        self.changed.append(f"{name}: {' '.join(old)} -> {value} (restored at exit)")

    def restore(self) -> None:
        for name, value in self.originals.items():
            try:
                (Path("/proc/sys") / name.replace(".", "/")).write_text(value)
            except OSError as exc:
                log(f"could not restore {name}={value}: {exc}")
        self.originals.clear()


def tune_system(sysctls: Sysctls) -> None:
    # Runs without keep-alive leave thousands of client sockets in TIME_WAIT;
    # reuse them for new outgoing connections and give connect() more ports.
    sysctls.set("net.ipv4.tcp_tw_reuse", "1")
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    if lo > 10000 or hi < 65535:
        sysctls.set("net.ipv4.ip_local_port_range", f"{min(lo, 10000)} {max(hi, 65535)}")
    # Same open-file limit for every contender (they inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    sysctls.changed.append(f"RLIMIT_NOFILE of the benchmark and its children: {soft}")


def free_ports(count: int) -> list[int]:
    """Free ports below the ephemeral range, free on 0.0.0.0 too (scenario 2 binds it)."""
    lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in range(max(2000, lo - 1000), lo):
        try:
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise SystemExit("no free ports for nginx")


def time_wait_per_destination() -> int:
    """The most TIME_WAIT sockets towards any one remote address and port."""
    per_remote: Counter[str] = Counter()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                next(table)
                for line in table:
                    fields = line.split(None, 4)
                    if fields[3] == "06":
                        per_remote[fields[2]] += 1
        except OSError:
            pass
    return max(per_remote.values(), default=0)


def wait_for_time_wait(limit_s: float = 70) -> float:
    """Wait until TIME_WAIT sockets leave most of the port range free; return the wait.

    connect() only needs a local port unused towards the same address and port,
    so what can starve is TIME_WAIT towards one destination (a run without
    keep-alive against one host), not their total (10,000 distinct hosts).
    """
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    threshold = (hi - lo) // 2
    start = time.monotonic()
    while time_wait_per_destination() > threshold and time.monotonic() - start < limit_s:
        time.sleep(1)
    return time.monotonic() - start


def wait_for_quiet(limit_s: float = 15) -> float:
    """Wait (a while) until the machine is near idle; return the wait.

    The machine may be shared (tests, builds): on 2 cores, one busy process
    next to nginx and the contender is enough to slow a run down.
    """
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        before = machine_cpu_seconds()
        time.sleep(0.5)
        if (machine_cpu_seconds() - before) / 0.5 < 0.25:
            break
    return time.monotonic() - start


# --------------------------------------------------------------------------- nginx


@dataclass
class Server:
    prefix: Path
    ports: dict[str, int]
    ca_file: Path
    has_slow: bool
    proc: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        """utime+stime of the master and its workers, in seconds."""
        assert self.proc is not None
        master = self.proc.pid
        pids = [master]
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            pids += [int(p) for p in children]
        except OSError:
            pass
        ticks = 0
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def accepted(self) -> int:
        """nginx's count of accepted connections (stub_status), this probe's one included."""
        with socket.create_connection(("127.0.0.1", self.ports["status"]), timeout=5) as s:
            s.sendall(b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        match = re.search(rb"requests\s+(\d+)\s+(\d+)\s+(\d+)", data)
        if not match:
            raise RuntimeError(f"unexpected stub_status reply: {data[-200:]!r}")
        return int(match.group(1))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown; the master stops its workers
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def make_certs(prefix: Path) -> Path:
    """A throwaway CA and a server cert for 127.0.0.1, made with trustme in the bench venv."""
    code = (
        "import sys, trustme\n"
        "ca = trustme.CA()\n"
        "cert = ca.issue_cert('127.0.0.1')\n"
        "d = sys.argv[1]\n"
        "ca.cert_pem.write_to_path(d + '/ca.pem')\n"
        "cert.private_key_pem.write_to_path(d + '/server.key')\n"
        "open(d + '/server.pem', 'wb').write(b''.join(p.bytes() for p in cert.cert_chain_pems))\n"
    )
    sh([str(VPY), "-c", code, str(prefix)])
    return prefix / "ca.pem"


def start_nginx(tmp: Path) -> Server:
    prefix = tmp / "nginx"
    prefix.mkdir()
    ca_file = make_certs(prefix)
    names = ["http", "hosts", "https", "slow", "status"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    has_slow = ECHO_MODULE.exists()
    text = TEMPLATE.read_text()
    if not has_slow:
        text = re.sub(r"# @SLOW_BEGIN@.*?# @SLOW_END@", "", text, flags=re.S)
    text = (
        text.replace("@PREFIX@", str(prefix))
        .replace("@LOAD_MODULES@", f"load_module {ECHO_MODULE};" if has_slow else "")
        .replace("@HTTP_PORT@", str(ports["http"]))
        .replace("@HOSTS_PORT@", str(ports["hosts"]))
        .replace("@HTTPS_PORT@", str(ports["https"]))
        .replace("@SLOW_PORT@", str(ports["slow"]))
        .replace("@STATUS_PORT@", str(ports["status"]))
        # As many as this process may have: nginx cannot raise the hard limit.
        .replace("@NOFILE@", str(resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    )
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    base = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    test = sh([*base, "-t"], check=False)
    if test.returncode != 0:
        raise SystemExit(f"nginx config test failed:\n{test.stderr}")
    server = Server(prefix, ports, ca_file, has_slow)
    server.proc = subprocess.Popen(
        base, stdin=subprocess.DEVNULL, start_new_session=True, stderr=subprocess.DEVNULL
    )
    _cleanups.append(server.stop)
    deadline = time.monotonic() + 10
    for port in ports.values():
        if port == ports["slow"] and not has_slow:
            continue
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise SystemExit(
                        f"nginx did not start: {(prefix / 'error.log').read_text()[-500:]}"
                    ) from None
                time.sleep(0.05)
    return server


def curl_probe(url: str, *extra: str) -> tuple[str, float]:
    out = sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *extra, url])
    code, total = out.stdout.split()
    return code, float(total)


def sanity_checks(server: Server) -> dict[str, str]:
    """One request per endpoint with curl; returns why a scenario cannot run, if so."""
    problems: dict[str, str] = {}
    p = server.ports
    probes = {
        "http": (f"http://127.0.0.1:{p['http']}/p/0", []),
        "hosts": (f"http://127.1.39.250:{p['hosts']}/p/0", []),
        "https": (f"https://127.0.0.1:{p['https']}/p/0", ["--cacert", str(server.ca_file)]),
    }
    if server.has_slow:
        probes["slow"] = (f"http://127.0.0.1:{p['slow']}/p/0", [])
    else:
        problems["slow"] = "nginx echo module not installed"
    for name, (url, extra) in probes.items():
        for method in (["-I"], []):  # HEAD is what is benchmarked; GET for the record
            code, total = curl_probe(url, *method, *extra)
            if code != "200":
                problems[name] = f"curl {' '.join(method)} {url} answered {code}"
            elif name == "slow" and total < DELAY_S * 0.9:
                problems[name] = f"no delay: curl {' '.join(method)} {url} took {total:.3f} s"
            else:
                label = "HEAD" if method else "GET"
                log(f"  probe {name:5} {label:4} {url}: {code} in {total * 1000:.1f} ms")
    return problems


# --------------------------------------------------------------------------- contenders


@dataclass
class Job:
    """What one contender needs for one scenario."""

    list_file: Path
    curl_config: Path
    urls: int
    concurrency: int
    https: bool
    ca_file: Path
    work: Path


@dataclass
class Contender:
    name: str
    command: Callable[[Job, Path], list[str]]  # (job, run dir) -> argv
    verify: Callable[[Job, Path, int], str | None]  # (job, run dir, exit code) -> error or None


def read_run_header(report: Path) -> dict[str, object]:
    """The "run" object that opens checker's JSON report, without parsing a million rows."""
    with report.open("rb") as f:
        head = f.read(1 << 20).decode("utf-8", "replace")
    start = head.index("{", head.index('"run"'))
    header, _ = json.JSONDecoder().raw_decode(head, start)
    return dict(header)


def checker_contender(name: str, loop: str | None) -> Contender:
    def command(job: Job, run_dir: Path) -> list[str]:
        c = str(job.concurrency)
        cmd = [str(CHECKER_BIN), "check", str(job.list_file), "--out", str(run_dir / "reports")]
        cmd += ["--quiet", "--concurrency", c, "--per-host", c, "--retries", "0", "--no-follow"]
        cmd += ["--method", "HEAD", "--timeout", "30"]
        if job.https:
            cmd += ["--ca-file", str(job.ca_file)]
        if loop:
            cmd += ["--loop", loop]
        return cmd

    def verify(job: Job, run_dir: Path, code: int) -> str | None:
        latest = run_dir / "reports" / "latest.json"
        if not latest.exists():
            return f"exit {code}, no latest.json"
        run = read_run_header(latest)
        if (run.get("total"), run.get("up")) != (job.urls, job.urls) or code != 0:
            keys = ("total", "up", "down", "interrupted")
            return f"exit {code}, run header " + ", ".join(f"{k}={run.get(k)}" for k in keys)
        return None

    return Contender(name, command, verify)


def verify_counts(job: Job, run_dir: Path, code: int) -> str | None:
    """For the Python peers, which print {"counts": {status: n}} as one line."""
    try:
        result = json.loads((run_dir / "stdout").read_text())
    except ValueError:
        return f"exit {code}, no result line"
    if code != 0 or result["counts"].get("200") != job.urls:
        return f"exit {code}, counts {result['counts']}"
    return None


def aiohttp_contender(force_close: bool) -> Contender:
    def command(job: Job, run_dir: Path) -> list[str]:
        cmd = [str(VPY), str(PEER_AIOHTTP), str(job.list_file), str(job.concurrency)]
        if force_close:
            cmd.append("--force-close")
        if job.https:
            cmd += ["--cafile", str(job.ca_file)]
        return cmd

    return Contender("aiohttp force_close" if force_close else "aiohttp", command, verify_counts)


def minimal_contender() -> Contender:
    """The exchange alone on asyncio streams + uvloop: the floor checker stands on."""

    def command(job: Job, run_dir: Path) -> list[str]:
        cmd = [str(VPY), str(PEER_MINIMAL), str(job.list_file), str(job.concurrency)]
        return cmd + (["--cafile", str(job.ca_file)] if job.https else [])

    return Contender(MINIMAL, command, verify_counts)


MINIMAL = "minimal streams client"


def curl_contender() -> Contender:
    def command(job: Job, run_dir: Path) -> list[str]:
        cmd = ["curl", "--parallel", "--parallel-max", str(job.concurrency), "--parallel-immediate"]
        cmd += ["-s", "-w", "%{http_code}\\n", "-I", "--config", str(job.curl_config)]
        if job.https:
            cmd += ["--cacert", str(job.ca_file)]
        return cmd

    def verify(job: Job, run_dir: Path, code: int) -> str | None:
        with (run_dir / "stdout").open() as out:
            ok = sum(1 for line in out if line.strip() == "200")
        if code != 0 or ok != job.urls:
            return f"exit {code}, {ok} of {job.urls} answered 200"
        return None

    return Contender("curl", command, verify)


def checker_contenders() -> list[Contender]:
    """`checker`, plus `checker (asyncio loop)` once checker grows a --loop option."""
    help_text = sh([str(CHECKER_BIN), "check", "--help"]).stdout
    if "--loop" not in help_text:
        return [checker_contender("checker", None)]
    flat = " ".join(help_text.split())
    default = re.search(r"--loop\b[^-]*?\(default:\s*([\w-]+)", flat)
    used = default.group(1) if default else "default"
    if used == "auto":  # auto means uvloop when it is importable
        has_uvloop = sh([str(VPY), "-c", "import uvloop"], check=False).returncode == 0
        used = "uvloop" if has_uvloop else "asyncio"
    return [
        checker_contender(f"checker ({used})", None),
        checker_contender("checker (asyncio loop)", "asyncio"),
    ]


# --------------------------------------------------------------------------- measuring


@dataclass
class RunResult:
    wall: float
    cpu: float
    rss_mib: float
    server_share: float
    other_share: float  # CPU of every other process on the machine, / wall
    connections: int  # TCP connections nginx accepted during the run
    error: str | None = None


_current_child: list[int] = []


def _kill_current_child() -> None:
    for pid in _current_child:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def machine_cpu_seconds() -> float:
    """User + system CPU seconds of the whole machine so far (irq time left out)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], run_dir: Path, server: Server, timeout: float) -> tuple[RunResult, int]:
    """Run one contender as a child; wall, its own CPU and peak RSS from wait4, nginx CPU."""
    timed_out = threading.Event()
    with (run_dir / "stdout").open("wb") as out, (run_dir / "stderr").open("wb") as err:
        accepted0 = server.accepted()
        cpu0 = server.cpu_seconds()
        all0 = machine_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        _current_child.append(proc.pid)

        def on_timeout() -> None:
            timed_out.set()
            _kill_current_child()

        timer = threading.Timer(timeout, on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        t1 = time.perf_counter()
        all1 = machine_cpu_seconds()
        cpu1 = server.cpu_seconds()
        accepted1 = server.accepted()
        _current_child.remove(proc.pid)
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = t1 - t0
    cpu = usage.ru_utime + usage.ru_stime
    result = RunResult(
        wall=wall,
        cpu=cpu,
        rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        server_share=(cpu1 - cpu0) / wall,
        # The machine may be shared: what else ran shows how noisy this run was.
        other_share=max(0.0, (all1 - all0) - cpu - (cpu1 - cpu0)) / wall,
        connections=accepted1 - accepted0 - 1,  # minus the second probe's own connection
    )
    if timed_out.is_set():
        result.error = f"killed after the {timeout:.0f} s time limit"
    return result, code


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    urls: int
    concurrency: int
    endpoint: str  # http, hosts, https, slow
    names: list[str]  # contenders, in run order
    notes: list[str] = field(default_factory=list)
    results: dict[str, list[RunResult | None]] = field(default_factory=dict)
    skipped: str | None = None


def distinct_host(i: int) -> str:
    # 127.1.x.y with y in 1..250: 10,000 addresses, none ending in .0 or .255.
    return f"127.1.{i // 250}.{i % 250 + 1}"


def url_maker(endpoint: str, server: Server) -> Callable[[int], str]:
    port = server.ports[endpoint]
    if endpoint == "hosts":
        return lambda i: f"http://{distinct_host(i)}:{port}/p/{i}"
    scheme = "https" if endpoint == "https" else "http"
    return lambda i: f"{scheme}://127.0.0.1:{port}/p/{i}"


def write_lists(scenario: Scenario, server: Server, work: Path) -> Job:
    make = url_maker(scenario.endpoint, server)
    list_file = work / f"urls-{scenario.key}.txt"
    curl_config = work / f"curl-{scenario.key}.cfg"
    with list_file.open("w") as plain, curl_config.open("w") as cfg:
        for i in range(scenario.urls):
            url = make(i)
            plain.write(url + "\n")
            # -o on the command line would cover the first URL only: one output per URL.
            cfg.write(f'url = "{url}"\noutput = "/dev/null"\n')
    return Job(
        list_file,
        curl_config,
        scenario.urls,
        scenario.concurrency,
        scenario.endpoint == "https",
        server.ca_file,
        work,
    )


def run_scenario(
    scenario: Scenario,
    contenders: dict[str, Contender],
    server: Server,
    work: Path,
    repeats: int,
) -> None:
    job = write_lists(scenario, server, work)
    # Each run gets a time limit far above any plausible wall (>= 250 checks/s).
    limit = 60 + scenario.urls / 250
    for name in scenario.names:
        scenario.results[name] = []
    try:
        for repeat in range(repeats):
            for name in scenario.names:  # alternate: A B C A B C ...
                waited = wait_for_time_wait()
                if waited > 1:
                    scenario.notes.append(f"waited {waited:.0f} s for TIME_WAIT before {name}")
                time.sleep(0.5)  # let nginx finish closing the previous run's connections
                waited = wait_for_quiet()
                if waited > 2:
                    log(f"  waited {waited:.0f} s for other processes to go quiet")
                contender = contenders[name]
                run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
                cmd = contender.command(job, run_dir)
                try:
                    result, code = measure(cmd, run_dir, server, limit)
                except OSError as exc:  # e.g. the program is missing: a failed run
                    result, code = RunResult(0, 0, 0, 0, 0, 0, f"could not start: {exc}"), -1
                if result.error is None:
                    try:
                        result.error = contender.verify(job, run_dir, code)
                    except Exception as exc:
                        result.error = f"exit {code}, could not verify: {exc!r}"
                if result.error is not None:
                    stderr = (run_dir / "stderr").read_text(errors="replace").strip()
                    if stderr:
                        result.error += f"; stderr: {stderr[-400:]!r}"
                    result.error += f"; command: {shlex.join(cmd)}"
                    status = "FAILED: " + result.error
                else:
                    status = "ok"
                log(
                    f"  [{scenario.key}] {repeat + 1}/{repeats} {name:24} {result.wall:8.2f} s"
                    f" cpu {result.cpu:7.2f} s rss {result.rss_mib:7.1f} MiB"
                    f" nginx {result.server_share:4.0%} other {result.other_share:4.0%}"
                    f" conns {result.connections:7}  {status}"
                )
                scenario.results[name].append(result)
                shutil.rmtree(run_dir, ignore_errors=True)  # 1M-row reports are big
    finally:
        job.list_file.unlink(missing_ok=True)
        job.curl_config.unlink(missing_ok=True)


def build_scenarios(quick: bool, checkers: list[str], curl_1m: bool) -> list[Scenario]:
    scale = 10 if quick else 1
    big = 1_000_000 // scale
    n = 10_000 // scale
    aio = ["aiohttp", "aiohttp force_close"]
    everyone = [*checkers, *aio, "curl"]
    capped = f"curl is capped by curl itself at --parallel-max {CURL_MAX_PARALLEL}"
    return [
        Scenario("1", "HTTP, one host", n, 200, "http", [*everyone, MINIMAL]),
        # (The minimal client in 2 and 3 too: where connections are made,
        # what the exchange alone costs on the same streams.)
        Scenario("2", f"HTTP, {n:,} distinct hosts", n, 200, "hosts", [*everyone, MINIMAL]),
        Scenario("3", "HTTPS, one host", 2_000 // scale, 200, "https", [*everyone, MINIMAL]),
        Scenario("4a", "50 ms server, concurrency 200", 10_000 // scale, 200, "slow", everyone),
        Scenario(
            "4b",
            "50 ms server, concurrency 1,000",
            10_000 // scale,
            1000,
            "slow",
            everyone,
            notes=[f"{capped}: its row runs at {CURL_MAX_PARALLEL}, not 1,000"],
        ),
        Scenario(
            "5",
            f"memory, {big:,} URLs, HTTP one host",
            big,
            200,
            "http",
            [*checkers, "aiohttp", *(["curl"] if curl_1m else [])],
            notes=[] if curl_1m else ["curl skipped (--no-curl-1m)"],
        ),
    ]


# --------------------------------------------------------------------------- reporting


def good(runs: list[RunResult | None]) -> list[RunResult]:
    return [r for r in runs if r is not None and r.error is None]


def paired_ratio(runs: list[RunResult | None], base: list[RunResult | None]) -> float | None:
    """Median over repeats i of wall[i] / base wall[i], both runs good."""
    ratios = [
        a.wall / b.wall
        for a, b in zip(runs, base, strict=False)
        if a is not None and b is not None and a.error is None and b.error is None
    ]
    return statistics.median(ratios) if ratios else None


def table(scenario: Scenario) -> list[str]:
    lines = [f"### Scenario {scenario.key}: {scenario.title}", ""]
    line = f"{scenario.urls:,} URLs, concurrency {scenario.concurrency:,}, HEAD."
    if scenario.endpoint == "slow":  # no client can beat the server's own pace
        floor = scenario.urls * DELAY_S / scenario.concurrency
        line += f" Floor: {scenario.urls:,} x 50 ms / {scenario.concurrency:,} = {floor:.2f} s."
    lines.append(line)
    if scenario.skipped:
        return [*lines, "", f"**Skipped:** {scenario.skipped}", ""]
    vs_curl = scenario.key == "1"
    head = ["contender", "runs ok", "wall s", "CPU s", "peak RSS MiB", "checks/s"]
    head += ["nginx CPU", "other CPU", "connections", "wall / aiohttp"] + (
        ["wall / curl"] if vs_curl else []
    )
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = scenario.results.get("aiohttp", [])
    failures: list[str] = []
    for name, runs in scenario.results.items():
        ok = good(runs)
        cells = [name, f"{len(ok)}/{len(runs)}"]
        if not ok:
            cells += ["FAILED"] + [""] * (len(head) - 3)
        else:
            wall = statistics.median(r.wall for r in ok)
            cells += [
                f"{wall:.2f}",
                f"{statistics.median(r.cpu for r in ok):.2f}",
                f"{statistics.median(r.rss_mib for r in ok):.1f}",
                f"{scenario.urls / wall:,.0f}",
                f"{statistics.median(r.server_share for r in ok):.0%}",
                f"{statistics.median(r.other_share for r in ok):.0%}",
                f"{statistics.median(r.connections for r in ok):,.0f}",
            ]
            ratio = paired_ratio(runs, base)
            cells.append("—" if ratio is None else f"{ratio:.2f}")
            if vs_curl:
                ratio = paired_ratio(runs, scenario.results.get("curl", []))
                cells.append("—" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
        for i, r in enumerate(runs):
            if r is not None and r.error is not None:
                failures.append(f"- {name}, run {i + 1}: FAILED: {r.error}")
    lines.append("")
    if failures:
        lines += ["Failed runs (not timed):", "", *failures, ""]
    busiest = max(
        (r.other_share for runs in scenario.results.values() for r in good(runs)), default=0
    )
    if busiest > 0.25:
        scenario.notes.append(
            f"other processes on the machine used up to {busiest:.0%} of a core during"
            " some runs (other CPU): those runs may be slower than the contender is"
        )
    if scenario.notes:
        lines += [f"- {note}" for note in dict.fromkeys(scenario.notes)] + [""]
    return lines


def verdicts(scenarios: dict[str, Scenario], checker: str, quick: bool) -> list[str]:
    lines = ["## Targets", ""]
    if quick:
        lines += ["(`--quick` sizes: indicative only, the targets are set at full size.)", ""]

    def runs(key: str, name: str) -> list[RunResult | None] | None:
        s = scenarios.get(key)
        return None if s is None or s.skipped else s.results.get(name)

    def check(label: str, figure: float | None, target: str, met: bool | None) -> None:
        if figure is None or met is None:
            why = "scenario not run or skipped, or no good runs to pair"
            lines.append(f"- {label}: target {target}: NOT MEASURED ({why})")
        else:
            lines.append(f"- {label}: {figure:.2f}, target {target}: {'MET' if met else 'NOT MET'}")

    for key, label, bound in [
        ("1", "HTTP one host, wall checker/aiohttp", 0.50),
        ("2", "HTTP distinct hosts, wall checker/aiohttp", 0.40),
        ("3", "HTTPS one host, wall checker/aiohttp", 0.70),
    ]:
        mine, base = runs(key, checker), runs(key, "aiohttp")
        ratio = paired_ratio(mine, base) if mine and base else None
        check(label, ratio, f"<= {bound:.2f}", None if ratio is None else ratio <= bound)
    mine, base = runs("4b", checker), runs("4b", "aiohttp")
    ratio = paired_ratio(mine, base) if mine and base else None
    speedup = None if ratio is None else 1 / ratio
    label = "50 ms server at concurrency 1,000, checks/s checker/aiohttp"
    check(label, speedup, ">= 2.00", None if speedup is None else speedup >= 2)
    mine = runs("5", checker)
    ok = good(mine) if mine else []
    rss = max(r.rss_mib for r in ok) if ok and mine and len(ok) == len(mine) else None
    size = f"{scenarios['5'].urls:,} URLs" if "5" in scenarios else "memory"
    check(
        f"{size} at concurrency 200, checker peak RSS MiB (max of runs)",
        rss,
        "<= 64",
        None if rss is None else rss <= 64,
    )
    for name in (checker, "aiohttp", MINIMAL):
        done = good(runs("1", name) or [])
        if done and "1" in scenarios:
            per = statistics.median(r.cpu for r in done) / scenarios["1"].urls * 1e6
            lines.append(f"- HTTP one host, CPU per check (user+sys / URLs), {name}: {per:.0f} us")
    mine, base = runs("1", checker), runs("1", "curl")
    ratio = paired_ratio(mine, base) if mine and base else None
    check(
        "HTTP one host, wall checker/curl",
        ratio,
        "<= 2.00",
        None if ratio is None else ratio <= 2.0,
    )
    return [*lines, ""]


def version_of(cmd: list[str], pattern: str = r"\S+") -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or not text:
        return "not installed"
    match = re.search(pattern, text)
    return match.group(0) if match else text.splitlines()[0]


def checker_source_digest() -> str:
    """A digest of the package's source: others may edit it while the benchmark runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "checker").rglob("*.py")):
        digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def machine() -> list[str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    py_mod = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    try:
        commit = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    checker_version = version_of([str(CHECKER_BIN), "--version"], r"[\d.]+\S*")
    rows = [
        ("CPUs (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU model", model),
        ("kernel", platform.release()),
        ("Python", version_of([str(VPY), "--version"], r"[\d.]+")),
        ("checker", f"{checker_version} (commit {commit}, working tree as is)"),
        ("nginx", version_of(["nginx", "-v"], r"nginx/\S+")),
        ("aiohttp", version_of([str(VPY), "-c", py_mod, "aiohttp"])),
        ("uvloop", version_of([str(VPY), "-c", py_mod, "uvloop"])),
        ("curl", version_of(["curl", "--version"], r"curl [\d.]+")),
    ]
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a developer's check in under a minute: scenario 1 at 1/10 size (unless"
        " --scenarios says otherwise), written to RESULTS-quick.md",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=None,
        help="runs per contender in scenario 5 (default: --repeats)",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help="comma-separated: 1,2,3,4a,4b,5 (4 means 4a,4b), names (benchmarks/hostnames.py:"
        " host names behind a slow resolver); default all, or 1 with --quick",
    )
    parser.add_argument("--no-curl-1m", action="store_true", help="no curl in scenario 5")
    args = parser.parse_args()
    if args.scenarios is None:
        args.scenarios = "1" if args.quick else "1,2,3,4a,4b,5,names"
    wanted = []
    for part in args.scenarios.split(","):
        part = part.strip().lower()
        wanted += ["4a", "4b"] if part == "4" else [part]
    unknown = set(wanted) - {"1", "2", "3", "4a", "4b", "5", "names"}
    if unknown or args.repeats < 1:
        parser.error(f"bad --scenarios or --repeats: {sorted(unknown)}")
    args.wanted = wanted
    return args


def shards_section() -> list[str]:
    """The latest `processes.py` tables (shards, `--processes`, merge), carried
    into RESULTS.md so that every figure of record is in one file."""
    source = BENCH / "RESULTS-processes.md"
    if not source.exists():
        return []
    text = source.read_text()
    date = re.search(r"^Date: (.*?)\.", text, re.M)
    body = text.split("\n## Results\n", 1)[-1] if "\n## Results\n" in text else ""
    if not body:
        return []
    deeper = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)  # its sections under this one
    return [
        "## Shards and processes",
        "",
        f"From `python3 benchmarks/processes.py` ({date.group(1) if date else 'date unknown'};"
        " `RESULTS-processes.md` has its setup):",
        "",
        *deeper.splitlines(),
        "",
    ]


def begin(script: str) -> tuple[str, dt.datetime]:
    """A benchmark script's command line and start time; its cleanups run at
    exit, and SIGTERM/SIGHUP run them as Ctrl-C does (stop nginx, the child,
    put the sysctls back)."""
    command = shlex.join(["python3", f"benchmarks/{script}", *sys.argv[1:]])
    started = dt.datetime.now(dt.UTC)
    atexit.register(_run_cleanups)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    return command, started


def entry(main: Callable[[], int], stopped: str) -> None:
    """Run a benchmark script's `main`; Ctrl-C says what its cleanups stopped."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # main's finally has already stopped everything
        log(f"interrupted: {stopped}, sysctls restored")
        sys.exit(130)


def main() -> int:
    args = parse_args()
    command, started = begin("run.py")
    _cleanups.append(_kill_current_child)

    setup = [ensure_venv(), compile_checker(), ensure_nginx()]
    source_at_start = checker_source_digest()
    sysctls = Sysctls()
    _cleanups.append(sysctls.restore)
    tune_system(sysctls)
    tmp = Path(tempfile.mkdtemp(prefix="checker-bench-"))
    _cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    try:
        server = start_nginx(tmp)
        log(f"nginx pid {server.proc.pid if server.proc else '?'}, ports {server.ports}")
        problems = sanity_checks(server)
        checkers = checker_contenders()
        contenders = {c.name: c for c in checkers}
        contenders |= {c.name: c for c in (aiohttp_contender(False), aiohttp_contender(True))}
        contenders["curl"] = curl_contender()
        contenders[MINIMAL] = minimal_contender()
        scenarios = {
            s.key: s
            for s in build_scenarios(args.quick, [c.name for c in checkers], not args.no_curl_1m)
            if s.key in args.wanted
        }
        for scenario in scenarios.values():
            if scenario.endpoint in problems:
                scenario.skipped = problems[scenario.endpoint]
                log(f"scenario {scenario.key} skipped: {scenario.skipped}")
                continue
            repeats = args.repeats
            if scenario.key == "5" and args.memory_repeats:
                repeats = args.memory_repeats
            log(f"scenario {scenario.key}: {scenario.title} ({scenario.urls:,} URLs) x{repeats}")
            run_scenario(scenario, contenders, server, tmp, repeats)
        checker_name = checkers[0].name
        report = [
            "# checker benchmark results",
            "",
            f"Date: {started:%Y-%m-%d %H:%M} UTC. Command (from the repository root):",
            "",
            f"    {command}",
            "",
            f"Repeats: {args.repeats}"
            + (f" (scenario 5: {args.memory_repeats})" if args.memory_repeats else "")
            + ", contenders alternating. Medians of the good runs."
            + (" **Quick mode: sizes / 10.**" if args.quick else ""),
            "",
            "## Machine",
            "",
            *machine(),
            "## Setup",
            "",
            *[f"- {line}" for line in setup],
            *(
                []
                if checker_source_digest() == source_at_start
                else [
                    "- **checker's source changed while the benchmark ran** (the venv install"
                    " is editable): later runs measured newer code than earlier ones"
                ]
            ),
            *[f"- {line}" for line in sysctls.changed],
            "- nginx: 1 worker, access_log off, keepalive_requests 100000, keepalive_timeout 60;"
            " its CPU column is master+worker CPU seconds / wall (100% = one core busy).",
            "",
            "## Results",
            "",
        ]
        for scenario in scenarios.values():
            report += table(scenario)
        report += verdicts(scenarios, checker_name, args.quick)
        if "names" in args.wanted:
            report += [
                "## Host names",
                "",
                "`benchmarks/hostnames.py` ran after these (its own nginx and DNS responder);"
                " its tables are in `RESULTS-hostnames.md`.",
                "",
            ]
        report += shards_section()
        text = "\n".join(report)
        print(text)
        out = RESULTS.with_name("RESULTS-quick.md") if args.quick else RESULTS
        out.write_text(text)
        log(f"written to {out}")
    finally:
        _run_cleanups()
    if "names" in args.wanted:
        # One command for every scenario: the host-name one has its own
        # server and resolver setup, so it runs as its own script, after.
        names = [sys.executable, str(BENCH / "hostnames.py"), "--repeats", str(args.repeats)]
        subprocess.run([*names, *(["--quick"] if args.quick else [])], check=False)
    return 0


if __name__ == "__main__":
    entry(main, "nginx and the running contender stopped")
