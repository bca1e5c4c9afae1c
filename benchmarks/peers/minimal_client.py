"""The floor: a minimal HEAD checker on the same asyncio streams as checker.

    python minimal_client.py LIST CONCURRENCY [--cafile PEM]

C workers over a bounded queue; each keeps one connection to the origin it
last used (reconnecting for another origin), writes `HEAD path HTTP/1.1` with
`write` + `drain`, reads the status line and each header line with
`readline()` to the blank line, and counts the status. No body reading, no
validation, no redirects, no records, no reports: what the exchange itself
costs on asyncio streams with uvloop, for PROFILE.md's "CPU per check" beside
checker's and aiohttp's. Prints the counts as one JSON line, like the aiohttp
peer. Benchmark-only; never part of the package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections import Counter
from urllib.parse import urlsplit

import uvloop


async def check_all(path: str, concurrency: int, cafile: str | None) -> Counter[str]:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    counts: Counter[str] = Counter()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=2 * concurrency)

    async def worker() -> None:
        origin: tuple[str, int] | None = None
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while (url := await queue.get()) is not None:
                parts = urlsplit(url)
                host, port = parts.hostname or "", parts.port or 80
                if (host, port) != origin or writer is None or reader is None:
                    if writer is not None:
                        writer.close()
                    reader, writer = await asyncio.open_connection(
                        host, port, ssl=ctx if parts.scheme == "https" else None
                    )
                    origin = (host, port)
                writer.write(
                    f"HEAD {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
                )
                await writer.drain()
                status = (await reader.readline()).split(b" ", 2)[1].decode()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                counts[status] += 1
        finally:
            if writer is not None:
                writer.close()

    async def feed() -> None:
        with open(path, encoding="utf-8") as f:  # noqa: ASYNC230 (as the aiohttp peer: a local file, read as it goes)
            for line in f:
                if line.strip():
                    await queue.put(line.strip())
        for _ in range(concurrency):
            await queue.put(None)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
        group.create_task(feed())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("list")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--cafile")
    args = parser.parse_args()
    counts = uvloop.run(check_all(args.list, args.concurrency, args.cafile))
    print(json.dumps({"counts": counts}))


if __name__ == "__main__":
    main()
