"""A small DNS responder for loopback benchmarks: every answer after a fixed delay.

    python3 dns_responder.py [--listen 127.0.0.53] [--port 53] [--delay-ms 100]
        [--answer '*.example.test'] [--nxdomain 'nx*.example.test']
        [--silent 'silent*.example.test'] [--address 127.0.0.1 | --spread]
        [--aaaa ::1] [--stats-file PATH]

Stdlib only, UDP and TCP on one address. For each query (one question):

- a name matching --silent is never answered (a lost packet, a dead server);
- a name matching --nxdomain, or matching no --answer pattern, gets NXDOMAIN;
- else an A query gets --address (or, with --spread, 127.1.x.y from the number
  N that ends the first label: x = N // 250, y = N % 250 + 1, as run.py's
  distinct hosts), an AAAA query gets --aaaa if given, and anything else, or
  AAAA without --aaaa, gets an empty NOERROR answer (NODATA).

Every answer leaves --delay-ms after its query came (a timer per query, never
a sleep that holds up the others), as a recursive resolver answers on a cache
miss. Counts queries (by type, by name), the most answers pending at once and
the datagrams the kernel dropped (a 16 MiB receive buffer keeps that at 0).
SIGUSR1 writes the counts as JSON to --stats-file and resets them; SIGTERM and
SIGINT write them, print them to stderr and exit. Patterns are fnmatch globs,
matched case-insensitively.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, cast

QTYPES = {1: "A", 28: "AAAA"}
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4
LABEL_NUMBER = re.compile(r"(\d+)$")
RCVBUF = 16 << 20  # 16 MiB: a burst of queries must not overflow it (see udp_drops)


@dataclass
class Rules:
    answer: list[str]
    nxdomain: list[str]
    silent: list[str]
    address: bytes  # A rdata
    spread: bool
    aaaa: bytes | None  # AAAA rdata, or None for NODATA
    ttl: int

    def decide(self, name: str, qtype: int) -> tuple[int, bytes | None] | None:
        """(rcode, rdata or None) for a question, or None: do not answer."""
        if any(fnmatchcase(name, p) for p in self.silent):
            return None
        if any(fnmatchcase(name, p) for p in self.nxdomain):
            return NXDOMAIN, None
        if not any(fnmatchcase(name, p) for p in self.answer):
            return NXDOMAIN, None
        if qtype == 1:
            return NOERROR, self._a(name)
        if qtype == 28 and self.aaaa is not None:
            return NOERROR, self.aaaa
        return NOERROR, None

    def _a(self, name: str) -> bytes:
        match = LABEL_NUMBER.search(name.split(".", 1)[0])
        if self.spread and match:
            n = int(match.group(1)) % 62_500
            return bytes([127, 1, n // 250, n % 250 + 1])
        return self.address


@dataclass
class Stats:
    queries: int = 0
    answered: int = 0
    nxdomain: int = 0
    silent: int = 0
    malformed: int = 0
    tcp_queries: int = 0
    pending: int = 0
    max_pending: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_question: Counter[tuple[str, str]] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        names = {name for name, _ in self.by_question}
        return {
            "queries": self.queries,
            "answered": self.answered,
            "nxdomain": self.nxdomain,
            "silent": self.silent,
            "malformed": self.malformed,
            "tcp_queries": self.tcp_queries,
            "max_pending": self.max_pending,
            "by_type": dict(self.by_type),
            "distinct_names": len(names),
            # The most times one (name, type) was asked: 1 means nothing was asked twice.
            "max_per_question": max(self.by_question.values(), default=0),
        }


def parse_query(data: bytes) -> tuple[int, int, bytes, str, int]:
    """(id, flags, raw question, lower-case name, qtype) of a one-question query."""
    if len(data) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        raise ValueError("not a one-question query")
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(data):
            raise ValueError("truncated name")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length > 63 or pos + length > len(data):
            raise ValueError("bad label")
        labels.append(data[pos : pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(data):
        raise ValueError("truncated question")
    qtype = struct.unpack("!H", data[pos : pos + 2])[0]
    return qid, flags, data[12 : pos + 4], ".".join(labels).lower(), qtype


def build_response(
    qid: int, flags: int, question: bytes, qtype: int, rcode: int, rdata: bytes | None, ttl: int
) -> bytes:
    # QR, the query's opcode and RD, RA (we pose as a recursive resolver), the rcode.
    out_flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", qid, out_flags, 1 if question else 0, 1 if rdata else 0, 0, 0)
    answer = b""
    if rdata is not None:  # the name is a pointer to the question's (offset 12)
        answer = struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata
    return header + question + answer


class Responder:
    def __init__(self, rules: Rules, delay: float) -> None:
        self.rules = rules
        self.delay = delay
        self.stats = Stats()

    def handle(self, data: bytes, reply: Callable[[bytes], None]) -> None:
        """Count a query and schedule its answer (or none) after the delay."""
        stats = self.stats
        stats.queries += 1
        try:
            qid, flags, question, name, qtype = parse_query(data)
        except ValueError:
            stats.malformed += 1
            if len(data) >= 12:  # FORMERR, at once
                reply(build_response(struct.unpack("!H", data[:2])[0], 0, b"", 0, FORMERR, None, 0))
            return
        stats.by_type[QTYPES.get(qtype, str(qtype))] += 1
        stats.by_question[(name, QTYPES.get(qtype, str(qtype)))] += 1
        if (flags >> 11) & 0xF:  # only standard queries
            decision: tuple[int, bytes | None] | None = (NOTIMP, None)
        else:
            decision = self.rules.decide(name, qtype)
        if decision is None:
            stats.silent += 1
            return
        rcode, rdata = decision
        response = build_response(qid, flags, question, qtype, rcode, rdata, self.rules.ttl)
        stats.pending += 1
        stats.max_pending = max(stats.max_pending, stats.pending)

        def send() -> None:
            stats.pending -= 1
            stats.answered += 1
            stats.nxdomain += rcode == NXDOMAIN
            reply(response)

        asyncio.get_running_loop().call_later(self.delay, send)


class UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        transport = self.transport
        if transport is None:
            return
        self.responder.handle(data, lambda response: transport.sendto(response, addr))


async def serve_tcp(
    responder: Responder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Length-prefixed queries on one connection, each answered after the delay."""

    def reply(response: bytes) -> None:
        if not writer.is_closing():
            writer.write(struct.pack("!H", len(response)) + response)

    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            responder.stats.tcp_queries += 1
            responder.handle(await reader.readexactly(length), reply)
    await asyncio.sleep(responder.delay)  # let the last answers go out before closing
    writer.close()


def udp_socket(address: str, port: int) -> socket.socket:
    """A UDP socket with a receive buffer for thousands of queries arriving at once."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:  # root may exceed net.core.rmem_max; others get what the sysctl allows
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind((address, port))
    sock.setblocking(False)
    return sock


def udp_drops(inode: int) -> int:
    """Datagrams the kernel dropped on our socket (buffer full), from /proc/net/udp*."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 13 and fields[9] == str(inode):
                    return int(fields[12])
    return -1


def write_stats(stats: Stats, path: Path | None, seq: int, drops: int) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"seq": seq, "udp_drops_total": drops, **stats.as_dict()}))
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> Stats:
    rules = Rules(
        answer=[p.lower() for p in args.answer],
        nxdomain=[p.lower() for p in args.nxdomain],
        silent=[p.lower() for p in args.silent],
        address=ipaddress.IPv4Address(args.address).packed,
        spread=args.spread,
        aaaa=ipaddress.IPv6Address(args.aaaa).packed if args.aaaa else None,
        ttl=args.ttl,
    )
    responder = Responder(rules, args.delay_ms / 1000)
    loop = asyncio.get_running_loop()
    udp_sock = udp_socket(args.listen, args.port)
    inode = os.fstat(udp_sock.fileno()).st_ino
    udp, _ = await loop.create_datagram_endpoint(lambda: UDPProtocol(responder), sock=udp_sock)
    tcp = await asyncio.start_server(
        lambda r, w: serve_tcp(responder, r, w), args.listen, args.port, backlog=1024
    )
    stop = asyncio.Event()
    seq = 0

    def dump_and_reset() -> None:
        nonlocal seq
        seq += 1
        pending = responder.stats.pending
        write_stats(responder.stats, args.stats_file, seq, udp_drops(inode))
        responder.stats = Stats(pending=pending)  # answers still due are not lost

    loop.add_signal_handler(signal.SIGUSR1, dump_and_reset)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"dns_responder: {args.listen}:{args.port} udp+tcp, delay {args.delay_ms} ms",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    udp.close()
    tcp.close()
    write_stats(responder.stats, args.stats_file, seq + 1, udp_drops(inode))
    print(f"dns_responder: UDP datagrams dropped: {udp_drops(inode)}", file=sys.stderr)
    return responder.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.53", help="address (default 127.0.0.53)")
    parser.add_argument("--port", type=int, default=53, help="UDP and TCP port (default 53)")
    parser.add_argument("--delay-ms", type=float, default=100, help="answer delay (default 100)")
    parser.add_argument("--answer", action="append", help="glob of names answered (*.example.test)")
    parser.add_argument("--nxdomain", action="append", help="glob: NXDOMAIN (nx*.example.test)")
    parser.add_argument("--silent", action="append", help="glob: no answer (silent*.example.test)")
    parser.add_argument("--address", default="127.0.0.1", help="the A record (default 127.0.0.1)")
    parser.add_argument("--spread", action="store_true", help="nameN -> 127.1.x.y (see above)")
    parser.add_argument("--aaaa", help="the AAAA record (default: none, NODATA)")
    parser.add_argument("--ttl", type=int, default=300, help="TTL of answers (default 300)")
    parser.add_argument("--stats-file", type=Path, help="JSON counts on SIGUSR1 and at exit")
    args = parser.parse_args()
    args.answer = args.answer or ["*.example.test"]
    args.nxdomain = args.nxdomain or ["nx*.example.test"]
    args.silent = args.silent or ["silent*.example.test"]
    stats = asyncio.run(serve(args))
    print(json.dumps(stats.as_dict()), file=sys.stderr)


if __name__ == "__main__":
    main()
