"""The HTTP API's atomic operations and batches, over a real socket of a 3-node cluster
(each request may reach a node that does not own the key), with and without tokens."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from helpers.processes import free_ports
from shoal import Node, NodeConfig


@asynccontextmanager
async def cluster(mode: str) -> AsyncIterator[list[Node]]:
    ports = free_ports(3)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    async with AsyncExitStack() as stack:
        nodes = []
        for port in ports:
            node = Node(NodeConfig(port=port, peers=urls, api_port=0))
            node.group("c", mode=mode)
            nodes.append(await stack.enter_async_context(node))
        yield nodes


def _call(
    base: str, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def call(
    node: Node, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, bytes]:
    address = node.api_address
    assert address is not None
    base = "http://{}:{}".format(*address)
    return await asyncio.to_thread(_call, base, method, path, body, token)


@pytest.mark.parametrize("mode", ["partitioned", "replicated"])
async def test_key_operations_and_batches(mode: str) -> None:
    async with cluster(mode) as nodes:
        a, b, c = nodes
        key = "/v1/groups/c/keys/n"
        assert await call(a, "POST", key + "?op=add&ttl=30", b"41") == (201, b'{"stored":true}')
        assert await call(b, "POST", key + "?op=add", b"0") == (409, b'{"stored":false}')
        assert await call(c, "POST", key + "?op=incr") == (200, b'{"value":42}')
        assert await call(a, "POST", key + "?op=incr&delta=-50") == (200, b'{"value":-8}')
        status, body = await call(b, "GET", key + "?op=ttl")
        assert status == 200
        assert 25 < json.loads(body)["ttl"] <= 30
        assert (await call(c, "POST", key + "?op=touch"))[0] == 204
        assert await call(a, "GET", key + "?op=ttl") == (200, b'{"ttl":null}')
        assert await call(a, "GET", key) == (200, b"-8")
        # errors
        missing = "/v1/groups/c/keys/missing"
        assert (await call(a, "POST", missing + "?op=incr"))[0] == 404
        assert (await call(a, "POST", missing + "?op=touch&ttl=5"))[0] == 404
        assert (await call(a, "GET", missing + "?op=ttl"))[0] == 404
        for bad in ("delta=1.5", "delta=abc", "delta=99999999999999999999", "ttl=-1"):
            status, body = await call(b, "POST", f"{key}?op=incr&{bad}")
            assert status == 400, (bad, body)
        await call(a, "PUT", "/v1/groups/c/keys/word", b"hello")
        status, body = await call(a, "POST", "/v1/groups/c/keys/word?op=incr")
        assert (status, json.loads(body)["code"]) == (400, "bad_request")
        assert (await call(a, "POST", key + "?op=explode"))[0] == 400
        assert (await call(a, "GET", key + "?op=incr"))[0] == 405
        assert (await call(a, "POST", "/v1/groups/nosuch/keys/k?op=incr"))[0] == 404
        # batches: one request, every owner
        batch = "/v1/groups/c/_batch"
        values = {f"k{i}": f"v{i}" for i in range(20)}
        body = json.dumps({"op": "set", "values": values, "ttl": 60}).encode()
        assert await call(b, "POST", batch, body) == (200, b'{"stored":20}')
        body = json.dumps({"op": "get", "keys": [*values, "absent"]}).encode()
        status, answer = await call(c, "POST", batch, body)
        assert (status, json.loads(answer)) == (200, {"values": values})
        body = json.dumps({"op": "delete", "keys": list(values)[:5]}).encode()
        assert await call(a, "POST", batch, body) == (200, b'{"deleted":5}')
        binary = json.dumps({"op": "set", "values": {"bin": {"base64": "/wA="}}}).encode()
        assert (await call(a, "POST", batch, binary))[0] == 200
        status, answer = await call(b, "POST", batch, b'{"op": "get", "keys": ["bin"]}')
        assert json.loads(answer) == {"values": {"bin": {"base64": "/wA="}}}
        huge = json.dumps({"op": "get", "keys": [f"k{i}" for i in range(1001)]}).encode()
        status, answer = await call(a, "POST", batch, huge)
        assert status == 400
        assert b"over the limit of 1000" in answer
        for broken in (b"{", b"[]", b'{"op": "get"}', b'{"op": "set", "values": {"k": 1}}'):
            assert (await call(a, "POST", batch, broken))[0] == 400


async def test_roles(tmp_path: Path) -> None:
    """add/incr/touch and batch writes need write; ttl and batch gets need read."""
    tokens = tmp_path / "tokens"
    tokens.write_text("read reader-token-0123456789\nwrite writer-token-0123456789\n")
    tokens.chmod(0o600)
    async with Node(NodeConfig(api_port=0, api_tokens=str(tokens))) as node:
        node.group("c")
        reader, writer = "reader-token-0123456789", "writer-token-0123456789"
        key = "/v1/groups/c/keys/n"
        assert (await call(node, "POST", key + "?op=add", b"1", reader))[0] == 403
        assert (await call(node, "POST", key + "?op=add", b"1", writer))[0] == 201
        assert (await call(node, "POST", key + "?op=incr", None, reader))[0] == 403
        assert (await call(node, "POST", key + "?op=touch", None, reader))[0] == 403
        assert (await call(node, "GET", key + "?op=ttl", None, reader))[0] == 200
        batch = "/v1/groups/c/_batch"
        get = b'{"op": "get", "keys": ["n"]}'
        assert await call(node, "POST", batch, get, reader) == (200, b'{"values":{"n":"1"}}')
        put = b'{"op": "set", "values": {"x": "1"}}'
        assert (await call(node, "POST", batch, put, reader))[0] == 403
        assert (await call(node, "POST", batch, put, writer))[0] == 200
        assert (await call(node, "POST", batch, get))[0] == 401
