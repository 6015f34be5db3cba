"""The HTTP API routes against a real Node, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpers.raw_http import Client, RawResponse, build_request, call
from shoal import Group, Node, NodeConfig, NotFound
from shoal._http import Request, Response
from shoal.api.http import ApiServer
from shoal.testing import CountingLoader, ManualClock

SCORES = {
    "Tom": b"630",
    "Jack": b"589",
    "Sam": b"567",
    "a/b+c d": b"slashy",
    "café": b"\xe2\x98\x95",
}


class Api:
    """A started node with one group ("scores") and its API port."""

    def __init__(self, node: Node, group: Group[Any], loader: CountingLoader, clock: ManualClock):
        self.node = node
        self.group = group
        self.loader = loader
        self.clock = clock
        address = node.api_address
        assert address is not None
        self.port = address[1]

    async def call(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> RawResponse:
        return await call(self.port, method, target, body, headers)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    clock = ManualClock()
    loader = CountingLoader(dict(SCORES))
    async with Node(NodeConfig(api_port=0, max_body_bytes=4096), clock=clock) as node:
        group = node.group("scores", loader, max_key_bytes=64, max_value_bytes=1024)
        yield Api(node, group, loader, clock)


class TestGet:
    async def test_api_form_returns_raw_value(self, api: Api) -> None:
        """GET /api?key=Tom: the value's bytes; the second time from the cache."""
        r = await api.call("GET", "/api?key=Tom")
        assert (r.status, r.body) == (200, b"630")
        assert r.headers["content-type"] == "application/octet-stream"
        r = await api.call("GET", "/api?key=Tom&group=scores")
        assert (r.status, r.body) == (200, b"630")
        assert api.loader.calls["Tom"] == 1
        stats = api.group.statistics()
        assert (stats.gets, stats.hits, stats.loads) == (2, 1, 1)  # a miss counts one get
        assert stats.server_requests == 2

    async def test_rest_form_returns_raw_value(self, api: Api) -> None:
        """GET /v1/groups/{g}/keys/{k}: the same bytes."""
        r = await api.call("GET", "/v1/groups/scores/keys/Jack")
        assert (r.status, r.body) == (200, b"589")

    async def test_key_decoding(self, api: Api) -> None:
        """Path segments: %2F is '/', '+' is '+'. Queries: '+' is a space. UTF-8 keys."""
        r = await api.call("GET", "/v1/groups/scores/keys/a%2Fb+c%20d")
        assert (r.status, r.body) == (200, b"slashy")
        r = await api.call("GET", "/api?key=a%2Fb%2Bc+d")
        assert (r.status, r.body) == (200, b"slashy")
        r = await api.call("GET", "/v1/groups/scores/keys/caf%C3%A9")
        assert (r.status, r.body) == (200, b"\xe2\x98\x95")
        assert api.loader.calls == {"a/b+c d": 1, "café": 1}

    async def test_head(self, api: Api) -> None:
        """HEAD answers like GET, without the body."""
        async with Client(api.port) as client:
            r = await client.request("HEAD", "/api?key=Tom")
            assert r.status == 200
            assert r.headers["content-length"] == "3"
            assert r.body == b""
            r = await client.request("HEAD", "/v1/groups/scores/keys/Tom")
            assert r.headers["content-length"] == "3"

    async def test_unknown_key_is_404(self, api: Api) -> None:
        """The loader's NotFound becomes a 404 JSON error."""
        r = await api.call("GET", "/api?key=Nobody")
        assert r.status == 404
        assert r.json() == {"error": "key not found: 'Nobody'", "code": "not_found"}
        r = await api.call("GET", "/v1/groups/scores/keys/Nobody")
        assert r.status == 404

    async def test_cached_miss_is_404_without_a_load(self) -> None:
        """A negative entry is answered on the hit path."""
        loader = CountingLoader({})
        async with Node(NodeConfig(api_port=0)) as node:
            node.group("g", loader, negative_ttl=60)
            assert node.api_address is not None
            port = node.api_address[1]
            assert (await call(port, "GET", "/api?key=x")).status == 404
            assert (await call(port, "GET", "/api?key=x")).status == 404
        assert loader.calls["x"] == 1

    async def test_loader_failure_is_502(self) -> None:
        """Any other exception from a loader: 502 load_failed with its message."""

        async def failing(key: str) -> bytes:
            raise ConnectionError("database unreachable")

        async with Node(NodeConfig(api_port=0)) as node:
            node.group("g", failing)
            assert node.api_address is not None
            r = await call(node.api_address[1], "GET", "/api?key=x")
        assert r.status == 502
        assert r.json() == {"error": "database unreachable", "code": "load_failed"}

    async def test_loader_timeout_is_504(self) -> None:
        """A load slower than the group's load_timeout: 504 load_timeout."""

        async def hanging(key: str) -> bytes:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async with Node(NodeConfig(api_port=0)) as node:
            node.group("g", hanging, load_timeout=0.05)
            assert node.api_address is not None
            r = await call(node.api_address[1], "GET", "/api?key=x")
        assert r.status == 504
        assert r.json()["code"] == "load_timeout"

    async def test_request_timeout_is_504(self) -> None:
        """The API waits at most request_timeout for an answer."""
        gate = asyncio.Event()  # never set: the load outlives the request
        async with Node(NodeConfig(api_port=0, request_timeout=0.05)) as node:
            node.group("g", CountingLoader({"x": b"1"}, gate=gate))
            assert node.api_address is not None
            r = await call(node.api_address[1], "GET", "/api?key=x")
        assert r.status == 504
        assert r.json()["code"] == "request_timeout"

    async def test_concurrent_misses_load_once(self, api: Api) -> None:
        """Many clients missing the same key share one load."""
        gate = asyncio.Event()
        api.loader.gate = gate
        pending = [asyncio.create_task(api.call("GET", "/api?key=Sam")) for _ in range(10)]
        await api.loader.started.wait()
        gate.set()
        answers = await asyncio.gather(*pending)
        assert {(r.status, r.body) for r in answers} == {(200, b"567")}
        assert api.loader.calls["Sam"] == 1

    async def test_works_with_aiohttp_client(self, api: Api) -> None:
        """A real client with a keep-alive pool: get, put, get, delete."""
        base = f"http://127.0.0.1:{api.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api", params={"key": "Tom"}) as resp:
                assert resp.status == 200
                assert await resp.read() == b"630"
            url = f"{base}/v1/groups/scores/keys/fresh"
            async with session.put(url, data=b"value") as resp:
                assert resp.status == 204
            async with session.get(url) as resp:
                assert await resp.read() == b"value"
            async with session.delete(url) as resp:
                assert await resp.json() == {"deleted": True}


class TestWrite:
    async def test_put_then_get(self, api: Api) -> None:
        """PUT stores the body (204); GET serves it without a load."""
        r = await api.call("PUT", "/v1/groups/scores/keys/new%2Fkey", b"\x00\x01binary")
        assert r.status == 204
        assert r.body == b""
        r = await api.call("GET", "/api?key=new/key")
        assert (r.status, r.body) == (200, b"\x00\x01binary")
        assert api.loader.total == 0

    async def test_put_overwrites(self, api: Api) -> None:
        """A PUT replaces a loaded value."""
        assert (await api.call("GET", "/api?key=Tom")).body == b"630"
        assert (await api.call("PUT", "/v1/groups/scores/keys/Tom", b"999")).status == 204
        assert (await api.call("GET", "/api?key=Tom")).body == b"999"

    async def test_put_with_ttl(self, api: Api) -> None:
        """?ttl=seconds: the value expires after that long."""
        r = await api.call("PUT", "/v1/groups/scores/keys/temp?ttl=5", b"short-lived")
        assert r.status == 204
        assert (await api.call("GET", "/api?key=temp")).body == b"short-lived"
        api.clock.advance(6)
        r = await api.call("GET", "/api?key=temp")
        assert r.status == 404  # expired; the loader does not know "temp"
        assert api.loader.calls["temp"] == 1

    async def test_delete(self, api: Api) -> None:
        """DELETE answers whether something was cached; the next GET loads again."""
        assert (await api.call("GET", "/api?key=Tom")).status == 200
        r = await api.call("DELETE", "/v1/groups/scores/keys/Tom")
        assert (r.status, r.json()) == (200, {"deleted": True})
        r = await api.call("DELETE", "/v1/groups/scores/keys/Tom")
        assert (r.status, r.json()) == (200, {"deleted": False})
        assert (await api.call("GET", "/api?key=Tom")).body == b"630"
        assert api.loader.calls["Tom"] == 2

    async def test_pipelined_put_then_get_reads_the_write(self, api: Api) -> None:
        """Requests on one connection are handled in order across writes."""
        async with Client(api.port) as client:
            assert (await client.request("GET", "/api?key=Jack")).body == b"589"
            await client.send(
                build_request("PUT", "/v1/groups/scores/keys/Jack", b"new")
                + build_request("GET", "/api?key=Jack")
                + build_request("DELETE", "/v1/groups/scores/keys/Jack")
                + build_request("GET", "/api?key=Jack")
            )
            assert (await client.response()).status == 204
            assert (await client.response()).body == b"new"
            assert (await client.response()).json() == {"deleted": True}
            assert (await client.response()).body == b"589"


class TestOtherRoutes:
    async def test_healthz(self, api: Api) -> None:
        """GET /healthz: 200 ok."""
        r = await api.call("GET", "/healthz")
        assert (r.status, r.body) == (200, b"ok")

    async def test_stats(self, api: Api) -> None:
        """GET /v1/stats: every group's statistics as JSON."""
        await api.call("GET", "/api?key=Tom")
        await api.call("GET", "/api?key=Tom")
        r = await api.call("GET", "/v1/stats")
        assert r.status == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body == {
            "groups": {"scores": api.group.statistics().as_dict()},
            "background_errors": api.node.background_errors(),
            "loader_threads": api.node.loader_statistics(),
            "accept_errors": {"api": 0},
        }
        assert set(body["background_errors"]) >= {"sweep", "anti-entropy", "members"}
        scores = body["groups"]["scores"]
        assert scores["hits"] == 1
        assert scores["server_requests"] == 2
        assert scores["local_loads"] == 1
        assert scores["main"]["items"] == 1

    async def test_cluster_of_a_node_alone(self, api: Api) -> None:
        """GET /v1/cluster on a node without peers: no members, no owner for a key."""
        r = await api.call("GET", "/v1/cluster?key=Tom")
        assert r.status == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["self"] is None
        assert body["members"] == []
        assert body["owner"] is None
        assert body["ring"] == {"flavour": "shoal", "replicas": 160, "probes": 8}

    @pytest.mark.parametrize(
        ("target", "status"),
        [
            ("/v1/cluster?key=", 400),
            ("/v1/cluster?key=%zz", 400),
            ("/v1/cluster?key=a&key=b", 400),
            ("/v1/cluster?key=%ff", 400),
        ],
    )
    async def test_cluster_bad_query(self, api: Api, target: str, status: int) -> None:
        """A malformed key parameter is a 400 with a JSON error."""
        r = await api.call("GET", target)
        assert r.status == status
        assert "error" in r.json()

    async def test_cluster_is_read_only(self, api: Api) -> None:
        """Only GET and HEAD: anything else is a 405 naming them."""
        r = await api.call("POST", "/v1/cluster")
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"

    async def test_metrics(self, api: Api) -> None:
        """GET /metrics: the shoal_* series, with the group's current values."""
        for _ in range(3):
            await api.call("GET", "/api?key=Tom")
        await api.call("GET", "/api?key=Nobody")
        r = await api.call("GET", "/metrics")
        assert r.status == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = r.body.decode()
        samples = dict(re.findall(r"^(shoal_\S+) (\d+)$", text, re.MULTILINE))
        stats = api.group.statistics()
        assert samples['shoal_server_requests_total{group="scores"}'] == "4"
        assert samples['shoal_hits_total{group="scores"}'] == "2"
        assert samples['shoal_local_loads_total{group="scores"}'] == "1"
        assert samples['shoal_local_load_errors_total{group="scores"}'] == "1"
        assert samples['shoal_gets_total{group="scores"}'] == str(stats.gets)
        assert samples['shoal_loads_total{group="scores"}'] == str(stats.loads)
        assert samples['shoal_cache_items{group="scores",cache="main"}'] == "1"
        assert samples['shoal_cache_bytes{group="scores",cache="main"}'] == str(stats.main.bytes)
        assert samples['shoal_cache_hits_total{group="scores",cache="main"}'] == "2"
        assert samples['shoal_cache_items{group="scores",cache="hot"}'] == "0"
        assert text.count("# TYPE shoal_gets_total counter") == 1
        assert "# TYPE shoal_cache_bytes gauge" in text

    async def test_group_required_when_several(self, api: Api) -> None:
        """/api without group= is ambiguous on a node with two groups."""
        api.node.group("other", CountingLoader({"Tom": b"other"}))
        r = await api.call("GET", "/api?key=Tom")
        assert r.status == 400
        assert r.json()["code"] == "missing_group"
        r = await api.call("GET", "/api?key=Tom&group=other")
        assert (r.status, r.body) == (200, b"other")


BAD_REQUESTS = [
    # (method, target, body, status, code)
    ("GET", "/api?key=Tom&group=nope", b"", 404, "unknown_group"),
    ("GET", "/v1/groups/nope/keys/Tom", b"", 404, "unknown_group"),
    ("PUT", "/v1/groups/nope/keys/Tom", b"x", 404, "unknown_group"),
    ("GET", "/api", b"", 400, "missing_key"),
    ("GET", "/api?group=scores", b"", 400, "missing_key"),
    ("GET", "/api?key=", b"", 400, "invalid_key"),
    ("GET", "/v1/groups/scores/keys/", b"", 400, "invalid_key"),
    ("GET", "/api?key=Tom&key=Jack", b"", 400, "bad_request"),
    ("GET", "/api?key=" + "k" * 65, b"", 414, "key_too_large"),
    ("GET", "/v1/groups/scores/keys/" + "k" * 65, b"", 414, "key_too_large"),
    ("PUT", "/v1/groups/scores/keys/" + "k" * 65, b"x", 414, "key_too_large"),
    ("DELETE", "/v1/groups/scores/keys/" + "k" * 65, b"", 414, "key_too_large"),
    ("PUT", "/v1/groups/scores/keys/big", b"x" * 1025, 413, "value_too_large"),
    ("PUT", "/v1/groups/scores/keys/huge", b"x" * 4097, 413, "body_too_large"),
    ("GET", "/api?key=%zz", b"", 400, "bad_request"),
    ("GET", "/api?key=Tom%", b"", 400, "bad_request"),
    ("GET", "/api?key=%C3%28", b"", 400, "bad_request"),
    ("GET", "/v1/groups/scores/keys/%G1", b"", 400, "bad_request"),
    ("GET", "/v1/groups/scores/keys/%FF", b"", 400, "bad_request"),
    ("GET", "/v1/groups/sc%zzores/keys/Tom", b"", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=0", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=-5", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=abc", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=inf", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=nan", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=1e999", b"x", 400, "bad_request"),
    ("PUT", "/v1/groups/scores/keys/Tom?ttl=1&ttl=2", b"x", 400, "bad_request"),
    ("POST", "/api?key=Tom", b"x", 405, "method_not_allowed"),
    ("PUT", "/api?key=Tom", b"x", 405, "method_not_allowed"),
    ("PATCH", "/v1/groups/scores/keys/Tom", b"x", 405, "method_not_allowed"),
    ("POST", "/v1/stats", b"", 405, "method_not_allowed"),
    ("DELETE", "/healthz", b"", 405, "method_not_allowed"),
    ("POST", "/metrics", b"", 405, "method_not_allowed"),
    ("GET", "/", b"", 404, "unknown_path"),
    ("GET", "/v1/groups/scores", b"", 404, "unknown_path"),
    ("GET", "/v1/groups/scores/keys/a/b", b"", 404, "unknown_path"),
    ("GET", "/v1/groups/scores/values/Tom", b"", 404, "unknown_path"),
    ("GET", "/API?key=Tom", b"", 404, "unknown_path"),
]


class TestBadRequests:
    async def test_raw_invalid_utf8_in_query(self, api: Api) -> None:
        """Undecodable bytes in an unescaped query are a 400 (the parser usually stops them)."""
        server = ApiServer(api.node)
        for query in (b"key=\xff", b"key=a&group=\xff"):
            response = server.handle(Request("GET", b"/api", query))
            assert isinstance(response, Response)
            assert response.status == 400
            assert json.loads(response.body)["code"] == "bad_request"

    @pytest.mark.parametrize(("method", "target", "body", "status", "code"), BAD_REQUESTS)
    async def test_bad_request_is_refused_and_changes_nothing(
        self, api: Api, method: str, target: str, body: bytes, status: int, code: str
    ) -> None:
        """Each bad request gets its status and JSON code; the cache state does not move."""
        assert (await api.call("GET", "/api?key=Tom")).status == 200  # some state to keep
        before = api.group.statistics()
        r = await api.call(method, target, body)
        assert r.status == status, r.body
        error = r.json()
        assert error["code"] == code
        assert isinstance(error["error"], str)
        assert error["error"]
        assert api.group.statistics() == before
        assert api.loader.total == 1
        assert api.group.cached_bytes("Tom") == b"630"
        with pytest.raises(NotFound):
            await api.group.get_bytes("big")  # a refused PUT stored nothing

    @pytest.mark.parametrize(
        ("target", "allow"),
        [
            ("/api?key=Tom", "GET, HEAD"),
            ("/v1/groups/scores/keys/Tom", "GET, HEAD, PUT, DELETE"),
            ("/v1/stats", "GET, HEAD"),
            ("/healthz", "GET, HEAD"),
            ("/metrics", "GET, HEAD"),
        ],
    )
    async def test_wrong_method_lists_allowed_ones(self, api: Api, target: str, allow: str) -> None:
        """A 405 carries an Allow header."""
        r = await api.call("POST", target, b"x")
        assert r.status == 405
        assert r.headers["allow"] == allow
