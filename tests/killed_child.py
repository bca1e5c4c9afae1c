"""`checker ARGS`, killed outright (SIGKILL) the moment it starts putting its
reports in place: every row is in its hidden spools (`.status-<time>.<fmt>.XXXX`)
and none has been renamed yet (or, with KILLED_CHILD_AT=index, the moment
it adds the run to runs.jsonl: its reports and history are in place).
Deterministic, where killing it after some time would hit the write only now
and then. Only this process is patched: a
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


async def killed_writing_reports(
    cwd: Path, *args: str, at: str = "reports", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`checker ARGS` in `cwd`, killed as it starts putting its reports in
    place (`at="reports"`), or once its reports and history are in place, as
    it adds the run to runs.jsonl (`at="index"`); its exit code (-SIGKILL
    when it got that far) and stderr. `env`: variables added."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        *args,
        cwd=cwd,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {}), "KILLED_CHILD_AT": at},
    )
    from tests.helpers import ended  # (not when run as a script: no `tests` there)

    code, _, err = await ended(proc)
    return code, err


def hidden_reports(folder: Path) -> list[str]:
    """The hidden partial reports under `folder` (its shards' folders too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".status-*"))


async def _killed(*_: Any, **__: Any) -> list[str]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


if __name__ == "__main__":
    if os.environ.get("KILLED_CHILD_AT") == "index":
        from checker import run
        from checker.reports import recover

        # (The run adds its line itself after a reporter; recover.publish
        # after the checks, for a merge, and for a --processes run.)
        for module in (run, recover):
            setattr(module, "append_run", _killed)  # noqa: B010 (not exported: patched)
    else:
        setattr(ReportWriter, "publish", _killed)  # noqa: B010 (mypy refuses a method assigned)
    sys.exit(main(sys.argv[1:]))
