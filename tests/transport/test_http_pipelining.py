"""HttpPeerClient pipelining: GETs to a shoal peer issued in one loop iteration share a
connection and a write; a Go peer (no Shoal-Extensions header) never gets pipelined
requests; failures and cancellations inside a batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from helpers.peer_nodes import GROUP, FakePeer, Received, Reply, answer, serving, value
from shoal import PeerUnavailable
from shoal.transport.http import HttpPeerClient, HttpTransport
from shoal.wire import encode_get_response
from shoal.wire.batch import EXTENSIONS_HEADER, GET_MANY_EXTENSION

SHOAL_HEADERS = {EXTENSIONS_HEADER: GET_MANY_EXTENSION}


@asynccontextmanager
async def client_for(url: str, **options: object) -> AsyncIterator[HttpPeerClient]:
    transport = HttpTransport(**options)  # type: ignore[arg-type]
    try:
        yield transport.client(url)
    finally:
        await transport.aclose()


def ok(key: str, headers: dict[str, str] | None = None) -> Reply:
    """A 200 answer carrying ``value(key)``; with SHOAL_HEADERS, as a shoal node sends it."""
    fields = {"Content-Type": "application/x-protobuf", **(headers or {})}
    return Reply(answer(200, encode_get_response(value(key)), headers=fields))


def key_of(request: Received) -> str:
    return request.target.rsplit("/", 1)[1]


async def get_all(client: HttpPeerClient, keys: list[str]) -> list[bytes]:
    """GET every key concurrently (all issued in the same loop iteration)."""
    fetched = await asyncio.gather(*(client.get(GROUP, key) for key in keys))
    return [f.value for f in fetched]


async def test_gets_to_a_shoal_peer_are_pipelined_on_one_connection() -> None:
    """Once the peer has shown it is a shoal node, GETs issued together go out in one
    write on one connection, and each gets its own answer."""
    async with serving() as served, client_for(served.url) as client:
        assert (await client.get(GROUP, "first")).value == value("first")
        keys = [f"k{i}" for i in range(10)]
        assert await get_all(client, keys) == [value(k) for k in keys]
        stats = client.statistics()
        assert stats.pipelined == 10
        assert stats.connections_opened == 1
        assert stats.requests == 11


async def test_max_pipeline_bounds_the_requests_per_connection() -> None:
    """More GETs than max_pipeline use several connections, each with at most that many."""
    async with serving() as served, client_for(served.url, max_pipeline=4) as client:
        await client.get(GROUP, "first")
        keys = [f"k{i}" for i in range(10)]
        assert await get_all(client, keys) == [value(k) for k in keys]
        assert client.statistics().connections_opened == 3  # 4 + 4 + 2


async def test_max_pipeline_one_turns_pipelining_off() -> None:
    """With max_pipeline=1 every GET has a connection of its own."""
    async with serving() as served, client_for(served.url, max_pipeline=1) as client:
        await client.get(GROUP, "first")
        keys = [f"k{i}" for i in range(5)]
        assert await get_all(client, keys) == [value(k) for k in keys]
        stats = client.statistics()
        assert stats.pipelined == 0
        assert stats.connections_opened == 5


async def test_a_go_peer_never_gets_pipelined_requests() -> None:
    """A peer that sends no Shoal-Extensions header (a Go node) may answer pipelined
    requests one by one, so each concurrent GET gets a connection of its own."""

    async def script(request: Received) -> Reply:
        return ok(key_of(request))

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        keys = [f"k{i}" for i in range(4)]
        assert await get_all(client, keys) == [value(k) for k in keys]
        assert client.statistics().pipelined == 0
        assert peer.connections == 4
        assert {r.connection for r in peer.requests[1:]} == {1, 2, 3, 4}


async def test_a_batch_cut_short_by_the_peer_is_sent_again() -> None:
    """The peer answers the first request of a batch, then closes the connection: the
    answered request keeps its answer, the others go out again on a new connection."""
    closed_once = False

    async def script(request: Received) -> Reply:
        nonlocal closed_once
        reply = ok(key_of(request), SHOAL_HEADERS)
        if request.index == 2 and not closed_once:  # the first of the batch
            closed_once = True
            return Reply(reply.data, then="close")
        return reply

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        keys = ["a", "b", "c"]
        assert await get_all(client, keys) == [value(k) for k in keys]
        stats = client.statistics()
        assert stats.retries == 2
        assert peer.connections == 3  # the first, the batch's, and the retries'


async def test_a_batch_on_a_fresh_connection_that_answers_nothing_fails() -> None:
    """A new connection closed before any answer is a failed peer, not a race: the
    whole batch fails with PeerUnavailable, nothing is sent again."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.connection > 1:
            return Reply(b"", then="close")
        if key_of(request) == "hold":
            await release.wait()
        return ok(key_of(request), SHOAL_HEADERS)

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")  # learned: a shoal peer
        hold = asyncio.create_task(client.get(GROUP, "hold"))  # keeps connection 1 busy
        await peer.seen.get()
        await peer.seen.get()
        results = await asyncio.gather(
            *(client.get(GROUP, k) for k in ("a", "b")), return_exceptions=True
        )
        assert [type(r) for r in results] == [PeerUnavailable, PeerUnavailable]
        assert client.statistics().retries == 0
        assert peer.connections == 2
        release.set()
        assert (await hold).value == value("hold")


async def test_cancelling_one_get_of_a_batch_does_not_fail_the_others() -> None:
    """One caller of a pipelined batch is cancelled while the answers are pending: its
    connection is dropped (its state is unknown) and the other GETs are sent again."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        # The batch's connection, and the request keeping the first one busy, wait.
        if request.connection == 2 or key_of(request) == "hold":
            await release.wait()
        return ok(key_of(request), SHOAL_HEADERS)

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        hold = asyncio.create_task(client.get(GROUP, "hold"))  # connection 1 stays busy
        await peer.seen.get()
        await peer.seen.get()
        tasks = [asyncio.create_task(client.get(GROUP, k)) for k in ("a", "b", "c")]
        await peer.seen.get()  # "a" has arrived, "b" and "c" are behind it
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        release.set()
        assert [(await t).value for t in tasks[1:]] == [value("b"), value("c")]
        assert (await hold).value == value("hold")
        assert client.statistics().retries == 2


async def test_aclose_fails_queued_and_pipelined_gets() -> None:
    """Closing the client fails every GET it still holds with PeerUnavailable."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.index > 1:
            await release.wait()
        return ok(key_of(request), SHOAL_HEADERS)

    async with FakePeer(script) as peer:
        transport = HttpTransport()
        client = transport.client(peer.url)
        await client.get(GROUP, "first")
        tasks = [asyncio.create_task(client.get(GROUP, k)) for k in ("a", "b")]
        await peer.seen.get()
        await transport.aclose()
        release.set()
        for task in tasks:
            with pytest.raises(PeerUnavailable):
                await task
