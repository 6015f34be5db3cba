"""HttpPeerClient.fetch, the task-less fetch the group uses for keys owned elsewhere:
the fetches of one loop iteration to a shoal peer go out together, one group's in one
batch get answered key by key; each gets what a GET of its key alone would have
(value, NotFound, the owner's load error); failures, retries, abandoned fetches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from helpers.peer_nodes import GROUP, FakePeer, Received, Reply, answer, serving, value
from shoal import NotFound, PeerError, PeerUnavailable, RemoteLoadError
from shoal.transport import Fetched
from shoal.transport.http import HttpPeerClient, HttpTransport
from shoal.wire import encode_get_response
from shoal.wire.batch import (
    EXTENSIONS_HEADER,
    GET_MANY_CONTENT_TYPE,
    GET_MANY_ERRORS_EXTENSION,
    GET_MANY_EXTENSION,
    BatchItem,
    decode_batch_request,
    encode_get_many_response,
)

SHOAL_HEADERS = {EXTENSIONS_HEADER: f"{GET_MANY_EXTENSION}, {GET_MANY_ERRORS_EXTENSION}"}
Outcome = tuple[Fetched | None, BaseException | None]


@asynccontextmanager
async def client_for(url: str, **options: Any) -> AsyncIterator[HttpPeerClient]:
    transport = HttpTransport(**options)
    try:
        yield transport.client(url)
    finally:
        await transport.aclose()


def start(client: HttpPeerClient, key: str, group: str = GROUP) -> asyncio.Future[Outcome]:
    """Start a fetch; the future gets its ``(fetched, error)``."""
    future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def done(fetched: Fetched | None, error: BaseException | None) -> None:
        assert not future.done(), "done called twice"
        future.set_result((fetched, error))

    assert client.fetch(group, key, done) is not None
    return future


async def fetch_all(client: HttpPeerClient, keys: list[str]) -> list[Outcome]:
    """Fetch every key, all started in the same loop iteration."""
    return list(await asyncio.gather(*(start(client, key) for key in keys)))


def batch_keys(request: Received) -> list[str]:
    keys, key_errors = decode_batch_request(request.body)
    assert key_errors
    return keys


def ok(key: str) -> Reply:
    fields = {"Content-Type": "application/x-protobuf", **SHOAL_HEADERS}
    return Reply(answer(200, encode_get_response(value(key)), headers=fields))


def batch_reply(keys: list[str]) -> Reply:
    body = encode_get_many_response([BatchItem(key, value(key)) for key in keys])
    fields = {"Content-Type": GET_MANY_CONTENT_TYPE, **SHOAL_HEADERS}
    return Reply(answer(200, body, headers=fields))


async def test_fetch_needs_a_known_shoal_peer() -> None:
    """Before the peer has answered, and for a Go peer (no Shoal-Extensions), fetch
    declines (None): the caller awaits get() instead."""

    async def go_like(request: Received) -> Reply:
        fields = {"Content-Type": "application/x-protobuf"}
        return Reply(answer(200, encode_get_response(b"v"), headers=fields))

    async with FakePeer(go_like) as peer, client_for(peer.url) as client:
        assert client.fetch(GROUP, "k", lambda f, e: None) is None
        await client.get(GROUP, "k")
        assert client.fetch(GROUP, "k", lambda f, e: None) is None
    async with serving() as served, client_for(served.url) as client:
        assert client.fetch(GROUP, "k", lambda f, e: None) is None
        await client.get(GROUP, "first")
        assert client.fetch(GROUP, "\ud800", lambda f, e: None) is None  # not encodable


async def test_fetches_of_one_moment_share_one_batch() -> None:
    """Fetches started together go in one batch get; each gets its value with the same
    expiry a GET gives; a lone fetch is a plain GET."""
    async with serving(ttl=60.0) as served, client_for(served.url) as client:
        first = await client.get(GROUP, "first")
        keys = [f"k{i}" for i in range(20)]
        outcomes = await fetch_all(client, keys)
        assert [f.value for f, _ in outcomes if f is not None] == [value(k) for k in keys]
        assert all(error is None for _, error in outcomes)
        expiry = outcomes[0][0].expires_at if outcomes[0][0] else None
        assert expiry is not None
        assert first.expires_at is not None
        assert abs(expiry - first.expires_at) < 5
        stats = client.statistics()
        assert stats.batched == 20
        assert stats.requests == 2  # the first GET, then one batch
        [(alone, error)] = await fetch_all(client, ["alone"])
        assert error is None
        assert alone is not None
        assert alone.value == value("alone")
        assert client.statistics().batched == 20
        assert served.loader.calls.count("k3") == 1


async def test_each_key_of_a_batch_gets_its_own_outcome() -> None:
    """A key the owner lacks is NotFound, a key whose load fails gets the owner's
    error (RemoteLoadError), a key over the owner's limit a PeerError, each for that
    key alone; the other keys of the batch get their values."""
    async with serving(max_key_bytes=64) as served, client_for(served.url) as client:
        await client.get(GROUP, "first")
        keys = ["good", "missing:x", "fail:y", "long" * 30, "also-good"]
        outcomes = dict(zip(keys, await fetch_all(client, keys), strict=True))
        for key in ("good", "also-good"):
            fetched, error = outcomes[key]
            assert error is None
            assert fetched is not None
            assert fetched.value == value(key)
        assert isinstance(outcomes["missing:x"][1], NotFound)
        failed = outcomes["fail:y"][1]
        assert isinstance(failed, RemoteLoadError)
        assert "database down" in str(failed)
        too_long = outcomes["long" * 30][1]
        assert isinstance(too_long, PeerError)
        assert "414" in str(too_long)
        assert client.statistics().batched == len(keys)
        # The owner loaded each key once: no second load of the failed one.
        assert served.loader.calls.count("fail:y") == 1


async def test_an_older_shoal_peer_gets_pipelined_gets() -> None:
    """A shoal peer without get-many-errors (an older version) gets the fetches as
    pipelined GETs, never a batch it would fail as a whole."""
    older = {EXTENSIONS_HEADER: GET_MANY_EXTENSION}

    async def script(request: Received) -> Reply:
        assert request.request_line.startswith("GET ")
        key = request.target.rsplit("/", 1)[1]
        fields = {"Content-Type": "application/x-protobuf", **older}
        return Reply(answer(200, encode_get_response(value(key)), headers=fields))

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        outcomes = await fetch_all(client, ["a", "b", "c"])
        assert [f.value for f, _ in outcomes if f] == [value(k) for k in "abc"]
        stats = client.statistics()
        assert stats.batched == 0
        assert stats.pipelined == 3


async def test_a_batch_cut_short_is_sent_again() -> None:
    """The peer closes a used connection instead of answering the batch: the batch
    goes once more on a new connection and every fetch gets its value."""
    closed_once = False

    async def script(request: Received) -> Reply:
        nonlocal closed_once
        if request.request_line.startswith("POST") and not closed_once:
            closed_once = True
            return Reply(b"", then="close")
        if request.request_line.startswith("POST"):
            return batch_reply(batch_keys(request))
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        outcomes = await fetch_all(client, ["a", "b"])
        assert [f.value for f, _ in outcomes if f] == [value("a"), value("b")]
        assert client.statistics().retries == 1


async def test_a_fresh_connection_that_answers_nothing_fails_every_fetch() -> None:
    """A new connection closed before any answer is a failed peer: every fetch of the
    batch gets PeerUnavailable, nothing is sent again."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.connection > 1:
            return Reply(b"", then="close")
        if request.target.endswith("/hold"):
            await release.wait()
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        hold = asyncio.create_task(client.get(GROUP, "hold"))  # keeps connection 1 busy
        await peer.seen.get()
        await peer.seen.get()
        outcomes = await fetch_all(client, ["a", "b"])
        assert [type(error) for _, error in outcomes] == [PeerUnavailable, PeerUnavailable]
        assert client.statistics().retries == 0
        release.set()
        assert (await hold).value == value("hold")


async def test_a_malformed_batch_answer_fails_its_fetches_only() -> None:
    """An undecodable batch answer is a PeerError for each of its fetches."""

    async def script(request: Received) -> Reply:
        if request.request_line.startswith("POST"):
            fields = {"Content-Type": GET_MANY_CONTENT_TYPE, **SHOAL_HEADERS}
            return Reply(answer(200, b"\x0a\x05ab", headers=fields))
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        outcomes = await fetch_all(client, ["a", "b"])
        for _, error in outcomes:
            assert isinstance(error, PeerError)
            assert "undecodable batch answer" in str(error)
        assert (await client.get(GROUP, "after")).value == value("after")


async def test_abandoned_fetches_get_nothing_and_free_the_connection() -> None:
    """Abandoning one fetch of a batch leaves the others their answers; abandoning
    all of a batch that was written drops its connection (its state is unknown)."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.request_line.startswith("POST"):
            await release.wait()
            return batch_reply(batch_keys(request))
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "first")
        delivered: list[str] = []
        both = asyncio.Event()

        def deliver(key: str) -> Callable[[Fetched | None, BaseException | None], None]:
            """The callback of the fetch of ``key``: notes that it was delivered."""

            def done(fetched: Fetched | None, error: BaseException | None) -> None:
                delivered.append(key)
                if len(delivered) == 2:
                    both.set()

            return done

        abandon = {key: client.fetch(GROUP, key, deliver(key)) for key in ("a", "b", "c")}
        await peer.seen.get()
        await peer.seen.get()  # the batch arrived
        cancel_a = abandon["a"]
        assert cancel_a is not None
        cancel_a()
        release.set()
        await asyncio.wait_for(both.wait(), 5)
        assert sorted(delivered) == ["b", "c"]
        assert client.statistics().connections_open == 1

        release.clear()
        abandon = {key: client.fetch(GROUP, key, deliver(key)) for key in ("d", "e")}
        request = await peer.seen.get()
        assert batch_keys(request) == ["d", "e"]
        for cancel in abandon.values():
            assert cancel is not None
            cancel()
        assert client.statistics().connections_open == 0  # dropped, not reused
        release.set()
        assert (await client.get(GROUP, "after")).value == value("after")
        assert client.statistics().connections_opened == 2
        assert sorted(delivered) == ["b", "c"]


async def test_aclose_fails_waiting_fetches() -> None:
    """Closing the client gives every fetch it still holds PeerUnavailable."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.index > 1:
            await release.wait()
        return ok("first")

    async with FakePeer(script) as peer:
        transport = HttpTransport()
        client = transport.client(peer.url)
        await client.get(GROUP, "first")
        written = [start(client, key) for key in ("a", "b")]
        await peer.seen.get()
        queued = start(client, "c")  # not yet flushed
        await transport.aclose()
        release.set()
        for future in (*written, queued):
            _, error = await future
            assert isinstance(error, PeerUnavailable)


async def test_a_callback_that_raises_is_reported_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fetch callback raising is a bug reported to the loop's exception handler; the
    other fetches of the batch, and the connection, carry on."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        async with serving() as served, client_for(served.url) as client:
            await client.get(GROUP, "first")

            def bad(fetched: Fetched | None, error: BaseException | None) -> None:
                raise RuntimeError("callback bug")

            client.fetch(GROUP, "bad", bad)
            [(good, error)] = await fetch_all(client, ["good"])
            assert error is None
            assert good is not None
            assert good.value == value("good")
            assert [type(c.get("exception")) for c in reported] == [RuntimeError]
            assert (await client.get(GROUP, "after")).value == value("after")
    finally:
        loop.set_exception_handler(None)
