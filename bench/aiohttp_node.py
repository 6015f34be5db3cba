"""A shoal node built on aiohttp: the Python baseline of the cluster benchmark.

The same cache core as a shoal node (:class:`shoal.Group` with its stores,
singleflight and hot cache, :class:`shoal.peers.PeerPicker` with the ``shoal``
ring), with every byte on the network moved by aiohttp instead of shoal's own
HTTP layer:

* an aiohttp server for the HTTP API, ``GET /api?key=K`` (and ``GET /v1/stats``,
  the group's statistics in the shape shoal's API gives them);
* an aiohttp server for the groupcache peer protocol, ``GET
  /_groupcache/{group}/{key}`` answered with a protobuf ``GetResponse``;
* an aiohttp ``ClientSession`` (keep-alive pool, 64 connections per peer, as
  shoal's client) for the fetches from the owners of keys.

It runs on uvloop and, once listening, tunes the garbage collector as ``shoal
serve`` does, so the distance between this node and shoal in
``bench/cluster.py`` is the cost of the I/O layer alone. The group serves the
benchmark's keys through ``server.load_key``.

Run: ``python bench/aiohttp_node.py --api-port A --port P --peers URL,URL,...
[--hot-admission random|always|rate|never]``; it stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from yarl import URL

from server import GROUP, load_key
from shoal import Group, GroupConfig, NotFound, PeerError, PeerUnavailable, ShoalError
from shoal.cli.serve import GC_GEN0_THRESHOLD
from shoal.errors import RemoteLoadError
from shoal.peers import PeerPicker
from shoal.transport import FetchDone, Fetched
from shoal.wire import (
    DEFAULT_BASE_PATH,
    PROTOBUF_CONTENT_TYPE,
    RemoteProtocolError,
    build_peer_path,
    decode_get_response,
    encode_get_response,
    encode_set_request,
    parse_peer_path,
)

__all__ = ["AiohttpPeerClient", "AiohttpTransport", "main", "serve"]

MAX_CONNECTIONS = 64
"""Connections to one peer at most (shoal's client default)."""
_NS = 1_000_000_000
_BASE = DEFAULT_BASE_PATH.encode()


class AiohttpPeerClient:
    """A :class:`shoal.transport.PeerClient` over an aiohttp session shared by all peers.

    Args:
        url: the peer's URL, ``http://host:port``.
        session: the session whose connection pool the client uses.
    """

    def __init__(self, url: str, session: ClientSession) -> None:
        self._url = url
        self._session = session

    @property
    def url(self) -> str:
        """The peer's URL, its identity on the ring."""
        return self._url

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Always None: aiohttp requests are coroutines; fetches go through :meth:`get`."""
        return None

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch ``key`` of ``group`` from the peer.

        Raises:
            NotFound: the peer answered 404 for the key.
            RemoteLoadError: the peer's loader failed (500 or 503).
            PeerUnavailable: the connection failed.
            PeerError: another status, or an undecodable answer.
        """
        target = URL(self._url + build_peer_path(DEFAULT_BASE_PATH, group, key), encoded=True)
        try:
            async with self._session.get(target) as response:
                status = response.status
                body = await response.read()
        except ClientError as exc:
            raise PeerUnavailable(f"{self._url}: {exc}") from exc
        if status != 200:
            text = body[:200].decode("utf-8", "replace").strip()
            if status == 404 and not text.startswith("no such group"):
                raise NotFound(key)
            if status in (500, 503):
                raise RemoteLoadError(f"{self._url}: loading {key!r} failed: {text}")
            raise PeerError(f"{self._url}: answered {status}: {text}")
        try:
            answer = decode_get_response(body)
        except RemoteProtocolError as exc:
            raise PeerError(f"{self._url}: undecodable answer for {key!r}: {exc}") from exc
        expire = answer.expire_ns
        return Fetched(answer.value, expire / _NS if expire else None, answer.minute_qps)

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch several keys, one GET each, concurrently; missing keys are left out."""

        async def one(key: str) -> dict[str, Fetched]:
            try:
                return {key: await self.get(group, key)}
            except NotFound:
                return {}

        found: dict[str, Fetched] = {}
        for part in await asyncio.gather(*(one(key) for key in keys)):
            found.update(part)
        return found

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store ``value`` on the peer (``PUT`` with a SetRequest)."""
        expire_ns = int(expires_at * _NS) if expires_at is not None else None
        body = encode_set_request(group, key, value, expire_ns=expire_ns)
        await self._write("PUT", build_peer_path(DEFAULT_BASE_PATH, group, key), body)

    async def remove_keys(self, group: str, keys: list[str]) -> int | None:
        """Drop keys on the peer, one ``DELETE`` each; the count is not read."""
        for key in keys:
            await self._write("DELETE", build_peer_path(DEFAULT_BASE_PATH, group, key), None)
        return None

    async def invalidate(self, group: str) -> int | None:
        """Not sent: this variant speaks only groupcache's own requests (as to a Go peer)."""
        return None

    async def replica(self, group: str, request: bytes) -> bytes:
        """Replicated groups are not part of this variant.

        Raises:
            PeerError: always.
        """
        raise PeerError(f"{self._url}: the aiohttp variant does not serve replicated groups")

    async def op(self, group: str, request: bytes) -> bytes:
        """Atomic operations are not part of this variant.

        Raises:
            PeerError: always.
        """
        raise PeerError(f"{self._url}: the aiohttp variant does not serve atomic operations")

    async def _write(self, method: str, path: str, body: bytes | None) -> None:
        target = URL(self._url + path, encoded=True)
        try:
            async with self._session.request(method, target, data=body) as response:
                status = response.status
                text = (await response.read())[:200].decode("utf-8", "replace").strip()
        except ClientError as exc:
            raise PeerUnavailable(f"{self._url}: {exc}") from exc
        if status != 200:
            raise PeerError(f"{self._url}: {method} answered {status}: {text}")

    async def aclose(self) -> None:
        """Nothing to do: the transport owns the session."""


class AiohttpTransport:
    """A :class:`shoal.transport.Transport` making :class:`AiohttpPeerClient` objects.

    One ``ClientSession`` holds the keep-alive pool of every peer; it is
    created on the first :meth:`client` call, inside the running event loop.
    """

    def __init__(self) -> None:
        self._session: ClientSession | None = None

    def client(self, url: str) -> AiohttpPeerClient:
        """A client for the peer at ``url``."""
        if self._session is None:
            self._session = ClientSession(
                connector=TCPConnector(limit=0, limit_per_host=MAX_CONNECTIONS),
                timeout=ClientTimeout(total=None),  # the group bounds each fetch
                skip_auto_headers=("User-Agent",),
            )
        return AiohttpPeerClient(url, self._session)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


def api_app(group: Group[bytes]) -> web.Application:
    """The HTTP API: ``GET /api?key=K`` and ``GET /v1/stats``."""

    async def api(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        try:
            group.validate_key(key)
            data = group.cached_bytes(key)
            if data is None:
                data = await group.serve_load(key)
        except ShoalError as exc:
            return web.json_response({"error": str(exc), "code": exc.code}, status=exc.http_status)
        return web.Response(body=data, content_type="application/octet-stream")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"groups": {group.name: group.statistics().as_dict()}})

    app = web.Application()
    app.router.add_get("/api", api)
    app.router.add_get("/v1/stats", stats)
    return app


def peer_app(group: Group[bytes]) -> web.Application:
    """The groupcache peer protocol's reads: ``GET /_groupcache/{group}/{key}``."""

    async def get(request: web.Request) -> web.Response:
        try:
            path = parse_peer_path(request.raw_path.encode(), _BASE)
        except RemoteProtocolError as exc:
            return _text(400, str(exc))
        if path.group != group.name:
            return _text(404, f"no such group: {path.group}")
        try:
            group.validate_key(path.key)
            value, expires_at = await group.serve_peer(path.key)
        except NotFound as exc:
            return _text(404, str(exc))
        except ShoalError as exc:
            return _text(exc.http_status, str(exc))
        except Exception as exc:  # the loader failed: "the owner tried and failed"
            return _text(503, str(exc) or type(exc).__name__)
        expire_ns = None if expires_at is None else round(expires_at * _NS)
        return web.Response(
            body=encode_get_response(value, expire_ns=expire_ns),
            content_type=PROTOBUF_CONTENT_TYPE,
        )

    app = web.Application()
    app.router.add_get(DEFAULT_BASE_PATH + "{tail:.*}", get)
    return app


async def serve(
    api_port: int, port: int, peers: list[str], hot_admission: str, stop: asyncio.Event
) -> None:
    """Run the node on 127.0.0.1 until ``stop`` is set."""
    self_url = f"http://127.0.0.1:{port}"
    group: Group[bytes] = Group(GroupConfig(name=GROUP, hot_admission=hot_admission), load_key)
    group.loop = asyncio.get_running_loop()
    picker = PeerPicker(self_url, AiohttpTransport(), ring="shoal")
    picker.set_peers(peers)
    group.peers = picker
    runners = [web.AppRunner(app, access_log=None) for app in (api_app(group), peer_app(group))]
    try:
        for runner, listen in zip(runners, (api_port, port), strict=True):
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", listen).start()
        # The collector settings of `shoal serve`, so only the I/O layer differs.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await picker.aclose()
        await group.aclose()


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the node on uvloop until SIGTERM or SIGINT."""
    from shoal.node import new_event_loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-port", type=int, required=True, help="HTTP API port")
    parser.add_argument("--port", type=int, required=True, help="peer protocol port")
    parser.add_argument("--peers", required=True, help="every member's URL, comma-separated")
    parser.add_argument(
        "--hot-admission", default="random", choices=("random", "always", "rate", "never")
    )
    args = parser.parse_args(argv)
    peers = [url for url in args.peers.split(",") if url]

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.api_port, args.port, peers, args.hot_admission, stop)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
