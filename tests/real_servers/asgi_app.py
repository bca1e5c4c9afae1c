"""An ASGI app (uvicorn, hypercorn) serving the routes in `routes`.

Naive on purpose: the body is sent for HEAD as well; the server decides
whether it goes on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.real_servers import routes

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _reply(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/ok":
        await _reply(send, 200, routes.OK_BODY)
    elif path == "/big":
        await _reply(send, 200, routes.BIG_BODY)
    elif path == "/head405":
        if method == "HEAD":
            await _reply(send, 405, routes.NOT_ALLOWED_BODY, [(b"allow", b"GET")])
        else:
            await _reply(send, 200, routes.OK_BODY)
    elif path == "/redirect":
        await _reply(send, 302, routes.REDIRECT_BODY, [(b"location", b"/ok")])
    elif path == "/error":
        await _reply(send, 500, routes.ERROR_BODY)
    elif path == "/chunked":
        # No Content-Length and several body messages: chunked on HTTP/1.1.
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/plain")]})
        for chunk in routes.CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(routes.SLOW_S)
        await _reply(send, 200, routes.OK_BODY)
    else:
        await _reply(send, 404, routes.NOT_FOUND_BODY)
