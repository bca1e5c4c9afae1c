"""What a check imports: the report writers, the history and the recovery
come when the run uses them, not with every run from cron. Most of what
checker's own modules cost at start-up is making their dataclasses.

Each test is a fresh interpreter (this one has imported everything)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

# Imported by what uses them: the reporter's process (the reports and the
# history while the checks go on), a run without one (after its checks), a
# killed run's recovery, `checker history` and `checker report`, a check
# of smtp:// or ftp://.
LAZY = (
    "checker.protocols.replies",
    "checker.reports.csv_report",
    "checker.reports.html_report",
    "checker.reports.json_report",
    "checker.reports.output",
    "checker.reports.prom_report",
    "checker.reports.recover",
    "checker.store.db",
    "checker.store.feed",
    "checker.store.model",
    "checker.store.query",
    "checker.store.state",
)

_MODULES = "\nimport sys\nprint(json.dumps(sorted(sys.modules)))"


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def _python(code: str, cwd: Path, **env: str) -> tuple[list[str], list[str]]:
    """Run `code` then print the modules it imported: (its other lines, the modules)."""
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + code + _MODULES],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    *lines, modules = done.stdout.splitlines()
    return lines, json.loads(modules)


def test_the_command_line_imports_no_writer_and_no_history(tmp_path: Path) -> None:
    _, modules = _python("import checker.cli", tmp_path)
    assert "checker.run" in modules  # (what it is measured against)
    assert [name for name in LAZY if name in modules] == []


@pytest.mark.parametrize("reporter", ["on", "off"])
def test_a_check_writes_every_report(tmp_path: Path, site: str, reporter: str) -> None:
    """With a reporter, the run itself imports none of the writers (they are
    the reporter's); without one, it writes the reports itself, after its
    checks, with the writers it imports then."""
    (tmp_path / "urls.txt").write_text(site + "\n")
    code = (
        "from checker import cli\n"
        "print(cli.main(['check', 'urls.txt', '--out', 'out', '-q',"
        " '--format', 'csv,json,html,prom']))"
    )
    lines, modules = _python(code, tmp_path, CHECKER_REPORTER=reporter)
    assert lines == ["0"]
    out = tmp_path / "out"
    (report,) = out.glob("status-*.json")
    assert json.loads(report.read_bytes())["results"][0]["state"] == "up"
    for fmt in ("csv", "json", "html", "prom"):
        assert report.with_suffix(f".{fmt}").stat().st_size > 0, fmt
        assert (out / f"latest.{fmt}").exists(), fmt
    assert len((out / "runs.jsonl").read_text().splitlines()) == 1
    assert (out / "history.sqlite3").exists()
    lazy = [name for name in LAZY if name in modules]
    if reporter == "on":
        assert lazy == []
    else:
        assert "checker.reports.output" in lazy and "checker.protocols.replies" not in lazy
