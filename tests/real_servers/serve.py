"""Launchers for the servers that have no command line of their own here.

    python -m tests.real_servers.serve tornado|werkzeug

Each binds 127.0.0.1 port 0 (the system picks), prints
"listening on 127.0.0.1:PORT" on stdout once it is bound, and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys


def _announce(port: int) -> None:
    print(f"listening on 127.0.0.1:{port}", flush=True)


def serve_werkzeug() -> None:
    from werkzeug.serving import make_server

    from tests.real_servers.wsgi_app import app

    # threaded=True: a thread per connection, HTTP/1.1 with keep-alive.
    server = make_server("127.0.0.1", 0, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _announce(server.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


async def _serve_tornado() -> None:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from tests.real_servers.tornado_app import make_app

    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app())
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _announce(sockets[0].getsockname()[1])
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def main(argv: list[str]) -> int:
    if argv == ["werkzeug"]:
        serve_werkzeug()
    elif argv == ["tornado"]:
        asyncio.run(_serve_tornado())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
