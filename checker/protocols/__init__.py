"""Services other than web pages, checked on the same streams: replies, SMTP."""
