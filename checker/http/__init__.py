"""The hand-written HTTP/1.1 client: `wire` (pure bytes), `client` (streams), `errors`."""
