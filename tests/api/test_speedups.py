"""``shoal._speedups.simple_get`` recognizes a strict subset of what httptools parses.

The HTTP server answers a read that ``simple_get`` accepts without its parser,
so everything it accepts must be a request httptools parses as exactly one
keep-alive HTTP/1.1 GET with that target, no body, and none of the headers the
server looks at (soundness, checked on generated and mutated requests); and it
must accept the requests real clients send for a hit (else the shortcut is
never taken). The dev install builds the extension: these tests fail when it
is missing.
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal._http import server as _http
from shoal._speedups import simple_get

LIMIT = 8192
SPECIAL = {b"content-length", b"transfer-encoding", b"connection", b"proxy-connection"}
SPECIAL |= {b"upgrade", b"expect"}


class Parsed:
    """What httptools makes of ``data``, fed in one piece."""

    def __init__(self, data: bytes) -> None:
        self.begun = 0
        self.complete = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.head: tuple[Any, ...] = ()
        self.parser = httptools.HttpRequestParser(self)
        self.error: Exception | None = None
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.error = exc

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.head = (
            parser.get_method(),
            parser.get_http_version(),
            parser.should_keep_alive(),
            parser.should_upgrade(),
        )

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def check_sound(data: bytes, limit: int = LIMIT) -> bytes | None:
    """``simple_get(data)``, after checking that httptools agrees with what it says."""
    target = simple_get(data, limit)
    if target is not None:
        parsed = Parsed(data)
        assert parsed.error is None, (data, parsed.error)
        assert (parsed.begun, parsed.complete) == (1, 1), data
        assert parsed.head == (b"GET", "1.1", True, False), data
        assert parsed.url == target, data
        assert parsed.body == b"", data
        assert not {name.lower() for name, _ in parsed.headers} & SPECIAL, data
        assert len(data) <= limit
    return target


# -- the requests clients send ------------------------------------------------------

CLIENTS = {
    "wrk": b"GET /api?key=k42 HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n",
    "curl": (
        b"GET /api?key=Tom HTTP/1.1\r\nHost: localhost:9999\r\n"
        b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
    ),
    "python-http.client": (
        b"GET /v1/groups/scores/keys/Tom HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n"
        b"Accept-Encoding: identity\r\n\r\n"
    ),
    "aiohttp": (
        b"GET /api?key=Tom HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nAccept: */*\r\n"
        b"Accept-Encoding: gzip, deflate\r\nUser-Agent: Python/3.11 aiohttp/3.14.5\r\n\r\n"
    ),
    # A Go groupcache peer (net/http), as captured from a real node.
    "go-groupcache": (
        b"GET /_groupcache/scores/key%3A2 HTTP/1.1\r\nHost: 127.0.0.1:18002\r\n"
        b"User-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
    ),
    "shoal-peer": b"GET /_groupcache/scores/Tom HTTP/1.1\r\nHost: 127.0.0.1:8002\r\n\r\n",
    "no-headers": b"GET / HTTP/1.1\r\n\r\n",
    "every-target-character": (
        b"GET /azAZ09-._~!$&'()*+,;=:@%2F/?q=/?&x HTTP/1.1\r\nHost: h\r\n\r\n"
    ),
    "odd-but-valid-fields": (
        b"GET /x HTTP/1.1\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Spaces:   a  b  \r\n"
        b"!#$%&'*+-.^_`|~09az:v\r\nContent-Type: text/plain\r\nConnectionX: close\r\n\r\n"
    ),
}


@pytest.mark.parametrize("data", CLIENTS.values(), ids=CLIENTS.keys())
def test_what_clients_send_is_taken(data: bytes) -> None:
    target = check_sound(data)
    assert target is not None
    assert data.startswith(b"GET " + target + b" HTTP/1.1\r\n")


# -- what it leaves to the parser ----------------------------------------------------

WRK = CLIENTS["wrk"]


def with_field(field: bytes) -> bytes:
    return b"GET /api?key=Tom HTTP/1.1\r\nHost: h\r\n" + field + b"\r\n\r\n"


DECLINED = {
    # method, target, version
    "head": WRK.replace(b"GET", b"HEAD", 1),
    "post": WRK.replace(b"GET", b"POST", 1),
    "lower-case-method": WRK.replace(b"GET", b"get", 1),
    "http-1.0": WRK.replace(b"HTTP/1.1", b"HTTP/1.0"),
    "http-2.0": WRK.replace(b"HTTP/1.1", b"HTTP/2.0"),
    "http-1.10": WRK.replace(b"HTTP/1.1", b"HTTP/1.10"),
    "lower-case-version": WRK.replace(b"HTTP/1.1", b"http/1.1"),
    "absolute-form": WRK.replace(b"/api", b"http://h/api", 1),
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "double-space": WRK.replace(b"GET ", b"GET  ", 1),
    "fragment": WRK.replace(b"k42", b"k42#top"),
    "raw-non-ascii-target": WRK.replace(b"k42", b"caf\xc3\xa9"),
    "quote-in-target": WRK.replace(b"k42", b'a"b'),
    "tab-in-target": WRK.replace(b"k42", b"a\tb"),
    # framing, keep-alive and protocol fields, in any case
    "content-length": with_field(b"Content-Length: 0"),
    "content-length-upper": with_field(b"CONTENT-LENGTH: 0"),
    "transfer-encoding": with_field(b"Transfer-Encoding: chunked"),
    "connection-close": with_field(b"Connection: close"),
    "connection-keep-alive": with_field(b"connection: keep-alive"),
    "proxy-connection": with_field(b"Proxy-Connection: keep-alive"),
    "upgrade": with_field(b"Upgrade: websocket"),
    "expect": with_field(b"Expect: 100-continue"),
    # field syntax
    "space-before-colon": with_field(b"Host : h"),
    "no-colon": with_field(b"Host"),
    "empty-name": with_field(b": v"),
    "separator-in-name": with_field(b"X(Y): v"),
    "non-ascii-name": with_field(b"X\xc3\xa9: v"),
    "nul-in-value": with_field(b"X: a\x00b"),
    "del-in-value": with_field(b"X: a\x7fb"),
    "cr-in-value": with_field(b"X: a\rb"),
    "obs-text-in-value": with_field(b"X: caf\xc3\xa9"),
    "obs-fold": with_field(b"X: a\r\n b"),
    "bare-lf-field": WRK.replace(b"9999\r\n", b"9999\n"),
    "bare-lf-request-line": WRK.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\n"),
    "bare-lf-end": WRK[:-2] + b"\n",
    # not exactly one whole request
    "empty": b"",
    "partial-line": WRK[:10],
    "partial-head": WRK[:-2],
    "partial-end": WRK[:-1],
    "two-requests": WRK + WRK,
    "trailing-byte": WRK + b"G",
    "leading-crlf": b"\r\n" + WRK,
    "body-without-length": WRK + b"body",
}


@pytest.mark.parametrize("data", DECLINED.values(), ids=DECLINED.keys())
def test_anything_else_is_left_to_the_parser(data: bytes) -> None:
    assert simple_get(data, LIMIT) is None


def test_limit_counts_every_byte() -> None:
    assert simple_get(WRK, len(WRK)) == b"/api?key=k42"
    assert simple_get(WRK, len(WRK) - 1) is None
    assert simple_get(WRK, 0) is None


def test_other_types_are_left_to_the_parser() -> None:
    assert simple_get(bytearray(WRK), LIMIT) is None  # type: ignore[arg-type]
    assert simple_get(memoryview(WRK), LIMIT) is None  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        simple_get(WRK)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        simple_get(WRK, "8192")  # type: ignore[arg-type]


# -- generated requests ------------------------------------------------------------

TARGET_BYTES = b"azAZ09-._~!$&'()*+,;=:@%/?"
NAME_BYTES = b"azAZ09!#$%&'*+-.^_`|~"
VALUE_BYTES = b'azAZ09 \t!"#(),/:;<=>?@[\\]{}~'
FIELD_NAMES = [b"Host", b"User-Agent", b"Accept", b"X-Id", b"Content-Type", b"Connectionx"]


def chunks(alphabet: bytes, *, min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[bytes]:
    return st.lists(
        st.sampled_from([bytes([c]) for c in alphabet]), min_size=min_size, max_size=max_size
    ).map(b"".join)


# Requests of the shape simple_get takes: it must take every one.
simple_fields = st.tuples(
    st.one_of(st.sampled_from(FIELD_NAMES), chunks(NAME_BYTES, min_size=1)),
    chunks(VALUE_BYTES),
).filter(lambda field: field[0].lower() not in SPECIAL)
simple_requests = st.builds(
    lambda target, fields: (
        b"GET /%s HTTP/1.1\r\n%s\r\n" % (target, b"".join(b"%s:%s\r\n" % field for field in fields))
    ),
    chunks(TARGET_BYTES),
    st.lists(simple_fields, max_size=6),
)

# Pieces of requests of any shape, valid or not.
ANY_BYTES = bytes(range(256))
piece = st.one_of(
    st.sampled_from(
        [
            *(b"GET", b"HEAD", b" ", b"/", b"?", b"#", b"%", b":", b"\r\n", b"\n", b"\r", b"\t"),
            *(b"HTTP/1.1", b"HTTP/1.0", b"Host: h", b"Content-Length: 3", b"Connection: close"),
            *(b"Transfer-Encoding: chunked", b"Upgrade: x", b"Expect: 100-continue", b"abc"),
        ]
    ),
    chunks(ANY_BYTES, max_size=3),
)
any_requests = st.lists(piece, max_size=16).map(b"".join)


# (where, insert/delete/replace, byte)
mutation = st.tuples(st.integers(0, 1 << 16), st.integers(0, 2), st.integers(0, 255))


def mutate(data: bytes, at: int, op: int, byte: int) -> bytes:
    at %= len(data) + 1
    if op == 0:
        return data[:at] + bytes([byte]) + data[at:]
    if op == 1:
        return data[:at] + data[at + 1 :]
    return data[:at] + bytes([byte]) + data[at + 1 :]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(simple_requests)
def test_requests_of_the_simple_shape_are_taken(data: bytes) -> None:
    target = check_sound(data)
    assert target == data[4 : data.index(b" ", 4)]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    simple_requests,
    st.lists(
        st.tuples(st.integers(0, 1 << 16), st.integers(0, 2), st.integers(0, 255)), max_size=3
    ),
)
def test_mutated_requests_are_taken_only_when_httptools_agrees(
    data: bytes, mutations: list[tuple[int, int, int]]
) -> None:
    for at, op, byte in mutations:
        data = mutate(data, at, op, byte)
    check_sound(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(any_requests)
def test_arbitrary_bytes_are_taken_only_when_httptools_agrees(data: bytes) -> None:
    check_sound(data)


def test_the_server_uses_it_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_NO_SPEEDUPS", raising=False)
    assert _http._load_simple_get() is simple_get
    for off in ("1", "true", "yes"):
        monkeypatch.setenv("SHOAL_NO_SPEEDUPS", off)
        assert _http._load_simple_get() is None
    for on in ("", "0", "false", "no"):
        monkeypatch.setenv("SHOAL_NO_SPEEDUPS", on)
        assert _http._load_simple_get() is simple_get
