"""The terminal summary names what is down, in list order, and keeps invalid
lines and a stopped run's unchecked rows apart from down sites."""

from __future__ import annotations

from checker.results import Result
from checker.summary import NAMED, Stats, format_summary


def result(seq: int, **kw: object) -> Result:
    fields: dict[str, object] = {"url": f"https://h{seq}.example/", "source": "l.txt"}
    fields |= {"line": seq + 1, "ok": False, "error": "refused", **kw}
    return Result(**fields)  # type: ignore[arg-type]


def test_down_urls_are_named_in_list_order_then_counted() -> None:
    stats = Stats()
    # Finished in reverse order: the summary still names the first lines.
    for seq in reversed(range(NAMED + 5)):
        stats.add(seq, result(seq, error=None, status=503) if seq % 2 else result(seq))
    text = format_summary(stats, 1.0, [], False)
    named = [
        line.split()[-1] for line in text.splitlines() if line.startswith("  ") and "://" in line
    ]
    assert named == [f"https://h{seq}.example/" for seq in range(NAMED)]
    assert "         503  https://h1.example/" in text
    assert "     refused  https://h0.example/" in text
    assert "  ... and 5 more (see the reports)" in text


def test_invalid_and_not_checked_are_not_down() -> None:
    stats = Stats()
    stats.add(0, result(0, ok=True, error=None, status=200))
    stats.add(1, result(1, url="not a url", error="invalid_url"))
    stats.add(2, result(2, error="interrupted"))
    text = format_summary(stats, 1.0, [], True)
    assert text.startswith(
        "INTERRUPTED: checked 1 URL in 1.0s: 1 up, 0 down "
        "(1 not checked, as the run was stopped; 1 invalid line)"
    )
    assert "down:" not in text
    assert "invalid lines (not URLs checker checks):\n  l.txt:2: not a url" in text


def test_control_bytes_never_reach_the_terminal() -> None:
    stats = Stats()
    stats.add(0, result(0, url="bad\x1b[2Jline\x00", error="invalid_url"))
    text = format_summary(stats, 1.0, [], False)
    assert "\x1b" not in text and "\x00" not in text
    assert "  l.txt:1: bad\\x1b[2Jline\\x00" in text
