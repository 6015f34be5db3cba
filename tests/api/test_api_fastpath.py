"""The fast path of the HTTP API answers exactly as the general path does.

``ApiServer.fast_get`` answers plain ``GET /api?key=`` and
``GET /v1/groups/{g}/keys/{k}`` requests before the server builds request and
response objects. These tests run the same requests against two identical
nodes, one served with the fast path and one without, and compare the raw bytes
of the answers (``Date`` aside) and the statistics afterwards.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers.raw_http import Client, call
from shoal import Node, NodeConfig
from shoal._http import OCTET_STREAM, Deferred, HttpLimits, HttpServer, Request, Response
from shoal._http import server as _http
from shoal._http.server import _encode
from shoal._speedups import simple_get
from shoal.api.http import ApiServer
from shoal.testing import CountingLoader

BIG = b"0123456789" * 10_000  # above the size up to which a body is joined to its header
DATA = {
    "Tom": b"630",
    "Jack": b"589",
    "a/b+c d": b"slashy",
    "café": b"\xe2\x98\x95",
    "big": BIG,
    "empty": b"",
}
LONG_KEY = "k" * 65  # max_key_bytes is 64 below
LONGEST_KEY = "k" * 63 + "9"  # letters and digits, exactly max_key_bytes: valid

_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


def get(target: str, *, version: str = "1.1", headers: str = "") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: test\r\n{headers}\r\n".encode()


# Answered, and the connection stays open: sent one after the other on one connection.
REQUESTS: list[bytes] = [
    # /api?key=: a miss (loaded), then hits; errors; what the fast path hands on
    get("/api?key=Tom"),
    get("/api?key=Tom"),
    get("/api?key=Tom&group=scores"),
    get("/api?group=scores&key=Jack"),
    get("/api?key=a%2Fb%2Bc+d"),
    get("/api?key=a%2Fb%2Bc+d"),
    get("/api?key=caf%C3%A9"),
    get("/api?key=caf%C3%A9"),
    get("/api?key=Tom#fragment"),
    get("/api?key=nope"),  # the loader says NotFound
    get("/api?key=nope"),  # the cached miss (negative_ttl)
    get("/api?key="),
    get(f"/api?key={LONG_KEY}"),
    get(f"/api?key={LONGEST_KEY}"),  # the loader says NotFound
    get("/api?key=%zz"),
    get("/api?key=%ff"),
    get("/api?key=Tom&key=Jack"),
    get("/api?other=1"),
    get("/api"),
    get("/api?key=big"),
    get("/api?key=big"),
    get("/api?key=empty"),
    get("/api?key=empty"),
    get("http://test/api?key=Tom"),
    # /v1/groups/{g}/keys/{k}
    get("/v1/groups/scores/keys/Jack"),
    get("/v1/groups/scores/keys/Jack"),
    get("/v1/groups/scores/keys/a%2Fb+c%20d"),
    get("/v1/groups/scores/keys/Jack?x=1"),
    get("/v1/groups/scores/keys/Jack#x"),
    get("/v1/groups/scores/keys/"),
    get(f"/v1/groups/scores/keys/{LONG_KEY}"),
    get("/v1/groups/scores/keys/a/b"),
    get("/v1/groups/scores/keys/%zz"),
    get("/v1/groups/nosuch/keys/Jack"),
    get("/v1/groups//keys/Jack"),
    get("/v1/groups/scores/Jack"),
    get("/v1/groups/scores/keys/nope"),
    # the conditions of the fast path: method, version, keep-alive, body
    b"HEAD /api?key=Tom HTTP/1.1\r\nHost: test\r\n\r\n",
    get("/api?key=Tom", headers="Connection: keep-alive\r\n"),
    get("/api?key=Tom", version="1.0", headers="Connection: keep-alive\r\n"),
    get("/api?key=Tom", version="1.0", headers="Proxy-Connection: keep-alive\r\n"),
    get("/api?key=Tom", headers="Content-Length: 3\r\n") + b"abc",
    get("/api?key=Tom", headers="Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n",
    get("/api?key=Tom", headers="Expect: 100-continue\r\nContent-Length: 2\r\n") + b"hi",
    b"PUT /v1/groups/scores/keys/New HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nnew",
    get("/api?key=New"),
    b"DELETE /v1/groups/scores/keys/New HTTP/1.1\r\nHost: test\r\n\r\n",
    get("/v1/groups/scores/keys/New"),
    get("/healthz"),
    get("/v1/stats"),
]
# Answered, then the connection closes: sent alone, each on its own connection.
CLOSING: list[bytes] = [
    get("/api?key=Tom", version="1.0"),
    get("/api?key=Tom", headers="Connection: close\r\n"),
    get("/api?key=Tom", version="1.0", headers="Connection: close\r\n"),
    get("/api?key=caf\xc3\xa9"),  # raw non-ASCII in the target: llhttp refuses it
    b"GET /api?key=Tom HTTP/1.1\r\nHost: test\r\nContent-Length: x\r\n\r\n",
]


async def exchange(port: int, requests: list[bytes], *, pipelined: bool) -> list[bytes]:
    """Send ``requests`` on one connection; return every answer's raw bytes, Date blanked."""
    answers: list[bytes] = []
    async with Client(port) as client:
        if pipelined:
            await client.send(b"".join(requests))
        for request in requests:
            if not pipelined:
                await client.send(request)
            answers.append(await read_raw(client.reader, head=request.startswith(b"HEAD ")))
    return [_DATE.sub(b"\r\nDate: -\r\n", answer) for answer in answers]


async def read_raw(reader: asyncio.StreamReader, *, head: bool) -> bytes:
    """One answer as raw bytes: any interim answers, then the final one."""
    raw = b""
    while True:
        header = await reader.readuntil(b"\r\n\r\n")
        raw += header
        status = int(header.split(b" ", 2)[1])
        if status >= 200:
            break
    match = re.search(rb"\r\nContent-Length: (\d+)\r\n", header)
    if match and not head:
        raw += await reader.readexactly(int(match[1]))
    return raw


class Pair:
    """Two identical nodes, each with its API server: with and without the fast path."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.servers: list[ApiServer] = []
        self.ports: list[int] = []
        self.loaders: list[CountingLoader] = []
        self.simple_get: CountingSimpleGet | None = None

    async def start(self) -> None:
        for fast_path in (True, False):
            node = Node(NodeConfig(max_body_bytes=4096))
            await node.__aenter__()
            loader = CountingLoader(dict(DATA))
            node.group("scores", loader, max_key_bytes=64, max_value_bytes=1 << 20, negative_ttl=60)
            server = ApiServer(node, fast_path=fast_path)
            _, port = await server.start("127.0.0.1", 0)
            self.nodes.append(node)
            self.servers.append(server)
            self.ports.append(port)
            self.loaders.append(loader)

    async def close(self) -> None:
        for server in self.servers:
            await server.aclose()
        for node in self.nodes:
            await node.__aexit__(None, None, None)

    def statistics(self) -> list[Any]:
        return [node.statistics() for node in self.nodes]


class CountingSimpleGet:
    """The compiled ``simple_get``, counting the reads it takes."""

    def __init__(self) -> None:
        self.taken = 0

    def __call__(self, data: bytes, limit: int, credential: bytes | None = None) -> bytes | None:
        target = simple_get(data, limit, credential)
        self.taken += target is not None
        return target


@pytest.fixture(params=["speedups", "parser-only"])
async def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Pair]:
    """The two nodes; the fast one reads simple GETs with ``simple_get`` or with the parser."""
    counting = CountingSimpleGet() if request.param == "speedups" else None
    monkeypatch.setattr(_http, "SIMPLE_GET", counting)
    pair = Pair()
    pair.simple_get = counting
    await pair.start()
    yield pair
    await pair.close()


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
async def test_fast_and_general_paths_answer_the_same_bytes(pair: Pair, pipelined: bool) -> None:
    """The whole table, on one connection each: same bytes, same statistics."""
    fast, general = [await exchange(port, REQUESTS, pipelined=pipelined) for port in pair.ports]
    if pair.simple_get is not None and not pipelined:
        # Most of the table went through the parser-free shortcut.
        assert pair.simple_get.taken >= 20
    for request, a, b in zip(REQUESTS, fast, general, strict=True):
        assert a == b, request
    # Every kind of answer was produced (the table is not trivially equal).
    statuses = {int(a.split(b" ", 2)[1]) for a in fast}
    assert {200, 204, 400, 404} <= statuses
    assert any(a.endswith(BIG) for a in fast)
    fast_stats, general_stats = pair.statistics()
    assert fast_stats == general_stats
    assert pair.loaders[0].calls == pair.loaders[1].calls


@pytest.mark.parametrize("request_bytes", CLOSING)
async def test_closing_requests_answer_the_same_bytes(pair: Pair, request_bytes: bytes) -> None:
    """Requests that end their connection (HTTP/1.0, Connection: close, malformed)."""
    fast, general = [await raw_until_close(port, request_bytes) for port in pair.ports]
    assert fast == general
    assert fast.startswith(b"HTTP/1.1 ")


async def raw_until_close(port: int, request: bytes) -> bytes:
    async with Client(port) as client:
        await client.send(request)
        return _DATE.sub(b"\r\nDate: -\r\n", await client.rest())


async def test_groups_added_later_are_seen(pair: Pair) -> None:
    """With a second group, /api needs ?group= on both paths (the view of groups is live)."""
    for node in pair.nodes:
        node.group("other", CountingLoader({"Tom": b"other"}))
    requests = [
        get("/api?key=Tom"),
        get("/api?key=Tom&group=other"),
        get("/v1/groups/other/keys/Tom"),
    ]
    fast, general = [await exchange(port, requests, pipelined=False) for port in pair.ports]
    assert fast == general
    assert b'"code":"missing_group"' in fast[0]
    assert fast[2].endswith(b"\r\n\r\nother")


class TestFastGet:
    """ApiServer.fast_get itself: what it takes, and that it leaves alone what it hands on."""

    async def test_answers_a_hit_with_the_bytes(self, pair: Pair) -> None:
        node, server = pair.nodes[0], pair.servers[0]
        assert await node.get_group("scores").get("Tom") == b"630"
        before = node.get_group("scores").statistics()
        assert server.fast_get(b"/api?key=Tom") == b"630"
        assert server.fast_get(b"/v1/groups/scores/keys/Tom") == b"630"
        after = node.get_group("scores").statistics()
        assert (after.server_requests, after.gets, after.hits) == (
            before.server_requests + 2,
            before.gets + 2,
            before.hits + 2,
        )

    async def test_a_miss_is_a_deferred_answer_that_counts_one_get(self, pair: Pair) -> None:
        node, server = pair.nodes[0], pair.servers[0]
        result = server.fast_get(b"/api?key=Jack")
        assert isinstance(result, Deferred)  # the load runs already: no coroutine, no task
        response = await result
        assert isinstance(response, Response)
        assert (response.status, response.body) == (200, b"589")
        stats = node.get_group("scores").statistics()
        assert (stats.gets, stats.loads, stats.server_requests) == (1, 1, 1)

    @pytest.mark.parametrize(
        "target",
        [
            b"/api?key=a%2Fb",
            b"/api?key=a+b",
            b"/api?key=Tom&group=scores",
            b"/api?key=Tom#x",
            b"/api?key=",
            b"/api?key=" + LONG_KEY.encode(),
            b"/api?key=\xff",
            b"/api?keys=Tom",
            b"/api",
            b"/v1/groups/scores/keys/a%2Fb",
            b"/v1/groups/scores/keys/Tom?x=1",
            b"/v1/groups/scores/keys/Tom#x",
            b"/v1/groups/scores/keys/",
            b"/v1/groups/scores/keys/a/b",
            b"/v1/groups/nosuch/keys/Tom",
            b"/v1/groups/\xff/keys/Tom",
            b"/v1/groups/scores/Tom",
            b"/v1/groups/scores",
            b"/v1/stats",
            b"/healthz",
            b"http://test/api?key=Tom",
            b"*",
        ],
    )
    async def test_hands_on_without_touching_anything(self, pair: Pair, target: bytes) -> None:
        node, server = pair.nodes[0], pair.servers[0]
        before = node.get_group("scores").statistics()
        assert server.fast_get(target) is None
        assert node.get_group("scores").statistics() == before

    async def test_a_cached_miss_is_a_404(self, pair: Pair) -> None:
        server = pair.servers[0]
        assert (await call(pair.ports[0], "GET", "/api?key=nope")).status == 404
        result = server.fast_get(b"/api?key=nope")
        assert isinstance(result, Response)
        assert (result.status, result.content_type) == (404, "application/json")


class TestServerFastPath:
    """The server side of the fast path, with a stand-in hook."""

    async def test_fast_answer_is_what_encode_gives(self) -> None:
        """Small and large bodies, byte for byte as the general path's encoder."""
        values = {b"/small": b"x" * 10, b"/large": BIG, b"/none": b""}

        def handler(request: Request) -> Response:
            raise AssertionError("the hook answers everything here")

        server = HttpServer(handler, fast_get=values.get)
        _, port = await server.start("127.0.0.1", 0)
        try:
            for target, value in values.items():
                request = f"GET {target.decode()} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                async with Client(port) as client:
                    await client.send(request)
                    raw = await read_raw(client.reader, head=False)
                header, body = _encode(
                    Response(200, value, OCTET_STREAM),
                    server.date,
                    head=False,
                    close=False,
                    keep_alive_header=False,
                )
                assert _DATE.sub(b"\r\n", raw) == _DATE.sub(b"\r\n", header + body)
        finally:
            await server.aclose()

    async def test_hook_none_falls_back_and_failure_is_a_500(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def hook(target: bytes) -> bytes | None:
            if target == b"/boom":
                raise RuntimeError("boom")
            return None

        def handler(request: Request) -> Response:
            return Response(200, b"general " + request.path)

        server = HttpServer(handler, fast_get=hook)
        _, port = await server.start("127.0.0.1", 0)
        try:
            r = await call(port, "GET", "/x")
            assert (r.status, r.body) == (200, b"general /x")
            r = await call(port, "GET", "/boom")
            assert (r.status, r.json()["code"]) == (500, "internal")
            assert "fast path failed" in caplog.text
        finally:
            await server.aclose()

    async def test_date_is_refreshed_by_a_timer_that_aclose_cancels(self) -> None:
        server = HttpServer(lambda request: Response(200))
        await server.start("127.0.0.1", 0)
        first = server.date
        assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", first)
        assert server.octet_stream_head.startswith(b"HTTP/1.1 200 OK\r\n")
        head = server.ok_head(100)
        assert head == server.octet_stream_head + b"100" + server.fast_tail
        assert server.ok_heads == {100: head}
        await asyncio.sleep(1.1)
        assert server.date != first
        assert server.date in server.octet_stream_head
        assert server.ok_heads == {}  # heads of the old Date are gone
        await server.aclose()
        assert server._date_timer is None

    async def test_fast_heads_kept_are_bounded(self) -> None:
        """One head per body length is kept; past the bound the set starts again."""
        server = HttpServer(lambda request: Response(200))
        await server.start("127.0.0.1", 0)
        try:
            for length in range(_http._OK_HEADS_KEPT):
                server.ok_head(length)
            assert len(server.ok_heads) == _http._OK_HEADS_KEPT
            head = server.ok_head(1 << 20)
            assert server.ok_heads == {1 << 20: head}
            assert head.endswith(b"Content-Length: 1048576\r\n\r\n")
        finally:
            await server.aclose()


@pytest.mark.parametrize("version", ["1.0", "1.1", "2.0"])
@pytest.mark.parametrize(
    "connection",
    ["", "Connection: keep-alive", "Proxy-Connection: keep-alive", "Connection: close"],
)
async def test_http_version_seen_by_handlers(version: str, connection: str) -> None:
    """The server skips the parser's version call when it can tell the version otherwise:
    handlers still see the version of the request line, and keep-alive as the parser says."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    server = HttpServer(handler)
    _, port = await server.start("127.0.0.1", 0)
    try:
        headers = f"{connection}\r\n" if connection else ""
        async with Client(port) as client:
            await client.send(f"GET / HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode())
            await client.response()
    finally:
        await server.aclose()
    (request,) = seen
    assert request.http_version == version
    keep_alive = "close" not in connection and (version == "1.1" or "keep-alive" in connection)
    assert request.keep_alive is keep_alive


async def test_header_timeout_after_a_keepalive_request() -> None:
    """A request that stalls after an earlier one on the connection still gets its 408 on
    time: the timer, armed for the longer keep-alive timeout, is brought forward."""
    server = HttpServer(
        lambda request: Response(200), HttpLimits(header_timeout=0.1, keepalive_timeout=30)
    )
    _, port = await server.start("127.0.0.1", 0)
    try:
        async with Client(port) as client:
            assert (await client.request("GET", "/")).status == 200
            await asyncio.sleep(0.15)  # the first deadline (header timeout) has passed
            assert (await client.request("GET", "/")).status == 200
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            async with asyncio.timeout(5):
                r = await client.response()
            assert (r.status, r.json()["code"]) == (408, "header_timeout")
    finally:
        await server.aclose()
