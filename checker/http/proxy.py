"""Which proxy a URL goes through (pure): HTTP_PROXY, HTTPS_PROXY, NO_PROXY,
or `--proxy`.

- `http://` URLs go to `HTTP_PROXY` (or `http_proxy`), `https://` URLs to
  `HTTPS_PROXY` (or `https_proxy`); `--proxy URL` is both, and wins.
- `NO_PROXY` (or `no_proxy`): comma-separated; `*` means no proxy at all; a
  host name matches itself and its subdomains (`example.com` and
  `.example.com` both match `www.example.com`); an IP address or a CIDR
  block (`10.0.0.0/8`) matches the addresses in it; an entry with `:port`
  matches that port only. Loopback is not exempt unless listed (the tests
  check through a proxy on loopback).
- The proxy is an `http://` URL (`host:port` alone means that); its
  `user:password@` is sent as `Proxy-Authorization: Basic` and never
  written anywhere else. A plain http URL is sent to the proxy in absolute
  form (`GET http://host/path`); an https URL goes through a `CONNECT`
  tunnel, upgraded to TLS in place with `StreamWriter.start_tls`, the
  certificate checked against the URL's host as without a proxy.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from checker.url import URL


class ProxyConfigError(ValueError):
    """A proxy setting that cannot be used (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # the header's value

    @property
    def shown(self) -> str:
        """For messages and reports: never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str], proxy: str | None = None
    ) -> ProxySettings:
        def env(name: str) -> str | None:
            return environ.get(name) or environ.get(name.lower()) or None

        http: Proxy | None
        https: Proxy | None
        if proxy:
            http = https = parse_proxy(proxy, "--proxy")
        else:
            http_text, https_text = env("HTTP_PROXY"), env("HTTPS_PROXY")
            http = parse_proxy(http_text, "HTTP_PROXY") if http_text else None
            https = parse_proxy(https_text, "HTTPS_PROXY") if https_text else None
        entries = (env("NO_PROXY") or "").split(",")
        return cls(http, https, tuple(e.strip().lower() for e in entries if e.strip()))

    def for_url(self, url: URL) -> Proxy | None:
        if url.is_service:
            return None  # tcp:// and tls:// check the service itself, never a proxy
        proxy = self.https if url.scheme == "https" else self.http
        if proxy is None or _bypassed(url, self.no_proxy):
            return None
        return proxy


def parse_proxy(text: str, where: str) -> Proxy:
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    scheme, _, rest = raw.partition("://")
    if scheme.lower() != "http":
        raise ProxyConfigError(f"{where}: only http:// proxies are supported, not {scheme}://")
    authority = rest.split("/", 1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        userinfo, hostport = "", authority
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ProxyConfigError(f"{where}: no proxy host in {_without_secret(text)!r}")
    try:
        port = int(port_text) if port_text else 80
    except ValueError:
        raise ProxyConfigError(f"{where}: bad port in {_without_secret(text)!r}") from None
    if not 1 <= port <= 65535:
        raise ProxyConfigError(f"{where}: bad port in {_without_secret(text)!r}")
    authorization = None
    if userinfo:
        user, _, password = userinfo.partition(":")
        token = f"{unquote(user)}:{unquote(password)}".encode()
        authorization = "Basic " + base64.b64encode(token).decode("ascii")
    return Proxy(host.lower(), port, authorization)


def _without_secret(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return (f"{scheme}://" if sep else "") + authority + slash + path


def _bypassed(url: URL, entries: tuple[str, ...]) -> bool:
    host = url.host.lower()
    for entry in entries:
        if entry == "*":
            return True
        name, port = entry, None
        if entry.startswith("[") and "]" in entry:
            name, _, after = entry[1:].partition("]")
            port = after[1:] if after.startswith(":") else None
        elif entry.count(":") == 1:
            name, port = entry.split(":")
        if port is not None and port != str(url.port):
            continue
        if _address_match(host, name):
            return True
        name = name.lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _address_match(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    try:
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
