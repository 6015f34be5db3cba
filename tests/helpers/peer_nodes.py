"""In-process nodes on real sockets for tests: a node serving the captured group over
the peer protocol (HTTP or gRPC), clusters of them, a TCP relay that counts
connections, and a scriptable fake HTTP peer for answers a real server never gives.

Every node listens on port 0 of 127.0.0.1; a cluster's members are set once every
port is known. Every node, relay and fake peer is stopped when its block ends."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal import Group, Node, NodeConfig, NotFound
from shoal.store import Clock

GROUP = "scores"
"""The group of the Go captures."""


def value(key: str) -> bytes:
    """What the captured Go nodes' loader returned: ``(hex(sha256(K)) * 2)[:100]``."""
    return (hashlib.sha256(key.encode()).hexdigest() * 2)[:100].encode()


class ValueLoader:
    """Loads :func:`value` for any key; ``missing:*`` keys do not exist, ``fail:*`` keys
    make it raise. Counts calls; with a gate, every load waits for it first."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.reached: dict[int, asyncio.Event] = {}

    def waiting(self, n: int) -> asyncio.Event:
        """An event set once ``n`` loads are in flight at the same time."""
        return self.reached.setdefault(n, asyncio.Event())

    async def __call__(self, key: str) -> bytes:
        self.calls.append(key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for n, event in self.reached.items():
            if self.in_flight >= n:
                event.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if key.startswith("missing:"):
                raise NotFound(key)
            if key.startswith("fail:"):
                raise RuntimeError(f"database down while loading {key}")
            return value(key)
        finally:
            self.in_flight -= 1


@dataclass
class Served:
    """A node with a peer server and the group ``scores``."""

    node: Node
    group: Group[Any]
    loader: ValueLoader
    url: str

    @property
    def port(self) -> int:
        address = self.node.peer_address
        assert address is not None
        return address[1]


@asynccontextmanager
async def serving(
    *,
    transport: str = "http",
    clock: Clock | None = None,
    gate: asyncio.Event | None = None,
    config: dict[str, Any] | None = None,
    node_options: dict[str, Any] | None = None,
    **group_options: Any,
) -> AsyncIterator[Served]:
    """A started node on 127.0.0.1 (port 0) serving ``scores`` over the peer protocol of
    ``transport`` (``http`` or ``grpc``); ``node_options`` go to :class:`Node`."""
    kwargs: dict[str, Any] = dict(node_options or {})
    if clock is not None:
        kwargs["clock"] = clock
    node = Node(NodeConfig(port=0, transport=transport, **(config or {})), **kwargs)
    loader = ValueLoader(gate)
    group = node.group(GROUP, loader, **group_options)
    async with node:
        assert node.self_url is not None
        yield Served(node, group, loader, node.self_url)


@asynccontextmanager
async def peer_cluster(
    n: int = 3, *, transport: str = "http", **options: Any
) -> AsyncIterator[list[Served]]:
    """``n`` started nodes (:func:`serving` with ``options``) that know each other over
    ``transport`` (members set once every port is known)."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(serving(transport=transport, **options))
            for _ in range(n)
        ]
        urls = [s.url for s in nodes]
        for served in nodes:
            served.node.set_peers(urls)
        yield nodes


def http_cluster(n: int = 3, **options: Any) -> AbstractAsyncContextManager[list[Served]]:
    """:func:`peer_cluster` over HTTP."""
    return peer_cluster(n, transport="http", **options)


def grpc_cluster(n: int = 3, **options: Any) -> AbstractAsyncContextManager[list[Served]]:
    """:func:`peer_cluster` over gRPC."""
    return peer_cluster(n, transport="grpc", **options)


def owned_by(nodes: list[Served], index: int, prefix: str = "k") -> str:
    """A key whose owner is ``nodes[index]``."""
    picker = nodes[0].node.peers
    assert picker is not None
    return next(
        f"{prefix}{i}" for i in range(10_000) if picker.owner(f"{prefix}{i}") == nodes[index].url
    )


def cached(nodes: list[Served], key: str, group: str = GROUP) -> list[bytes | None]:
    """What each node holds for ``key`` (main or hot cache), without loading."""
    found: list[bytes | None] = []
    for served in nodes:
        try:
            found.append(served.node.groups[group].cached_bytes(key))
        except NotFound:
            found.append(None)
    return found


def loads(nodes: list[Served]) -> int:
    """Loader calls on every node."""
    return sum(len(s.loader.calls) for s in nodes)


async def warm(nodes: list[Served], *keys: str) -> None:
    """Read ``keys`` on every node: the owner loads each, the others keep hot copies
    (the nodes run with ``hot_admission="always"``)."""
    for served in nodes:
        for key in keys:
            assert await served.group.get(key) == value(key)
    for key in keys:
        assert cached(nodes, key) == [value(key)] * len(nodes)


async def _stop(writers: set[asyncio.StreamWriter], tasks: set[asyncio.Task[None]]) -> None:
    """End a test server's connection handlers: drop their connections, so each sees
    the end of its stream and returns; cancel only those still running after that.

    (A cancelled handler of ``asyncio.start_server`` is logged as an error by the
    streams machinery, which is noise in a test's output.)
    """
    for writer in list(writers):
        writer.transport.abort()
    if tasks:
        _, pending = await asyncio.wait(list(tasks), timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class CountingProxy:
    """A TCP relay in front of a server: counts the connections it accepts (the
    server's view of how many connections a client opened)."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.port = 0

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await _stop(self._writers, self._tasks)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers.add(up_writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                await _close(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


# ----------------------------------------------------------------- the fake peer


def answer(
    status: int = 200,
    body: bytes = b"",
    *,
    reason: str = "X",
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of an HTTP/1.1 answer (Content-Length added unless given)."""
    fields = {"Content-Length": str(len(body))}
    fields.update(headers or {})
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


@dataclass
class Reply:
    """What the fake peer does with one request."""

    data: bytes = b""
    """Bytes to send (maybe a partial answer, maybe garbage)."""
    then: Literal["keep", "hang", "close"] = "keep"
    """``keep``: read the next request; ``hang``: send nothing more and wait for the
    client to close; ``close``: close the connection."""


Script = Callable[["Received"], Awaitable[Reply]]


@dataclass
class Received:
    """One request as the fake peer read it."""

    head: bytes
    body: bytes
    connection: int
    """Which accepted connection (1, 2, ...) carried it."""
    index: int
    """Its number among all requests (1, 2, ...)."""

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]


@dataclass
class FakePeer:
    """A raw HTTP server whose answers a test scripts, request by request."""

    script: Script
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    seen: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    """Each request, as soon as it is read."""
    sent: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    """Each request, once its reply's bytes have been written."""
    closed_by_client: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    """Connection numbers, as the client closes them."""
    tls: ssl.SSLContext | None = None
    """Serve HTTPS with this context."""
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakePeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await _stop(self._writers, self._tasks)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client.put_nowait(number)
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, raw = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(raw)
                body = await reader.readexactly(length) if length else b""
                received = Received(head, body, number, len(self.requests) + 1)
                self.requests.append(received)
                self.seen.put_nowait(received)
                reply = await self.script(received)
                writer.write(reply.data)
                await writer.drain()
                self.sent.put_nowait(received)
                if reply.then == "close":
                    return
                if reply.then == "hang":
                    with contextlib.suppress(ConnectionError):
                        while await reader.read(65536):
                            pass
                    self.closed_by_client.put_nowait(number)
                    return
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            await _close(writer)


def replies(*items: Reply) -> Script:
    """A script that gives ``items`` in turn (the last one for every later request)."""
    queue = list(items)

    async def script(request: Received) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return script
