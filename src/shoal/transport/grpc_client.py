"""The gRPC clients: :class:`GrpcPeerClient` (of :class:`GrpcTransport`), :class:`GrpcNodeClient`.

See :mod:`shoal.transport.grpc` for the services and what their errors mean.
Rules: each client keeps a small pool of channels to its node, opened on the
first call; every call carries a deadline; a foreign error is translated here
into a shoal error with its cause chained, and never escapes raw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from .._gather import gather_merged
from ..errors import (
    ConfigError,
    GroupNotFound,
    LoadTimeout,
    NotFound,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    RemoteLoadError,
)
from ..statuses import GRPC_LOAD_FAILED_CODES, raised_for_code
from ..tokens import bearer
from ..wire import DEFAULT_MAX_MESSAGE_BYTES, ProtocolError, expires_at_from_wire, to_expire_ns
from ..wire.batch import DEFAULT_MAX_BATCH_KEYS
from ..wire.generated import shoal_pb2 as pb
from . import FetchDone, Fetched
from ._grpc import (
    CACHE_SERVICE,
    CODE_METADATA,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CHANNELS,
    PEER_SERVICE,
    DecodeError,
    grpc,
    grpc_target,
    trimmed,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["GrpcTransport", "GrpcPeerClient", "GrpcNodeClient"]

Credentials = grpc.ChannelCredentials | Callable[[], grpc.ChannelCredentials]
"""TLS credentials of a channel, or a function that gives the current ones."""

_MAX_RECONNECT_BACKOFF_MS: Final = 5000
_StatusCode = grpc.StatusCode


def _code_of(error: grpc.aio.AioRpcError) -> str:
    """The ``shoal-code`` of a failed call ('' when the server sent none)."""
    for key, value in error.trailing_metadata() or ():
        if key == CODE_METADATA:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""


def _peer_error(error: grpc.aio.AioRpcError, url: str, what: str, key: str | None) -> Exception:
    """The shoal error for a failed peer call (see the module docstring)."""
    status, code = error.code(), _code_of(error)
    details = trimmed(error.details() or status.name)
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
    details = trimmed(error.details() or status.name)
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
        credentials: Credentials | None,
        size: int,
        max_message_bytes: int,
    ) -> None:
        self._target = target
        self._credentials: Credentials | None = (
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
            credentials = self._credentials
            if credentials is None:
                channel = grpc.aio.insecure_channel(self._target, options=self._options)
            else:
                if callable(credentials):  # the current ones (certificate rotation)
                    credentials = credentials()
                channel = grpc.aio.secure_channel(self._target, credentials, options=self._options)
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
        credentials: Credentials | None = None,
        on_close: Callable[[Any], None] | None = None,
        request_metadata: Callable[[], tuple[tuple[str, str], ...]] | None = None,
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
        # Sent with every call (the Cache service's API token), or None.
        self._metadata: tuple[tuple[str, str], ...] | None = None
        # Asked at each call for more (the caller's trace context), or None.
        self._request_metadata = request_metadata
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
            metadata = self._metadata
            if self._request_metadata is not None:
                metadata = (*(metadata or ()), *self._request_metadata()) or None
            return await callable_(raw, timeout=self._timeout, metadata=metadata)
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
        credentials: TLS credentials for an ``https://`` URL (default: the system's
            roots), or a function that gives the current ones when a channel opens.
        on_close: called once by :meth:`aclose`.
        request_metadata: asked at each call for metadata to add (the caller's trace
            context, :mod:`shoal.otel`); default None.

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
            A function is asked for the current ones whenever a channel opens.
        request_metadata: asked at each call for metadata to add (the trace context);
            default None.

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
        credentials: Credentials | None = None,
        request_metadata: Callable[[], tuple[tuple[str, str], ...]] | None = None,
    ) -> None:
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "channels": channels,
            "max_message_bytes": max_message_bytes,
            "max_batch_keys": max_batch_keys,
            "credentials": credentials,
            "request_metadata": request_metadata,
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

    ``token``: the node's API token, sent as ``authorization: Bearer TOKEN`` with
    every call (a node with API tokens refuses calls without one).
    """

    _service = CACHE_SERVICE

    def __init__(self, url: str, *, token: str | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        if token is not None:
            self._metadata = (("authorization", bearer(token)),)

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
                "loads_run": stats.loads_deduped,
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
