"""The gRPC server of a node: the Peer, Cache, geek-cache and health services.

See :mod:`shoal.transport.grpc` for the services, the hop rule and the errors.
Rules: a handler decodes its own request from raw bytes (malformed input is
``INVALID_ARGUMENT``, never gRPC's ``INTERNAL``) and checks it completely
before a group is touched; every exception becomes a status through the one
table of :mod:`shoal.statuses`; a group is reached only as a
:class:`~shoal.serving.ServedGroup`.

With API tokens, every call of ``shoal.v1.Cache`` needs the metadata
``authorization: Bearer TOKEN`` of a role that allows it (:data:`CACHE_ROLES`),
checked before the request is decoded: no token, an unknown or a malformed one
is ``UNAUTHENTICATED``, a role that does not allow the call
``PERMISSION_DENIED``, each counted as ``port="grpc"``. The node-to-node
services (``shoal.v1.Peer``, geek-cache's) take no token: mutual TLS protects
the peer port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ..errors import BadRequest, ConfigError, GroupNotFound, NotFound
from ..statuses import STATUSES, statuses_of
from ..tokens import ApiTokens
from ..wire import ProtocolError, expires_at_from_wire, to_expire_ns
from ..wire.batch import DEFAULT_MAX_BATCH_KEYS
from ..wire.generated import geekcache_pb2 as geek
from ..wire.generated import shoal_pb2 as pb
from ._grpc import (
    CACHE_SERVICE,
    CODE_METADATA,
    GEEK_SERVICE,
    PEER_SERVICE,
    DecodeError,
    grpc,
    health,
    health_pb2,
    health_pb2_grpc,
    reflection,
    trimmed,
)

if TYPE_CHECKING:
    from ..serving import ServedGroup, ServedNode
    from ..stats import GroupStats, StoreStats
    from ..tls import NodeTls, PemFiles

__all__ = ["GrpcServer", "SHUTDOWN_GRACE", "CACHE_ROLES"]

log = logging.getLogger("shoal.transport.grpc")

SHUTDOWN_GRACE: Final = 5.0
"""Seconds :meth:`GrpcServer.aclose` lets calls in flight finish."""

_StatusCode = grpc.StatusCode

CACHE_ROLES: Final = {
    "Get": "read",
    "GetMany": "read",
    "Stats": "read",
    "Cluster": "read",
    "Set": "write",
    "Delete": "write",
    "RemoveKeys": "write",
    "Invalidate": "admin",
}
"""The role each ``shoal.v1.Cache`` method needs when the node has API tokens."""

# A refused token: (status, shoal-code, details), by reason (see shoal.tokens.REASONS).
_REFUSALS: Final = {
    "missing": (
        _StatusCode.UNAUTHENTICATED,
        "unauthorized",
        "this node needs an API token: metadata authorization: Bearer TOKEN",
    ),
    "unknown": (_StatusCode.UNAUTHENTICATED, "unauthorized", "the API token is not valid"),
    "malformed": (
        _StatusCode.UNAUTHENTICATED,
        "unauthorized",
        "the authorization metadata must be one 'Bearer TOKEN'",
    ),
    "forbidden": (
        _StatusCode.PERMISSION_DENIED,
        "forbidden",
        "the API token's role does not allow this call",
    ),
}

_Handler = Callable[[bytes], Awaitable[bytes]]

CallSpan = Callable[[str, Any], AbstractContextManager[Any]]
"""Opens a span around one call: given the method's path and the call's metadata; what
it gives is told the call's status code at the end (``finished(code)``)."""


class _Refused(Exception):
    """A request refused before it reached a group: its status and code."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _RequestTimeout(Exception):
    """The answer took longer than the node's ``request_timeout``."""


def _certificate_configuration(pem: PemFiles) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)], pem.ca)


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and ``shoal-code`` for an exception raised while serving a call."""
    if isinstance(exc, _Refused):
        return exc.status, exc.code
    if isinstance(exc, _RequestTimeout):
        return _StatusCode.DEADLINE_EXCEEDED, "timeout"
    # A wire error is a request with a field out of the range a node can carry.
    row = STATUSES[BadRequest] if isinstance(exc, ProtocolError) else statuses_of(exc)
    return grpc.StatusCode[row.grpc], row.grpc_code


class GrpcServer:
    """Serves every gRPC service of one node (see the module docstring).

    The node starts it on its peer port when ``NodeConfig.transport`` is
    ``grpc``. Messages over ``max_body_bytes`` are refused by gRPC itself
    (``RESOURCE_EXHAUSTED``); the node's ``request_timeout`` bounds each read.

    Args:
        node: the node whose groups are served (groups added later are served too).
        max_batch_keys: most keys one GetMany or RemoveKeys may name.
        shutdown_grace: seconds :meth:`aclose` lets calls in flight finish.
        tokens: the node's API tokens: every ``shoal.v1.Cache`` call then needs one
            (see the module docstring). Default None: no tokens.
        tls: the node's TLS contexts: the port speaks TLS with its certificate and,
            with a CA, requires client certificates that CA signed (mutual TLS).
            Every new connection takes the files of the last reload (rotation).
            None: plaintext.
        trace: opens a server span around each call, given the method's path and
            the call's metadata (:meth:`shoal.otel.Telemetry.grpc_span`). Default
            None: no span.

    Raises:
        ConfigError: ``max_batch_keys`` below 1.
    """

    def __init__(
        self,
        node: ServedNode,
        *,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        shutdown_grace: float = SHUTDOWN_GRACE,
        tokens: ApiTokens | None = None,
        tls: NodeTls | None = None,
        trace: CallSpan | None = None,
    ) -> None:
        if max_batch_keys < 1:
            raise ConfigError(f"max_batch_keys must be at least 1, got {max_batch_keys}")
        self._node = node
        self._groups = node.groups  # a live read-only view
        self._max_message = node.config.max_body_bytes
        self._request_timeout = node.config.request_timeout
        self._max_batch_keys = max_batch_keys
        self._grace = shutdown_grace
        self._tokens = tokens
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._address: tuple[str, int] | None = None
        self._tls = tls
        self._tls_generation = 0
        self._trace = trace

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
        trace = self._trace
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
            trace=trace,
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
            tokens=self._tokens,
            trace=trace,
        )
        self._register(
            server,
            GEEK_SERVICE,
            {"Get": self._geek_get, "Delete": self._geek_delete},
            trace=trace,
        )
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        for name in (PEER_SERVICE, CACHE_SERVICE, GEEK_SERVICE):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(self.services, server)
        bind_host = f"[{host}]" if ":" in host else host
        try:
            if self._tls is None:
                bound = server.add_insecure_port(f"{bind_host}:{port}")
            else:
                bound = server.add_secure_port(f"{bind_host}:{port}", self._credentials())
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc
        await server.start()
        self._server, self._health = server, checker
        self._address = (host, bound)
        return self._address

    def _credentials(self) -> grpc.ServerCredentials:
        """TLS credentials that fetch the node's current files at each handshake."""
        tls = self._tls
        assert tls is not None
        self._tls_generation = tls.generation
        return grpc.dynamic_ssl_server_credentials(
            _certificate_configuration(tls.pem()),
            # gRPC documents None as "keep the current ones"; its stubs do not.
            self._fetch_certificates,  # type: ignore[arg-type]
            require_client_authentication=tls.config.mutual,
        )

    def _fetch_certificates(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher (on its own threads, before each handshake): the files of
        the last reload when they changed, else None (keep the current ones)."""
        tls = self._tls
        if tls is None or tls.generation == self._tls_generation:
            return None
        self._tls_generation = tls.generation
        return _certificate_configuration(tls.pem())

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
    def _register(
        server: grpc.aio.Server,
        service: str,
        methods: Mapping[str, _Handler],
        *,
        tokens: ApiTokens | None = None,
        trace: CallSpan | None = None,
    ) -> None:
        handlers = {
            name: _method(
                fn,
                tokens,
                CACHE_ROLES[name] if tokens is not None else "read",
                trace=trace,
                path=f"/{service}/{name}",
            )
            for name, fn in methods.items()
        }
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


def _method(
    fn: _Handler,
    tokens: ApiTokens | None = None,
    needed: str = "read",
    *,
    trace: CallSpan | None = None,
    path: str = "",
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A unary method on raw bytes (each handler decodes its own request, so that
    malformed input is INVALID_ARGUMENT, not gRPC's INTERNAL) whose exceptions
    become statuses; with ``tokens``, callable only with a token of role ``needed``;
    with ``trace``, each call in a server span (chosen here, not per call)."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        if tokens is not None:
            refused = tokens.check(_authorization(context), needed, port="grpc")
            if refused is not None:
                status, code, details = _REFUSALS[refused]
                await context.abort(status, details, ((CODE_METADATA, code),))
        try:
            return await fn(raw)
        except Exception as exc:
            await _abort(context, exc)

    if trace is None:
        return grpc.unary_unary_rpc_method_handler(handle)

    async def traced(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        with trace(path, context.invocation_metadata()) as call:
            try:
                return await handle(raw, context)
            finally:
                call.finished(context.code())

    return grpc.unary_unary_rpc_method_handler(traced)


def _authorization(context: grpc.aio.ServicerContext[bytes, bytes]) -> str | None:
    """The call's one ``authorization`` metadata value; "" (malformed) when it has several."""
    value: str | None = None
    for key, item in context.invocation_metadata() or ():
        if key == "authorization":
            if value is not None or not isinstance(item, str):
                return ""
            value = item
    return value


async def _abort(context: grpc.aio.ServicerContext[bytes, bytes], exc: Exception) -> NoReturn:
    status, code = _status_of(exc)
    if status is _StatusCode.UNAVAILABLE and code == "load_failed":
        log.debug("serving a gRPC call failed: %r", exc)
    details = trimmed(str(exc) or type(exc).__name__)
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
    target.loads_deduped = stats.loads_run  # the wire keeps the old field name
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
