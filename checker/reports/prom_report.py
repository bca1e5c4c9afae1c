"""Prometheus text format (0.0.4), for node_exporter's textfile collector.

Point the collector at `latest.prom` (or symlink it into the collector's
folder): it is replaced atomically, as the collector requires. Samples of one
metric family stand together, so the rows are read once per family.

One series per URL, labelled by the URL alone: a line number would start a
new series whenever the list is edited. Rows that are not a checked URL (an
invalid line, a row a stopped run never finished) have no per-URL samples:
absent, not 0, so that a stopped run does not read as sites going down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from checker.results import NOT_A_CHECK

PHASES = ("dns", "connect", "tls", "ttfb", "total")


def _label(value: object) -> str:
    # Label values escape backslash, double quote and line feed (exposition format).
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(row: dict[str, Any], **more: str) -> str:
    pairs = {"url": row["url"], **more}
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


def _num(value: float | int) -> str:
    # Microseconds are as fine as any timing here; more digits are float noise
    # (0.011082000000000002).
    return repr(round(float(value), 6)) if isinstance(value, float) else str(value)


def _checked(
    rows: Callable[[], Iterator[dict[str, Any]]],
) -> Callable[[], Iterator[dict[str, Any]]]:
    def checked() -> Iterator[dict[str, Any]]:
        return (r for r in rows() if r.get("error") not in NOT_A_CHECK)

    return checked


def _epoch(iso: object) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def render(run: dict[str, Any], rows: Callable[[], Iterator[dict[str, Any]]]) -> Iterator[bytes]:
    rows = _checked(rows)

    def family(name: str, kind: str, help_: str, samples: Iterator[str]) -> Iterator[bytes]:
        yield f"# HELP {name} {help_}\n# TYPE {name} {kind}\n".encode()
        batch: list[str] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) >= 1024:
                yield "".join(batch).encode("utf-8")
                batch = []
        yield "".join(batch).encode("utf-8")

    def up() -> Iterator[str]:
        for r in rows():
            yield f"checker_up{_labels(r)} {1 if r['ok'] else 0}\n"

    def degraded() -> Iterator[str]:
        for r in rows():
            if r.get("state") in ("up", "degraded"):
                yield f"checker_degraded{_labels(r)} {1 if r['state'] == 'degraded' else 0}\n"

    def status() -> Iterator[str]:
        for r in rows():
            if r["status"] is not None:
                yield f"checker_http_status{_labels(r)} {r['status']}\n"

    def error() -> Iterator[str]:
        for r in rows():
            if r["error"]:
                yield f"checker_error{_labels(r, category=r['error'])} 1\n"

    def phases() -> Iterator[str]:
        for r in rows():
            for phase in PHASES:
                ms = r.get(f"{phase}_ms")
                if ms is not None:
                    yield f"checker_phase_seconds{_labels(r, phase=phase)} {_num(ms / 1000)}\n"

    def cert() -> Iterator[str]:
        for r in rows():
            if r.get("cert_days_left") is not None:
                yield f"checker_cert_days_left{_labels(r)} {r['cert_days_left']}\n"

    yield from family("checker_up", "gauge", "1 if the URL was up at the last run, else 0.", up())
    yield from family(
        "checker_degraded",
        "gauge",
        "1 if the URL was up but degraded (slow, certificate, on a retry), 0 if fully up.",
        degraded(),
    )
    yield from family("checker_http_status", "gauge", "Final HTTP status code.", status())
    yield from family(
        "checker_error", "gauge", "1 for the error category of a failed check.", error()
    )
    yield from family(
        "checker_phase_seconds", "gauge", "Duration of each phase of the last request.", phases()
    )
    yield from family(
        "checker_cert_days_left", "gauge", "Days until the TLS certificate expires.", cert()
    )
    totals = [
        ("checker_run_urls", "URLs checked in the last run.", run.get("total", 0)),
        ("checker_run_up", "URLs up in the last run.", run.get("up", 0)),
        ("checker_run_degraded", "URLs up but degraded in the last run.", run.get("degraded", 0)),
        ("checker_run_down", "URLs down in the last run.", run.get("down", 0)),
        (
            "checker_run_not_checked",
            "Rows a stopped run never finished.",
            run.get("not_checked", 0),
        ),
        ("checker_run_invalid", "Lines of the lists that are not URLs.", run.get("invalid", 0)),
        ("checker_run_duration_seconds", "How long the last run took.", run.get("duration_s") or 0),
        (
            "checker_run_interrupted",
            "1 if the last run was stopped early.",
            int(bool(run.get("interrupted"))),
        ),
    ]
    for name, help_, value in totals:
        yield f"# HELP {name} {help_}\n# TYPE {name} gauge\n{name} {_num(value)}\n".encode()
    finished = _epoch(run.get("finished_at"))
    if finished is not None:
        # For alerting on a checker that stopped running: time() - this.
        yield (
            "# HELP checker_run_timestamp_seconds When the last run finished (Unix time).\n"
            "# TYPE checker_run_timestamp_seconds gauge\n"
            f"checker_run_timestamp_seconds {round(finished, 3)!r}\n"
        ).encode()
