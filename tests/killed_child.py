"""`checker ARGS`, killed outright (SIGKILL) the moment it starts putting its
reports in place: every row is in its hidden spools (`.status-<time>.<fmt>.XXXX`)
and none has been renamed yet. Deterministic, where killing it after some
time would hit the write only now and then. Only this process is patched: a
--processes run's shards are processes of their own and write their reports,
so what is killed is the parent as it merges them.

Run as a script (`python tests/killed_child.py check urls.txt ...`) from the
folder the run works in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from checker.cli import main
from checker.reports.output import ReportWriter

HERE = Path(__file__).resolve()


async def killed_writing_reports(cwd: Path, *args: str) -> tuple[int, str]:
    """`checker ARGS` in `cwd`, killed as it starts putting its reports in
    place; its exit code (-SIGKILL when it got that far) and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE), *args, cwd=cwd, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(45):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def hidden_reports(folder: Path) -> list[str]:
    """The hidden partial reports under `folder` (its shards' folders too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".status-*"))


async def _killed(*_: Any, **__: Any) -> list[str]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


if __name__ == "__main__":
    setattr(ReportWriter, "publish", _killed)  # noqa: B010 (mypy refuses a method assigned)
    sys.exit(main(sys.argv[1:]))
