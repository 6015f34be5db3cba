"""Client: a smart client that sends each key straight to the node that owns it.

Like a memcached client with consistent hashing, :class:`Client` keeps the
cluster's ring itself, so a read costs one network hop (client to owner)
instead of two (client to any node, that node to the owner)::

    async with shoal.Client("grpc://10.0.0.1:8001") as client:     # a node's gRPC port
        score = await client.get("scores", "Tom")
        await client.set("scores", "Tom", b"700", ttl=60)

    async with shoal.Client("http://10.0.0.1:9999") as client:     # a node's HTTP API
        scores = await client.get_many("scores", ["Tom", "Jack"])

**Learning the cluster.** The client asks one of its seeds for the members and
the ring (``GET /v1/cluster`` on an ``http://`` seed, which is a node's HTTP
API; the ``Cluster`` call of ``shoal.v1.Cache`` on a ``grpc://`` seed, which is
a node's peer port in a cluster started with ``--transport grpc``) and builds
the same ring as the nodes (same members in the same order, same flavour and
replica count).

**Talking to owners.** The members' URLs are their peer ports, so the client
talks to each owner on its peer port, in the protocol the cluster's nodes speak
to each other (the ``transport`` of the cluster view), whatever the seed was:

- ``grpc`` clusters: ``shoal.v1.Cache`` on the owner. A node whose ring
  disagrees with the client's (membership changing) forwards the key to the
  owner it knows, as for any client.
- ``http`` clusters: groupcache's peer protocol (``GET {base}{group}/{key}``,
  shoal's batch get for :meth:`Client.get_many`, ``PUT`` and ``DELETE`` for
  writes), with the pooled keep-alive connections of the HTTP peer transport.
  The nodes' HTTP API addresses are not part of the cluster view (each node
  only knows its own), and the peer protocol answers exactly what a smart
  client needs. A node that is asked for a key its ring gives to another node
  does not forward the request (the peer protocol's hop rule); it loads the
  key itself, so a stale client view costs a duplicate load, never a wrong
  answer.

**Failures.** A node that cannot be reached or does not answer within
``timeout`` is skipped for ``backoff`` seconds: its keys go, in that time, to
the owner a ring of the remaining members names (the same node for every client
with the same view, which loads the key or fetches it from the owner as its
read path decides). The client then asks the cluster for a fresh view (at most
once per ``backoff``) and retries the request once on the new target. Errors of
the key itself (:class:`~shoal.errors.NotFound`, a failed loader, a bad key)
are raised as the node raised them.

**Writes.** :meth:`Client.set` and :meth:`Client.delete` go to the key's owner
(over ``http`` with ``Shoal-Write: client``), whose write path stores the value
and drops every other member's copy, or, in a replicated group, sends the write
to every member. Over ``http`` a TTL travels as an absolute expiry computed with
the client's clock.

**Tokens.** Against nodes started with API tokens (``--api-tokens``), give the
client one: ``Client(seed, token=...)`` sends ``Authorization: Bearer TOKEN``
with its ``/v1/cluster`` request and with every ``shoal.v1.Cache`` call. A
``read`` token may get (and learn the cluster), ``write`` also set and delete.
The peer port of an ``http`` cluster takes no token (mutual TLS protects it).
A refused token raises :class:`~shoal.errors.Unauthorized` (none, unknown or
malformed) or :class:`~shoal.errors.Forbidden` (a role that does not allow it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from ._client_routing import Router, check_seed, fetch_http_view, parse_cluster
from ._near_cache import Follower, NearCache, NearStore
from .errors import (
    Closed,
    ConfigError,
    Forbidden,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    ShoalError,
    Unauthorized,
)
from .tls import ClientTls
from .tokens import bearer

if TYPE_CHECKING:
    import ssl

    import grpc

    from .ring import Ring
    from .transport.grpc import GrpcNodeClient
    from .transport.http import HttpPeerClient

__all__ = ["Client"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
"""Seconds a request to one node may take before it counts as failed."""
DEFAULT_BACKOFF = 1.0
"""Seconds a failed node is skipped."""

# The node failures the client routes around; anything else is the answer.
_NODE_FAILURES = (PeerUnavailable, PeerTimeout)


class _NodeClient(Protocol):
    """What the client needs from one node, over either protocol."""

    async def get(self, group: str, key: str) -> bytes: ...
    async def get_many(self, group: str, keys: list[str]) -> dict[str, bytes]: ...
    async def set(self, group: str, key: str, value: bytes, ttl: float | None) -> None: ...
    async def delete(self, group: str, key: str) -> bool: ...
    async def aclose(self) -> None: ...


class _HttpNode:
    """A node of an ``http`` cluster, reached over the groupcache peer protocol."""

    def __init__(self, peer: HttpPeerClient) -> None:
        self._peer = peer

    async def get(self, group: str, key: str) -> bytes:
        return (await self._peer.get(group, key)).value

    async def get_entry(self, group: str, key: str) -> tuple[bytes, float | None]:
        """The value and its expiry (Unix seconds; None: none)."""
        fetched = await self._peer.get(group, key)
        return fetched.value, fetched.expires_at

    async def get_many(self, group: str, keys: list[str]) -> dict[str, bytes]:
        found = await self._peer.get_many(group, keys)
        return {key: item.value for key, item in found.items()}

    async def set(self, group: str, key: str, value: bytes, ttl: float | None) -> None:
        # The protocol carries an absolute expiry (groupcache-go's SetRequest.expire).
        expires_at = time.time() + ttl if ttl is not None else None
        await self._peer.set(group, key, value, expires_at, client=True)

    async def delete(self, group: str, key: str) -> bool:
        # A shoal node's write path answers how many of the keys their owners held.
        return bool(await self._peer.delete(group, key, client=True))

    async def aclose(self) -> None:
        await self._peer.aclose()


@dataclass(frozen=True)
class _View:
    """The cluster as the client last learned it, swapped as one unit."""

    ring: Ring
    transport: str
    base_path: str
    nodes: Mapping[str, _NodeClient] = field(default_factory=dict)


class Client:
    """A smart client of a shoal cluster: each key goes straight to its owner.

    Use it as an async context manager (or call :meth:`start`, then
    :meth:`aclose`). Safe to share between the tasks of one event loop. See the
    module documentation for how it learns the cluster and handles failures.

    Args:
        seeds: one or more nodes to learn the cluster from: ``http://host:port``
            (a node's HTTP API) or ``grpc://host:port`` (a node's peer port, in a
            cluster started with ``--transport grpc``). Later refreshes ask the
            members first (over gRPC), then the seeds.
        timeout: seconds a request to one node may take. Default 5.
        backoff: seconds a node that failed is skipped; also the least time
            between two refreshes after failures. Default 1.
        channels: gRPC channels (connections) per node. Default 1.
        token: the API token to present, when the nodes have API tokens. Default
            None: none.
        tls: TLS towards the nodes (:class:`shoal.tls.ClientTls`): the CA that signed
            their certificates and, for mutual TLS, a client certificate. Used for
            ``https://`` seeds and members, and makes ``grpc://`` seeds speak TLS.
            Default None: ``https://`` is verified against the system's CAs.
        near_cache: keep recent hits in this process (:class:`shoal.NearCache`), kept
            coherent by the changes the first ``http://``/``unix:`` seed's node pushes
            (docs/workers.md); ``True`` for the defaults. Default None: none.

    Raises:
        ConfigError: no seed, a seed that is not such a URL, a malformed token, a
            value out of range, or a TLS file that cannot be loaded.
    """

    def __init__(
        self,
        seeds: str | Iterable[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        channels: int = 1,
        token: str | None = None,
        tls: ClientTls | None = None,
        near_cache: NearCache | bool | None = None,
    ) -> None:
        seed_list = [seeds] if isinstance(seeds, str) else list(seeds)
        if not seed_list:
            raise ConfigError("a Client needs at least one seed URL")
        self._seeds = [check_seed(url) for url in seed_list]
        if near_cache is True:
            near_cache = NearCache()
        self._near_options: NearCache | None = None
        self._near: NearStore | None = None
        if near_cache is not None and near_cache is not False:
            if not isinstance(near_cache, NearCache):
                raise ConfigError(f"near_cache is a shoal.NearCache, got {near_cache!r}")
            if not any(not seed.startswith("grpc://") for seed in self._seeds):
                raise ConfigError("a near cache follows a node's HTTP API: give an http:// seed")
            self._near_options = near_cache
            self._near = NearStore(near_cache)
        self._follower: Follower | None = None
        for name, value in (("timeout", timeout), ("backoff", backoff), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        self._timeout = float(timeout)
        self._backoff = float(backoff)
        self._channels = int(channels)
        self._token = token
        self._authorization = bearer(token) if token is not None else None
        self._clock: Callable[[], float] = time.monotonic
        self._view: _View | None = None
        self._router = Router(self._backoff)
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")
        self._seed_clients: dict[str, GrpcNodeClient] = {}
        self._closed = False
        # Loaded once, here: a bad file is a ConfigError now, not at the first call.
        self._tls = tls
        self._ssl: ssl.SSLContext | None = tls.context() if tls is not None else None
        self._grpc_credentials: grpc.ChannelCredentials | None = None

    def __repr__(self) -> str:
        members = len(self._view.ring) if self._view is not None else 0
        return f"<Client seeds={self._seeds} members={members}>"

    # -- the view ------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The members' URLs in ring order (empty before :meth:`start`)."""
        return self._view.ring.nodes if self._view is not None else ()

    @property
    def transport(self) -> str | None:
        """What the members speak (``http`` or ``grpc``); None before :meth:`start`."""
        return self._view.transport if self._view is not None else None

    def owner(self, key: str) -> str:
        """The URL of the member that owns ``key`` on the client's ring.

        Raises:
            Closed: the client is not started (or closed).
        """
        return self._current().ring.owner(key)

    async def start(self) -> None:
        """Learn the cluster from the seeds.

        Raises:
            PeerUnavailable: no seed answered.
            ConfigError: a seed's node runs without a peer port (no cluster to join).
        """
        if self._closed:
            raise Closed("the client is closed")
        await self.refresh()
        near, options = self._near, self._near_options
        if near is not None and options is not None and self._follower is None:
            seed = next(seed for seed in self._seeds if not seed.startswith("grpc://"))
            self._follower = Follower(
                seed,
                near,
                authorization=self._authorization,
                ssl_context=self._ssl,
                wait=options.wait,
                retry=min(self._backoff, 1.0),
            )
            self._follower.start()

    @property
    def near_cache(self) -> NearStore | None:
        """The near cache (its ``hits``, ``misses``, ``flushes``, ``enabled`` and
        ``len()``), or None without one."""
        return self._near

    async def refresh(self) -> None:
        """Ask the cluster for its members and ring again: a live member first (gRPC
        clusters), then the seeds.

        Raises:
            PeerUnavailable: nobody answered (the client keeps its current view).
        """
        async with self._refresh_lock:
            await self._refresh()

    async def aclose(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        follower, self._follower = self._follower, None
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        view, self._view = self._view, None
        clients: list[Any] = list(self._seed_clients.values())
        self._seed_clients.clear()
        if view is not None:
            clients.extend(view.nodes.values())
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- data ----------------------------------------------------------------------

    async def get(self, group: str, key: str) -> bytes:
        """The value of ``key`` in ``group``, from its owner (which loads it on a miss).

        Raises:
            NotFound: the key does not exist.
            GroupNotFound: no such group (over gRPC; over HTTP a PeerError says so).
            RemoteLoadError: the owner's loader failed.
            InvalidKey: an empty key, or one over the group's ``max_key_bytes``.
            PeerUnavailable, PeerTimeout: no node could answer, even after a retry.
        """
        near = self._near
        if near is None:
            _, value = await self._on_owner(key, lambda node: node.get(group, key))
            return value
        kept = near.get(group, key)
        if kept is not None:
            return kept
        generation = near.generation
        _, (data, expires_at) = await self._on_owner(key, lambda node: _entry(node, group, key))
        expiry = None if expires_at is None else time.monotonic() + (expires_at - time.time())
        near.put(group, key, data, expiry, generation)
        return data

    async def get_many(self, group: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (missing keys are left out), asking each
        owner once for all of its keys, all owners at the same time.

        Raises:
            The errors of :meth:`get` except NotFound (the first, once every owner
            answered).
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[str, bytes] = {}
        error: BaseException | None = None
        pending = wanted
        for last in (False, True):  # one round, and one more for the keys of failed nodes
            view = self._current() if not last else await self._after_failure()
            batches = self._batches(view, pending)
            outcomes = await asyncio.gather(
                *(self._get_batch(view, url, group, batch) for url, batch in batches.items()),
                return_exceptions=True,
            )
            pending = []
            for (url, batch), outcome in zip(batches.items(), outcomes, strict=True):
                if isinstance(outcome, _NODE_FAILURES):
                    self._failed(url)
                    if not last:
                        pending.extend(batch)
                        continue
                if isinstance(outcome, BaseException):
                    error = error or outcome
                else:
                    found.update(outcome)
            if not pending or error is not None:
                break
        if error is not None:
            raise error
        return {key: found[key] for key in wanted if key in found}

    async def _get_batch(
        self, view: _View, url: str, group: str, keys: list[str]
    ) -> dict[str, bytes]:
        return await self._attempt(view, url, lambda node: node.get_many(group, keys))

    async def set(self, group: str, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (the group's TTL unless ``ttl`` is given),
        through the key's owner, whose write path drops the other members' copies
        (in a replicated group, sends the write to every member).

        Raises:
            InvalidKey, ValueTooLarge, InvalidTTL: refused by the node (over HTTP, a
                PeerError naming the reason).
            PeerUnavailable, PeerTimeout: the owner (and its stand-in) could not be reached.
        """
        try:
            await self._on_owner(key, lambda node: node.set(group, key, value, ttl))
        finally:
            if self._near is not None:
                self._near.drop(group, key)  # this client's own write, at once

    async def delete(self, group: str, key: str) -> bool:
        """Drop ``key`` from every member's caches, through the key's owner; return
        whether the owner had it (as :meth:`Group.delete <shoal.group.Group.delete>`).

        Raises:
            PeerUnavailable, PeerTimeout: the owner (and its stand-in) could not be reached.
        """
        try:
            _, deleted = await self._on_owner(key, lambda node: node.delete(group, key))
        finally:
            if self._near is not None:
                self._near.drop(group, key)
        return deleted

    # -- routing and failures ---------------------------------------------------------

    def _current(self) -> _View:
        view = self._view
        if view is None:
            raise Closed("the client is closed" if self._closed else "the client is not started")
        return view

    def _is_down(self, url: str) -> bool:
        return self._router.is_down(url)

    def _failed(self, url: str) -> None:
        self._router.failed(url)

    def _route(self, view: _View, key: str) -> str:
        """The node to ask for ``key`` (see :class:`~shoal._client_routing.Router`)."""
        return self._router.route(view.ring, key)

    def _batches(self, view: _View, keys: list[str]) -> dict[str, list[str]]:
        return self._router.batches(view.ring, keys)

    async def _attempt(
        self, view: _View, url: str, call: Callable[[_NodeClient], Awaitable[T]]
    ) -> T:
        """One request to one node within ``timeout``."""
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await call(view.nodes[url])
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # the node's own answer (a loader's timeout)
            raise PeerTimeout(f"{url} did not answer within {self._timeout}s") from exc

    async def _on_owner(
        self, key: str, call: Callable[[_NodeClient], Awaitable[T]]
    ) -> tuple[str, T]:
        """``call`` on the node for ``key``; after a node failure, once more on the
        node a fresh view names. Returns the node that answered, and its answer."""
        view = self._current()
        url = self._route(view, key)
        try:
            return url, await self._attempt(view, url, call)
        except _NODE_FAILURES:
            self._failed(url)
            view = await self._after_failure()
            retry = self._route(view, key)
            if retry == url:  # every member is skipped: nowhere else to go
                raise
        try:
            return retry, await self._attempt(view, retry, call)
        except _NODE_FAILURES:
            self._failed(retry)
            raise

    async def _after_failure(self) -> _View:
        """A fresh view if the last refresh is older than ``backoff`` (one refresh at a
        time; failing to refresh keeps the current view)."""
        async with self._refresh_lock:
            if self._clock() - self._refreshed_at >= self._backoff:
                with contextlib.suppress(ShoalError):
                    await self._refresh()
        return self._current()

    # -- learning the cluster ---------------------------------------------------------

    async def _refresh(self) -> None:
        if self._closed:
            raise Closed("the client is closed")
        reasons: list[str] = []
        for source, ask in self._sources():
            try:
                async with asyncio.timeout(self._timeout):
                    info = await ask()
            except TimeoutError:
                reasons.append(f"{source}: no answer within {self._timeout}s")
                continue
            except (PeerError, OSError, ValueError, KeyError, TypeError) as exc:
                if isinstance(exc, ConfigError | Unauthorized | Forbidden):
                    raise  # the same at every seed: the token or the setup is wrong
                reasons.append(f"{source}: {exc}")
                continue
            await self._apply(info, source)
            self._refreshed_at = self._clock()
            return
        raise PeerUnavailable("no node told the cluster's members: " + "; ".join(reasons))

    def _sources(self) -> list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]]:
        """Who to ask for the view, in order: live gRPC members, then the seeds."""
        sources: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = []
        view = self._view
        if view is not None and view.transport == "grpc":
            for url, node in view.nodes.items():
                cluster = getattr(node, "cluster", None)
                if cluster is not None and not self._is_down(url):
                    sources.append((url, cluster))
        for seed in self._seeds:
            if seed.startswith("grpc://"):
                sources.append((seed, self._seed_client(seed).cluster))
            else:
                sources.append((seed, functools.partial(self._http_view, seed)))
        return sources

    def _seed_client(self, seed: str) -> GrpcNodeClient:
        client = self._seed_clients.get(seed)
        if client is None:
            from .transport.grpc import GrpcNodeClient

            client = self._seed_clients[seed] = GrpcNodeClient(
                seed, timeout=self._timeout, token=self._token, credentials=self._credentials()
            )
        return client

    def _credentials(self) -> grpc.ChannelCredentials | None:
        """The gRPC channels' TLS credentials (None without ``tls``)."""
        if self._tls is None:
            return None
        if self._grpc_credentials is None:
            from .transport.grpc import channel_credentials

            self._grpc_credentials = channel_credentials(self._tls.pem())
        return self._grpc_credentials

    async def _http_view(self, seed: str) -> dict[str, Any]:
        """``GET {seed}/v1/cluster`` (in a thread: it is rare)."""
        return await asyncio.to_thread(
            fetch_http_view,
            seed,
            authorization=self._authorization,
            ssl_context=self._ssl,
            timeout=self._timeout,
        )

    async def _apply(self, info: dict[str, Any], source: str) -> None:
        """Build the view ``info`` describes, then swap it in; close the clients of
        members that left."""
        cluster = parse_cluster(info, source)
        members, transport, base_path, ring = (
            cluster.members,
            cluster.transport,
            cluster.base_path,
            cluster.ring,
        )
        old = self._view
        same = old is not None and (old.transport, old.base_path) == (transport, base_path)
        if same and old is not None and old.ring == ring:
            return  # nothing changed: keep the view (and its stand-in ring)
        nodes: dict[str, _NodeClient] = {}
        for url in members:
            kept = old.nodes.get(url) if same and old is not None else None
            nodes[url] = kept if kept is not None else self._node_client(url, transport, base_path)
        self._view = _View(ring, transport, base_path, MappingProxyType(nodes))  # the one swap
        self._router.forget_except(members)
        if old is not None:
            for url, client in old.nodes.items():
                if nodes.get(url) is not client:
                    await client.aclose()

    def _node_client(self, url: str, transport: str, base_path: str) -> _NodeClient:
        if transport == "grpc":
            from .transport.grpc import GrpcNodeClient

            return GrpcNodeClient(
                url,
                timeout=self._timeout,
                channels=self._channels,
                token=self._token,
                credentials=self._credentials(),
            )
        from .transport.http import HttpPeerClient

        return _HttpNode(HttpPeerClient(url, base_path=base_path, ssl_context=self._ssl))


async def _entry(node: _NodeClient, group: str, key: str) -> tuple[bytes, float | None]:
    """A value and its expiry (Unix seconds) where the protocol says it (HTTP)."""
    get_entry = getattr(node, "get_entry", None)
    if get_entry is not None:
        entry: tuple[bytes, float | None] = await get_entry(group, key)
        return entry
    return await node.get(group, key), None
