"""The command line: arguments, the terminal, exit codes. No protocol code here.

Exit codes (README, "Exit codes"):
  0   every URL is up
  1   at least one URL is down (or its line is invalid)
  2   usage or input error: bad option, missing/unreadable/empty list, unwritable --out
  3   another run holds the report folder's lock (see --wait-lock)
  130 stopped by Ctrl-C (SIGINT), reports of what finished were written
  143 stopped by SIGTERM, likewise
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from checker import __version__, loops
from checker.check import CheckOptions
from checker.config import ConfigError, FileConfig
from checker.expect import CellError, parse_header
from checker.http.body import MAX_BODY
from checker.http.client import ClientConfig, LazyContext
from checker.http.proxy import ProxyConfigError, ProxySettings
from checker.http.resolver import SystemResolver, resolver_threads
from checker.limits import exit_now, fit_open_files, open_standard_descriptors, return_large_blocks
from checker.lists import ListInputs
from checker.lock import LOCK_NAME, LockBusy, run_lock
from checker.loops import LOOPS, LoopError, choose
from checker.pool import PoolOptions
from checker.reports.formats import DEFAULT_FORMATS, FORMATS
from checker.results import INVALID, NOT_CHECKED
from checker.run import (
    RunConfig,
    RunError,
    RunOutcome,
    ensure_out_dir,
    recover_all,
    run_check,
    validate_lists,
)
from checker.store.index import read_runs, url_history
from checker.store.policy import HISTORY_DAYS
from checker.summary import decided, format_summary
from checker.targets import LIST_FORMATS, ListError, Shard

if TYPE_CHECKING:
    from checker.notify import SMTPConfig

EXIT_UP = 0
EXIT_DOWN = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_IO = 4  # the system refused a read or write the run needed (a full disk, permissions)
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # as a Unix tool killed by SIGPIPE


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, not a usage dump."""

    check: argparse.ArgumentParser | None = None  # the `check` subcommand's, for --config

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"checker: error: {message} (see '{self.prog} --help')\n")


def _number(
    convert: Callable[[str], float], what: str, ok: Callable[[float], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse type: `convert` the text, then check it, with one-line messages."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} {rule}")
        return value

    return parse


_positive_int = _number(int, "a whole number", lambda v: v >= 1, "must be at least 1")
_count = _number(int, "a whole number", lambda v: v >= 0, "must not be negative")
_seconds = _number(
    float,
    "a number of seconds",
    lambda v: 0 < v < float("inf"),
    "must be a positive number of seconds",
)
_days = _number(
    float, "a number of days", lambda v: 0 < v < float("inf"), "must be a positive number of days"
)
_wait = _number(
    float, "a number of seconds", lambda v: 0 <= v < float("inf"), "must be zero or more seconds"
)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _to_seconds(text: str) -> float:
    """ "30m", "6h", "1d", "90s". A bare number has no unit everyone would
    read the same way, so it is refused."""
    text = text.strip()
    if text[-1:].lower() not in _UNITS:
        raise ValueError(text)
    return float(text[:-1]) * _UNITS[text[-1].lower()]


_duration = _number(
    _to_seconds,
    "a duration such as 30m, 6h or 1d",
    lambda v: 0 < v < float("inf"),
    "must be more than nothing",
)


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _processes(text: str) -> int:
    """N, or `auto`: the CPUs this process may use, or 1 where they are two
    or fewer. One process uses two already (its reporter writes the reports
    on the second), and shards write theirs only in the merge, after the
    last of them: on 2 CPUs `--processes 2` had 0.96x the checks per second
    of one process on 10,000 hosts, 0.91x on one host (RESULTS-processes.md)."""
    if text.strip().lower() == "auto":
        from checker.parallel import usable_cpus

        cpus = usable_cpus()
        return cpus if cpus > 2 else 1
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or auto") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{n}: from 1 to 256, or auto")
    return n


def _header(text: str) -> tuple[str, str]:
    try:
        return parse_header(text, os.environ)
    except CellError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def _to_bytes(text: str) -> float:
    """ "65536", "64k", "1M"."""
    text = text.strip().lower().removesuffix("b")
    unit = text[-1:] if text[-1:] in ("k", "m") else ""
    return int(text[: len(text) - len(unit)]) * _SIZE_UNITS[unit]


_size = _number(_to_bytes, "a size such as 65536, 64k or 1M", lambda v: v >= 1, "must be 1 or more")


def _formats(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(unknown) or text!r} (choose from {', '.join(FORMATS)})"
        )
    return list(dict.fromkeys(names))


def build_parser() -> _Parser:
    parser = _Parser(prog="checker", description="Check that websites answer, concurrently.")
    parser.add_argument("--version", action="version", version=f"checker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    check = sub.add_parser("check", help="check the URLs of one or more list files")
    check.add_argument(
        "lists",
        nargs="*",
        metavar="LIST",
        help="URL list file(s); '-' for standard input; or the URLs themselves"
        " (none: the config file's groups and lists)",
    )
    check.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of defaults ([check]) and groups of URLs ([[group]]);"
        " the command line and CHECKER_* variables win over it",
    )
    add_check_options(check)
    parser.check = check

    merge = sub.add_parser(
        "merge", help="one report from the JSON reports of the shards of one list (--shard)"
    )
    merge.add_argument("out", metavar="OUT", help="the report folder of the merged runs")
    merge.add_argument(
        "reports", nargs="+", metavar="REPORT", help="each shard's JSON report (latest.json)"
    )
    merge.add_argument(
        "--partial",
        action="store_true",
        help="merge even with shards missing: their lines are reported as not checked",
    )
    merge.add_argument(
        "--format",
        type=_formats,
        default=list(DEFAULT_FORMATS),
        metavar="LIST",
        help=f"formats to write (default: {','.join(DEFAULT_FORMATS)})",
    )
    merge.add_argument(
        "--max-age",
        type=_duration,
        metavar="D",
        help="a shard report whose run started longer ago than this (30m, 6h) counts as"
        " missing: a machine whose job stopped leaves an old latest.json",
    )
    merge.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    merge.add_argument(
        "--wait-lock", type=_wait, default=0.0, metavar="S", help="wait for OUT's lock"
    )
    merge.add_argument(
        "--keep", type=_positive_int, metavar="N", help="keep the last N merged runs' reports"
    )
    merge.add_argument("--keep-days", type=_days, metavar="D", help="and none older than D days")
    merge.add_argument(
        "--history-days",
        type=_positive_int,
        default=HISTORY_DAYS,
        metavar="D",
        help="keep every result this many days in OUT's history database (default: %(default)s)",
    )
    merge.add_argument(
        "--ca-file", metavar="PEM", help="also trust these CA certificates (for the webhook)"
    )
    add_alert_options(merge, merge=True)

    report = sub.add_parser(
        "report",
        help="reports from a killed run's journal, or HTML/CSV again from a JSON report",
    )
    report.add_argument(
        "file", metavar="FILE", help="a status-<time>.journal.jsonl or status-<time>.json file"
    )
    report.add_argument(
        "--format",
        type=_formats,
        default=None,
        metavar="LIST",
        help="formats to write (default: a journal gives csv,json,html; a JSON report html,csv)",
    )
    report.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    report.add_argument(
        "--wait-lock",
        type=_wait,
        default=0.0,
        metavar="S",
        help="wait this long for another run's lock (default: fail at once)",
    )

    history = sub.add_parser("history", help="recent results of a URL, or of every run")
    history.add_argument(
        "url", nargs="?", help="the URL as written in the list (default: all runs)"
    )
    history.add_argument(
        "--out", default="reports", metavar="DIR", help="report folder (default: %(default)s)"
    )
    history.add_argument(
        "--last",
        type=_positive_int,
        default=10,
        metavar="N",
        help="how many runs back (default: %(default)s)",
    )

    demo = sub.add_parser("demo", help="start local demo sites, check them, write reports")
    demo.add_argument("--out", default="reports/demo", help="report folder (default: %(default)s)")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser


def add_alert_options(p: argparse.ArgumentParser, *, merge: bool) -> None:
    """The alert channels and policy, for `check` and for `merge` (whose
    policy is, unless given, the one its shards ran with)."""
    alerts = p.add_argument_group(
        "alerts (sent only when something changed since the last run; "
        "each option can also come from the CHECKER_* environment variable named)"
    )
    # (option, metavar or None for a flag, default, help); the variable is the
    # option's name: --smtp-host -> CHECKER_SMTP_HOST (twine's EnvironmentDefault).
    specs: list[tuple[str, str | None, str | None, str]] = [
        ("--notify-webhook", "URL", None, "POST a JSON summary of the changes here"),
        ("--notify-email", "ADDRS", None, "mail the changes to these comma-separated addresses"),
        ("--smtp-host", "HOST", "localhost", "mail server (default: localhost)"),
        ("--smtp-port", "N", None, "25, or 587 with --smtp-starttls, 465 with --smtp-tls"),
        ("--smtp-from", "ADDR", None, "sender address (default: checker@<this host>)"),
        ("--smtp-user", "USER", None, "log in as USER (AUTH PLAIN or LOGIN)"),
        ("--smtp-password", "PW", None, "its password; prefer the variable: options show in ps"),
        ("--smtp-starttls", None, None, "upgrade to TLS with STARTTLS (variable: 1)"),
        ("--smtp-tls", None, None, "TLS from the start, port 465 (variable: 1)"),
        (
            "--alert-after",
            "N",
            None if merge else "1",
            "a URL is a change once it is down (or back up) in N complete runs in a row;"
            " each run's retries come first"
            + (" (default: as the shards ran)" if merge else " (default: 1)"),
        ),
        (
            "--remind-every",
            "D",
            None,
            "say again what is still down this long after its last alert: 30m, 6h, 1d"
            " (default: never)",
        ),
    ]
    kinds: dict[str, Callable[[str], Any]] = {
        "--smtp-port": _positive_int,
        "--alert-after": _positive_int,
        "--remind-every": _duration,
    }
    for option, metavar, default, help_ in specs:
        var = "CHECKER_" + option[2:].replace("-", "_").upper()
        value = os.environ.get(var, default)
        if metavar is None:
            alerts.add_argument(
                option, action="store_true", default=_flag(var, value), help=f"{help_} [{var}]"
            )
        else:
            kind = kinds.get(option, str)
            if value is not None and var in os.environ:
                # (Its own name in the message: argparse named the option,
                # which the user never typed: found by a review.)
                try:
                    kind(value)
                except argparse.ArgumentTypeError as exc:
                    raise ConfigError(f"{var}: {exc}") from None
            alerts.add_argument(
                option, type=kind, default=value, metavar=metavar, help=f"{help_} [{var}]"
            )


_FLAGS = {
    **dict.fromkeys(("1", "on", "yes", "true"), True),
    **dict.fromkeys(("", "0", "off", "no", "false"), False),
}


def _flag(var: str, value: str | None) -> bool:
    """An on/off variable (`CHECKER_SMTP_TLS`): `=0` turned TLS on, as any
    value did (found by a review), and every alert from cron failed."""
    flag = _FLAGS.get((value or "").strip().lower())
    if flag is None:
        raise ConfigError(f"{var}={value!r}: use 1 or 0 (on, off, yes, no, true, false)")
    return flag


def add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="check only the URLs whose host falls in shard K of N (a stable hash of the"
        " host); invalid lines are reported by shard 1",
    )
    p.add_argument(
        "--processes",
        type=_processes,
        default=1,
        metavar="N",
        help="run N shards of the lists at once, one process each, merged into one report"
        " (auto: one per usable CPU, or 1 where there are two or fewer;"
        " default: %(default)s)",
    )
    p.add_argument(
        "--list-format",
        choices=LIST_FORMATS,
        default="auto",
        help="plain: one URL a line; csv: a header row, then a URL and its expectations a row;"
        " auto: csv when the first line names a url column (default: %(default)s)",
    )
    out = p.add_argument_group("reports")
    out.add_argument(
        "--out", default="reports", metavar="DIR", help="report folder (default: %(default)s)"
    )
    out.add_argument(
        "--format",
        type=_formats,
        default=list(DEFAULT_FORMATS),
        metavar="LIST",
        help=f"comma-separated report formats from {','.join(FORMATS)} "
        f"(default: {','.join(DEFAULT_FORMATS)})",
    )
    out.add_argument(
        "--keep",
        type=_positive_int,
        default=None,
        metavar="N",
        help="after a complete run, keep the reports of the last N runs only",
    )
    out.add_argument(
        "--keep-days",
        type=_days,
        default=None,
        metavar="D",
        help="after a complete run, delete reports older than D days",
    )
    out.add_argument(
        "--history-days",
        type=_positive_int,
        default=HISTORY_DAYS,
        metavar="D",
        help=f"keep every result this many days in the history database, then one row "
        f"per URL per day (default {HISTORY_DAYS})",
    )
    out.add_argument(
        "--cert-warn-days",
        type=_count,
        default=14,
        metavar="D",
        help="a certificate expiring within D days is a change (default: %(default)s)",
    )
    out.add_argument(
        "--wait-lock",
        type=_wait,
        default=0.0,
        metavar="S",
        help="if another run holds --out, wait up to S seconds (default: exit 3 at once)",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    out.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )

    run = p.add_argument_group("concurrency and retries")
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        default=100,
        metavar="N",
        help="checks at once (default: %(default)s)",
    )
    run.add_argument(
        "--per-host",
        type=_positive_int,
        default=6,
        metavar="N",
        help="checks at once per host (default: %(default)s)",
    )
    run.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop when installed (auto), or asyncio's own (default: %(default)s)",
    )
    run.add_argument(
        "--host-interval",
        type=_wait,
        default=0.0,
        metavar="S",
        help="at least S seconds between the starts of two requests to one host"
        " (default: 0; a host that answers 429 or 503 is slowed down anyway)",
    )
    run.add_argument(
        "--retries",
        type=_count,
        default=2,
        metavar="N",
        help="retries of a transient failure (default: %(default)s)",
    )

    add_alert_options(p, merge=False)

    http = p.add_argument_group("HTTP")
    http.add_argument(
        "--method",
        type=str.upper,
        choices=("HEAD", "GET"),
        default="HEAD",
        help="HEAD (confirmed with GET when down) or GET (default: %(default)s)",
    )
    http.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="deadline for a whole check (default: %(default)s)",
    )
    http.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="deadline for DNS + connect + TLS (default: %(default)s)",
    )
    http.add_argument(
        "--max-redirects",
        type=_count,
        default=10,
        metavar="N",
        help="redirects to follow (default: %(default)s)",
    )
    http.add_argument(
        "--no-follow", action="store_true", help="report a 3xx as it is, do not follow it"
    )
    http.add_argument(
        "-H",
        "--header",
        dest="headers",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send this header with every request (repeatable); ${VAR} in the value is the"
        " environment variable VAR, and values are never written in a report",
    )
    http.add_argument(
        "--max-body",
        type=_size,
        default=MAX_BODY,
        metavar="BYTES",
        help="bytes of a body kept for a CSV list's body checks, decoded (default: 1M)",
    )
    http.add_argument(
        "--proxy",
        metavar="URL",
        help="send every request through this http:// proxy (https through a CONNECT"
        " tunnel); default: HTTP_PROXY, HTTPS_PROXY and NO_PROXY from the environment",
    )
    http.add_argument(
        "--user-agent",
        default=f"checker/{__version__}",
        metavar="TEXT",
        help="the User-Agent sent (default: %(default)s)",
    )
    http.add_argument(
        "--no-reuse",
        action="store_true",
        help="a new connection for every request (default: keep connections alive per host)",
    )
    http.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    http.add_argument(
        "--ca-file", metavar="PEM", help="also trust the CA certificates in this file"
    )


def check_config(args: argparse.Namespace) -> tuple[RunConfig, list[str]]:
    """The run's configuration from parsed arguments, plus notes for the user."""
    notes: list[str] = []
    from checker.reports.prestart import setting as reporter_setting

    try:
        reporter_setting()  # (refused before the report folder is touched)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if args.processes > 1 and args.shard:
        raise RunError("--processes and --shard: give one (a run is one shard, or makes N)")
    if args.shard and _given_here(args):
        # (From a CHECKER_* variable, as a crontab sets for every line, it is
        # quietly the merge's: see the README.)
        notes.append("--shard: a shard sends no alerts; its merge does (checker merge)")
    ssl_context, proxies = _tls_and_proxies(args.ca_file, args.insecure, args.proxy)
    try:
        loop = choose(args.loop)
    except LoopError as exc:
        raise RunError(str(exc)) from None
    concurrency, note = fit_open_files(args.concurrency)
    if note:
        notes.append(note)
    processes = args.processes
    if processes > concurrency:
        at_once = f"{concurrency} check{'s' if concurrency != 1 else ''} at once"
        running = f"{concurrency} process{'es' if concurrency != 1 else ''}"
        notes.append(f"--processes {processes}: at most {at_once}: running {running}")
        processes = concurrency
    client = ClientConfig(
        proxies=proxies,
        ssl_context=ssl_context,
        connect_timeout=min(args.connect_timeout, args.timeout),
        user_agent=args.user_agent,
        # A lookup per worker, plus room for as many stuck on names that never
        # answer (each holds its thread until the system gives up on it).
        resolver=SystemResolver(max_threads=resolver_threads(concurrency)),
    )
    options = {
        "method": args.method,
        "timeout": args.timeout,
        "connect_timeout": client.connect_timeout,
        "concurrency": concurrency,
        "per_host": args.per_host,
        "retries": args.retries,
        "host_interval": args.host_interval,
        "reuse": not args.no_reuse,
        "loop": loop,
        "cert_warn_days": args.cert_warn_days,
        "alert_after": args.alert_after,
        "remind_every_s": args.remind_every,
        "follow_redirects": not args.no_follow,
        "max_redirects": args.max_redirects,
        "insecure": args.insecure,
        "ca_file": args.ca_file,
        "formats": args.format,
        "list_format": args.list_format,
        "shard": str(args.shard) if args.shard else None,
        "processes": processes,
        # Names only: a header's value may be a secret.
        "headers": [name for name, _ in args.headers],
        "max_body": args.max_body,
        # Where the proxies are, never their credentials.
        "proxy": {
            "http": proxies.http.shown if proxies.http else None,
            "https": proxies.https.shown if proxies.https else None,
            "no_proxy": list(proxies.no_proxy),
        },
    }
    config = RunConfig(
        lists=args.lists,
        out_dir=args.out,
        formats=args.format,
        check=CheckOptions(
            client=client,
            method=args.method,
            follow_redirects=not args.no_follow,
            max_redirects=args.max_redirects,
            timeout=args.timeout,
            headers=tuple(args.headers),
            max_body=args.max_body,
        ),
        pool=PoolOptions(
            concurrency=concurrency,
            per_host=args.per_host,
            retries=args.retries,
            reuse=not args.no_reuse,
            host_interval=args.host_interval,
        ),
        progress=not args.quiet and not args.no_progress and sys.stderr.isatty(),
        options=options,
        cert_warn_days=args.cert_warn_days,
        alert_after=args.alert_after,
        remind_every=args.remind_every,
        keep=args.keep,
        keep_days=args.keep_days,
        list_format=args.list_format,
        shard=args.shard,
        processes=processes,
        history=args.shard is None,
        history_days=args.history_days,
        webhook=_webhook(args.notify_webhook),
        smtp=smtp_config(args),
    )
    return config, notes


def _webhook(url: str | None) -> str | None:
    """--notify-webhook, refused now if it can never be sent to."""
    if not url:
        return None
    from checker.notify.errors import NotifyError
    from checker.notify.webhook import webhook_target

    try:
        webhook_target(url)
    except NotifyError as exc:
        raise RunError(f"--notify-webhook: {exc}") from None
    return url


def _tls_and_proxies(
    ca_file: str | None, insecure: bool, proxy: str | None
) -> tuple[LazyContext, ProxySettings]:
    """The client's TLS context (the ca_file read now, the rest at the first
    TLS check) and proxies (for the checks, or for a merge's webhook), each
    failure one line for the user."""
    ssl_context = LazyContext(insecure=insecure, ca_file=ca_file)
    try:
        ssl_context.check()
    except (OSError, ssl.SSLError) as exc:
        raise RunError(f"--ca-file {ca_file}: cannot load CA certificates: {exc}") from None
    try:
        return ssl_context, ProxySettings.from_environment(os.environ, proxy)
    except ProxyConfigError as exc:
        raise RunError(str(exc)) from None


def _given_here(args: argparse.Namespace) -> bool:
    """Whether an alert channel was asked for on the command line (or in the
    config file), not only by its CHECKER_* variable."""
    for name in ("notify_webhook", "notify_email"):
        value = getattr(args, name, None)
        if value and value != os.environ.get("CHECKER_" + name.upper()):
            return True
    return False


def smtp_config(args: argparse.Namespace) -> SMTPConfig | None:
    if not args.notify_email:
        return None
    # Only a run that mails imports the mail code (a megabyte of the email package).
    from checker.notify import SMTPConfig
    from checker.notify.smtp import default_helo_name

    recipients = tuple(a.strip() for a in args.notify_email.split(",") if a.strip())
    port = args.smtp_port or (465 if args.smtp_tls else 587 if args.smtp_starttls else 25)
    try:
        return SMTPConfig(
            host=args.smtp_host,
            port=int(port),
            sender=args.smtp_from or f"checker@{default_helo_name()}",
            recipients=recipients,
            user=args.smtp_user or None,
            password=args.smtp_password or None,
            starttls=args.smtp_starttls,
            tls=args.smtp_tls,
        )
    except ValueError as exc:
        raise RunError(f"mail settings: {exc}") from None


def run_and_report(config: RunConfig, quiet: bool, args: argparse.Namespace) -> int:
    """Run the check, print the summary, and turn the outcome into an exit code."""
    if config.processes > 1:
        from checker.parallel.coordinator import run_processes
        from checker.reports.prestart import let_go

        let_go()  # (its shards have their CPUs: a reporter started early is not used)

        work = run_processes(config, argparse.Namespace(**{**vars(args), "lists": config.lists}))
    else:
        work = run_check(config)
    try:
        outcome = loops.run(work, config.options["loop"])
    finally:
        work.close()  # (a Ctrl-C as the loop began: it never ran, and says nothing)
    _tell(outcome, quiet, shard=str(config.shard) if config.shard else None)
    if outcome.interrupted and outcome.signal:
        return 128 + outcome.signal
    # A run cut short with no signal (a --processes shard failed) is no
    # all-clear either.
    whole = not (outcome.stats.down or outcome.stats.invalid or outcome.interrupted)
    return EXIT_UP if whole else EXIT_DOWN


def _first_missing(path: str) -> str | None:
    """The outermost folder of `path` that does not exist yet (None: it does)."""
    missing = None
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _remove_made(path: str, top: str) -> None:
    """Remove what ensure_out_dir made of `path`, up to `top`, if it holds
    nothing but the lock."""
    path = os.path.abspath(path)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(path, LOCK_NAME))
        while True:
            os.rmdir(path)
            if path == top:
                break
            path = os.path.dirname(path)


def _tell(outcome: RunOutcome, quiet: bool, shard: str | None = None) -> None:
    """The notes (and, unless quiet, the news and the summary) of a run or a merge."""
    for note in outcome.notes + ([] if quiet else outcome.info):
        print(f"checker: {note}", file=sys.stderr)
    if quiet:
        return
    merged = outcome.run.get("merged")
    print(
        format_summary(
            outcome.stats,
            outcome.duration_s,
            outcome.reports,
            outcome.interrupted,
            changes=outcome.changes,
            changes_total=outcome.run.get("changes_total"),
            shard=shard,
            merged=merged if isinstance(merged, list) else None,
            stopped=outcome.signal is not None,
        )
    )


def merge_reports(args: argparse.Namespace) -> int:
    from checker.reports.merge import MergeError, MergeOptions, merge
    from checker.reports.recover import remove_stale_spools
    from checker.run import Channels, after_reports

    channels = None
    if args.notify_webhook or args.notify_email:
        ssl_context, proxies = _tls_and_proxies(args.ca_file, insecure=False, proxy=None)
        client = ClientConfig(ssl_context=ssl_context, proxies=proxies)
        channels = Channels(_webhook(args.notify_webhook), smtp_config(args), client)
    how = MergeOptions(
        formats=args.format,
        partial=args.partial,
        max_age=args.max_age,
        alert_after=args.alert_after,
        remind_every=args.remind_every,
        roll_up_days=args.history_days,
        alert=channels.names if channels is not None else (),
    )

    async def merge_and_alert() -> RunOutcome:
        # What a merge killed outright (SIGKILL, OOM) was writing into OUT;
        # the merge holds OUT's lock (main), so none is being written.
        await asyncio.to_thread(remove_stale_spools, args.out)
        # A merge is written whole or not at all: Ctrl-C (or SIGTERM) waits
        # for it, and is said after (it takes seconds, a minute at a million).
        caught: list[int] = []
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, caught.append, signum)
        try:
            done = await merge(args.out, args.reports, how)
        except MergeError as exc:
            raise RunError(str(exc)) from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if caught:
            done.notes.append("stopped while merging: the merge was finished first")
        duration = float(done.run.get("duration_s") or 0.0)
        interrupted = bool(done.run["interrupted"])
        outcome = RunOutcome(done.stats, done.reports, duration, interrupted, None)
        outcome.notes, outcome.run, outcome.changes = done.notes, done.run, done.changes
        await after_reports(args.out, channels, args.keep, args.keep_days, outcome)
        return outcome

    outcome = loops.run(merge_and_alert(), choose("auto"))
    _tell(outcome, args.quiet)
    # Rows a merge could not fill in (--partial) make it no all-clear either.
    stats = outcome.stats
    whole = not (stats.down or stats.invalid or stats.not_checked)
    return EXIT_UP if whole else EXIT_DOWN


def report_file(path: str, formats: list[str] | None, quiet: bool) -> int:
    # (The recovery and the report writers: a check imports them only for a
    # killed run's journal, or to write its reports itself.)
    from checker.reports.recover import RecoverError, recover, rerender

    if path.endswith(".json"):
        try:
            written, down = loops.run(rerender(path, formats or ["html", "csv"]), choose("auto"))
        except RecoverError as exc:
            raise RunError(str(exc)) from None
        if not quiet:
            print("reports: " + ", ".join(written))
        return EXIT_DOWN if down else EXIT_UP
    try:
        done = loops.run(recover(path, formats or list(DEFAULT_FORMATS)), choose("auto"))
    except RecoverError as exc:
        raise RunError(str(exc)) from None
    if done.note:
        print(f"checker: {done.note}", file=sys.stderr)
    if not quiet:
        duration = done.run.get("duration_s") or 0.0
        # (A run killed at its very end, after its history was written, was
        # complete: its header says so.)
        interrupted = bool(done.run.get("interrupted", True))
        print(format_summary(done.stats, duration, done.reports, interrupted=interrupted))
    return EXIT_DOWN if done.stats.down or done.stats.invalid else EXIT_UP


def show_history(out_dir: str, url: str | None, last: int) -> int:
    """Print recent runs, or one URL's recent results, from the stored reports."""
    if not read_runs(out_dir):
        raise RunError(f"{out_dir}: no run history here (runs.jsonl is missing or empty)")
    if url is None:
        print(
            f"{'finished (UTC)':24} {'URLs':>7} {'up':>7} {'down':>6} {'changes':>7} {'seconds':>8}"
        )
        # In time order: a recovered run's line is written after the runs that
        # recovered it.
        runs = sorted(read_runs(out_dir), key=lambda e: e.started_at)
        for entry in runs[-last:]:
            flag = "  interrupted" if entry.interrupted else ""
            flag += " (recovered)" if entry.recovered else ""
            print(
                f"{entry.finished_at or '?':24} {entry.total:>7} "
                f"{entry.up:>7} {entry.down:>6} "
                f"{entry.changes:>7} {entry.duration_s or 0:>8.1f}{flag}"
            )
        return EXIT_UP
    # (The history's database: not on a check's start-up path.)
    from checker.store import query as store_query
    from checker.store.db import NAME as HISTORY_NAME

    if store_query.has_history(out_dir):
        import sqlite3  # (not on a check's start-up path)

        try:
            return _show_url_history(out_dir, url, last)
        except sqlite3.Error as exc:
            # Damaged, made by a newer checker, locked past its wait: the
            # JSON reports still answer (it was a traceback: found by a
            # review). A check sets a damaged one aside (run.open_history).
            where = os.path.join(out_dir, HISTORY_NAME)
            print(f"checker: history: {where}: {exc}; from the reports instead", file=sys.stderr)
    rows = url_history(out_dir, url, last)
    if not any(row for _, row in rows):
        raise RunError(f"{url}: not in the last {last} stored reports of {out_dir}")
    print(f"{'checked (UTC)':24} {'result':>20} {'total ms':>9}  final URL")
    for entry, row in reversed(rows):
        if row is None:
            print(f"{entry.finished_at or '?':24} {'(not in this run)':>20}")
            continue
        result = _verdict(row["ok"], row["error"], row["status"], row.get("reasons") or ())
        ms = f"{row['total_ms']:.0f}" if row.get("total_ms") is not None else "-"
        print(
            f"{row.get('checked_at') or '?':24} {result:>20} {ms:>9}  {row.get('final_url') or ''}"
        )
    return EXIT_UP


def _verdict(ok: bool, error: str | None, status: int | None, reasons: Sequence[str]) -> str:
    """A stored result for a person: a stopped run's row is not a site down."""
    if error == NOT_CHECKED:
        return "not checked"
    if error == INVALID:
        return "invalid line"
    if ok:
        return "up" + (f" {status}" if status is not None else "")
    return "DOWN " + decided(error, status, reasons)


def _show_url_history(out_dir: str, url: str, last: int) -> int:
    """One URL from the history database: uptime, down since, its last results."""
    from checker.store import query as store_query

    found = store_query.url_history(out_dir, url, last)
    if not found:
        raise RunError(f"{url}: not in the history of {out_dir}")
    for one in found:
        print(one.url)
        parts = []
        for name, up in one.uptime:
            figure = "-" if up.percent is None else f"{up.percent:g}%"
            parts.append(f"{name} {figure} ({up.checks:,} check{'s' if up.checks != 1 else ''})")
        print("  uptime: " + " · ".join(parts))
        if one.down_since:
            print(f"  down since {one.down_since}")
        print(f"  {'run started (UTC)':24} {'result':>20} {'total ms':>9}")
        for started, complete, row in reversed(one.recent):
            result = _verdict(row.ok, row.error, row.status, [row.detail] if row.detail else [])
            ms = f"{row.total_ms:.0f}" if row.total_ms is not None else "-"
            # A stopped or killed run's results are shown, but count nowhere.
            flag = "" if complete else "  (run not complete: not counted)"
            print(f"  {started:24} {result:>20} {ms:>9}{flag}")
    return EXIT_UP


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, FileConfig | None]:
    """The arguments; for `check --config FILE`, with the file's values as the
    defaults that the command line (and CHECKER_* variables) override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "check" or not args.config:
        return args, None
    from checker.config import load as load_config  # tomllib: only for a --config

    file = load_config(args.config)
    assert parser.check is not None
    apply_config(parser.check, file)
    return parser.parse_args(argv), file


def apply_config(check: argparse.ArgumentParser, file: FileConfig) -> None:
    # By long option name (`header`, `per_host`), and the positional `lists`.
    actions = {a.dest: a for a in check._actions if a.dest == "lists"}
    for action in check._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                actions[option[2:].replace("-", "_")] = action
    defaults: dict[str, object] = {}
    for name, value in file.check.items():
        found = actions.get(name)
        if found is None or name in ("help", "config", "version"):
            raise ConfigError(f"{file.path}: [check] has no option {name!r}")
        action, key = found, found.dest
        if key in _FROM_ENVIRONMENT and os.environ.get("CHECKER_" + key.upper()):
            continue  # the variable wins over the file
        where = f"{file.path}: [check] {name}"
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: true or false")
            defaults[key] = value
            continue
        values = value if isinstance(value, list) else [value]
        if key == "format":
            values = [",".join(str(v) for v in values)]
        if not values or any(isinstance(v, bool | dict | list) for v in values):
            raise ConfigError(f"{where}: a string or a number (or a list of them)")
        try:
            converted = [action.type(str(v)) if callable(action.type) else str(v) for v in values]
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if action.choices is not None and any(v not in action.choices for v in converted):
            raise ConfigError(f"{where}: one of {', '.join(map(str, action.choices))}")
        many = isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+")
        if not many and len(converted) > 1:
            raise ConfigError(f"{where}: one value, not a list")
        defaults[key] = converted if many else converted[0]
    check.set_defaults(**defaults)


# Options whose default can come from a CHECKER_* variable (the alerts).
_FROM_ENVIRONMENT = frozenset(
    {
        "notify_webhook",
        "notify_email",
        "smtp_host",
        "smtp_port",
        "smtp_from",
        "smtp_user",
        "smtp_password",
        "smtp_starttls",
        "smtp_tls",
        "alert_after",
        "remind_every",
    }
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, file = parse_args(argv)
    except ConfigError as exc:
        print(f"checker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "demo":
            from checker.demo.run import run_demo

            ensure_out_dir(args.out)
            progress = not args.quiet and sys.stderr.isatty()
            # A run like any other: what it clears away of killed runs in the
            # folder (run.recover_all) is safe only under the folder's lock.
            with run_lock(args.out):
                return run_demo(out_dir=args.out, quiet=args.quiet, progress=progress)
        if args.command == "history":
            if isinstance(sys.stdout, _Forgiving):
                sys.stdout.lenient = False  # (its output is what was asked for)
            return show_history(args.out, args.url, args.last)
        if args.command == "merge":
            made = _first_missing(args.out)
            ensure_out_dir(args.out)
            try:
                with run_lock(args.out, args.wait_lock):
                    return merge_reports(args)
            except RunError:
                if made is not None:  # a refused merge leaves no folder behind
                    _remove_made(args.out, made)
                raise
        if args.command == "report":
            if not os.path.exists(args.file):
                raise RunError(f"{args.file}: no such file")
            if not os.path.isfile(args.file):
                raise RunError(f"{args.file}: not a file (a journal or a JSON report)")
            folder = os.path.dirname(args.file) or "."
            with run_lock(folder, args.wait_lock):
                return report_file(args.file, args.format, args.quiet)
        config, notes = check_config(args)
        for note in notes:
            print(f"checker: {note}", file=sys.stderr)
        # stdin, pipes and URL arguments become files (see checker.lists);
        # so do the config file's groups (a CSV list, `config.csv`).
        generated = [("config.csv", file.groups_csv)] if file and file.groups_csv else []
        if not args.lists and not generated:
            raise RunError("no list: give a list file, URLs, '-', or a --config with groups")
        with ListInputs(args.lists, generated=generated) as inputs:
            try:
                # A usage error must leave nothing behind.
                validate_lists(inputs.paths, args.list_format)
            except RunError as exc:
                raise RunError(inputs.shown(str(exc))) from None
            ensure_out_dir(config.out_dir)
            with run_lock(config.out_dir, args.wait_lock):
                if inputs.spooled:
                    # A killed run's copied list is read again to report it:
                    # recover it before this run's copy takes its place.
                    recovered = loops.run(
                        recover_all(config.out_dir, config.formats), config.options["loop"]
                    )
                    for note in recovered:
                        print(f"checker: {note}", file=sys.stderr)
                config = dataclasses.replace(config, lists=inputs.settle(config.out_dir))
                return run_and_report(config, args.quiet, args)
    except (RunError, ListError) as exc:
        print(f"checker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LockBusy as exc:
        print(f"checker: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        # Only reachable before the run installs its own handler.
        return 128 + signal.SIGINT
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise  # for entry(): the reader went away
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"checker: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_IO


def _standard_descriptors() -> None:
    """Point a closed stdin, stdout or stderr (`>&- 2>&-`) at /dev/null, as
    daemons do: left closed, the next file or socket opened takes its
    number, and what is written to stderr lands in it (with both closed,
    the event loop aborted the process; with stderr closed, the progress bar
    ended the run)."""
    open_standard_descriptors()
    # Python left their streams None: the progress bar and the messages
    # write to them, so they get the descriptors back.
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = cast(TextIO, _Forgiving(sys.stdout, "standard output"))
    sys.stderr = cast(TextIO, _Forgiving(sys.stderr, "standard error"))


class _Forgiving:
    """stdout or stderr, for a person: one that cannot be written (a cron
    job's log on a full disk) loses what it would have said, never the run's
    outcome. (It ended in a traceback and exit 120, or `checker: error: No
    space left on device`, exit 4, as if the reports could not be written.)
    A closed pipe still ends the command as it does (`| head`); a command
    whose output is the answer (`checker history`) is not `lenient`."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name
        self._lost = False
        self.lenient = True

    def write(self, text: str) -> int:
        if not self._lost:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self._lost:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        if isinstance(exc, BrokenPipeError):
            raise exc
        if not self.lenient:
            raise OSError(exc.errno, exc.strerror, self._name) from None
        self._lost = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def entry() -> None:
    """The console script."""
    _standard_descriptors()
    return_large_blocks()
    try:
        code = main()
        try:
            sys.stdout.flush()
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"checker: error: {where}{exc.strerror or exc}", file=sys.stderr)
            code = EXIT_IO
    except BrokenPipeError:
        # `checker history | head -1`: the reader has what it wanted. Quiet, as
        # the Unix tools are; stdout goes to /dev/null so that nothing later
        # writes to the broken pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    # Every file of the run is closed and its helpers have exited. (A bug's
    # traceback does not come this way: it leaves through the interpreter's
    # exit, as ever.)
    exit_now(code)
