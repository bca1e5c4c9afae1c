"""One check run, end to end: lists -> pool -> journal -> reports -> summary.

No argument parsing and no exit codes here (that is `cli`); this returns what
happened and raises `RunError` for what the user must fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from checker import __version__
from checker.check import CheckOptions
from checker.http.client import ClientConfig, LazyContext
from checker.lock import LOCK_NAME
from checker.parallel import SHARDS_DIR
from checker.pool import Pool, PoolOptions
from checker.reports.formats import FORMATS
from checker.reports.journal import Journal
from checker.reports.leftovers import JOURNAL_SUFFIX, journals, remove_spools, remove_stale_spools
from checker.reports.reporter import End, Reporter, Start, wanted
from checker.results import Result, iso
from checker.store.index import (
    RUN_INDEX,
    append_run,
    index_entry,
    lists_key,
)
from checker.store.policy import HISTORY_DAYS, Policy
from checker.store.prune import prune
from checker.summary import Stats
from checker.targets import (
    Duplicate,
    ListError,
    Shard,
    check_lists,
    first_url,
    list_notes,
    read_targets,
)
from checker.url import TLS_SCHEMES

# Imported where they are used: the alerts when a run has some to send (a
# megabyte less); the report writers and the history's database when the
# run writes its reports itself (a reporter does it in its own process) or
# finds a killed run's journal.
if TYPE_CHECKING:
    from checker.notify import SMTPConfig
    from checker.store.db import HistoryDB
    from checker.store.model import Change

__all__ = [
    "FORMATS",
    "RunConfig",
    "RunError",
    "RunOutcome",
    "ensure_out_dir",
    "run_check",
    "validate_lists",
]


class RunError(Exception):
    """Something the user must fix (bad list, unwritable folder): exit code 2."""


@dataclass(frozen=True)
class Channels:
    """Where alerts go: a webhook, mail, and the client settings the webhook
    is posted with (its CA file, its proxy)."""

    webhook: str | None
    smtp: SMTPConfig | None
    client: ClientConfig

    @property
    def names(self) -> tuple[str, ...]:
        """The channels, as the history's outbox names them."""
        return (("webhook",) if self.webhook else ()) + (("mail",) if self.smtp else ())


@dataclass(frozen=True)
class RunConfig:
    lists: Sequence[str]
    out_dir: str
    formats: Sequence[str]
    check: CheckOptions
    pool: PoolOptions
    progress: bool = False  # draw a tqdm bar on stderr
    cert_warn_days: int = 14  # a certificate closer to expiry than this is a change
    alert_after: int = 1  # complete runs in a row before a flip is a change
    remind_every: float | None = None  # seconds: say again what is still down
    keep: int | None = None  # keep the reports of this many runs (None: all)
    keep_days: float | None = None  # and none older than this
    history_days: int = HISTORY_DAYS  # raw results kept in the database this long
    list_format: str = "auto"  # auto (a header row naming url: CSV), plain or csv
    shard: Shard | None = None  # --shard K/N: only the URLs of that shard
    processes: int = 1  # --processes N: N shard runs under this one (checker.parallel)
    history: bool = True  # the history database (a shard keeps none: its merge does)
    # In place of the bar: what hands the running counts on (a --processes
    # shard's parent draws the one bar).
    counts: Callable[[Stats], Any] | None = None
    webhook: str | None = None  # alert channels, used only when something changed
    smtp: SMTPConfig | None = None
    options: dict[str, Any] = field(default_factory=dict)  # echoed in the report

    @property
    def policy(self) -> Policy:
        return Policy(self.alert_after, self.remind_every, self.cert_warn_days)

    @property
    def channels(self) -> Channels | None:
        # A shard's changes are its merge's to send, once (README, "Shards").
        if not (self.webhook or self.smtp) or self.shard is not None:
            return None
        return Channels(self.webhook, self.smtp, self.check.client)

    @property
    def alert(self) -> tuple[str, ...]:
        """The channels this run's changes are queued for (none: it sends none)."""
        channels = self.channels
        return channels.names if channels is not None else ()


@dataclass
class RunOutcome:
    stats: Stats
    reports: list[str]
    duration_s: float
    interrupted: bool
    signal: int | None
    notes: list[str] = field(default_factory=list)  # for the user, on stderr, even with -q
    info: list[str] = field(default_factory=list)  # routine news (an alert sent): not with -q
    run: dict[str, Any] = field(default_factory=dict)  # the report's run header
    changes: list[Change] = field(default_factory=list)  # since the previous run


class _Recorder:
    """The pool's sink: journal, running totals, progress bar."""

    def __init__(self, journal: Journal, stats: Stats, bar: Any) -> None:
        self.journal = journal
        self.stats = stats
        self.bar = bar
        self._last_postfix = 0.0

    def add(self, seq: int, result: Result) -> None:
        self.journal.add(seq, result)
        self.stats.add(seq, result)
        self._tick()

    def add_duplicate(self, dup: Duplicate) -> None:
        self.journal.add_duplicate(dup)
        self.stats.duplicates += 1
        self._tick()

    async def flush(self) -> None:
        await self.journal.flush()

    def _tick(self) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self._last_postfix > 0.5:  # set_postfix redraws: throttle it
            self._last_postfix = now
            self.bar.set_postfix_str(f"up {self.stats.up} down {self.stats.down}", refresh=False)


def make_bar(total: int, enabled: bool, stream: TextIO) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="url", file=stream, dynamic_ncols=True, mininterval=0.2)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def report_base(out_dir: str, started: datetime) -> str:
    """`<out>/status-<stamp>`, or `status-<stamp>2`, `3`, ... when an earlier run
    in the same second has the name (the run lock keeps this free of races).
    The digit sorts after the "." of the first run's files, so names still
    sort in the order the runs were made."""
    name = f"status-{stamp(started)}"
    taken = {f.split(".", 1)[0] for f in os.listdir(out_dir) if f.startswith(name)}
    n = 1
    while (name if n == 1 else f"{name}{n}") in taken:
        n += 1
    return os.path.join(out_dir, name if n == 1 else f"{name}{n}")


async def recover_all(out_dir: str, formats: Sequence[str]) -> list[str]:
    """Reports for what killed runs left in `out_dir`: the shards of a
    --processes run (merged), and their journals; and the hidden partial
    reports they were writing, removed. Say what was done. (The shards
    first: a parent killed as it merged left a merged journal that the
    shards' reports make whole again.) The caller holds the folder's lock."""
    # The partial reports before anything is recovered: each can be a
    # report's size, and a recovery writes reports of its own.
    await asyncio.to_thread(remove_stale_spools, out_dir)
    notes: list[str] = []
    if await asyncio.to_thread(os.path.isdir, os.path.join(out_dir, SHARDS_DIR)):
        from checker.parallel.coordinator import merge_leftovers

        notes += await merge_leftovers(out_dir, formats)
    if not journals(out_dir):
        return notes  # (as a rule: then the recovery is not even imported)
    from checker.reports.recover import recover_leftovers

    return notes + await recover_leftovers(out_dir, formats)


def validate_lists(lists: Sequence[str], wanted: str = "auto") -> None:
    """Each list readable and holding a URL (reads each only to its first entry)."""
    try:
        check_lists(lists, count=False, wanted=wanted)
    except ListError as exc:
        raise RunError(str(exc)) from None


def ensure_out_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the report folder: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise RunError(f"{path}: report folder is not writable")
    # The files a run writes in place, not by rename: another user's (a run
    # once as root, then cron as a user) failed the run after its checks,
    # exit 4, with its reports written and its journal left behind (found by
    # a review). The history's database is not one: a read-only one costs
    # the history only.
    for name in (LOCK_NAME, RUN_INDEX):
        file = os.path.join(path, name)
        if os.path.exists(file) and not os.access(file, os.W_OK):
            who = _owner(file)
            raise RunError(f"{file}: not writable by this user ({who}); nothing was checked")


def _owner(path: str) -> str:
    try:
        uid = os.stat(path).st_uid
        return f"it belongs to {pwd.getpwuid(uid).pw_name}"
    except (OSError, KeyError):
        return "a run as another user made it?"


async def run_check(config: RunConfig) -> RunOutcome:
    try:
        entries = check_lists(config.lists, count=config.progress, wanted=config.list_format)
        list_warnings = list_notes(config.lists, config.list_format)
        first = first_url(config.lists, config.list_format)
    except ListError as exc:
        raise RunError(str(exc)) from None
    context = config.check.client.ssl_context
    tls_first = first is not None and first.partition(":")[0].lower() in TLS_SCHEMES
    if tls_first and isinstance(context, LazyContext):
        context.start_early()  # (beside the run's start, not before its first checks)
    ensure_out_dir(config.out_dir)

    notes = list_warnings + await recover_all(config.out_dir, config.formats)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    base = report_base(config.out_dir, started)
    stop = asyncio.Event()
    caught: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not caught:
            caught.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        outcome = await _run(config, entries, base, started, t0, stop, caught)
        outcome.notes[:0] = notes
        return outcome
    finally:
        # Kept until the reports are written: a second Ctrl-C must not tear them.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _run(
    config: RunConfig,
    entries: int,
    base: str,
    started: datetime,
    t0: float,
    stop: asyncio.Event,
    caught: list[int],
) -> RunOutcome:
    stats = Stats()
    bar = config.counts(stats) if config.counts else make_bar(entries, config.progress, sys.stderr)
    header = {
        "started_at": iso(started),
        "checker_version": __version__,
        "options": config.options,
        "lists": list(config.lists),
        # This run's part of its lists (the rest is other shards'), or none.
        "shard": str(config.shard) if config.shard else None,
    }
    lists = lists_key(config.lists)
    reporter: Reporter | None = None
    edited: list[str] = []  # lists written to while the run read them
    try:
        try:
            async with Journal(base + JOURNAL_SUFFIX, header) as journal:
                if wanted(config.lists, config.shard):
                    reporter = await Reporter.start(
                        Start(
                            journal.path,
                            base,
                            tuple(config.formats),
                            header,
                            tuple(config.lists),
                            config.list_format,
                            config.history,
                            config.policy,
                            lists,
                            started,
                            config.history_days,
                            config.alert,
                        )
                    )
                    if reporter is not None:
                        journal.followed_by(reporter.flushed)
                else:
                    from checker.reports.prestart import let_go

                    let_go()  # (one started as the command started: not wanted)
                pool = Pool(config.check, config.pool, _Recorder(journal, stats, bar))
                try:
                    targets = read_targets(
                        config.lists, config.list_format, config.shard, changed=edited
                    )
                    interrupted = await pool.run(targets, stop)
                except ListError as exc:
                    raise RunError(str(exc)) from None
        finally:
            if bar is not None:
                # The totals as they ended (the throttled postfix may be older).
                bar.set_postfix_str(f"up {stats.up} down {stats.down}", refresh=False)
                bar.close()

        finished = datetime.now(UTC)
        duration = time.perf_counter() - t0
        run_info = {
            **header,
            "finished_at": iso(finished),
            "duration_s": round(duration, 3),
            **stats.totals(),
            "duplicates": stats.duplicates,
            "interrupted": interrupted,
        }
        notes: list[str] = []
        done = await reporter.finish(End(run_info, journal.size)) if reporter else None
        if done is not None and done.ok:
            written, changes, db_notes = done.written, done.changes, done.notes
            run_info.update(done.run)
            # The reports are in place and the history has the run: into the
            # run index, and then the journal goes. (A run killed in between
            # leaves a journal that the next run finds recorded: it indexes
            # the run if need be and keeps its reports, recover.publish.)
            await append_run(config.out_dir, index_entry(run_info, lists, written))
            journal.remove()
        else:
            from checker.reports.recover import publish

            # After the checks, from the journal: as a killed run's are.
            published = await publish(
                journal,
                run_info,
                list(config.lists),
                base,
                config.formats,
                alert=config.alert,
                policy=config.policy,
                roll_up_days=config.history_days,
                now=started,
                latest=True,
            )
            written, changes, db_notes = published.reports, published.changes, published.notes
            if done is not None and published.recorded_before:
                # It committed, and ended before its answer reached the run.
                db_notes = [
                    "reports: the report process put the reports and the history in place,"
                    f" then ended before its answer ({done.reason}); they are kept as they are"
                    + (", its alerts sent from the history's outbox" if config.alert else "")
                ]
            elif done is not None and done.reason:
                notes.append(
                    f"reports: the report process gave up ({done.reason});"
                    " they were written after the checks instead"
                )
        outcome = RunOutcome(stats, written, duration, interrupted, caught[0] if caught else None)
        outcome.notes += edited + notes + db_notes
        outcome.run = run_info
        outcome.changes = changes
        await after_reports(config.out_dir, config.channels, config.keep, config.keep_days, outcome)
        return outcome
    finally:
        if reporter is not None:
            await reporter.close()  # (its roll-up of old results, after the alerts)
            # A run that failed stopped its reporter: what it was writing
            # goes (its journal stays, for the next run to recover).
            remove_spools(base + JOURNAL_SUFFIX)


async def after_reports(
    out_dir: str,
    channels: Channels | None,
    keep: int | None,
    keep_days: float | None,
    outcome: RunOutcome,
) -> None:
    """Alerts and pruning, once a run's reports are in place (a run's, or a
    merge's: of `checker merge`, or of a --processes run's shards)."""
    if not outcome.interrupted and channels is not None:
        # Only a complete run alerts: a stopped one is not the baseline of the
        # next, which would report (and alert) the same change again.
        # After the reports: a failing alert channel is reported, never costs a report.
        # The alert also says where it ran and where the reports are.
        here = os.getcwd()  # the report paths as a person can open them anywhere
        where = {
            "host": socket.gethostname(),
            "reports": [os.path.join(here, p) for p in outcome.reports],
        }
        sent = await send_alerts(
            out_dir,
            channels,
            outcome.changes,
            {**outcome.run, **where},
        )
        # "<channel>: failed: <why>" is news under -q (the alert did not go
        # out); "sent" is not: cron would mail it on every change.
        outcome.notes += [line for line in sent if ": failed: " in line]
        outcome.info += [line for line in sent if ": failed: " not in line]
    if not outcome.interrupted and (keep is not None or keep_days is not None):
        removed = prune(out_dir, keep, keep_days)
        if removed:
            outcome.info.append(f"pruned {len(removed)} old report files")


async def send_alerts(
    out_dir: str, to: Channels, changes: list[Change], run: dict[str, Any]
) -> list[str]:
    """Send each channel what the history's outbox holds for it: what it
    did not deliver before, and this run's `changes`, which went in with the
    states that made them (`HistoryDB.add_results`), before any channel was
    tried. A channel's go once it delivered them; a channel that fails keeps
    them for the next complete run, and so does a run killed while it sends
    (at least once: one killed after a webhook's 200, before the outbox is
    told, sends them again)."""
    from checker.notify import notify
    from checker.store.db import HistoryDB

    db: HistoryDB | None
    try:
        db = await asyncio.to_thread(HistoryDB.in_folder, out_dir)
    except sqlite3.Error:
        db = None  # said already: no history this run; alerts still go out
    lines: list[str] = []
    try:
        for channel in to.names:
            # (Without the database, this run's changes, kept nowhere.)
            held = changes
            if db is not None:
                try:
                    held = await asyncio.to_thread(db.held, channel)
                except sqlite3.Error:
                    db = None  # (its outbox is out of reach: this run's changes alone)
            if not held:
                continue
            sent = await notify(
                held,
                run,
                webhook=to.webhook if channel == "webhook" else None,
                webhook_client=to.client,
                smtp=to.smtp if channel == "mail" else None,
            )
            failed = any(": failed: " in line for line in sent)
            # This run's are the newest; the rest are earlier runs'.
            earlier = max(0, len(held) - len(changes))
            if db is not None:
                if failed:
                    sent = [
                        f"{line}; its {len(held)} change{'s' if len(held) != 1 else ''}"
                        " will be sent again by the next run"
                        if ": failed: " in line
                        else line
                        for line in sent
                    ]
                else:
                    with contextlib.suppress(sqlite3.Error):  # (sent again next time)
                        await asyncio.to_thread(db.delivered, channel, len(held))
                    if earlier:
                        sent = [f"{line} (with {earlier} held from earlier runs)" for line in sent]
            lines += sent
    finally:
        if db is not None:
            db.close()
    return lines
