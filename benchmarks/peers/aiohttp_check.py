"""The aiohttp peer of the benchmark: check a URL list the way one would with aiohttp.

    python aiohttp_check.py LIST CONCURRENCY [--force-close] [--cafile PEM]
        [--aiodns] [--connect-timeout S]

One ClientSession with TCPConnector(limit=C, limit_per_host=C), a pool of C
worker tasks over a bounded asyncio.Queue fed from the list file read line by
line (so memory follows C, not the list length, as in checker), HEAD without
following redirects. Prints the counts of statuses and errors as one JSON line:
run.py checks that every URL got a 200. Stock asyncio loop, aiohttp's defaults.
Names are resolved with ThreadedResolver (getaddrinfo in the loop's default
thread pool), always: aiohttp would switch its default to AsyncResolver as soon
as aiodns is installed (hostnames.py installs it). For hostnames.py: --aiodns
resolves with AsyncResolver (c-ares, through aiodns), and --connect-timeout
sets ClientTimeout(connect=S), which covers name resolution and the TCP connect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections import Counter

import aiohttp


async def check_all(
    path: str,
    concurrency: int,
    force_close: bool,
    cafile: str | None,
    aiodns: bool = False,
    connect_timeout: float | None = None,
) -> Counter[str]:
    ssl_option: ssl.SSLContext | bool = True
    if cafile:
        ssl_option = ssl.create_default_context(cafile=cafile)
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=concurrency,
        force_close=force_close,
        ssl=ssl_option,
        # Explicit: aiohttp's default becomes AsyncResolver whenever aiodns is importable.
        resolver=aiohttp.AsyncResolver() if aiodns else aiohttp.ThreadedResolver(),
    )
    counts: Counter[str] = Counter()
    # Bounded, so a 1,000,000-line list is never all in memory at once.
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=2 * concurrency)
    timeout = aiohttp.ClientTimeout(total=30, connect=connect_timeout)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while (url := await queue.get()) is not None:
                try:
                    async with session.head(url, allow_redirects=False) as response:
                        counts[str(response.status)] += 1
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    counts[f"error:{type(exc).__name__}"] += 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        # A local file read through an 8 KiB buffer: a blocking read per few
        # hundred URLs is negligible next to the requests, and it keeps the peer short.
        with open(path, encoding="utf-8") as lines:  # noqa: ASYNC230
            for line in lines:
                url = line.strip()
                if url and not url.startswith("#"):
                    await queue.put(url)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--force-close", action="store_true", help="no keep-alive")
    parser.add_argument("--cafile", help="trust this CA (PEM)")
    parser.add_argument("--aiodns", action="store_true", help="AsyncResolver (aiodns)")
    parser.add_argument("--connect-timeout", type=float, help="ClientTimeout(connect=S)")
    args = parser.parse_args()
    counts = asyncio.run(
        check_all(
            args.list,
            args.concurrency,
            args.force_close,
            args.cafile,
            args.aiodns,
            args.connect_timeout,
        )
    )
    print(json.dumps({"total": sum(counts.values()), "counts": dict(counts)}))


if __name__ == "__main__":
    main()
