"""checker against real HTTP servers from the package registries.

Each server (waitress, gunicorn's sync worker, uvicorn, hypercorn, tornado,
werkzeug's threaded dev server, Debian's nginx, apache2 and lighttpd) runs as a subprocess on
127.0.0.1, on a port the system picked, serving the same routes
(tests/real_servers/routes.py). One list of many URLs per route, each with its
own query string and shuffled, so that kept-alive connections carry many
requests of every kind one after another; then every row of the report is
checked, under HEAD (the default), under GET, and with reuse off.

The Python apps are naive on purpose: they give the server a body for HEAD too.
waitress sends it (a protocol violation); a client that keeps that connection
reads the stale body as the next response.

A server whose package is not installed is skipped, saying which; see
tests/real_servers/launch.py for how each is started and stopped.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from checker.pool import PoolOptions
from tests.real_servers import launch
from tests.real_servers.routes import ROUTES

pytestmark = pytest.mark.timeout(45)

RunList = Callable[..., Awaitable[tuple[Any, dict[str, Any]]]]

# URLs per route: many, so that connections carry requests of every kind in
# turn; fewer of /slow (0.3 s each) and /big to keep the module near a minute.
PER_ROUTE = {route: 24 for route in ROUTES} | {"/slow": 8, "/big": 12}
SEED = 20261130

# mode -> (check options, reuse)
MODES: dict[str, tuple[dict[str, Any], bool]] = {
    "head": ({}, True),
    "get": ({"method": "GET"}, True),
    "no_reuse": ({}, False),
}

SHOWN = ("ok", "status", "method", "head_status", "error", "error_detail", "reused", "attempts")


@pytest.fixture(scope="module", params=launch.NAMES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[launch.Server]:
    name: str = request.param
    try:
        srv = launch.start(name, tmp_path_factory.mktemp(name))
    except launch.Unavailable as exc:
        pytest.skip(f"{name}: {exc}")
    try:
        yield srv
    finally:
        launch.stop(srv)
        assert not srv.notes, f"{name}: {srv.notes}"


def url_list(base: str) -> list[str]:
    urls = [f"{base}{route}?n={i}" for route, count in PER_ROUTE.items() for i in range(count)]
    random.Random(SEED).shuffle(urls)
    return urls


def expected(url: str, base: str, head_mode: bool) -> dict[str, Any]:
    """What the report must say for `url` (only the fields that matter)."""
    route = urlsplit(url).path
    want: dict[str, Any] = {"error": None, "attempts": 1}
    if route in ("/ok", "/big", "/chunked", "/slow"):
        want |= {"ok": True, "status": 200, "method": "HEAD" if head_mode else "GET"}
        want |= {"head_status": None, "redirects": []}
    elif route == "/redirect":
        want |= {"ok": True, "status": 200, "method": "HEAD" if head_mode else "GET"}
        want |= {"head_status": None, "final_url": f"{base}/ok"}
        want |= {"redirects": [{"status": 302, "url": url, "location": f"{base}/ok"}]}
    elif route == "/head405":
        # HEAD says 405, the confirming GET 200: up.
        want |= {"ok": True, "status": 200, "method": "GET"}
        want |= {"head_status": 405 if head_mode else None, "redirects": []}
    elif route in ("/notfound", "/error"):
        status = 404 if route == "/notfound" else 500
        want |= {"ok": False, "status": status, "method": "GET"}
        want |= {"head_status": status if head_mode else None, "redirects": []}
    else:  # pragma: no cover - every route is listed above
        raise AssertionError(route)
    return want


def describe(row: dict[str, Any]) -> str:
    shown = {k: row.get(k) for k in SHOWN}
    if row.get("redirects"):
        shown["redirects"] = [f"{h['status']} -> {h['location']}" for h in row["redirects"]]
    return ", ".join(f"{k}={v!r}" for k, v in shown.items())


@pytest.mark.parametrize("mode", list(MODES))
async def test_every_row_right(server: launch.Server, mode: str, run_list: RunList) -> None:
    check_kw, reuse = MODES[mode]
    head_mode = check_kw.get("method", "HEAD") == "HEAD"
    urls = url_list(server.base)
    pool = PoolOptions(concurrency=12, per_host=6, retries=0, backoff_base=0.01, reuse=reuse)
    _, report = await run_list(urls, pool=pool, **check_kw)
    rows: list[dict[str, Any]] = report["results"]
    assert [r["url"] for r in rows] == urls, "one row per URL, in input order"

    wrong: list[str] = []
    wrong_by_route: dict[str, int] = {}
    for row in rows:
        want = expected(row["url"], server.base, head_mode)
        bad = {k: v for k, v in want.items() if row.get(k) != v}
        # A connection the server said it would close is never reused.
        if row.get("reused") and (not reuse or not server.keeps_alive):
            bad["reused"] = False
        if bad:
            route = urlsplit(row["url"]).path
            wrong_by_route[route] = wrong_by_route.get(route, 0) + 1
            wrong.append(
                f"  {row['url']}\n      want {', '.join(f'{k}={v!r}' for k, v in bad.items())}"
                f"\n      got  {describe(row)}"
            )
    protocol = sum(1 for r in rows if r.get("error") == "protocol")
    if wrong:
        shown = "\n".join(wrong[:40]) + (
            f"\n  ... and {len(wrong) - 40} more" if len(wrong) > 40 else ""
        )
        pytest.fail(
            f"{server.name}, mode {mode}: {len(wrong)} of {len(rows)} rows wrong"
            f" (by route: {wrong_by_route}; {protocol} with error 'protocol')\n{shown}",
            pytrace=False,
        )

    reused = sum(1 for r in rows if r["reused"])
    if reuse and server.keeps_alive:
        # The point of the panel: one connection carries many requests. Not so
        # on a host that answers a HEAD with a body: once seen, its
        # connections are not reused (a late one could be read as an answer).
        if server.head_body and head_mode:
            assert reused <= len(rows) // 10, f"{server.name}: {reused} of {len(rows)} reused"
            said = [w for r in rows for w in r["warnings"] if "no longer reused in this run" in w]
            assert said, f"{server.name}: no row says its connections are no longer reused"
        else:
            least = len(rows) // 2
            assert reused >= least, f"{server.name}: only {reused} of {len(rows)} rows reused"


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("lighttpd", "server.max-connections = 4\n"),
        # Apache's event MPM with two threads: it takes no more connections
        # than it has threads for, and closes idle ones after KeepAliveTimeout.
        ("apache2", "ServerLimit 1\nThreadsPerChild 2\nMaxRequestWorkers 2\n"),
    ],
)
async def test_a_server_with_few_connection_slots(
    name: str, extra: str, tmp_path_factory: pytest.TempPathFactory, run_list: RunList
) -> None:
    """Found by a review: the connections such a server took went idle in
    checker's pool between checks and kept their places, so it never took
    the others, whose requests sat unread until the deadline (lighttpd:
    healthy pages down; Apache: 5-10 s waits, its idle timeout)."""
    try:
        srv = launch.start(name, tmp_path_factory.mktemp(name), extra=extra)
    except launch.Unavailable as exc:
        pytest.skip(f"{name}: {exc}")
    try:
        urls = [f"{srv.base}/ok?n={i}" for i in range(300)]
        pool = PoolOptions(concurrency=20, per_host=12, retries=0, backoff_base=0.01)
        _, report = await run_list(urls, pool=pool, timeout=3.0)
    finally:
        launch.stop(srv)
    rows: list[dict[str, Any]] = report["results"]
    assert [r["url"] for r in rows] == urls
    wanted: tuple[str, int, list[str]] = ("up", 1, [])
    wrong = [describe(r) for r in rows if (r["state"], r["attempts"], r["warnings"]) != wanted]
    assert not wrong, f"{name}: {len(wrong)} of {len(rows)} rows wrong:\n" + "\n".join(wrong[:20])
    # (What this guards against waited the server's idle timeout, 5 s, or the
    # deadline. A single check of 3.0 s on lighttpd is seen about once in 20
    # runs, its cause not found: the bound was 2.5 s and failed then.)
    slowest = max(r["total_ms"] for r in rows)
    assert slowest < 4500, f"{name}: a check took {slowest} ms (the server's idle timeout?)"
