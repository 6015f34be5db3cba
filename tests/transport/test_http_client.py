"""HttpPeerClient against a real PeerServer and against a scripted fake peer: the error
mapping, connection reuse, cancellation, dead peers, writes and batch gets."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from helpers.peer_nodes import (
    GROUP,
    CountingProxy,
    FakePeer,
    Received,
    Reply,
    answer,
    replies,
    serving,
    value,
)
from shoal import ConfigError, NotFound, PeerError, PeerUnavailable, RemoteLoadError
from shoal.errors import InvalidKey
from shoal.testing import ManualClock
from shoal.transport import Fetched, PeerClient
from shoal.transport.http import HttpPeerClient, HttpTransport
from shoal.wire import encode_get_response


@asynccontextmanager
async def client_for(url: str, **options: object) -> AsyncIterator[HttpPeerClient]:
    transport = HttpTransport(**options)  # type: ignore[arg-type]
    try:
        yield transport.client(url)
    finally:
        await transport.aclose()


def ok(key: str, **headers: str) -> Reply:
    """A 200 answer carrying ``value(key)``, as a Go node sends it."""
    return Reply(
        answer(
            200,
            encode_get_response(value(key)),
            headers={"Content-Type": "application/x-protobuf", **headers},
        )
    )


def echo_value() -> FakePeer:
    """A fake Go peer answering every GET with the value of the key in its path."""

    async def script(request: Received) -> Reply:
        return ok(request.target.rsplit("/", 1)[1])

    return FakePeer(script)


# ----------------------------------------------------------------- error mapping


async def test_client_satisfies_the_peer_client_protocol() -> None:
    """HttpPeerClient is a PeerClient (checked by mypy through this assignment)."""
    async with client_for("http://127.0.0.1:1") as client:
        peer: PeerClient = client
        assert peer.url == "http://127.0.0.1:1"


async def test_get_value_not_found_load_failure_and_unknown_group() -> None:
    """200 is the value, 404 NotFound, 503 with the loader's text RemoteLoadError, and an
    unknown group a PeerError (the peer is misconfigured; the key may exist)."""
    async with serving() as served, client_for(served.url) as client:
        fetched = await client.get(GROUP, "key:2")
        assert fetched == Fetched(value("key:2"), None, None)
        with pytest.raises(NotFound) as not_found:
            await client.get(GROUP, "missing:1")
        assert not_found.value.key == "missing:1"
        with pytest.raises(RemoteLoadError, match="database down while loading fail:1"):
            await client.get(GROUP, "fail:1")
        with pytest.raises(PeerError, match="no such group: nope") as unknown:
            await client.get("nope", "k")
        assert not isinstance(unknown.value, NotFound | RemoteLoadError)
        assert served.loader.calls == ["key:2", "missing:1", "fail:1"]


async def test_expiry_travels_in_nanoseconds() -> None:
    """A value with a TTL arrives with its absolute expiry; one without, with None."""
    clock = ManualClock(1_700_000_000.25)
    async with (
        serving(clock=clock, ttl=30) as served,
        client_for(served.url) as client,
    ):
        fetched = await client.get(GROUP, "k")
        assert fetched.expires_at == 1_700_000_030.25
    async with serving() as served, client_for(served.url) as client:
        assert (await client.get(GROUP, "k")).expires_at is None


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (Reply(answer(404, b"key not found\n")), NotFound, "'k'"),
        (Reply(answer(404, b"no such group: scores\n")), PeerError, "no such group"),
        (Reply(answer(500, b"boom\n")), RemoteLoadError, "loading 'k' failed: boom"),
        (Reply(answer(503, b"db down\n")), RemoteLoadError, "db down"),
        (Reply(answer(503)), PeerError, "answered 503"),
        (Reply(answer(502, b"bad gateway")), PeerUnavailable, "answered 502: bad gateway"),
        (Reply(answer(400, b"bad request\n")), PeerError, "answered 400"),
        (Reply(answer(200, b"\x0a\x05ab")), PeerError, "undecodable"),
        (Reply(b"HTTP/9 what\r\n\r\n", "hang"), PeerError, "malformed HTTP answer"),
        (Reply(b"garbage\r\n\r\n", "hang"), PeerError, "malformed HTTP answer"),
        (Reply(answer(200, headers={"Content-Length": "999999999"}), "hang"), PeerError, "exceeds"),
        (Reply(b"HTTP/1.1 200 OK\r\nContent-Len", "close"), PeerUnavailable, "closed"),
        (Reply(b"", "close"), PeerUnavailable, "closed"),
    ],
    ids=[
        "404-key",
        "404-group",
        "500-body",
        "503-body",
        "503-empty",
        "502",
        "400",
        "bad-protobuf",
        "bad-version",
        "garbage",
        "too-large",
        "truncated-head",
        "closed",
    ],
)
async def test_answers_map_to_errors(reply: Reply, error: type[Exception], match: str) -> None:
    """Every status and malformed answer maps to one shoal error, with the cause chained;
    the connection is not reused afterwards."""
    async with FakePeer(replies(reply, ok("k"))) as peer, client_for(peer.url) as client:
        with pytest.raises(error, match=match) as raised:
            await client.get(GROUP, "k")
        if match in ("undecodable", "malformed HTTP answer", "closed"):
            assert raised.value.__cause__ is not None  # the foreign error, chained
        # The peer still answers, and the client still works after the failure.
        assert (await client.get(GROUP, "k")).value == value("k")


async def test_oversized_body_is_refused() -> None:
    """An answer body past max_response_bytes is a PeerError; the connection is dropped."""
    big = encode_get_response(b"x" * 5000)
    async with (
        FakePeer(replies(Reply(answer(200, big)), ok("k"))) as peer,
        client_for(peer.url, max_response_bytes=1000) as client,
    ):
        with pytest.raises(PeerError, match="exceeds"):
            await client.get(GROUP, "k")
        assert (await client.get(GROUP, "k")).value == value("k")
        assert peer.connections == 2


async def test_unencodable_key_is_invalid_key() -> None:
    """A key with a lone surrogate cannot go on the wire: InvalidKey, nothing sent."""
    async with echo_value() as peer, client_for(peer.url) as client:
        with pytest.raises(InvalidKey):
            await client.get(GROUP, "bad\ud800")
        assert peer.requests == []


# ----------------------------------------------------------------- request bytes


async def test_request_bytes_escape_like_go() -> None:
    """Paths are escaped as RFC 3986 segments (what the Go client sends, but %20 for a
    space); the request is a bare GET with a Host header."""
    async with echo_value() as peer, client_for(peer.url) as client:
        await client.get(GROUP, "key:2")
        await client.get(GROUP, "a/b?c&d=é+%22")
        await client.get(GROUP, "user 42 #7")
        heads = [r.head for r in peer.requests]
    host = f"Host: 127.0.0.1:{peer.port}\r\n".encode()
    assert heads == [
        b"GET /_groupcache/scores/key%3A2 HTTP/1.1\r\n" + host + b"\r\n",
        b"GET /_groupcache/scores/a%2Fb%3Fc%26d%3D%C3%A9%2B%2522 HTTP/1.1\r\n" + host + b"\r\n",
        b"GET /_groupcache/scores/user%2042%20%237 HTTP/1.1\r\n" + host + b"\r\n",
    ]


async def test_base_path_and_url_prefix() -> None:
    """The request path is the URL's own path, then the base path (as Go's HTTPPool)."""
    async with echo_value() as peer:
        transport = HttpTransport("/cache/")
        try:
            client = transport.client(peer.url + "/prefix/")
            await client.get(GROUP, "k")
        finally:
            await transport.aclose()
    assert peer.requests[0].target == "/prefix/cache/scores/k"


# ----------------------------------------------------------------- the pool


async def test_sequential_requests_reuse_one_connection() -> None:
    """N requests one after the other use one connection (as the server counts them)."""
    async with (
        serving() as served,
        CountingProxy(served.port) as proxy,
        client_for(proxy.url) as client,
    ):
        for i in range(20):
            assert (await client.get(GROUP, f"k{i}")).value == value(f"k{i}")
        with pytest.raises(NotFound):
            await client.get(GROUP, "missing:x")  # an error answer keeps the connection too
        await client.get(GROUP, "k0")
        assert proxy.accepted == 1
        stats = client.statistics()
        assert (stats.connections_opened, stats.connections_idle, stats.requests) == (1, 1, 22)


async def test_concurrency_is_bounded_by_max_connections() -> None:
    """At most max_connections requests are on the wire at once; the others wait for a
    released connection and then reuse it."""
    gate = asyncio.Event()
    async with (
        serving(gate=gate) as served,
        CountingProxy(served.port) as proxy,
        client_for(proxy.url, max_connections=2) as client,
    ):
        tasks = [asyncio.create_task(client.get(GROUP, f"k{i}")) for i in range(6)]
        await served.loader.waiting(2).wait()
        gate.set()
        results = await asyncio.gather(*tasks)
        assert [r.value for r in results] == [value(f"k{i}") for i in range(6)]
        assert served.loader.max_in_flight == 2
        assert proxy.accepted == 2
        assert client.statistics().connections_opened == 2


async def test_cancellation_mid_request_discards_the_connection() -> None:
    """A request cancelled while waiting for its answer drops its connection; the next
    request opens a new one and gets its own answer."""
    async with (
        FakePeer(replies(Reply(then="hang"), ok("second"))) as peer,
        client_for(peer.url) as client,
    ):
        task = asyncio.create_task(client.get(GROUP, "first"))
        await peer.seen.get()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await peer.closed_by_client.get() == 1
        assert client.statistics().connections_open == 0
        assert (await client.get(GROUP, "second")).value == value("second")
        assert peer.connections == 2


async def test_timeout_with_half_an_answer_read_never_leaks_into_the_next_request() -> None:
    """The caller's timeout fires after part of an answer arrived: the rest must not be
    read as the answer to the next request."""
    full = ok("first").data
    async with (
        FakePeer(replies(Reply(full[: len(full) - 40], "hang"), ok("second"))) as peer,
        client_for(peer.url) as client,
    ):
        task = asyncio.create_task(client.get(GROUP, "first"))
        await peer.sent.get()  # half of the answer is out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.get(GROUP, "second")).value == value("second")
        assert peer.connections == 2


async def test_asyncio_timeout_bounds_a_hung_peer() -> None:
    """asyncio.timeout around get works (this is how a group bounds peer fetches)."""
    async with (
        FakePeer(replies(Reply(then="hang"), ok("k"))) as peer,
        client_for(peer.url) as client,
    ):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.get(GROUP, "k")
        assert (await client.get(GROUP, "k")).value == value("k")


async def test_cancelled_waiter_does_not_leak_its_slot() -> None:
    """With one connection busy, a request waiting for it is cancelled; the connection,
    once released, still serves the next request (no slot is lost)."""
    release = asyncio.Event()

    async def script(request: Received) -> Reply:
        if request.index == 1:
            await release.wait()
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script) as peer, client_for(peer.url, max_connections=1) as client:
        first = asyncio.create_task(client.get(GROUP, "a"))
        await peer.seen.get()
        waiting = asyncio.create_task(client.get(GROUP, "b"))
        await asyncio.sleep(0)  # one loop turn: the second request queues for the connection
        assert client.statistics().waiting == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert (await first).value == value("a")
        assert (await client.get(GROUP, "c")).value == value("c")
        assert peer.connections == 1
        stats = client.statistics()
        assert (stats.connections_open, stats.waiting) == (1, 0)


async def test_connection_close_answer_is_not_reused() -> None:
    """An answer with ``Connection: close`` retires its connection even if the peer
    leaves it open."""
    async with (
        FakePeer(replies(ok("k", Connection="close"), ok("k"))) as peer,
        client_for(peer.url) as client,
    ):
        await client.get(GROUP, "k")
        await client.get(GROUP, "k")
        assert peer.connections == 2


async def test_unsolicited_bytes_retire_the_connection() -> None:
    """Bytes after a complete answer (a second answer nobody asked for) make the
    connection unusable; the answer itself is fine."""
    extra = Reply(ok("k").data + answer(408, b"timeout"))
    async with FakePeer(replies(extra, ok("k"))) as peer, client_for(peer.url) as client:
        assert (await client.get(GROUP, "k")).value == value("k")
        assert (await client.get(GROUP, "k")).value == value("k")
        assert peer.connections == 2


async def test_reused_connection_closed_by_the_peer_is_retried_once() -> None:
    """The peer closes an idle connection just as a request goes out on it: the request
    is sent again on a new connection, invisibly to the caller."""
    async with (
        FakePeer(replies(ok("k"), Reply(then="close"), ok("k"))) as peer,
        client_for(peer.url) as client,
    ):
        await client.get(GROUP, "k")
        assert (await client.get(GROUP, "k")).value == value("k")
        assert client.statistics().retries == 1
        assert peer.connections == 2


async def test_new_connection_closed_without_answer_is_not_retried() -> None:
    """A fresh connection that dies without an answer is the peer's failure."""
    async with FakePeer(replies(Reply(then="close"))) as peer, client_for(peer.url) as client:
        with pytest.raises(PeerUnavailable):
            await client.get(GROUP, "k")
        assert client.statistics().retries == 0
        assert len(peer.requests) == 1


async def test_killed_server_gives_peer_unavailable() -> None:
    """Once the peer's server is gone, requests fail with PeerUnavailable, whether the
    pooled connection or a new one is tried."""
    async with serving() as served:
        transport = HttpTransport()
        client = transport.client(served.url)
        try:
            await client.get(GROUP, "k")
            await served.node.aclose()
            with pytest.raises(PeerUnavailable) as raised:
                await client.get(GROUP, "k")
            assert isinstance(raised.value, ConnectionError)
            with pytest.raises(PeerUnavailable, match="cannot connect"):
                await client.get(GROUP, "k")
        finally:
            await transport.aclose()


async def test_aclose_fails_requests_in_flight_and_later() -> None:
    """Closing the transport closes its clients: a request in flight and any later one
    get PeerUnavailable."""
    async with FakePeer(replies(Reply(then="hang"))) as peer:
        transport = HttpTransport()
        client = transport.client(peer.url)
        task = asyncio.create_task(client.get(GROUP, "k"))
        await peer.seen.get()
        await transport.aclose()
        with pytest.raises(PeerUnavailable):
            await task
        with pytest.raises(PeerUnavailable, match="closed"):
            await client.get(GROUP, "k")
        assert await peer.closed_by_client.get() == 1


# ----------------------------------------------------------------- writes


async def test_set_delete_and_remove_keys_reach_the_peer() -> None:
    """set (with an absolute expiry), delete and remove_keys change the peer's cache."""
    clock = ManualClock(1_700_000_000.0)
    async with serving(clock=clock) as served, client_for(served.url) as client:
        group = served.group
        await client.set(GROUP, "a", b"1", expires_at=1_700_000_100.5)
        await client.set(GROUP, "b", b"2")
        await client.set(GROUP, "c d/é", b"3")
        assert [group.cached_bytes(k) for k in ("a", "b", "c d/é")] == [b"1", b"2", b"3"]
        assert (await client.get(GROUP, "a")).expires_at == 1_700_000_100.5
        assert (await client.get(GROUP, "b")).expires_at is None
        await client.delete(GROUP, "a")
        assert group.cached_bytes("a") is None
        await client.remove_keys(GROUP, ["b", "c d/é", "never-there"])
        assert group.cached_bytes("b") is None
        assert group.cached_bytes("c d/é") is None
        await client.remove_keys(GROUP, [])
        assert served.loader.calls == []


async def test_write_errors_are_peer_errors() -> None:
    """A write the peer refuses (unknown group, value too large) is a PeerError."""
    async with (
        serving(max_value_bytes=10) as served,
        client_for(served.url) as client,
    ):
        with pytest.raises(PeerError, match="413"):
            await client.set(GROUP, "k", b"x" * 11)
        with pytest.raises(PeerError, match="no such group"):
            await client.delete("nope", "k")
        with pytest.raises(PeerError, match="no such group"):
            await client.remove_keys("nope", ["k"])
        assert served.group.cached_bytes("k") is None


# ----------------------------------------------------------------- batch get


async def test_get_many_learns_the_batch_extension_then_batches() -> None:
    """The first get_many to a peer not heard from goes key by key; once the peer's
    answers show it serves batches, one request carries them all."""
    clock = ManualClock(1_700_000_000.0)
    async with (
        serving(clock=clock, ttl=10) as served,
        client_for(served.url) as client,
    ):
        keys = ["a", "b", "missing:c"]
        first = await client.get_many(GROUP, keys)
        assert client.statistics().requests == 3
        second = await client.get_many(GROUP, [*keys, "d", "a"])
        assert client.statistics().requests == 4
        expected = {k: Fetched(value(k), 1_700_000_010.0) for k in ("a", "b")}
        assert first == expected
        assert second == {**expected, "d": Fetched(value("d"), 1_700_000_010.0)}
        assert await client.get_many(GROUP, []) == {}
        with pytest.raises(RemoteLoadError, match="database down"):
            await client.get_many(GROUP, ["x", "fail:y"])


async def test_get_many_splits_into_batches_of_max_batch_keys() -> None:
    """More keys than max_batch_keys go out as several batch requests."""
    async with serving() as served, client_for(served.url, max_batch_keys=2) as client:
        await client.get(GROUP, "warm-up")
        before = client.statistics().requests
        found = await client.get_many(GROUP, [f"k{i}" for i in range(5)])
        assert found == {f"k{i}": Fetched(value(f"k{i}")) for i in range(5)}
        assert client.statistics().requests - before == 3


async def test_get_many_never_sends_a_batch_to_a_go_peer() -> None:
    """A peer without the extension header (every Go node) only ever gets plain GETs:
    a Go node would run its loader on the key "_get-many/"."""
    async with echo_value() as peer, client_for(peer.url) as client:
        for _ in range(2):
            found = await client.get_many(GROUP, ["a", "b"])
            assert found == {k: Fetched(value(k)) for k in ("a", "b")}
        assert {r.request_line.split(" ")[0] for r in peer.requests} == {"GET"}
        assert len(peer.requests) == 4


async def test_get_many_falls_back_when_the_peer_stops_serving_batches() -> None:
    """A peer that advertised batches but now answers like a Go node (another program
    took its URL) gets the keys one by one."""
    advertised = {"Shoal-Extensions": "get-many"}

    async def script(request: Received) -> Reply:
        key = request.target.rsplit("/", 1)[1]
        if request.index == 1:
            return ok(key, **advertised)
        return ok(key)

    async with FakePeer(script) as peer, client_for(peer.url) as client:
        await client.get(GROUP, "warm-up")
        found = await client.get_many(GROUP, ["a", "b"])
        assert found == {k: Fetched(value(k)) for k in ("a", "b")}
        assert [r.request_line.split(" ")[0] for r in peer.requests] == [
            "GET",
            "POST",
            "GET",
            "GET",
        ]


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1:1", "http://", "http://127.0.0.1:99999", "127.0.0.1:80", "http://h/é/"],
)
def test_bad_peer_urls(url: str) -> None:
    """A peer URL the client cannot use is a ConfigError when the client is made."""
    with pytest.raises(ConfigError):
        HttpTransport().client(url)


@pytest.mark.parametrize(
    "options",
    [{"base_path": "nope"}, {"max_connections": 0}, {"connect_timeout": -1.0}],
)
def test_bad_transport_options(options: dict[str, object]) -> None:
    """Out-of-range transport settings are ConfigErrors."""
    with pytest.raises(ConfigError):
        HttpTransport(**options)  # type: ignore[arg-type]


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a
    client context that trusts it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [openssl, "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_https_peer(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """An https:// peer is reached over TLS with the transport's context; without it
    (the system's trust store) the self-signed peer is refused."""
    server, client_context = tls

    async def script(request: Received) -> Reply:
        return ok(request.target.rsplit("/", 1)[1])

    async with FakePeer(script, tls=server) as peer:
        assert peer.url.startswith("https://")
        async with client_for(peer.url, ssl_context=client_context) as client:
            assert (await client.get(GROUP, "k")).value == value("k")
            assert (await client.get(GROUP, "j")).value == value("j")
            assert client.statistics().connections_opened == 1
        async with client_for(peer.url) as client:
            with pytest.raises(PeerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(GROUP, "k")


async def test_transport_forgets_closed_clients() -> None:
    """A client closed on its own (a member left) is not closed again by the transport."""
    transport = HttpTransport()
    first, second = transport.client("http://127.0.0.1:1"), transport.client("http://127.0.0.1:2")
    await first.aclose()
    await transport.aclose()
    await transport.aclose()
    for client in (first, second):
        with pytest.raises(PeerUnavailable, match="closed"):
            await client.get(GROUP, "k")
