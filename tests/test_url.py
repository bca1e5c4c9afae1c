"""checker.url: list lines and Location fields -> URLs, tested as pure string vectors."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from checker.url import URL, URLError, _parse_line, dedup_key, parse_url, resolve_location

# --- parse_url: what comes out -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "target", "host_header"),
    [
        # Bare hosts mean https.
        ("example.com", "https", "example.com", 443, "/", "example.com"),
        ("example.com:8080/health", "https", "example.com", 8080, "/health", "example.com:8080"),
        ("example.com/a?b=c", "https", "example.com", 443, "/a?b=c", "example.com"),
        ("//other.example/x", "https", "other.example", 443, "/x", "other.example"),
        ("[::1]:8080/x", "https", "::1", 8080, "/x", "[::1]:8080"),
        # Scheme and host are lowercased; the path keeps its case.
        ("HTTP://EXAMPLE.com/Path", "http", "example.com", 80, "/Path", "example.com"),
        ("HtTpS://Example.COM", "https", "example.com", 443, "/", "example.com"),
        # Default ports are dropped from Host, other ports kept.
        ("http://example.com:80/", "http", "example.com", 80, "/", "example.com"),
        ("https://example.com:443/", "https", "example.com", 443, "/", "example.com"),
        ("http://example.com:443/", "http", "example.com", 443, "/", "example.com:443"),
        ("https://example.com:80/", "https", "example.com", 80, "/", "example.com:80"),
        ("http://example.com:8080", "http", "example.com", 8080, "/", "example.com:8080"),
        ("http://h:1/", "http", "h", 1, "/", "h:1"),
        ("http://h:65535/", "http", "h", 65535, "/", "h:65535"),
        ("http://h:00080/", "http", "h", 80, "/", "h"),
        # An empty port after the colon means the default (RFC 3986 3.2.3, 6.2.3).
        ("http://h:/", "http", "h", 80, "/", "h"),
        ("http://h:", "http", "h", 80, "/", "h"),
        ("https://h:/x", "https", "h", 443, "/x", "h"),
        # IPv6 literals: host without brackets, Host field with them.
        ("http://[::1]:8080/", "http", "::1", 8080, "/", "[::1]:8080"),
        ("http://[::1]/", "http", "::1", 80, "/", "[::1]"),
        ("http://[::1]", "http", "::1", 80, "/", "[::1]"),
        ("http://[2001:DB8:0:0::1]/", "http", "2001:db8::1", 80, "/", "[2001:db8::1]"),
        ("https://[::1]:/", "https", "::1", 443, "/", "[::1]"),
        # IDN hosts become punycode.
        ("bücher.de", "https", "xn--bcher-kva.de", 443, "/", "xn--bcher-kva.de"),
        ("http://BÜCHER.de/", "http", "xn--bcher-kva.de", 80, "/", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "https", "xn--bcher-kva.de", 443, "/", "xn--bcher-kva.de"),
        # A trailing dot (fully qualified name) is dropped; underscores are tolerated.
        ("http://example.com./", "http", "example.com", 80, "/", "example.com"),
        ("http://_dmarc.example.com/", "http", "_dmarc.example.com", 80, "/", "_dmarc.example.com"),
        ("http://127.0.0.1:8000/", "http", "127.0.0.1", 8000, "/", "127.0.0.1:8000"),
    ],
)
def test_parse_url_parts(
    text: str, scheme: str, host: str, port: int, target: str, host_header: str
) -> None:
    url = parse_url(text)
    assert (url.scheme, url.host, url.port, url.target) == (scheme, host, port, target)
    assert url.host_header == host_header
    assert url.origin == (scheme, host, port)
    assert str(url) == f"{scheme}://{host_header}{target}"


@pytest.mark.parametrize(
    ("text", "is_ipv6", "host_for_uri"),
    [
        ("http://[::1]/", True, "[::1]"),
        ("http://127.0.0.1/", False, "127.0.0.1"),
        ("http://example.com/", False, "example.com"),
    ],
)
def test_ipv6_properties(text: str, is_ipv6: bool, host_for_uri: str) -> None:
    url = parse_url(text)
    assert url.is_ipv6 is is_ipv6
    assert url.host_for_uri == host_for_uri


@pytest.mark.parametrize(
    ("text", "target"),
    [
        # The fragment is never part of the request-target.
        ("http://h/p#frag", "/p"),
        ("http://h/p?q=1#frag", "/p?q=1"),
        ("http://h#frag", "/"),
        ("http://h/#", "/"),
        ("example.com/x#y", "/x"),
        ("http://h/p#frag?not=query", "/p"),
        # Query-only and empty queries.
        ("http://h?x=1", "/?x=1"),
        ("http://h/?", "/?"),
        ("http://h/?a=1&b=2", "/?a=1&b=2"),
        # Non-ASCII as UTF-8, percent-encoded, in path and query.
        ("http://h/ü", "/%C3%BC"),
        ("http://h/ü?q=ü#ü", "/%C3%BC?q=%C3%BC"),
        ("http://h/日本", "/%E6%97%A5%E6%9C%AC"),
        # "<>\^`{|} are encoded in path and query.
        ('http://h/"<>\\^`{|}', "/%22%3C%3E%5C%5E%60%7B%7C%7D"),
        ('http://h/?"<>\\^`{|}', "/?%22%3C%3E%5C%5E%60%7B%7C%7D"),
        ("http://h/[x]", "/%5Bx%5D"),
        # Existing valid escapes are kept as they are (either case); stray "%" -> "%25".
        ("http://h/a%20b", "/a%20b"),
        ("http://h/%7e%7E", "/%7e%7E"),
        ("http://h/?q=%2F%3d", "/?q=%2F%3d"),
        ("http://h/100%", "/100%25"),
        ("http://h/%zz", "/%25zz"),
        ("http://h/a%2", "/a%252"),
        ("http://h/%41%4", "/%41%254"),
        ("http://h/%%", "/%25%25"),
        ("http://h/?p=50%", "/?p=50%25"),
        ("http://h/%g1", "/%25g1"),
        # Characters that may stay as they are.
        ("http://h/a-b._~!$&'()*+,;=:@/c", "/a-b._~!$&'()*+,;=:@/c"),
        ("http://h/?a=/b?c", "/?a=/b?c"),
        # Dot segments removed (RFC 3986 5.2.4).
        ("http://h/a/b/../c", "/a/c"),
        ("http://h/a/./b", "/a/b"),
        ("http://h/a/b/c/./../../g", "/a/g"),
        ("http://h/../a", "/a"),
        ("http://h/../../../a", "/a"),
        ("http://h/a/..", "/"),
        ("http://h/a/b/..", "/a/"),
        ("http://h/a/.", "/a/"),
        ("http://h/.", "/"),
        ("http://h/a/..b/.c", "/a/..b/.c"),
        ("http://h/a/b/../c?x=/../y", "/a/c?x=/../y"),
    ],
)
def test_parse_url_target(text: str, target: str) -> None:
    url = parse_url(text)
    assert url.target == target
    assert url.target.isascii()
    assert url.target.startswith("/")
    assert "#" not in url.target


def test_parse_url_hosts_of_maximum_length() -> None:
    label63 = "a" * 63
    assert parse_url(f"http://{label63}.com/").host == f"{label63}.com"
    host253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(host253) == 253
    assert parse_url(f"http://{host253}/").host == host253


# --- parse_url: what is refused -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        # Spaces, CR, LF, NUL, tab, wherever they are.
        ("http://exa mple.com/", "space"),
        (" http://example.com/", "space"),
        ("http://example.com/a b", "space"),
        ("http://example.com/?a=b c", "space"),
        ("http://example.com/#a b", "space"),
        ("http://example.com/\r\nX-Injected: 1", "CR"),
        ("http://example.com/\nHost: evil", "LF"),
        ("http://example.com/\x00", "NUL"),
        ("http://example.com/\t", "tab"),
        ("http://exam\rple.com/", "CR"),
        ("http://exam\nple.com/", "LF"),
        ("http://exam\x00ple.com/", "NUL"),
        ("http://exam\tple.com/", "tab"),
        ("http://example.com/?q=\x00", "NUL"),
        ("http://example.com/#\r", "CR"),
        ("http://example.com/\x7f", "0x7f"),
        ("http://example.com/\x1b[31m", "0x1b"),
        # Schemes other than http and https.
        ("gopher://example.com/", "unsupported scheme 'gopher'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("JavaScript://example.com/%0aalert(1)", "unsupported scheme 'javascript'"),
        ("mailto:someone@example.com", "unsupported scheme 'mailto'"),
        ("data:text/html,hi", "unsupported scheme 'data'"),
        ("ws://example.com/", "unsupported scheme 'ws'"),
        # Userinfo is refused, not stripped.
        ("http://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("user@example.com", "credentials"),
        ("http://@example.com/", "credentials"),
        # No host.
        ("http://", "no host"),
        ("http:///path", "no host"),
        ("http://:80/", "no host"),
        ("http://./", "no host"),
        ("http://?q", "no host"),
        # Ports.
        ("http://h:0/", "out of range"),
        ("http://h:65536/", "out of range"),
        ("http://h:99999/", "out of range"),
        ("http://h:123456/", "bad port"),
        ("http://h:http/", "bad port"),
        ("http://h:8o/", "bad port"),
        ("http://h:-1/", "bad port"),
        ("http://h:+80/", "bad port"),
        ("http://h:\u0668\u0660/", "bad port"),  # Arabic-Indic digits are not ASCII digits
        ("example.com:8080abc", "bad port"),
        ("http://[::1]:0/", "out of range"),
        ("http://[::1]:x/", "bad port"),
        # IPv6 literals that are not.
        ("http://[::1/", "unclosed"),
        ("http://[::g]/", "bad IPv6"),
        ("http://[1:2:3:4:5:6:7:8:9]/", "bad IPv6"),
        ("http://[1.2.3.4]/", "bad IPv6"),
        ("http://[]/", "bad IPv6"),
        ("http://[::1]x/", "junk after IPv6"),
        ("http://::1/", "bad host"),
        # Host names.
        ("http://" + "a" * 64 + ".com/", "bad host"),
        ("http://" + ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]) + "/", "253"),
        ("http://-example.com/", "bad host"),
        ("http://example-.com/", "bad host"),
        ("http://exa..mple.com/", "bad host"),
        ("http://ex!ample.com/", "bad host"),
        ("http://ex%41mple.com/", "percent-escapes in host"),
        ("http://" + "ü" * 60 + ".de/", "internationalised host"),
    ],
)
def test_parse_url_refuses(text: str, message: str) -> None:
    with pytest.raises(URLError) as info:
        parse_url(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


_CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f", " "]


@pytest.mark.parametrize("char", _CONTROLS, ids=[f"{ord(c):#04x}" for c in _CONTROLS])
@pytest.mark.parametrize(
    "template",
    [
        "{}http://example.com/",
        "http://exa{}mple.com/",
        "http://example.com:80{}/",
        "http://example.com/pa{}th",
        "http://example.com/?q={}",
        "http://example.com/#frag{}",
        "example.com/{}",
        "http://example.com/{}",
    ],
)
def test_every_control_character_is_refused_anywhere(template: str, char: str) -> None:
    with pytest.raises(URLError, match="in URL"):
        parse_url(template.format(char))


@pytest.mark.parametrize("char", ["\x85", "\x9b", "\u2028", "\u00a0", "\ufeff"])
def test_other_unicode_controls_never_reach_the_wire_raw(char: str) -> None:
    """C1 controls and Unicode separators in the path are either refused or
    percent-encoded: the request-target stays printable ASCII."""
    try:
        url = parse_url(f"http://example.com/a{char}b")
    except URLError:
        return
    assert url.target.isascii()
    assert all(0x21 <= ord(c) <= 0x7E for c in url.target)
    assert url.target == "/a" + "".join(f"%{b:02X}" for b in char.encode()) + "b"


def test_parse_url_refuses_a_valid_scheme_without_slashes() -> None:
    # Refused (it is no list line we understand); the message is checked below.
    for text in ("http:/example.com", "http:example.com", "https:example.com"):
        with pytest.raises(URLError):
            parse_url(text)


def test_refusal_of_http_without_slashes_does_not_call_http_unsupported() -> None:
    with pytest.raises(URLError) as info:
        parse_url("http:/example.com")
    assert "unsupported scheme" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Without a scheme, "name:" followed by a non-digit is read as a scheme,
        # unless the name has a dot (then it is a host with a bad port).
        ("localhost:abc", "unsupported scheme 'localhost'"),
        ("example.com:abc", "bad port 'abc'"),
        ("http:example.com", "missing // after http:"),
    ],
)
def test_bare_host_colon_without_digits(text: str, message: str) -> None:
    with pytest.raises(URLError) as info:
        parse_url(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("example.com:", "https://example.com/"), ("h:/", "https://h/"), ("h:/x", "https://h/x")],
)
def test_bare_host_with_an_empty_port_means_the_default(text: str, expected: str) -> None:
    assert str(parse_url(text)) == expected


@pytest.mark.parametrize(
    "text", ["http://[fe80::1%eth0]/", "http://[fe80::1%25eth0]/", "http://example.com../"]
)
def test_zone_ids_and_empty_labels_are_refused(text: str) -> None:
    with pytest.raises(URLError):
        parse_url(text)


# --- dedup_key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTP://Example.com:80/", "http://example.com/"),
        ("http://example.com", "http://example.com/"),
        ("example.com", "https://example.com:443/"),
        ("https://EXAMPLE.COM./#x", "example.com"),
        ("http://h/a/../b", "http://h/b"),
        ("http://h/ü", "http://h/%C3%BC"),
        ("http://[::1]:80/", "http://[0:0:0:0:0:0:0:1]/"),
        ("bücher.de", "https://xn--bcher-kva.de/"),
    ],
)
def test_dedup_key_equal(a: str, b: str) -> None:
    assert dedup_key(parse_url(a)) == dedup_key(parse_url(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/", "https://example.com/"),
        ("http://example.com/", "http://example.com:8080/"),
        ("http://example.com/a", "http://example.com/A"),
        ("http://example.com/?a", "http://example.com/"),
        ("http://example.com/", "http://www.example.com/"),
    ],
)
def test_dedup_key_different(a: str, b: str) -> None:
    assert dedup_key(parse_url(a)) != dedup_key(parse_url(b))


# --- resolve_location -----------------------------------------------------------

BASE = URL("http", "example.com", 8080, "/a/b/c?q=1")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # Relative paths, against the base's directory.
        ("d", "http://example.com:8080/a/b/d"),
        ("d/e?x=2", "http://example.com:8080/a/b/d/e?x=2"),
        ("./d", "http://example.com:8080/a/b/d"),
        (".", "http://example.com:8080/a/b/"),
        ("../d", "http://example.com:8080/a/d"),
        ("..", "http://example.com:8080/a/"),
        ("../../d", "http://example.com:8080/d"),
        ("../../../../../d", "http://example.com:8080/d"),
        # Absolute paths keep scheme, host and port.
        ("/", "http://example.com:8080/"),
        ("/x/y", "http://example.com:8080/x/y"),
        ("/x/../y", "http://example.com:8080/y"),
        ("/x?y=1", "http://example.com:8080/x?y=1"),
        # Query-only keeps the path; fragment-only keeps path and query.
        ("?z=3", "http://example.com:8080/a/b/c?z=3"),
        ("#frag", "http://example.com:8080/a/b/c?q=1"),
        ("d#frag", "http://example.com:8080/a/b/d"),
        # Scheme-relative: the base's scheme, a new authority.
        ("//other.example/x", "http://other.example/x"),
        ("//other.example:81", "http://other.example:81/"),
        ("//[::1]:8443/x", "http://[::1]:8443/x"),
        # Absolute URLs replace everything.
        ("https://other.example/x", "https://other.example/x"),
        ("HTTPS://Other.Example:443/x?y", "https://other.example/x?y"),
        ("http://example.com/", "http://example.com/"),
        # Encoding applies to relative references too.
        ("ü", "http://example.com:8080/a/b/%C3%BC"),
        ("/a%20b", "http://example.com:8080/a%20b"),
        ("a\\b", "http://example.com:8080/a/b/a%5Cb"),
        ("/50%", "http://example.com:8080/50%25"),
        ("?q=<x>", "http://example.com:8080/a/b/c?q=%3Cx%3E"),
        # As browsers take a Location: spaces and control characters around
        # it dropped, tabs and line breaks in it removed, the rest encoded;
        # nothing can split the request line or start a header line.
        ("/x y", "http://example.com:8080/x%20y"),
        (" /x ", "http://example.com:8080/x"),
        ("/x\x00y", "http://example.com:8080/x%00y"),
        ("/x\x7f", "http://example.com:8080/x%7F"),
        ("/x\ty", "http://example.com:8080/xy"),
        ("/x\r", "http://example.com:8080/x"),
        ("/x\r\nSet-Cookie: a=b", "http://example.com:8080/xSet-Cookie:%20a=b"),
        ("/x\nHost: evil", "http://example.com:8080/xHost:%20evil"),
        ("https://evil.example/\r\n", "https://evil.example/"),
        ("?q=\n", "http://example.com:8080/a/b/c?q="),
        ("#\x00", "http://example.com:8080/a/b/c?q=1"),
    ],
)
def test_resolve_location(location: str, expected: str) -> None:
    assert str(resolve_location(BASE, location)) == expected


def test_resolve_location_against_a_base_without_query() -> None:
    base = parse_url("https://example.com/dir/page")
    assert str(resolve_location(base, "#f")) == "https://example.com/dir/page"
    assert str(resolve_location(base, "?")) == "https://example.com/dir/page?"
    assert str(resolve_location(base, "other")) == "https://example.com/dir/other"


def test_resolve_location_scheme_relative_uses_https_base_scheme() -> None:
    base = parse_url("https://example.com/")
    url = resolve_location(base, "//other.example/x")
    assert (url.scheme, url.host, url.port, url.target) == ("https", "other.example", 443, "/x")


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("", "empty"),
        ("ftp://example.com/", "a redirect to ftp:// is not followed"),
        ("gopher://example.com/", "unsupported scheme 'gopher'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("mailto:a@example.com", "unsupported scheme 'mailto'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("http:no-host", "no host"),
        ("http://user:pw@evil.example/", "credentials"),
        ("//user@evil.example/", "credentials"),
        ("https://evil.example:0/", "out of range"),
        # A host cannot hold a space or a control character.
        ("//evil\x00.example/", "bad host"),
        ("http://a b/", "bad host"),
        ("\x00 \t", "empty"),
    ],
)
def test_resolve_location_refuses(location: str, message: str) -> None:
    with pytest.raises(URLError) as info:
        resolve_location(BASE, location)
    assert message in str(info.value)


_PLAIN_HOSTS = st.sampled_from(
    [
        "example.com",
        "a.b-c.example",
        "127.0.0.1",
        "10.1.2.3",
        "xn--strae-oqa.de",
        "a..b",
        "-a.com",
        "localhost",
        "999.1.1.1",
        "0x7f.1",
        "a",
        "a.",
        ".a",
    ]
)
_PLAIN_PORTS = st.sampled_from(
    ["", ":", ":80", ":443", ":8080", ":0", ":65535", ":65536", ":99999"]
)
_PLAIN_PATHS = st.one_of(
    st.just(""),
    st.text(alphabet="abc/.?=&%:@!$'()*+,;~_-", max_size=12).map(lambda p: "/" + p),
)


@given(st.sampled_from(["http", "https"]), _PLAIN_HOSTS, _PLAIN_PORTS, _PLAIN_PATHS)
@example("http", "example.com", "", "/a/./b")
@example("http", "example.com", ":8080", "/a/../../b?x=/./")
@example("https", "example.com", "", "/.well-known/x")
@example("https", "example.com", "", "/a/.")
@settings(max_examples=400, database=None)
def test_the_fast_path_of_a_plain_line_gives_what_the_full_parse_gives(
    scheme: str, host: str, port: str, path: str
) -> None:
    text = f"{scheme}://{host}{port}{path}"
    try:
        full = _parse_line(text)
    except URLError as exc:
        with pytest.raises(URLError) as fast_error:
            parse_url(text)
        assert str(fast_error.value) == str(exc)
        return
    fast = parse_url(text)
    assert fast == full
    assert (str(fast), fast.host_header, fast.origin, fast.line_safe) == (
        str(full),
        full.host_header,
        full.origin,
        full.line_safe,
    )
