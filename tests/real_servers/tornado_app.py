"""A tornado application serving the routes in `routes`.

Naive where tornado lets it be: HEAD handlers write the body as GET does
(tornado itself drops it). /head405 has no HEAD handler, so tornado answers 405.
"""

from __future__ import annotations

import asyncio

import tornado.web

from tests.real_servers import routes


class _Body(tornado.web.RequestHandler):
    status = 200
    body = routes.OK_BODY

    def _write(self) -> None:
        self.set_status(self.status)
        self.set_header("Content-Type", "text/plain")
        self.write(self.body)

    def get(self) -> None:
        self._write()

    def head(self) -> None:
        self._write()


class Ok(_Body):
    pass


class Big(_Body):
    body = routes.BIG_BODY


class Error(_Body):
    status = 500
    body = routes.ERROR_BODY


class NotFound(_Body):
    status = 404
    body = routes.NOT_FOUND_BODY

    # Any method on an unknown path: 404, as everywhere else.
    def prepare(self) -> None:
        self._write()
        self.finish()


class Head405(tornado.web.RequestHandler):
    # No head(): tornado answers HEAD with 405 by itself.
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write(routes.OK_BODY)


class Redirect(tornado.web.RequestHandler):
    def get(self) -> None:
        self.redirect("/ok", status=302)

    def head(self) -> None:
        self.redirect("/ok", status=302)


class Chunked(tornado.web.RequestHandler):
    async def _stream(self) -> None:
        self.set_header("Content-Type", "text/plain")
        for chunk in routes.CHUNKS:
            self.write(chunk)
            await self.flush()  # no Content-Length once flushed: chunked on HTTP/1.1
            await asyncio.sleep(0.005)

    async def get(self) -> None:
        await self._stream()

    async def head(self) -> None:
        await self._stream()


class Slow(_Body):
    async def get(self) -> None:  # type: ignore[override]
        await asyncio.sleep(routes.SLOW_S)
        self._write()

    async def head(self) -> None:  # type: ignore[override]
        await asyncio.sleep(routes.SLOW_S)
        self._write()


def make_app() -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/ok", Ok),
            (r"/big", Big),
            (r"/head405", Head405),
            (r"/redirect", Redirect),
            (r"/error", Error),
            (r"/chunked", Chunked),
            (r"/slow", Slow),
        ],
        default_handler_class=NotFound,
    )
