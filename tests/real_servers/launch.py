"""Start a real HTTP server as a subprocess on 127.0.0.1, wait until it answers, stop it.

The Python servers bind port 0 themselves (the system picks a free port) and
say which one in their log, which is read from a file (a pipe nobody drains
would block a chatty server). nginx cannot say, so it gets a socket this
process bound to port 0 and passes down (nginx's inherited-sockets variable,
NGINX=fd;): no window in which another process could take the port. apache2
and lighttpd take neither: they get a port that was free a moment before, and
are started again on another if one took it meanwhile.

Readiness is one HTTP GET /ok answered with 200, polled until a deadline. Each
server runs in a session of its own and is stopped by its pid (SIGTERM, then
SIGKILL to its process group, which only it and its own workers are in).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.real_servers import routes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the project: `tests.real_servers` imports from here
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
START_DEADLINE_S = 15.0
STOP_DEADLINE_S = 5.0


class Unavailable(Exception):
    """The server's package is not installed here (the test skips, saying this)."""


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    keeps_alive: bool  # whether it keeps HTTP/1.1 connections open between requests
    head_body: bool  # whether it sends the app's body after a HEAD response (it should not)
    notes: list[str] = field(default_factory=list)
    cleanup: Path | None = None  # a folder of its own outside the test's, removed once stopped

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


@dataclass(frozen=True)
class Spec:
    """How to start one server from Python: its command, and the log line with its port."""

    module: str  # what must be importable for the server to exist here
    command: Callable[[], list[str]]
    port_line: re.Pattern[str]
    keeps_alive: bool
    head_body: bool = False


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _gunicorn() -> list[str]:
    settings: Any = importlib.import_module("gunicorn.config").KNOWN_SETTINGS
    cmd = _py(
        "-m", "gunicorn",
        "--worker-class", "sync",
        "--workers", "2",
        "--bind", "127.0.0.1:0",
        "--graceful-timeout", "2",
        "--log-level", "info",
    )  # fmt: skip
    # Newer gunicorns open a control socket under $HOME unless told not to.
    if any("--no-control-socket" in (s.cli or []) for s in settings):
        cmd.append("--no-control-socket")
    return [*cmd, "tests.real_servers.wsgi_app:app"]


SPECS: dict[str, Spec] = {
    "waitress": Spec(
        "waitress",
        lambda: _py(
            "-m",
            "waitress",
            "--listen=127.0.0.1:0",
            "--threads=4",
            "tests.real_servers.wsgi_app:app",
        ),
        re.compile(r"Serving on http://127\.0\.0\.1:(\d+)"),
        keeps_alive=True,
        head_body=True,  # waitress 3.0.2 writes the WSGI body after a HEAD response
    ),
    "gunicorn": Spec(
        "gunicorn",
        _gunicorn,
        re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)"),
        keeps_alive=False,  # the sync worker closes after every response
    ),
    "uvicorn": Spec(
        "uvicorn",
        lambda: _py(
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workers",
            "1",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "2",
            "tests.real_servers.asgi_app:app",
        ),
        re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)"),
        keeps_alive=True,
    ),
    "hypercorn": Spec(
        "hypercorn",
        lambda: _py(
            "-m",
            "hypercorn",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--graceful-timeout",
            "1",
            "tests.real_servers.asgi_app:app",
        ),
        re.compile(r"Running on http://127\.0\.0\.1:(\d+)"),
        keeps_alive=True,
    ),
    "tornado": Spec(
        "tornado",
        lambda: _py("-m", "tests.real_servers.serve", "tornado"),
        re.compile(r"listening on 127\.0\.0\.1:(\d+)"),
        keeps_alive=True,
    ),
    "werkzeug": Spec(
        "werkzeug",
        lambda: _py("-m", "tests.real_servers.serve", "werkzeug"),
        re.compile(r"listening on 127\.0\.0\.1:(\d+)"),
        # HTTP/1.1, but "Connection: close" on every response (werkzeug 2.1+), and
        # the body after a HEAD response, harmless since the connection ends.
        keeps_alive=False,
        head_body=True,
    ),
}

# Debian's servers started from a config file of ours (besides nginx).
CONFIGURED = ("apache2", "lighttpd")
NAMES = (*SPECS, "nginx", *CONFIGURED)
APACHE_MODULES = Path("/usr/lib/apache2/modules")
# The event MPM is Debian's default; cgid is its CGI module for threaded MPMs.
APACHE_LOADS = (
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("mime_module", "mod_mime.so"),
    ("alias_module", "mod_alias.so"),
    ("rewrite_module", "mod_rewrite.so"),
    ("cgid_module", "mod_cgid.so"),
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_port(proc: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str]) -> int:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        match = pattern.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before saying its port")
        time.sleep(0.02)
    raise RuntimeError(f"did not say its port within {START_DEADLINE_S:g}s")


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    """Poll GET /ok until a 200 comes back (a connect alone may only reach the backlog)."""
    deadline = time.monotonic() + START_DEADLINE_S
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(1.0)
                sock.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                first = sock.recv(64)
            if first.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                return
            last = repr(first)
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"not answering GET /ok within {START_DEADLINE_S:g}s (last: {last})")


def _spawn(
    cmd: list[str], log: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            pass_fds=pass_fds,
            start_new_session=True,
        )


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _start_nginx(workdir: Path) -> Server:
    binary = _nginx_binary()
    if binary is None:
        raise Unavailable("nginx is not installed (Debian: apt-get install nginx-light)")
    if not ECHO_MODULE.exists():
        raise Unavailable(
            f"nginx's echo module ({ECHO_MODULE}) is not installed, needed for /slow and"
            " /chunked (Debian: apt-get install libnginx-mod-http-echo)"
        )
    prefix = workdir / "nginx"
    (prefix / "www").mkdir(parents=True, exist_ok=True)
    (prefix / "www" / "big.txt").write_bytes(routes.BIG_BODY)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        port = listener.getsockname()[1]
        template = (HERE / "nginx.conf.template").read_text(encoding="utf-8")
        conf = prefix / "nginx.conf"
        conf.write_text(
            template.format(
                prefix=prefix,
                port=port,
                slow_s=routes.SLOW_S,
                load_echo=f"load_module {ECHO_MODULE};",
                # As root, the worker would run as nobody and could not read
                # /big.txt under pytest's private (0700) temporary folder.
                user=f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "",
            ),
            encoding="utf-8",
        )
        log = prefix / "stderr.log"
        fd = listener.fileno()
        proc = _spawn(
            [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
            log,
            env={**os.environ, "NGINX": f"{fd};"},
            pass_fds=(fd,),
        )
    finally:
        listener.close()  # nginx holds its own copy now
    server = Server("nginx", port, proc, prefix / "error.log", keeps_alive=True, head_body=False)
    try:
        _wait_ready(proc, port)
    except Exception as exc:
        stop(server)
        stderr = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(
            f"nginx: {exc}\n--- error.log:\n{server.log_tail()}\n--- stderr:\n{stderr}"
        ) from None
    return server


def _cgi_scripts() -> dict[str, bytes]:
    """The routes apache2 and lighttpd serve by CGI, as shell scripts. Naive
    like the apps: they print a body for HEAD too; the server must drop it."""

    def body(data: bytes) -> str:
        return "printf '%s' " + repr(data.decode())  # (ASCII, no quote in it)

    head = "#!/bin/sh\n"
    text = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
    scripts = {
        "head405": head
        + 'if [ "$REQUEST_METHOD" = HEAD ]; then\n'
        + "  printf 'Status: 405 Method Not Allowed\\r\\n'\n"
        + f"  {text}  {body(routes.NOT_ALLOWED_BODY)}\n"
        + f"else\n  {text}  {body(routes.OK_BODY)}\nfi\n",
        "error": head
        + "printf 'Status: 500 Internal Server Error\\r\\n'\n"
        + f"{text}{body(routes.ERROR_BODY)}\n",
        # No Content-Length: the server streams it (chunked on HTTP/1.1),
        # each piece a write of its own.
        "chunked": head + text + "".join(f"{body(c)}\n" for c in routes.CHUNKS),
        "slow": head + f"sleep {routes.SLOW_S}\n{text}{body(routes.OK_BODY)}\n",
    }
    return {name: script.encode() for name, script in scripts.items()}


def _served_tree(prefix: Path) -> None:
    """The files apache2 and lighttpd serve. Readable by all: apache2 started
    as root serves as nobody (it refuses to serve as root)."""
    for folder in (prefix, prefix / "www", prefix / "cgi"):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
    (prefix / "www" / "ok.txt").write_bytes(routes.OK_BODY)
    (prefix / "www" / "big.txt").write_bytes(routes.BIG_BODY)
    for name, script in _cgi_scripts().items():
        path = prefix / "cgi" / f"{name}.sh"
        path.write_bytes(script)
        path.chmod(0o755)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _configured_command(name: str, prefix: Path, port: int, extra: str) -> list[str]:
    """Write `name`'s config for `port` into `prefix`, `extra` lines at its
    end; its command line."""
    template = (HERE / f"{name}.conf.template").read_text(encoding="utf-8") + extra
    conf = prefix / f"{name}.conf"
    if name == "lighttpd":
        conf.write_text(template.format(prefix=prefix, port=port), encoding="utf-8")
        return [_binary("lighttpd"), "-D", "-f", str(conf)]
    modules = "\n".join(f"LoadModule {m} {APACHE_MODULES / so}" for m, so in APACHE_LOADS)
    # (By number: the nobody user and group of Debian, and of most systems.)
    user = "User #65534\nGroup #65534" if os.geteuid() == 0 else ""
    conf.write_text(
        template.format(prefix=prefix, port=port, modules=modules, user=user), encoding="utf-8"
    )
    return [_binary("apache2"), "-f", str(conf), "-DFOREGROUND"]


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise Unavailable(f"{name} is not installed (Debian: apt-get install {name})")
    return found


def _start_configured(name: str, workdir: Path, extra: str = "") -> Server:
    _binary(name)
    if name == "apache2":
        missing = [so for _, so in APACHE_LOADS if not (APACHE_MODULES / so).exists()]
        if missing:
            raise Unavailable(f"apache2's modules {missing} are not in {APACHE_MODULES}")
    # Not under workdir: pytest's temporary folders are 0700, closed to nobody.
    prefix = Path(tempfile.mkdtemp(prefix=f"checker-{name}-"))
    _served_tree(prefix)
    log = workdir / f"{name}.log"
    for _ in range(3):
        port = _free_port()
        proc = _spawn(_configured_command(name, prefix, port, extra), log, env=dict(os.environ))
        server = Server(name, port, proc, prefix / "error.log", True, False)
        try:
            _wait_ready(proc, port)
            server.cleanup = prefix
            return server
        except Exception as exc:
            stop(server)
            said = log.read_text(encoding="utf-8", errors="replace") + server.log_tail()
            if "in use" not in said:  # (another process took the port: try another)
                shutil.rmtree(prefix, ignore_errors=True)
                raise RuntimeError(f"{name}: {exc}\n--- its logs:\n{said[-2000:]}") from None
    shutil.rmtree(prefix, ignore_errors=True)
    raise RuntimeError(f"{name}: three ports in a row were taken before it could bind them")


def start(name: str, workdir: Path, extra: str = "") -> Server:
    """Start server `name` with its log in `workdir`; raises Unavailable if
    not installed. `extra`: lines for the end of apache2's or lighttpd's config."""
    if name == "nginx":
        return _start_nginx(workdir)
    if name in CONFIGURED:
        return _start_configured(name, workdir, extra)
    spec = SPECS[name]
    if importlib.util.find_spec(spec.module) is None:
        raise Unavailable(f"the Python package {spec.module!r} is not installed")
    log = workdir / f"{name}.log"
    proc = _spawn(spec.command(), log, env=_env())
    server = Server(name, 0, proc, log, spec.keeps_alive, spec.head_body)
    try:
        server.port = _wait_port(proc, log, spec.port_line)
        _wait_ready(proc, server.port)
    except Exception as exc:
        stop(server)
        raise RuntimeError(f"{name}: {exc}\n--- its log:\n{server.log_tail()}") from None
    return server


def stop(server: Server) -> None:
    """SIGTERM by pid; if it is still there after a deadline, SIGKILL its process group."""
    try:
        _stop(server)
    finally:
        if server.cleanup is not None:
            shutil.rmtree(server.cleanup, ignore_errors=True)


def _stop(server: Server) -> None:
    proc = server.proc
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_DEADLINE_S)
        return
    except subprocess.TimeoutExpired:
        server.notes.append(f"did not stop within {STOP_DEADLINE_S:g}s of SIGTERM: killed")
    # Not reaped yet, so the pid is still ours; it leads its own session, whose
    # process group holds only it and the workers it forked.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        server.notes.append("still running after SIGKILL")
