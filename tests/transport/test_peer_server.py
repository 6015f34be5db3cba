"""PeerServer over raw sockets: the answers Go nodes give, the bytes Go nodes captured,
and hostile requests that must get a 4xx without touching the cache."""

from __future__ import annotations

import json

import pytest

from helpers.go_captures import HTTP_CAPTURES, Exchange, Missing, exchanges, params
from helpers.peer_nodes import GROUP, Served, serving, value
from helpers.raw_http import Client, RawResponse, call
from shoal.testing import ManualClock
from shoal.wire import (
    ERROR_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    decode_get_response,
    encode_get_response,
    encode_remove_keys,
    encode_set_request,
)
from shoal.wire.batch import (
    GET_MANY_CONTENT_TYPE,
    BatchItem,
    decode_get_many_response,
    encode_get_many_request,
)

BASE = "/_groupcache/scores/"

EXCHANGES = exchanges()


async def get(served: Served, key_path: str) -> RawResponse:
    return await call(served.port, "GET", BASE + key_path)


# ----------------------------------------------------------------- the Go captures


@pytest.mark.parametrize(
    "exchange", params(HTTP_CAPTURES, EXCHANGES, [ex.what for ex in EXCHANGES])
)
async def test_captured_go_requests_get_go_answers(exchange: Exchange | Missing) -> None:
    """The exact request bytes a Go node sent get the status, content type and body
    bytes the Go peer answered (Date and Server aside).

    One known difference: Go serves the empty key (``GET /_groupcache/scores/``);
    shoal keys are never empty, so shoal answers 400.
    """
    if isinstance(exchange, Missing):
        exchange.skip_or_fail()
        return
    async with serving() as served, Client(served.port) as client:
        await client.send(exchange.request_text.encode("utf-8"))
        response = await client.response()
    expected_type = exchange.response_head.split("Content-Type: ", 1)[1].split("\r\n", 1)[0]
    if exchange.target == BASE.encode():
        assert exchange.status == 200
        assert (response.status, response.headers["content-type"]) == (400, ERROR_CONTENT_TYPE)
        assert response.body == b"the key is empty\n"
        return
    assert response.status == exchange.status
    assert response.headers["content-type"] == expected_type
    assert response.body == exchange.body
    if exchange.status != 200:
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_get_answer_is_a_get_response_with_expire_when_the_value_expires() -> None:
    """200 application/x-protobuf; ``expire`` (Unix ns) only when the value has one."""
    clock = ManualClock(1_700_000_000.5)
    async with serving(clock=clock, ttl=60) as served:
        response = await get(served, "key%3A2")
    assert response.status == 200
    assert response.headers["content-type"] == PROTOBUF_CONTENT_TYPE
    assert (
        response.headers["shoal-extensions"] == "get-many, get-many-errors, invalidate, replica, op"
    )
    assert response.body == encode_get_response(value("key:2"), expire_ns=1_700_000_060_500_000_000)
    async with serving() as served:
        response = await get(served, "k")
    assert response.body == encode_get_response(value("k"))


async def test_load_failure_not_found_and_key_too_large() -> None:
    """503 with the loader's error text; 404 for a missing key; 414 past max_key_bytes."""
    async with serving(max_key_bytes=16) as served:
        failed = await get(served, "fail:1")
        missing = await get(served, "missing:1")
        too_long = await get(served, "k" * 17)
        assert served.loader.calls == ["fail:1", "missing:1"]
    assert (failed.status, failed.body) == (503, b"database down while loading fail:1\n")
    assert (missing.status, missing.body) == (404, b"key not found: 'missing:1'\n")
    assert too_long.status == 414
    for response in (failed, missing, too_long):
        assert response.headers["content-type"] == ERROR_CONTENT_TYPE


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    """One connection carries requests of every kind in turn."""
    async with serving() as served, Client(served.port) as client:
        for key in ("a", "b", "missing:c", "a"):
            response = await client.request("GET", BASE + key)
            assert response.status in (200, 404)
        put = await client.request("PUT", BASE + "x", encode_set_request(GROUP, "x", b"1"))
        assert (put.status, put.body) == (200, b"")
        assert decode_get_response((await client.request("GET", BASE + "x")).body).value == b"1"


# ----------------------------------------------------------------- writes


async def test_put_sets_the_key_of_the_body_with_its_expiry() -> None:
    """PUT stores the body's value under the body's key (as groupcache-go v3), with the
    absolute expiry; expire=0 means never."""
    clock = ManualClock(1_700_000_000.0)
    async with serving(clock=clock) as served:
        body = encode_set_request(GROUP, "a b", b"v1", expire_ns=1_700_000_100_000_000_000)
        response = await call(served.port, "PUT", BASE + "a+b", body)
        assert (response.status, response.body) == (200, b"")
        assert served.group.cached_bytes("a b") == b"v1"
        fetched = decode_get_response((await get(served, "a%20b")).body)
        assert fetched.expire_ns == 1_700_000_100_000_000_000
        never = encode_set_request(GROUP, "n", b"v2", expire_ns=0)
        assert (await call(served.port, "PUT", BASE + "n", never)).status == 200
        assert decode_get_response((await get(served, "n")).body).expire_ns is None
        assert served.loader.calls == []


async def test_delete_and_remove_keys() -> None:
    """DELETE removes one key; POST _remove-keys/ removes the JSON body's keys."""
    async with serving() as served:
        group = served.group
        for key in ("a", "b", "c", "d"):
            await group.set(key, b"1")
        response = await call(served.port, "DELETE", BASE + "a")
        # 200 is all Go asks for; a shoal client reads how many keys were there.
        assert (response.status, response.body) == (200, b'{"removed": 1}')
        body = encode_remove_keys("ignored: the path names the group", ["b", "c", "zz"])
        response = await call(served.port, "POST", BASE + "_remove-keys/", body)
        assert (response.status, response.body) == (200, b'{"removed": 2}')
        assert [group.cached_bytes(k) for k in "abcd"] == [None, None, None, b"1"]


async def test_batch_get() -> None:
    """POST _get-many/ answers the found keys with their expiries; missing keys are
    left out; a loader failure fails the batch with 503."""
    clock = ManualClock(1_700_000_000.0)
    async with serving(clock=clock, ttl=5) as served:
        body = encode_get_many_request(["a", "missing:b", "c", "a"])
        response = await call(served.port, "POST", BASE + "_get-many/", body)
        assert response.status == 200
        assert response.headers["content-type"] == GET_MANY_CONTENT_TYPE
        expire = 1_700_000_005_000_000_000
        assert decode_get_many_response(response.body) == [
            BatchItem("a", value("a"), expire),
            BatchItem("c", value("c"), expire),
        ]
        assert sorted(served.loader.calls) == ["a", "c", "missing:b"]
        failed = await call(
            served.port, "POST", BASE + "_get-many/", encode_get_many_request(["x", "fail:y"])
        )
        assert (failed.status, failed.body) == (503, b"database down while loading fail:y\n")
        empty = await call(served.port, "POST", BASE + "_get-many/", b"")
        assert (empty.status, empty.body) == (200, b"")


# ----------------------------------------------------------------- hostile input

TOO_MANY_KEYS = encode_get_many_request([f"k{i}" for i in range(1001)])

BAD_REQUESTS: list[tuple[str, str, bytes, int, bytes]] = [
    # method, target, body, status, a piece of the answer's body
    ("GET", BASE + "k%zz", b"", 400, b"percent-escape"),
    ("GET", BASE + "k%4", b"", 400, b"percent-escape"),
    ("GET", BASE + "%ff%fe", b"", 400, b"UTF-8"),
    ("GET", "/_groupcache/scores", b"", 400, b"bad request\n"),
    ("GET", "/_groupcache/nosuch/k", b"", 404, b"no such group: nosuch\n"),
    ("GET", "/_groupcache/no%zzsuch/k", b"", 400, b"percent-escape"),
    ("GET", "/elsewhere/scores/k", b"", 404, b"not under"),
    ("GET", BASE, b"", 400, b"empty"),
    ("GET", BASE + "k" * 1025, b"", 414, b"max_key_bytes"),
    ("GET", BASE + "k" * 20000, b"", 414, b"longer than"),
    ("HEAD", BASE + "k", b"", 405, b""),
    ("PATCH", BASE + "k", b"x", 405, b"not allowed"),
    ("POST", BASE + "k", b"", 405, b"not allowed"),
    ("OPTIONS", BASE + "k", b"", 405, b"not allowed"),
    ("PUT", BASE + "k", b"\xff\xff\xff", 400, b"SetRequest"),
    ("PUT", BASE + "k", encode_set_request(GROUP, "k", b"value")[:-2], 400, b"truncated"),
    ("PUT", BASE + "k", b"\x1a\x01v", 400, b"missing"),
    ("PUT", BASE + "k", encode_set_request(GROUP, "", b"v"), 400, b"empty"),
    ("PUT", BASE + "k", encode_set_request(GROUP, "k", b"v" * 2000), 413, b"max_value_bytes"),
    ("PUT", "/_groupcache/nosuch/k", encode_set_request("nosuch", "k", b"v"), 404, b"no such"),
    ("DELETE", BASE, b"", 400, b"empty"),
    ("DELETE", BASE + "k" * 1025, b"", 414, b"max_key_bytes"),
    ("POST", BASE + "_remove-keys/", b"{not json", 400, b"remove-keys"),
    ("POST", BASE + "_remove-keys/", b'{"keys": "a"}', 400, b"not an array"),
    ("POST", BASE + "_remove-keys/", json.dumps({"keys": ["a", ""]}).encode(), 400, b"empty"),
    ("POST", BASE + "_get-many/", b"\x0a\x09short", 400, b"truncated"),
    ("POST", BASE + "_get-many/", b"\x0a\x01\xff", 400, b"UTF-8"),
    ("POST", BASE + "_get-many/", encode_get_many_request(["a", ""]), 400, b"empty"),
    ("POST", BASE + "_get-many/", TOO_MANY_KEYS, 413, b"more than 1000 keys"),
]


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "piece"),
    BAD_REQUESTS,
    ids=[f"{m}-{t[:40]}-{s}" for m, t, _, s, _ in BAD_REQUESTS],
)
async def test_bad_requests_get_4xx_and_change_nothing(
    method: str, target: str, body: bytes, status: int, piece: bytes
) -> None:
    """Malformed paths, escapes and bodies, unknown groups, oversized keys and values,
    and other methods get a 4xx; nothing is loaded or changed, and the server goes on
    answering."""
    async with serving(max_value_bytes=1000) as served:
        group = served.group
        await group.set("a", b"kept")
        await group.set("k", b"kept")
        before = group.statistics()
        response = await call(served.port, method, target, body)
        assert response.status == status
        assert piece in response.body
        after = group.statistics()
        assert served.loader.calls == []
        assert (after.main.items, after.main.bytes) == (before.main.items, before.main.bytes)
        assert group.cached_bytes("a") == group.cached_bytes("k") == b"kept"
        assert (await get(served, "k")).body == encode_get_response(b"kept")


async def test_garbage_http_gets_an_answer_and_the_server_survives() -> None:
    """Bytes that are not HTTP get a 400 from the HTTP layer; new connections still work."""
    async with serving() as served:
        async with Client(served.port) as client:
            await client.send(b"\x00\x01\x02 not http at all\r\n\r\n")
            response = await client.response()
            assert response.status == 400
        assert (await get(served, "k")).status == 200
