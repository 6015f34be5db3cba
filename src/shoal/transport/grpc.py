"""The gRPC transport: peer fetches, shoal's client API and geek-cache's service on grpc.aio.

A node started with ``transport="grpc"`` (``shoal serve --transport grpc``)
speaks gRPC on its peer port instead of the groupcache HTTP protocol, and serves
there, on one :class:`GrpcServer`:

======================================  ==================================================
service (``wire/*.proto``)              what it is for
======================================  ==================================================
``shoal.v1.Peer``: Get, GetMany         node to node: the read path's fetches from a key's
                                        owner (this module's :class:`GrpcTransport`)
``shoal.v1.Cache``: Get, GetMany, Set,  clients: reads run the node's read path; writes
Delete, RemoveKeys, Stats, Cluster      change this node's caches (:class:`shoal.Client`
                                        sends each key to its owner)
``pb.GroupCache``: Get, Delete          geek-cache's service, for its clients and grpcurl
``grpc.health.v1.Health``               SERVING while the node runs; NOT_SERVING once it stops
server reflection (v1alpha)             so grpcurl and other tools need no ``.proto`` files
======================================  ==================================================

**The hop rule.** A request on ``shoal.v1.Peer`` is a hop: the node answers it
from its caches or its own loader (``Group.serve_peer``) and never forwards it,
whatever its ring says, so two nodes whose rings disagree during a membership
change cannot send a request round in circles. Every other service runs the
full read path (a miss goes to the key's owner). Only the peer client uses the
Peer service; that is the marker, as the peer path is for the HTTP protocol.

**Errors** are gRPC status codes, and the trailing metadata entry
``shoal-code`` names the exact error (the ``code`` of the HTTP API's JSON
errors): ``NOT_FOUND`` for a key the loader says does not exist (``not_found``)
or an unknown group (``unknown_group``); ``INVALID_ARGUMENT`` for an
undecodable request (``bad_request``), an empty or non-UTF-8 key
(``invalid_key``) or a bad TTL (``invalid_ttl``); ``RESOURCE_EXHAUSTED`` for a
key or value over the group's limits (``key_too_large``, ``value_too_large``),
more than ``max_batch_keys`` keys (``too_many_keys``), and (gRPC's own answer)
a message over the node's ``max_body_bytes``; ``DEADLINE_EXCEEDED`` when the
loader took longer than ``load_timeout`` (``load_timeout``) or the answer
longer than the node's ``request_timeout`` (``timeout``); ``UNAVAILABLE`` when
the loader failed (``load_failed``) or the node is shutting down (``closed``).
Requests are decoded and checked completely before anything changes, so a bad
request never touches the cache, and no input can crash the server. The checks
are those of the HTTP transport, in the same places: an expiry by
:func:`~shoal.wire.expires_at_from_wire` (past 2262: ``INVALID_ARGUMENT``), a
TTL by the group's write path (``invalid_ttl``), a replica message by
:func:`shoal.replication.serve_replica`; a batch is counted, duplicates included,
before anything else is done with it.

**Clients.** :class:`GrpcPeerClient` (made by :class:`GrpcTransport`) and
:class:`GrpcNodeClient` (``shoal.v1.Cache``, for :class:`shoal.Client`) each
keep a small pool of channels to their node, opened on the first call and
reused for every later one (a gRPC channel multiplexes any number of calls
over one HTTP/2 connection; more channels spread the load over more
connections). Every call carries a deadline. A channel to a node that went
away fails calls at once with ``UNAVAILABLE`` (no waiting for a reconnection)
and keeps trying to reconnect in the background, at least every few seconds.
Foreign errors are translated here, with their cause chained: a failed
connection becomes :class:`~shoal.errors.PeerUnavailable`, a passed deadline
:class:`~shoal.errors.PeerTimeout`, the owner's ``load_failed`` or
``load_timeout`` :class:`~shoal.errors.RemoteLoadError` (the key is not loaded
a second time), ``not_found`` :class:`~shoal.errors.NotFound`, anything else
:class:`~shoal.errors.PeerError`.

Peer URLs keep their ``http://host:port`` form whatever the transport (they
are the nodes' identities on the ring): ``http://`` is a plaintext channel to
``host:port``, ``https://`` a TLS one. Needs the ``shoal[grpc]`` extra.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import urlsplit

from .._gather import gather_merged
from ..errors import (
    BadRequest,
    ConfigError,
    GroupNotFound,
    LoadTimeout,
    MissingExtra,
    NotFound,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    RemoteLoadError,
)
from ..statuses import GRPC_LOAD_FAILED_CODES, STATUSES, raised_for_code, statuses_of

try:
    import grpc
    import grpc.aio
    from google.protobuf.message import DecodeError
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    _PACKAGES = {
        "grpc": "grpcio",
        "grpc_health": "grpcio-health-checking",
        "grpc_reflection": "grpcio-reflection",
    }
    missing = (exc.name or "grpc").split(".")[0]
    raise MissingExtra(_PACKAGES.get(missing, missing), "grpc") from exc

from ..wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ProtocolError,
    expires_at_from_wire,
    to_expire_ns,
)
from ..wire.batch import DEFAULT_MAX_BATCH_KEYS
from ..wire.generated import geekcache_pb2 as geek
from ..wire.generated import shoal_pb2 as pb
from . import FetchDone, Fetched

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from ..serving import ServedGroup, ServedNode
    from ..stats import GroupStats, StoreStats

__all__ = [
    "GrpcServer",
    "GrpcTransport",
    "GrpcPeerClient",
    "GrpcNodeClient",
    "grpc_target",
    "CACHE_SERVICE",
    "PEER_SERVICE",
    "GEEK_SERVICE",
    "CODE_METADATA",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CHANNELS",
]

log = logging.getLogger("shoal.transport.grpc")

CACHE_SERVICE: Final = "shoal.v1.Cache"
"""shoal's client service."""
PEER_SERVICE: Final = "shoal.v1.Peer"
"""shoal's node-to-node service; a request on it is never forwarded."""
GEEK_SERVICE: Final = "pb.GroupCache"
"""geek-cache's service."""
CODE_METADATA: Final = "shoal-code"
"""The trailing metadata key that names the exact error of a failed call."""
DEFAULT_CALL_TIMEOUT: Final = 10.0
"""Seconds a client call may take (its gRPC deadline). The read path gives up on
an owner sooner (``GroupConfig.peer_timeout``), which cancels the call."""
DEFAULT_CHANNELS: Final = 1
"""Channels (HTTP/2 connections) a client keeps to one node."""
SHUTDOWN_GRACE: Final = 5.0
"""Seconds :meth:`GrpcServer.aclose` lets calls in flight finish."""

_MAX_DETAILS: Final = 1000
_MAX_RECONNECT_BACKOFF_MS: Final = 5000
_StatusCode = grpc.StatusCode

_Handler = Callable[[bytes], Awaitable[bytes]]


# ============================================================================ helpers


def grpc_target(url: str) -> tuple[str, bool]:
    """The gRPC target (``host:port``) of a node URL, and whether it needs TLS.

    ``http://host:port`` and ``grpc://host:port`` are plaintext; ``https://`` is
    TLS. Without a port, ``http`` means 80 and ``https`` 443.

    Raises:
        ConfigError: not such a URL, or one with a path, query or user.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in {url!r}") from None
    if parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise ConfigError(f"expected http://host:port or grpc://host:port, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"expected nothing after host:port in {url!r}")
    if port is None:
        if parts.scheme == "grpc":
            raise ConfigError(f"a grpc:// URL needs a port: {url!r}")
        port = 443 if parts.scheme == "https" else 80
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}", parts.scheme == "https"


def _trimmed(text: str) -> str:
    return text if len(text) <= _MAX_DETAILS else text[:_MAX_DETAILS] + "..."


class _Refused(Exception):
    """A request refused before it reached a group: its status and code."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _RequestTimeout(Exception):
    """The answer took longer than the node's ``request_timeout``."""


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and ``shoal-code`` for an exception raised while serving a call."""
    if isinstance(exc, _Refused):
        return exc.status, exc.code
    if isinstance(exc, _RequestTimeout):
        return _StatusCode.DEADLINE_EXCEEDED, "timeout"
    # A wire error is a request with a field out of the range a node can carry.
    row = STATUSES[BadRequest] if isinstance(exc, ProtocolError) else statuses_of(exc)
    return grpc.StatusCode[row.grpc], row.grpc_code


def _code_of(error: grpc.aio.AioRpcError) -> str:
    """The ``shoal-code`` of a failed call ('' when the server sent none)."""
    for key, value in error.trailing_metadata() or ():
        if key == CODE_METADATA:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""


def _peer_error(error: grpc.aio.AioRpcError, url: str, what: str, key: str | None) -> Exception:
    """The shoal error for a failed peer call (see the module docstring)."""
    status, code = error.code(), _code_of(error)
    details = _trimmed(error.details() or status.name)
    if status is _StatusCode.NOT_FOUND and code == "not_found" and key is not None:
        return NotFound(key)
    if code in GRPC_LOAD_FAILED_CODES:  # the owner tried and failed: not loaded again here
        return RemoteLoadError(f"{url}: loading {what} failed: {details}")
    if status is _StatusCode.UNAVAILABLE:
        return PeerUnavailable(f"{url}: {details}")
    if status is _StatusCode.DEADLINE_EXCEEDED:
        return PeerTimeout(f"{url}: {details}")
    return PeerError(f"{url}: {status.name} {code or ''}: {details}".replace("  ", " "))


def _client_error(error: grpc.aio.AioRpcError, url: str, group: str, key: str | None) -> Exception:
    """The shoal error for a failed call of the client service: the error the node
    raised, where the code names one, else the transport's."""
    status, code = error.code(), _code_of(error)
    details = _trimmed(error.details() or status.name)
    if code == "not_found":
        return NotFound(key or "", details)
    if code == "unknown_group":
        return GroupNotFound(group)
    raised = LoadTimeout if code == "timeout" else raised_for_code(code)
    if raised is not None:
        return raised(details)
    if status is _StatusCode.UNAVAILABLE:  # the node is down or closing ("closed")
        return PeerUnavailable(f"{url}: {details}")
    if status is _StatusCode.DEADLINE_EXCEEDED:
        return PeerTimeout(f"{url}: {details}")
    return PeerError(f"{url}: {status.name} {code or ''}: {details}".replace("  ", " "))


# ============================================================================ server


class GrpcServer:
    """Serves every gRPC service of one node (see the module docstring).

    The node starts it on its peer port when ``NodeConfig.transport`` is
    ``grpc``. Messages over ``max_body_bytes`` are refused by gRPC itself
    (``RESOURCE_EXHAUSTED``); the node's ``request_timeout`` bounds each read.

    Args:
        node: the node whose groups are served (groups added later are served too).
        max_batch_keys: most keys one GetMany or RemoveKeys may name.
        shutdown_grace: seconds :meth:`aclose` lets calls in flight finish.

    Raises:
        ConfigError: ``max_batch_keys`` below 1.
    """

    def __init__(
        self,
        node: ServedNode,
        *,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> None:
        if max_batch_keys < 1:
            raise ConfigError(f"max_batch_keys must be at least 1, got {max_batch_keys}")
        self._node = node
        self._groups = node.groups  # a live read-only view
        self._max_message = node.config.max_body_bytes
        self._request_timeout = node.config.request_timeout
        self._max_batch_keys = max_batch_keys
        self._grace = shutdown_grace
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started."""
        return self._address

    @property
    def services(self) -> tuple[str, ...]:
        """The names of the services served (health and reflection included)."""
        return (
            PEER_SERVICE,
            CACHE_SERVICE,
            GEEK_SERVICE,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0 picks a free port); return the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the gRPC server is already started")
        server = grpc.aio.server(
            options=[
                # Never share a port with another process (gRPC's default would).
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", self._max_message),
            ]
        )
        self._register(
            server,
            PEER_SERVICE,
            {
                "Get": self._peer_get,
                "GetMany": self._peer_many,
                "Set": self._peer_set,
                "RemoveKeys": self._peer_remove_keys,
                "Invalidate": self._peer_invalidate,
                "Replica": self._peer_replica,
            },
        )
        self._register(
            server,
            CACHE_SERVICE,
            {
                "Get": self._cache_get,
                "GetMany": self._cache_many,
                "Set": self._cache_set,
                "Delete": self._cache_delete,
                "RemoveKeys": self._cache_remove_keys,
                "Invalidate": self._cache_invalidate,
                "Stats": self._cache_stats,
                "Cluster": self._cache_cluster,
            },
        )
        self._register(server, GEEK_SERVICE, {"Get": self._geek_get, "Delete": self._geek_delete})
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        for name in (PEER_SERVICE, CACHE_SERVICE, GEEK_SERVICE):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(self.services, server)
        bind_host = f"[{host}]" if ":" in host else host
        try:
            bound = server.add_insecure_port(f"{bind_host}:{port}")
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc
        await server.start()
        self._server, self._health = server, checker
        self._address = (host, bound)
        return self._address

    async def aclose(self) -> None:
        """Report NOT_SERVING, stop taking calls, let those in flight finish briefly,
        then cancel the rest. Idempotent."""
        server, checker = self._server, self._health
        self._server = self._health = None
        if checker is not None:
            await checker.enter_graceful_shutdown()
        if server is not None:
            await server.stop(self._grace)

    @staticmethod
    def _register(server: grpc.aio.Server, service: str, methods: Mapping[str, _Handler]) -> None:
        handlers = {name: _method(fn) for name, fn in methods.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)

    # -- input ---------------------------------------------------------------------

    @staticmethod
    def _decode(message: Any, raw: bytes) -> Any:
        try:
            return message.FromString(raw)
        except (DecodeError, ValueError) as exc:
            raise _Refused(
                _StatusCode.INVALID_ARGUMENT,
                "bad_request",
                f"undecodable {message.DESCRIPTOR.full_name}: {exc}",
            ) from exc

    def _group(self, name: str) -> ServedGroup:
        group = self._groups.get(name)
        if group is None:
            raise GroupNotFound(name)
        return group

    def _keys(self, group: ServedGroup, keys: Iterable[str]) -> list[str]:
        """The distinct keys of a batch, every one checked before anything happens.

        The cap counts the keys as sent, duplicates included: a call of a million
        copies of one key is refused before any work on them."""
        names = list(keys)
        if len(names) > self._max_batch_keys:
            raise _Refused(
                _StatusCode.RESOURCE_EXHAUSTED,
                "too_many_keys",
                f"{len(names)} keys in one call; at most {self._max_batch_keys}",
            )
        unique = list(dict.fromkeys(names))
        for key in unique:
            group.validate_key(key)
        return unique

    # -- shoal.v1.Peer: never forwarded ------------------------------------------------

    async def _peer_get(self, raw: bytes) -> bytes:
        request = self._decode(pb.GetRequest, raw)
        group = self._group(request.group)
        key = request.key
        group.validate_key(key)
        value, expires_at = await group.serve_peer(key)
        return pb.PeerValue(value=value, expire=to_expire_ns(expires_at) or 0).SerializeToString()

    async def _peer_many(self, raw: bytes) -> bytes:
        request = self._decode(pb.GetManyRequest, raw)
        group = self._group(request.group)
        keys = self._keys(group, request.keys)
        # Every key loads concurrently, in its own flight; a key the loader says does
        # not exist is left out; any other failure fails the call, as the first
        # failing Get of the same keys would.
        outcomes = await asyncio.gather(
            *(group.serve_peer(key) for key in keys), return_exceptions=True
        )
        reply = pb.PeerValues()
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            value, expires_at = outcome
            item = reply.values[key]
            item.value = value
            item.expire = to_expire_ns(expires_at) or 0
        return reply.SerializeToString()

    async def _peer_set(self, raw: bytes) -> bytes:
        request = self._decode(pb.PeerSetRequest, raw)
        group = self._group(request.group)
        expires_at = expires_at_from_wire(request.expire, "PeerSetRequest")
        await group.serve_peer_set(request.key, request.value, expires_at=expires_at)
        return b""  # SetResponse has no fields

    async def _peer_remove_keys(self, raw: bytes) -> bytes:
        request = self._decode(pb.RemoveKeysRequest, raw)
        group = self._group(request.group)
        removed = await group.serve_peer_remove(self._keys(group, request.keys))
        return pb.RemoveKeysResponse(removed=removed).SerializeToString()

    async def _peer_invalidate(self, raw: bytes) -> bytes:
        request = self._decode(pb.InvalidateRequest, raw)
        removed = await self._group(request.group).serve_peer_invalidate()
        return pb.InvalidateResponse(removed=removed).SerializeToString()

    async def _peer_replica(self, raw: bytes) -> bytes:
        return await self._node.serve_replica(raw)

    # -- shoal.v1.Cache ------------------------------------------------------------------

    async def _read(self, group: ServedGroup, key: str) -> bytes:
        """A client's read of ``key``: the node's full read path, as the HTTP API's."""
        group.validate_key(key)
        data = group.serve_cached(key)  # raises NotFound for a cached miss
        if data is not None:
            return data
        deadline = asyncio.timeout(self._request_timeout)
        try:
            async with deadline:
                # serve_load, not get: serve_cached has counted this get already.
                return await group.serve_load(key)
        except TimeoutError as exc:
            if deadline.expired():
                raise _RequestTimeout(
                    f"no answer within the node's request_timeout ({self._request_timeout}s)"
                ) from exc
            raise

    async def _cache_get(self, raw: bytes) -> bytes:
        request = self._decode(pb.GetRequest, raw)
        value = await self._read(self._group(request.group), request.key)
        return pb.GetResponse(value=value).SerializeToString()

    async def _cache_many(self, raw: bytes) -> bytes:
        request = self._decode(pb.GetManyRequest, raw)
        group = self._group(request.group)
        keys = self._keys(group, request.keys)
        for _ in keys:
            group.serve_count()
        deadline = asyncio.timeout(self._request_timeout)
        try:
            async with deadline:
                found = await group.get_many_bytes(keys)
        except TimeoutError as exc:
            if deadline.expired():
                raise _RequestTimeout(
                    f"no answer within the node's request_timeout ({self._request_timeout}s)"
                ) from exc
            raise
        return pb.GetManyResponse(values=found).SerializeToString()

    async def _cache_set(self, raw: bytes) -> bytes:
        request = self._decode(pb.SetRequest, raw)
        group = self._group(request.group)
        ttl = request.ttl if request.HasField("ttl") else None
        await group.set_bytes(request.key, request.value, ttl)
        return b""  # SetResponse has no fields: its encoding is empty

    async def _cache_delete(self, raw: bytes) -> bytes:
        request = self._decode(pb.DeleteRequest, raw)
        deleted = await self._group(request.group).delete(request.key)
        return pb.DeleteResponse(deleted=deleted).SerializeToString()

    async def _cache_remove_keys(self, raw: bytes) -> bytes:
        request = self._decode(pb.RemoveKeysRequest, raw)
        group = self._group(request.group)
        removed = await group.remove_keys(self._keys(group, request.keys))
        return pb.RemoveKeysResponse(removed=removed).SerializeToString()

    async def _cache_invalidate(self, raw: bytes) -> bytes:
        request = self._decode(pb.InvalidateRequest, raw)
        removed = await self._group(request.group).invalidate_group()
        return pb.InvalidateResponse(removed=removed).SerializeToString()

    async def _cache_stats(self, raw: bytes) -> bytes:
        request = self._decode(pb.StatsRequest, raw)
        if request.group:
            groups = {request.group: self._group(request.group)}
        else:
            groups = dict(self._groups)
        reply = pb.StatsResponse()
        for name, group in groups.items():
            _fill_group_stats(reply.groups[name], group.statistics())
        return reply.SerializeToString()

    async def _cache_cluster(self, raw: bytes) -> bytes:
        request = self._decode(pb.ClusterRequest, raw)
        info = self._node.cluster_info(request.key or None)
        reply = pb.ClusterResponse(
            self=info["self"] or "",
            peer_address=info["peer_address"] or "",
            base_path=info["base_path"],
            owner=info.get("owner") or "",
            transport=info.get("transport", "grpc"),
        )
        reply.ring.flavour = info["ring"]["flavour"]
        reply.ring.replicas = info["ring"]["replicas"]
        reply.ring.probes = info["ring"]["probes"]
        for member in info["members"]:
            reply.members.add(
                url=member["url"],
                self=member["self"],
                share=member["share"],
                backing_off=member["backing_off"],
            )
        return reply.SerializeToString()

    # -- pb.GroupCache (geek-cache) -------------------------------------------------------

    async def _geek_get(self, raw: bytes) -> bytes:
        request = self._decode(geek.Request, raw)
        value = await self._read(self._group(request.group), request.key)
        return geek.ResponseForGet(value=value).SerializeToString()

    async def _geek_delete(self, raw: bytes) -> bytes:
        request = self._decode(geek.Request, raw)
        deleted = await self._group(request.group).delete(request.key)
        return geek.ResponseForDelete(value=deleted).SerializeToString()


def _method(fn: _Handler) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A unary method on raw bytes (each handler decodes its own request, so that
    malformed input is INVALID_ARGUMENT, not gRPC's INTERNAL) whose exceptions
    become statuses."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            return await fn(raw)
        except Exception as exc:
            await _abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(handle)


async def _abort(context: grpc.aio.ServicerContext[bytes, bytes], exc: Exception) -> NoReturn:
    status, code = _status_of(exc)
    if status is _StatusCode.UNAVAILABLE and code == "load_failed":
        log.debug("serving a gRPC call failed: %r", exc)
    details = _trimmed(str(exc) or type(exc).__name__)
    await context.abort(status, details, ((CODE_METADATA, code),))


def _fill_store_stats(target: pb.StoreStats, stats: StoreStats) -> None:
    target.bytes = stats.bytes
    target.items = stats.items
    target.gets = stats.gets
    target.hits = stats.hits
    target.evictions = stats.evictions
    target.expirations = stats.expirations
    if stats.capacity_bytes is not None:
        target.capacity_bytes = stats.capacity_bytes
    if stats.capacity_entries is not None:
        target.capacity_entries = stats.capacity_entries


def _fill_group_stats(target: pb.GroupStats, stats: GroupStats) -> None:
    target.name = stats.name
    target.gets = stats.gets
    target.hits = stats.hits
    target.loads = stats.loads
    target.loads_deduped = stats.loads_deduped
    target.local_loads = stats.local_loads
    target.local_load_errors = stats.local_load_errors
    target.peer_loads = stats.peer_loads
    target.peer_errors = stats.peer_errors
    target.server_requests = stats.server_requests
    target.duplicate_loads = stats.duplicate_loads
    target.oversized_values = stats.oversized_values
    _fill_store_stats(target.main, stats.main)
    _fill_store_stats(target.hot, stats.hot)
    target.mode = stats.mode
    if stats.replication is not None:
        target.replication.update(stats.replication)


def _store_stats_dict(stats: pb.StoreStats) -> dict[str, Any]:
    return {
        "bytes": stats.bytes,
        "items": stats.items,
        "gets": stats.gets,
        "hits": stats.hits,
        "evictions": stats.evictions,
        "expirations": stats.expirations,
        "capacity_bytes": stats.capacity_bytes if stats.HasField("capacity_bytes") else None,
        "capacity_entries": (
            stats.capacity_entries if stats.HasField("capacity_entries") else None
        ),
    }


# ============================================================================ clients


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")


class _Channels:
    """A few channels to one node, opened on first use and taken in turn."""

    def __init__(
        self,
        target: str,
        *,
        tls: bool,
        credentials: grpc.ChannelCredentials | None,
        size: int,
        max_message_bytes: int,
    ) -> None:
        self._target = target
        self._credentials = (
            credentials
            if credentials is not None
            else (grpc.ssl_channel_credentials() if tls else None)
        )
        self._size = size
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A node that went away is tried again every few seconds at least, so
            # one that comes back is used again soon (gRPC's default: up to 2 min).
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
        ]
        if size > 1:
            # Channels with the same options would share one connection.
            self._options.append(("grpc.use_local_subchannel_pool", 1))
        self._channels: list[grpc.aio.Channel] = []
        self._methods: list[dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]] = []
        self._turn = 0
        self.closed = False

    def method(self, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """The callable of ``path`` (``/service/Method``) on the next channel."""
        if self.closed:
            raise grpc.aio.UsageError("the channels are closed")
        if len(self._channels) < self._size:
            # Opened inside the event loop, on the first calls.
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(self._target, options=self._options)
            else:
                channel = grpc.aio.secure_channel(
                    self._target, self._credentials, options=self._options
                )
            self._channels.append(channel)
            self._methods.append({})
            index = len(self._channels) - 1
        else:
            index = self._turn = (self._turn + 1) % self._size
        methods = self._methods[index]
        method = methods.get(path)
        if method is None:
            # A registered method: the server finds its handler without a lookup by
            # name (the stubs do not know the argument, which generated code also passes).
            method = methods[path] = self._channels[index].unary_unary(
                path,
                _registered_method=True,  # type: ignore[call-arg]
            )
        return method

    @property
    def open(self) -> int:
        """Channels opened so far."""
        return len(self._channels)

    async def aclose(self) -> None:
        self.closed = True
        channels, self._channels, self._methods = self._channels, [], []
        for channel in channels:
            await channel.close(None)


class _GrpcClient:
    """What both clients share: a node URL, its channels and a deadline per call."""

    _service: str = ""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        channels: int = DEFAULT_CHANNELS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        credentials: grpc.ChannelCredentials | None = None,
        on_close: Callable[[Any], None] | None = None,
    ) -> None:
        _check_positive(
            timeout=timeout,
            channels=channels,
            max_message_bytes=max_message_bytes,
            max_batch_keys=max_batch_keys,
        )
        target, tls = grpc_target(url)
        self._url = url
        self._timeout = timeout
        self._max_batch_keys = max_batch_keys
        self._channels = _Channels(
            target,
            tls=tls,
            credentials=credentials,
            size=channels,
            max_message_bytes=max_message_bytes,
        )
        self._on_close = on_close
        self._paths: dict[str, str] = {}
        self.requests = 0
        """Calls begun."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._url}>"

    @property
    def url(self) -> str:
        """The node's URL."""
        return self._url

    @property
    def channels_open(self) -> int:
        """Channels opened so far (they are kept until :meth:`aclose`)."""
        return self._channels.open

    async def _call(self, method: str, request: Message | bytes) -> bytes:
        """One call (a message, or one serialized already); raises
        ``grpc.aio.AioRpcError`` for the caller to translate."""
        self.requests += 1
        path = self._paths.get(method)
        if path is None:
            path = self._paths[method] = f"/{self._service}/{method}"
        try:
            callable_ = self._channels.method(path)
        except grpc.aio.UsageError as exc:
            raise PeerUnavailable(f"{self._url}: the client is closed") from exc
        try:
            raw = request if isinstance(request, bytes) else request.SerializeToString()
            return await callable_(raw, timeout=self._timeout)
        except grpc.aio.UsageError as exc:  # closed while the call was on its way
            raise PeerUnavailable(f"{self._url}: the client is closed") from exc

    def _chunks(self, keys: list[str]) -> list[list[str]]:
        size = self._max_batch_keys
        return [keys[i : i + size] for i in range(0, len(keys), size)]

    async def aclose(self) -> None:
        """Close the channels; calls in flight fail with PeerUnavailable. Idempotent."""
        if self._channels.closed:
            return
        await self._channels.aclose()
        if self._on_close is not None:
            self._on_close(self)


class GrpcPeerClient(_GrpcClient):
    """Fetches keys from one peer over ``shoal.v1.Peer`` (a :class:`~shoal.transport.PeerClient`).

    Made by :meth:`GrpcTransport.client`; safe to share between the tasks of one
    event loop.

    Args:
        url: the peer's URL, ``http://host:port`` (plaintext) or ``https://`` (TLS).
        timeout: the deadline of every call, in seconds.
        channels: channels (connections) to the peer.
        max_message_bytes: largest message sent or accepted.
        max_batch_keys: keys per GetMany call; more are split into several calls.
        credentials: TLS credentials for an ``https://`` URL (default: the system's roots).
        on_close: called once by :meth:`aclose`.

    Raises:
        ConfigError: a bad URL or a value out of range.
    """

    _service = PEER_SERVICE

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Always None: gRPC calls are coroutines; fetches go through :meth:`get`."""
        return None

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch ``key`` of ``group`` from the peer, which loads it if needed.

        Raises:
            NotFound: the owner says the key does not exist.
            RemoteLoadError: the owner's loader failed.
            PeerUnavailable: the peer cannot be reached (or is shutting down).
            PeerTimeout: no answer before the deadline.
            PeerError: any other failure (a bad answer, an unknown group).
        """
        try:
            raw = await self._call("Get", pb.GetRequest(group=group, key=key))
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, self._url, repr(key), key) from exc
        try:
            reply = pb.PeerValue.FromString(raw)
        except DecodeError as exc:
            raise PeerError(f"{self._url}: undecodable answer for {key!r}: {exc}") from exc
        return Fetched(reply.value, self._expiry(reply.expire), reply.minute_qps or None)

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch several keys, ``max_batch_keys`` per call; keys the peer lacks are left out.

        Raises:
            The errors of :meth:`get` except NotFound (the first one, once every
            call has finished).
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        return await gather_merged(self._get_batch(group, chunk) for chunk in self._chunks(wanted))

    async def _get_batch(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        try:
            raw = await self._call("GetMany", pb.GetManyRequest(group=group, keys=keys))
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, self._url, f"{len(keys)} keys", None) from exc
        try:
            reply = pb.PeerValues.FromString(raw)
        except DecodeError as exc:
            raise PeerError(f"{self._url}: undecodable batch answer: {exc}") from exc
        asked = set(keys)
        return {
            key: Fetched(item.value, self._expiry(item.expire))
            for key, item in reply.values.items()
            if key in asked  # never cache what was not asked for
        }

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store ``value`` in the peer's caches (``Peer.Set``; the peer forwards nothing).

        Raises:
            PeerUnavailable, PeerTimeout, PeerError: as :meth:`get`.
        """
        request = pb.PeerSetRequest(
            group=group, key=key, value=value, expire=to_expire_ns(expires_at) or 0
        )
        await self._write("Set", request, f"set {key!r}")

    async def remove_keys(self, group: str, keys: list[str]) -> int:
        """Drop keys from the peer's caches (``Peer.RemoveKeys``); how many it had."""
        removed = 0
        for chunk in self._chunks(list(dict.fromkeys(keys))):
            request = pb.RemoveKeysRequest(group=group, keys=chunk)
            raw = await self._write("RemoveKeys", request, f"remove {len(chunk)} keys")
            removed += self._reply(pb.RemoveKeysResponse, raw).removed
        return removed

    async def invalidate(self, group: str) -> int:
        """Drop every key of ``group`` on the peer (``Peer.Invalidate``); how many it had."""
        raw = await self._write("Invalidate", pb.InvalidateRequest(group=group), "invalidate")
        return int(self._reply(pb.InvalidateResponse, raw).removed)

    async def replica(self, group: str, request: bytes) -> bytes:
        """One exchange of a replicated group (``Peer.Replica``)."""
        return await self._write("Replica", request, "replica exchange")

    async def _write(self, method: str, request: Message | bytes, what: str) -> bytes:
        try:
            return await self._call(method, request)
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, self._url, what, None) from exc

    def _reply(self, message: Any, raw: bytes) -> Any:
        try:
            return message.FromString(raw)
        except DecodeError as exc:
            raise PeerError(f"{self._url}: undecodable answer: {exc}") from exc

    def _expiry(self, expire_ns: int) -> float | None:
        """The expiry of a value the peer sent, in Unix seconds (None: never)."""
        try:
            return expires_at_from_wire(expire_ns, "PeerValue")
        except ProtocolError as exc:
            raise PeerError(f"{self._url}: {exc}") from exc


class GrpcTransport:
    """Makes :class:`GrpcPeerClient` objects that share one configuration.

    Args:
        timeout: the deadline of every call, in seconds. Default 10 (the read path
            gives up sooner, after ``GroupConfig.peer_timeout``, and cancels the call).
        channels: channels (HTTP/2 connections) per peer. Default 1.
        max_message_bytes: largest message sent or accepted. Default 64 MiB.
        max_batch_keys: keys per GetMany call. Default 1000 (the server's limit).
        credentials: TLS credentials for ``https://`` peers; default the system's roots.

    Raises:
        ConfigError: a value out of range.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        channels: int = DEFAULT_CHANNELS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "channels": channels,
            "max_message_bytes": max_message_bytes,
            "max_batch_keys": max_batch_keys,
            "credentials": credentials,
        }
        _check_positive(
            timeout=timeout,
            channels=channels,
            max_message_bytes=max_message_bytes,
            max_batch_keys=max_batch_keys,
        )
        self._clients: set[GrpcPeerClient] = set()

    def client(self, url: str) -> GrpcPeerClient:
        """A client for the peer at ``url`` (its channel opens on the first call).

        Raises:
            ConfigError: ``url`` is not an ``http(s)://host[:port]`` URL.
        """
        client = GrpcPeerClient(url, on_close=self._clients.discard, **self._options)
        self._clients.add(client)
        return client

    async def aclose(self) -> None:
        """Close every client this transport made that is still open."""
        for client in list(self._clients):
            await client.aclose()


class GrpcNodeClient(_GrpcClient):
    """Calls ``shoal.v1.Cache`` on one node: what :class:`shoal.Client` uses over gRPC.

    Takes the same arguments as :class:`GrpcPeerClient`; the URL may also be
    ``grpc://host:port``. Errors come back as the node raised them
    (:class:`~shoal.errors.NotFound`, :class:`~shoal.errors.GroupNotFound`,
    :class:`~shoal.errors.InvalidKey`, ...); a node that cannot be reached is
    :class:`~shoal.errors.PeerUnavailable`, a passed deadline
    :class:`~shoal.errors.PeerTimeout`.
    """

    _service = CACHE_SERVICE

    async def _ask(self, method: str, request: Message, group: str, key: str | None) -> bytes:
        try:
            return await self._call(method, request)
        except grpc.aio.AioRpcError as exc:
            raise _client_error(exc, self._url, group, key) from exc

    async def get(self, group: str, key: str) -> bytes:
        """The value of ``key`` (the node loads it through its read path on a miss)."""
        raw = await self._ask("Get", pb.GetRequest(group=group, key=key), group, key)
        return bytes(pb.GetResponse.FromString(raw).value)

    async def get_many(self, group: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist, ``max_batch_keys`` keys per call."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        for chunk in self._chunks(wanted):
            raw = await self._ask(
                "GetMany", pb.GetManyRequest(group=group, keys=chunk), group, None
            )
            found.update(pb.GetManyResponse.FromString(raw).values)
        return {key: found[key] for key in wanted if key in found}

    async def set(self, group: str, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` in the node's cache (the group's TTL unless
        ``ttl`` is given)."""
        request = pb.SetRequest(group=group, key=key, value=value)
        if ttl is not None:
            request.ttl = ttl
        await self._ask("Set", request, group, key)

    async def delete(self, group: str, key: str) -> bool:
        """Drop ``key`` from every member's caches (the node's write path); return
        whether its owner had it."""
        raw = await self._ask("Delete", pb.DeleteRequest(group=group, key=key), group, key)
        return pb.DeleteResponse.FromString(raw).deleted

    async def remove_keys(self, group: str, keys: Iterable[str]) -> int:
        """Drop the keys from every member's caches; return how many their owners had."""
        removed = 0
        for chunk in self._chunks(list(dict.fromkeys(keys))):
            request = pb.RemoveKeysRequest(group=group, keys=chunk)
            raw = await self._ask("RemoveKeys", request, group, None)
            removed += pb.RemoveKeysResponse.FromString(raw).removed
        return removed

    async def invalidate(self, group: str) -> int:
        """Drop every key of ``group`` on every member; return how many this node had."""
        raw = await self._ask("Invalidate", pb.InvalidateRequest(group=group), group, None)
        return int(pb.InvalidateResponse.FromString(raw).removed)

    async def stats(self, group: str = "") -> dict[str, dict[str, Any]]:
        """Statistics by group name, as ``GET /v1/stats`` gives them (every group
        when ``group`` is empty)."""
        raw = await self._ask("Stats", pb.StatsRequest(group=group), group, None)
        result: dict[str, dict[str, Any]] = {}
        for name, stats in pb.StatsResponse.FromString(raw).groups.items():
            result[name] = {
                "name": stats.name,
                "gets": stats.gets,
                "hits": stats.hits,
                "loads": stats.loads,
                "loads_deduped": stats.loads_deduped,
                "local_loads": stats.local_loads,
                "local_load_errors": stats.local_load_errors,
                "peer_loads": stats.peer_loads,
                "peer_errors": stats.peer_errors,
                "server_requests": stats.server_requests,
                "main": _store_stats_dict(stats.main),
                "hot": _store_stats_dict(stats.hot),
                "mode": stats.mode or "partitioned",
                "replication": dict(stats.replication) if stats.mode == "replicated" else None,
                "duplicate_loads": stats.duplicate_loads,
                "oversized_values": stats.oversized_values,
            }
        return result

    async def cluster(self, key: str | None = None) -> dict[str, Any]:
        """The cluster as the node sees it, in the shape of ``GET /v1/cluster``
        (plus ``transport``)."""
        raw = await self._ask("Cluster", pb.ClusterRequest(key=key or ""), "", None)
        reply = pb.ClusterResponse.FromString(raw)
        info: dict[str, Any] = {
            "self": reply.self or None,
            "peer_address": reply.peer_address or None,
            "base_path": reply.base_path,
            "transport": reply.transport,
            "ring": {
                "flavour": reply.ring.flavour,
                "replicas": reply.ring.replicas,
                "probes": reply.ring.probes,
            },
            "members": [
                {"url": m.url, "self": m.self, "share": m.share, "backing_off": m.backing_off}
                for m in reply.members
            ],
        }
        if key is not None:
            info["owner"] = reply.owner or None
        return info
