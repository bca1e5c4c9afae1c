"""Prometheus text format (0.0.4), for node_exporter's textfile collector.

Point the collector at `latest.prom` (or symlink it into the collector's
folder): it is replaced atomically, as the collector requires. Samples of one
metric family stand together, so the rows are read once per family.

One series per URL, labelled by the URL alone: a line number would start a
new series whenever the list is edited. A URL that rows with other
expectations check more than once (a CSV list) gets a label more on each of
its series, or they would be the same series twice, and node_exporter refuses
the whole file for that (`_apart`): `name`, when its rows have names and no
two the same, else `line`. Rows that are not a checked URL (an invalid line,
a row a stopped run never finished) have no per-URL samples: absent, not 0,
so that a stopped run does not read as sites going down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from checker.fingerprints import FingerprintMap
from checker.results import NOT_A_CHECK

PHASES = ("dns", "connect", "tls", "ttfb", "total")


def _label(value: object) -> str:
    # Label values escape backslash, double quote and line feed (exposition format).
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


Apart = dict[tuple[object, object], dict[str, str]]  # (source, line) -> labels more


def _apart(rows: Callable[[], Iterator[dict[str, Any]]]) -> Apart:
    """The labels more for the rows of a URL checked more than once, by the
    row's (source, line); empty when every URL is checked once (the usual).

    A pass more over the rows (there is one a family already) keeping a
    URL's fingerprint (about 15 bytes a URL, not a set of a million URLs'
    text), and one more keeping the rows of the few URLs seen again."""
    seen = FingerprintMap(1024, typecode="B")
    again: set[str] = set()
    for r in rows():
        if seen.setdefault(r["url"], 1) is not None:
            again.add(r["url"])  # (or a fingerprint's collision: counted below)
    del seen
    if not again:
        return {}
    groups: dict[str, list[tuple[object, object, object]]] = {}
    for r in rows():
        if r["url"] in again:
            groups.setdefault(r["url"], []).append((r.get("source"), r.get("line"), r.get("name")))
    apart: Apart = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        names = [name for _, _, name in group]
        named = all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
        lists = len({source for source, _, _ in group}) > 1
        for source, line, name in group:
            if named:
                apart[(source, line)] = {"name": str(name)}
            else:
                apart[(source, line)] = {"line": f"{source}:{line}" if lists else str(line)}
    return apart


def _labels(row: dict[str, Any], apart: Apart, **more: str) -> str:
    pairs = {"url": row["url"]}
    if apart and (extra := apart.get((row.get("source"), row.get("line")))):
        pairs.update(extra)
    pairs.update(more)
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
    apart = _apart(rows)

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
            yield f"checker_up{_labels(r, apart)} {1 if r['ok'] else 0}\n"

    def degraded() -> Iterator[str]:
        for r in rows():
            if r.get("state") in ("up", "degraded"):
                value = 1 if r["state"] == "degraded" else 0
                yield f"checker_degraded{_labels(r, apart)} {value}\n"

    def status() -> Iterator[str]:
        for r in rows():
            if r["status"] is not None:
                yield f"checker_http_status{_labels(r, apart)} {r['status']}\n"

    def error() -> Iterator[str]:
        for r in rows():
            if r["error"]:
                yield f"checker_error{_labels(r, apart, category=r['error'])} 1\n"

    def phases() -> Iterator[str]:
        for r in rows():
            for phase in PHASES:
                ms = r.get(f"{phase}_ms")
                if ms is not None:
                    labels = _labels(r, apart, phase=phase)
                    yield f"checker_phase_seconds{labels} {_num(ms / 1000)}\n"

    def cert() -> Iterator[str]:
        for r in rows():
            if r.get("cert_days_left") is not None:
                yield f"checker_cert_days_left{_labels(r, apart)} {r['cert_days_left']}\n"

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
