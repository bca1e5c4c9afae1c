"""Where the lists come from: files, standard input, pipes, URLs as arguments.

A run reads its lists more than once (to check them before anything is sent,
to count them for the progress bar, then to check them), and a killed run's
lists are read again to report it. Standard input (`-`), a FIFO or a
`<(...)` process substitution can be read only once, and URLs given on the
command line are no file at all. So each of those is copied once, as it is,
into a file beside the reports:

- `-`                      -> `<out>/lists/stdin.txt`
- a FIFO or other non-file -> `<out>/lists/pipe-<name>.txt`
- URLs given as arguments  -> `<out>/lists/args.txt` (one list of their own)

The copy is first made in the system's temporary folder, so that a bad list
(an empty stdin, say) is refused before the report folder is touched, and
moved into place only once the run holds the folder's lock. The names are
stable, so a cron job that pipes its list in is compared run to run like one
that names a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from types import TracebackType
from typing import BinaryIO

from checker.targets import ListError

STDIN = "-"
FOLDER = "lists"
_LOOKS_LIKE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class _Spooled:
    shown: str  # how the user named it, for messages
    name: str  # its file name under <out>/lists/
    tmp: str  # the copy, until settled


class ListInputs:
    """The run's list arguments made into files that can be read many times.

    Use as a context manager: copies not settled are removed at exit.
    `paths` are readable now (for validation); `settle(out_dir)` moves the
    copies beside the reports and returns the paths the run uses.
    """

    def __init__(
        self,
        args: Sequence[str],
        stdin: BinaryIO | None = None,
        generated: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._stdin = stdin
        self._spooled: list[_Spooled] = []
        self.paths: list[str] = []
        urls: list[str] = []
        if list(args).count(STDIN) > 1:
            raise ListError("'-' (standard input) is given more than once")
        for arg in args:
            if arg == STDIN:
                self.paths.append(self._spool("standard input", "stdin.txt", self._read_stdin()))
            elif _is_pipe(arg):
                name = f"pipe-{_safe(os.path.basename(arg))}.txt"
                with open(arg, "rb") as f:
                    self.paths.append(self._spool(arg, name, f))
            elif not os.path.exists(arg) and _LOOKS_LIKE_URL.match(arg):
                urls.append(arg)
            else:
                self.paths.append(arg)
        if urls:
            data = ("\n".join(urls) + "\n").encode("utf-8", "surrogateescape")
            self.paths.append(self._spool("the URLs given as arguments", "args.txt", BytesIO(data)))
        for name, text in generated:  # the config file's groups, as a CSV list
            data = text.encode("utf-8", "surrogateescape")
            self.paths.append(self._spool(f"the config's {name}", name, BytesIO(data)))

    def _read_stdin(self) -> BinaryIO:
        return self._stdin if self._stdin is not None else sys.stdin.buffer

    def _unique(self, name: str) -> str:
        """`name`, or `name` with -2, -3, ... when another copy of this run has it
        (two pipes both called `urls`)."""
        taken = {s.name for s in self._spooled}
        stem, dot, ext = name.rpartition(".")
        n = 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}{dot}{ext}"
        return name

    def _spool(self, shown: str, name: str, source: BinaryIO) -> str:
        name = self._unique(name)
        fd, tmp = tempfile.mkstemp(prefix="checker-list-", suffix=".txt")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        self._spooled.append(_Spooled(shown, name, tmp))
        return tmp

    def shown(self, text: str) -> str:
        """`text` (a message) with each copy's path replaced by the user's name for it."""
        for s in self._spooled:
            text = text.replace(s.tmp, s.shown)
        return text

    @property
    def spooled(self) -> bool:
        return bool(self._spooled)

    def settle(self, out_dir: str) -> list[str]:
        """Move the copies to `<out_dir>/lists/`; the run's list paths. Call
        while holding the folder's lock, and after the journals of killed
        runs have been recovered: a copy replaces the previous run's, which
        recovery reads again."""
        if not self._spooled:
            return list(self.paths)
        folder = os.path.join(out_dir, FOLDER)
        os.makedirs(folder, exist_ok=True)
        final = {}
        for s in self._spooled:
            target = os.path.join(folder, s.name)
            shutil.move(s.tmp, target)
            # Owner only: a list may hold what a report never shows (a
            # config group's header values, tokens in a piped list's URLs),
            # and a reports folder is often served.
            os.chmod(target, 0o600)
            final[s.tmp] = target
        self._spooled = []
        self.paths = [final.get(p, p) for p in self.paths]
        return list(self.paths)

    def __enter__(self) -> ListInputs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s in self._spooled:
            with contextlib.suppress(OSError):
                os.unlink(s.tmp)


def _is_pipe(path: str) -> bool:
    """A path that can be read only once: a FIFO, a socket, a character device
    (/dev/stdin on a terminal or a pipe, /dev/fd/N of a `<(...)`)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "pipe"
