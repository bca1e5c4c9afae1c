"""A helper's answer ends its pipe when it closes it, not when the helper exits.

The run waits for its reporter's answer to the pipe's end. Under uvloop a
child inherits more than its three descriptors (copies of its own pipes among
them), so without `close_inherited` the end came only with the helper's exit:
20 ms and more after every run's answer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checker import loops

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_answer_ends_the_pipe_before_the_helper_exits(loop: str) -> None:
    async def main() -> tuple[bytes, bytes, float, int | None]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.pipe_child",
            "20",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            start = time.monotonic()
            async with asyncio.timeout(15):
                data = await proc.stdout.read()
            waited = time.monotonic() - start
            still_running = proc.returncode
        finally:
            proc.kill()
            await proc.wait()
        return data, await proc.stderr.read(), waited, still_running

    data, err, waited, returncode = loops.run(main(), loop)
    assert data == b"answer"
    assert b"this goes to stderr now" in err
    assert returncode is None  # the end came while it was still there
    assert waited < 15


def test_close_inherited_closes_what_is_open_above_stderr() -> None:
    code = (
        "import os\n"
        "opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]\n"
        "high = os.dup2(opened[0], 900)\n"
        "from checker.parallel import close_inherited\n"
        "close_inherited()\n"
        "left = sorted(int(n) for n in os.listdir('/proc/self/fd'))\n"
        "print(left[:3], len(left))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    ).stdout
    # 0, 1, 2, and the descriptor of that last listing itself
    assert out.strip() == "[0, 1, 2] 4"
