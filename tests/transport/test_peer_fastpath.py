"""PeerServer's shortcut for plain GETs: the same bytes as the general path, for hits
(answered without a task), misses, TTLs, unknown groups and bad keys."""

from __future__ import annotations

import asyncio
import re

import pytest

from helpers.peer_nodes import GROUP, serving, value
from shoal.wire import decode_get_response

_DATE = re.compile(rb"Date: [^\r]*\r\n")
_LENGTH = re.compile(rb"Content-Length: (\d+)")


async def raw_get(port: int, target: str) -> bytes:
    """One GET on a fresh connection: the answer's bytes, its Date header taken out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
    finally:
        writer.close()
    return _DATE.sub(b"", head) + body


@pytest.mark.parametrize("ttl", [None, 60.0])
async def test_fast_and_general_paths_answer_the_same_bytes(ttl: float | None) -> None:
    """``k1`` takes the shortcut, ``k%31`` (the same key) the general path: a miss,
    then hits, are answered byte for byte alike (with the expiry when there is a TTL)."""
    async with serving(ttl=ttl) as served:
        base = "/_groupcache/" + GROUP
        miss = await raw_get(served.port, f"{base}/k1")
        fast = await raw_get(served.port, f"{base}/k1")
        general = await raw_get(served.port, f"{base}/k%31")
        assert fast == general == miss
        assert b"Content-Type: application/x-protobuf\r\n" in fast
        response = decode_get_response(fast.split(b"\r\n\r\n", 1)[1])
        assert response.value == value("k1")
        assert (response.expire_ns is not None) == (ttl is not None)
        assert served.loader.calls == ["k1"]


async def test_shortcut_leaves_unknown_groups_and_bad_keys_to_the_general_path() -> None:
    """An unknown group gets Go's 404 text, an empty key a 400, as without the shortcut."""
    async with serving() as served:
        unknown = await raw_get(served.port, "/_groupcache/nope/k1")
        assert unknown.startswith(b"HTTP/1.1 404 ")
        assert unknown.endswith(b"no such group: nope\n")
        empty = await raw_get(served.port, f"/_groupcache/{GROUP}/")
        assert empty.startswith(b"HTTP/1.1 400 ")
        missing = await raw_get(served.port, f"/_groupcache/{GROUP}/missing:x")
        assert missing.startswith(b"HTTP/1.1 404 ")
