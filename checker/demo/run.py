"""`checker demo`: a fleet of local sites, a real check run, real reports.

Needs no network: every site listens on 127.0.0.1 with a port the OS picks.
"""

from __future__ import annotations

import os
from importlib.resources import files

import aiofiles

from checker import __version__, loops
from checker.check import CheckOptions
from checker.demo.fleet import Fleet, Route, demo_ca_file, demo_server_context
from checker.demo.services import Services
from checker.http.client import ClientConfig, make_ssl_context
from checker.loops import choose
from checker.pool import PoolOptions
from checker.run import FORMATS, RunConfig, RunOutcome, run_check
from checker.summary import format_summary

# What each demo site does; the README's demo section tells the same story.
ROUTES = {
    "/healthy": Route(),
    "/redirect": Route(status=301, location="/healthy"),
    "/missing": Route(status=404),
    "/error": Route(status=500),
    "/head-405": Route(head_status=405),  # a server that answers HEAD wrongly
    "/slow": Route(delay=0.8),
    "/hang": Route(delay=30.0),  # longer than the demo's deadline
    "/secure": Route(),
}
TIMEOUT = 2.0
RETRIES = 1


def demo_list(fleet: Fleet, services: Services) -> str:
    template = files("checker.demo").joinpath("urls.txt").read_text(encoding="utf-8")
    return (
        template.replace("{http}", fleet.url(""))
        .replace("{https}", fleet.https_url(""))
        .replace("{dead}", fleet.dead_url("").rstrip("/"))
        .replace("{smtp}", f"smtp://127.0.0.1:{services.smtp_port}")
        .replace("{ftp}", f"ftp://127.0.0.1:{services.ftp_port}")
    )


async def demo(out_dir: str, progress: bool) -> tuple[RunOutcome, str]:
    os.makedirs(out_dir, exist_ok=True)
    list_path = os.path.join(out_dir, "demo-urls.txt")
    async with (
        Fleet(ROUTES, https_context=demo_server_context()) as fleet,
        Services() as services,
    ):
        async with aiofiles.open(list_path, "w", encoding="utf-8") as f:
            await f.write(demo_list(fleet, services))
        client = ClientConfig(
            ssl_context=make_ssl_context(ca_file=str(demo_ca_file())),
            connect_timeout=TIMEOUT,
            user_agent=f"checker/{__version__}",
        )
        config = RunConfig(
            lists=[list_path],
            out_dir=out_dir,
            formats=FORMATS,
            check=CheckOptions(client=client, timeout=TIMEOUT),
            pool=PoolOptions(concurrency=20, retries=RETRIES),
            progress=progress,
            options={"demo": True, "timeout": TIMEOUT, "retries": RETRIES},
        )
        return await run_check(config), list_path


def run_demo(out_dir: str, quiet: bool, progress: bool = False) -> int:
    if not quiet:
        print(f"checker demo: local sites on 127.0.0.1, checked with a {TIMEOUT:g}s deadline")
    outcome, list_path = loops.run(demo(out_dir, progress), choose("auto"))
    if not quiet:
        print(
            format_summary(outcome.stats, outcome.duration_s, outcome.reports, outcome.interrupted)
        )
        print(f"the list it checked: {list_path}")
        page = os.path.join(out_dir, "latest.html")
        print(f"open {page} in a browser, or latest.csv in a spreadsheet")
    return 0
