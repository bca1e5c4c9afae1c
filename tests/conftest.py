"""Shared fixtures: local servers on 127.0.0.1 only, each stopped by its test."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from checker.pool import PoolOptions
from checker.run import RunConfig, run_check
from tests.helpers import check_options


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def run_list(tmp_path: Path) -> Callable[..., Awaitable[tuple[Any, dict[str, Any]]]]:
    """Write `lines` to a list file, run a check over it, return (outcome, latest.json)."""

    async def run(
        lines: list[str], *, pool: PoolOptions | None = None, **check_kw: Any
    ) -> tuple[Any, dict[str, Any]]:
        lst = tmp_path / "urls.txt"
        lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = tmp_path / "out"
        config = RunConfig(
            lists=[str(lst)],
            out_dir=str(out),
            formats=["csv", "json"],
            check=check_options(**check_kw),
            pool=pool or PoolOptions(concurrency=10, retries=0, backoff_base=0.01),
        )
        async with asyncio.timeout(60):
            outcome = await run_check(config)
        report = json.loads((out / "latest.json").read_text(encoding="utf-8"))
        return outcome, report

    return run


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests talk to servers on loopback: a proxy set in the environment of
    whoever runs them (or of CI) must not carry their requests. The proxy
    tests set their own."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
