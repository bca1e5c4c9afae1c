"""A run's reports written while its checks go on, by a second process.

The checks keep one CPU busy. Writing the reports and the history (the CSV,
the JSON, the page, the database's states and trends) costs about as much
again, and it used to wait for the last check. When the run may use a second
CPU, a reporter process does that work as the results come in, and the run
ends soon after its last check (README, "Speed").

It writes the same reports as a run without it:

- It reads the results from the journal, the run's crash record, as the run
  writes it (the run tells it how far the file goes after each write), and
  takes them in input order: row N once rows 0 to N are all in. They go
  through the same `ReportWriter` as the rows of a run without a reporter.
- A row's "duplicates" are the later lines of the lists that name the same
  URL. The run finds them as it reads its lists, possibly long after the
  row's result came. So the reporter reads the lists itself first (they are
  always files: `checker.lists`), as the run does, and knows each row's
  duplicates before its result comes. At the end they must be the ones the
  run journaled, or the reporter's reports are not used.
- The history database holds the run in one transaction, its states stepped
  as for a complete run (and its changes queued for the alerts with them). A
  run that ends stopped rolls it back, and then writes its reports after the
  checks, as a stopped run always did (a stopped run is never a baseline).

Anything that goes wrong (the lists changed under it, a full disk, the
reporter killed) ends the same way: the run writes its reports itself after
the checks. The journal has every row; nothing is lost.

The run talks to it over its standard input, in frames of a kind byte and a
length: S (a pickled `Start`, first), P (how far the journal's file runs now,
in decimal), E (a pickled `End`). It answers once on its standard output with
a pickled `Outcome`, and then rolls up old results (as a run does after its
reports) before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from checker.reports.prestart import by_size, setting, spawn, take

# The run imports this module for its side (`Reporter`, `Start`, `End`);
# the writers and the history are imported by the reporter's side, in its
# own process (`_serve`).
if TYPE_CHECKING:
    from checker.reports.output import ReportWriter
    from checker.store.model import Change
    from checker.store.policy import Policy

_FRAME = struct.Struct("!cI")  # kind, length of what follows
ANSWER_TIMEOUT = 3600.0  # seconds the run waits for the reporter's outcome, at most
# Rows between the reporter's writes (and its batches of the history
# database): what is left of the rows' work after the checks end is the
# run's wait, and at 1,024 (after the checks) that was 60 ms with a history.
FOLLOW_BATCH = 256


@dataclass(frozen=True)
class Start:
    journal: str  # the run's journal, which the run is writing
    base: str  # <out>/status-<stamp>: the reports' names
    formats: tuple[str, ...]
    header: dict[str, Any]  # the run header as the run began
    lists: tuple[str, ...]
    list_format: str
    history: bool  # keep the run in the folder's history database
    policy: Policy
    lists_key: list[str]  # the lists as the database names them
    now: datetime  # the run's start: the states and trends are as of then
    history_days: int  # raw results kept (roll-up after the reports)
    # The run's alert channels: its changes go into their outbox in the
    # history's commit, for the run to send (or the next, if it dies first).
    alert: tuple[str, ...]


@dataclass(frozen=True)
class End:
    run: dict[str, Any]  # the run header as the run ended: totals, interrupted
    position: int  # where the journal's file ends


@dataclass
class Outcome:
    """What the run needs from the reporter: the reports it put in place, the
    changes to alert about, and the run header's additions. `ok` False: the
    run writes its reports itself (`reason` says why, None when the run was
    stopped)."""

    ok: bool
    reason: str | None = None
    written: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # previous_run, changes_total
    notes: list[str] = field(default_factory=list)


def wanted(lists: Sequence[str], shard: object | None) -> bool:
    """Whether a run writes its reports with a reporter: it may use a second
    CPU, its lists are large enough for the head start to matter, and it is
    not a shard (whose parent's processes have the CPUs already).
    CHECKER_REPORTER=on or off overrides the size and the CPUs."""
    chosen = setting()
    return shard is None and by_size(chosen, lists)


class Reporter:
    """The run's handle on its reporter process (started as the command
    started, `prestart`, or now)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: asyncio.WriteTransport,
        stdout: asyncio.StreamReader,
        stdout_pipe: asyncio.ReadTransport,
    ) -> None:
        self._proc = proc
        self._stdin = stdin
        self._stdout = stdout
        self._stdout_pipe = stdout_pipe
        self._answered = False

    @classmethod
    async def start(cls, start: Start) -> Reporter | None:
        """The reporter, told to start; None when it cannot be (the run then
        writes its reports itself)."""
        proc = take()
        try:
            if proc is None:
                proc = spawn()
            reporter = await cls._adopt(proc)
        except OSError:
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)
            return None
        reporter._send(b"S", pickle.dumps(start))
        return reporter

    @classmethod
    async def _adopt(cls, proc: subprocess.Popen[bytes]) -> Reporter:
        """Its pipes on the event loop: what is sent is buffered there, never
        a blocking write into a full pipe (a reporter behind by many frames)."""
        assert proc.stdin is not None and proc.stdout is not None
        loop = asyncio.get_running_loop()
        stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
        stdout = asyncio.StreamReader()
        pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), proc.stdout
        )
        return cls(proc, stdin, stdout, pipe)

    def flushed(self, position: int) -> None:
        """The journal's file runs to `position` now (the journal's on_flush)."""
        self._send(b"P", b"%d" % position)

    def _send(self, kind: bytes, payload: bytes) -> None:
        if self._stdin.is_closing():
            return  # it is gone (the pipe broke) or let go: its outcome will say so
        self._stdin.write(_FRAME.pack(kind, len(payload)) + payload)

    async def _wait(self) -> int:
        return await asyncio.to_thread(self._proc.wait)

    async def finish(self, end: End) -> Outcome:
        """Tell it the run ended; its outcome (after its reports are in
        place, unless the run was stopped)."""
        self._send(b"E", pickle.dumps(end))
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                data = await self._stdout.read()
        except TimeoutError:
            await self.close()
            return Outcome(False, "the report process did not answer")
        self._answered = True
        try:
            outcome = pickle.loads(data)
        except Exception:  # nothing, or half an answer: it died
            code = await self._wait()
            return Outcome(False, f"the report process ended with code {code}")
        if not isinstance(outcome, Outcome):
            return Outcome(False, "the report process answered something else")
        if not outcome.ok:
            await self._wait()  # its transaction is rolled back once it is gone
        return outcome

    async def close(self) -> None:
        """Wait for it to finish its roll-up and exit; stop it first if the run
        never asked for its outcome (the run failed)."""
        proc = self._proc
        if not self._answered and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # its transaction dies with it
        self._stdin.close()
        await self._wait()
        self._stdout_pipe.close()


# --- the reporter's side -----------------------------------------------------


class _Frames:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def next(self) -> tuple[bytes, bytes]:
        kind, length = _FRAME.unpack(await self._reader.readexactly(_FRAME.size))
        return kind, await self._reader.readexactly(length)


def _duplicates(lists: tuple[str, ...], list_format: str) -> tuple[dict[int, list[str]], int]:
    """Each row's later lines naming the same URL ("file:line", as the
    journal has them), and the number of rows: the run's own reading."""
    from checker.targets import Duplicate, read_targets

    dups: dict[int, list[str]] = {}
    rows = 0
    for item in read_targets(lists, list_format):
        if isinstance(item, Duplicate):
            dups.setdefault(item.of_seq, []).append(f"{item.source}:{item.line}")
        else:
            rows += 1
    return dups, rows


async def _serve(frames: _Frames, answer: IO[bytes]) -> None:
    # Imported while the run starts (`prestart`), before its Start comes.
    import checker.store.feed  # noqa: F401  (a run with a history: most)
    from checker.reports.journal import BlockReader, Journal, unwrap
    from checker.reports.output import ReportWriter
    from checker.targets import read_targets  # noqa: F401  (`_duplicates`)

    kind, payload = await frames.next()
    if kind != b"S":
        raise ValueError("no start")

    start: Start = pickle.loads(payload)
    db = feed = None
    writer: ReportWriter | None = None
    fd: int | None = None
    notes: list[str] = []
    outcome = Outcome(False, "the run ended in the middle")
    committed = False
    try:
        dups, rows = _duplicates(start.lists, start.list_format)
        run: dict[str, Any] = {**start.header, "interrupted": False}
        if start.history:
            from checker.store.feed import start_feed

            json_name = os.path.basename(start.base) + ".json" if "json" in start.formats else None
            db, feed, notes = await start_feed(
                os.path.dirname(start.base) or ".",
                run,
                start.lists_key,
                json_name,
                start.policy,
                start.now,
                alert=start.alert,
                one_transaction=True,
            )
        writer = await ReportWriter.open(
            start.base, start.formats, run, store=feed, batch=FOLLOW_BATCH, store_rows=FOLLOW_BATCH
        )
        journal = Journal(start.journal, start.header)
        fd = os.open(start.journal, os.O_RDONLY)
        read = BlockReader(fd).line
        done = 0

        async def advance() -> None:
            nonlocal done
            while done < rows and (offset := journal.offset(done)) >= 0:
                await writer.add(unwrap(read(offset), dups.get(done)))
                done += 1

        while True:
            kind, payload = await frames.next()
            if kind == b"P":
                journal.follow(fd, int(payload))
                await advance()
            elif kind == b"E":
                break
        end: End = pickle.loads(payload)
        if end.run.get("interrupted"):
            outcome = Outcome(False, None)
            return
        journal.follow(fd, end.position)
        await advance()
        if done != rows or journal.rows != rows or journal.duplicates() != dups:
            # (Its own reading of the lists is not the run's.)
            outcome = Outcome(False, "the lists changed while the run read them")
            return
        final = {**end.run}
        if "previous_run" in run:  # (start_feed found it as the run began)
            final["previous_run"] = run["previous_run"]
        await writer.end_pass(final)
        written = await writer.publish(final, journal)
        # The history last: until it is committed, a reporter that fails
        # leaves nothing there, and the run writes its reports (again) and
        # its history itself. Once it is, a journal left behind (the run
        # killed before it indexed the run and removed the journal) is found
        # recorded by the next run, which indexes the run and keeps these
        # reports (recover.publish): never counted twice.
        changes = []
        if db is not None and feed is not None:
            from checker.store.feed import commit, totals

            def finish() -> None:
                assert db is not None and feed is not None
                at = str(final.get("finished_at") or final["started_at"])
                db.finish_run(feed.run_id, True, totals(final), at)

            failed = commit(db, feed, finish)
            if failed is None:
                changes = feed.changes
            else:
                notes.append(failed)  # (its reports are in place: only the history is lost)
        committed = True
        added: dict[str, Any] = {
            k: final[k] for k in ("previous_run", "changes_total") if k in final
        }
        outcome = Outcome(True, None, written, changes, added, notes)
    except Exception as exc:  # the run writes its reports itself: say why
        outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
    finally:
        if fd is not None:
            os.close(fd)
        if writer is not None:
            await writer.discard()
        if db is not None and not committed:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
        answer.write(pickle.dumps(outcome))
        answer.close()  # the run reads to the end: this is it
    if db is not None:
        if outcome.ok and (feed is None or feed.failed is None):
            with contextlib.suppress(sqlite3.Error):  # (the run is in; the rest waits)
                await asyncio.to_thread(db.roll_up, None, start.history_days)
        from checker.store.feed import let_go

        let_go(db)


async def _main() -> None:
    from checker.parallel import answer_pipe

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The answer's end is the run's cue to go on: it must be the pipe's end.
    answer = answer_pipe()
    await _serve(_Frames(reader), answer)


def main() -> int:
    from checker.parallel import close_inherited, die_with_parent

    # Killed with its run: its transaction is rolled back, and the next run
    # recovers the journal as a killed run's.
    die_with_parent(signal.SIGKILL)
    close_inherited()
    # Ctrl-C and a service manager's SIGTERM to the whole group are the
    # run's to handle: a stopped run tells its reporter to give up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        asyncio.run(_main())
    except (asyncio.IncompleteReadError, BrokenPipeError):
        return 1  # the run went away
    return 0


if __name__ == "__main__":
    # Run as the module itself, not as __main__: the Outcome it pickles must
    # be the class the run unpickles.
    from checker.limits import exit_now
    from checker.reports import reporter

    # Its files are closed and its answer given; the run waits for it to end.
    exit_now(reporter.main())
