"""The routes every real server serves, with the same meaning everywhere.

| path | answer |
| --- | --- |
| /ok | 200, "ok\\n" |
| /big | 200, 100 KiB body |
| /notfound (and anything else) | 404 |
| /head405 | 405 to HEAD, 200 to GET |
| /redirect | 302 to /ok |
| /error | 500 |
| /chunked | 200, a body streamed in pieces (chunked where the server does it) |
| /slow | 200 after SLOW_S |

The apps are written naively on purpose: they hand the server a body for HEAD
too, so that a server that sends it (a protocol violation) does so on the wire.
"""

from __future__ import annotations

OK_BODY = b"ok\n"
BIG_BODY = b"0123456789abcdef" * (100 * 1024 // 16)  # 100 KiB
CHUNKS = tuple(b"chunk %d of the streamed body\n" % i for i in range(5))
SLOW_S = 0.3
NOT_ALLOWED_BODY = b"HEAD is not allowed here\n"
NOT_FOUND_BODY = b"not found\n"
ERROR_BODY = b"internal error\n"
REDIRECT_BODY = b"see /ok\n"

ROUTES = ("/ok", "/big", "/notfound", "/head405", "/redirect", "/error", "/chunked", "/slow")
