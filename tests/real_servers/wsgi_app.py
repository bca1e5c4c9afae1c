"""A WSGI app (waitress, gunicorn, werkzeug) serving the routes in `routes`.

Naive on purpose: the body is returned for HEAD as well; the server decides
whether it goes on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tests.real_servers import routes

StartResponse = Callable[..., Any]


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _stream() -> Iterator[bytes]:
    for chunk in routes.CHUNKS:
        yield chunk
        time.sleep(0.005)


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/ok":
        return _reply(start_response, "200 OK", routes.OK_BODY)
    if path == "/big":
        return _reply(start_response, "200 OK", routes.BIG_BODY)
    if path == "/head405":
        if method == "HEAD":
            return _reply(
                start_response,
                "405 Method Not Allowed",
                routes.NOT_ALLOWED_BODY,
                [("Allow", "GET")],
            )
        return _reply(start_response, "200 OK", routes.OK_BODY)
    if path == "/redirect":
        return _reply(start_response, "302 Found", routes.REDIRECT_BODY, [("Location", "/ok")])
    if path == "/error":
        return _reply(start_response, "500 Internal Server Error", routes.ERROR_BODY)
    if path == "/chunked":
        # No Content-Length: an HTTP/1.1 server sends it chunked.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/slow":
        time.sleep(routes.SLOW_S)
        return _reply(start_response, "200 OK", routes.OK_BODY)
    return _reply(start_response, "404 Not Found", routes.NOT_FOUND_BODY)
