"""Group: a named keyspace whose misses are filled by a loader (cache-through).

The read path (DESIGN §4): main cache, then hot cache; on a miss, join the
key's flight; inside the flight, re-check the caches and call the loader once;
cache the value unless a write or delete of the key happened meanwhile.

A key owned by a peer is fetched from it within ``peer_timeout``. When the owner
cannot be reached (or is suspect: see :mod:`shoal.peers`), the key loads here,
and only a value can come of that: a NotFound here is no proof while the owner
was not asked, so it becomes :class:`~shoal.errors.PeerUnavailable` (see
:meth:`Group._load_instead`). Every value, loaded or fetched, is bounded by
``max_value_bytes``.

Writes are checked before anything changes: the key, the value's size, and the
TTL or absolute expiry, which must end by :data:`~shoal.wire.MAX_EXPIRES_AT`
(2262), the latest expiry every peer protocol can carry to the other members.
Every front-end (HTTP API, gRPC, the sync facade, peers' writes) goes through
:meth:`Group.set_bytes` or :meth:`Group.serve_peer_set`, so this is the one place.

All async methods run on the event loop that owns the group. The cache
lookups (:meth:`Group.cached_bytes`) are thread-safe and never await, which is
what lets :mod:`shoal.sync` serve hits without a hop to the loop thread.

A group knows nothing above the async core: servers see it as a
:class:`~shoal.serving.ServedGroup`, its replica gets :class:`LocalCaches
<shoal.replication.LocalCaches>` and the group as its
:class:`~shoal.replication.ReplicaPeers`, and the sync facade wraps it
(:attr:`Group.codec`, :meth:`Group.hit_reader`).

Beside it, each a concept of its own: the task-free miss of a key a peer owns
(:mod:`shoal._direct_fetch`, which tells it whole), the exchanges with peers
within ``peer_timeout`` (:mod:`shoal._peer_calls`), this node's stores
(:mod:`shoal._stores`), the writes across members and their checks
(:mod:`shoal._writes`), hot-cache admission (:mod:`shoal._hot`) and the call of
a loader (:mod:`shoal._loader_call`). What stays here, about 900 lines, is the
user API, the ``serve_`` methods and the read path, kept together so that a miss
reads top to bottom in one file (the fetch from an owner is the next cut).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

from ._atomic import AtomicOps, check_delta, expiry_of, result_of
from ._cached import blocking_wrapper, default_key
from ._direct_fetch import DirectFetches
from ._gather import gather_merged
from ._hot import HotAdmission
from ._loader_call import call_loader, is_async
from ._peer_calls import PeerCalls
from ._stores import LocalStores
from ._writes import PartitionedWrites, check_expiry, check_write
from .codec import BytesCodec, Codec, codec_for
from .config import GroupConfig
from .errors import (
    InvalidKey,
    KeyTooLarge,
    LoadedValueTooLarge,
    LoadError,
    NotFound,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    ShoalError,
)
from .loaderpool import LoaderPool
from .singleflight import Call, Flight
from .stats import GroupStats
from .store import Clock
from .value import Value, with_ttl
from .wire.ops import OP_ADD, OP_INCR, OP_SET, OP_TOUCH, OP_TTL, OpItem, OpRequestBody, OpResultBody

if TYPE_CHECKING:
    from .peers import Fetched, PeerClient, PeerPicker
    from .replication import Replica

log = logging.getLogger("shoal.group")

__all__ = ["Group", "Loader"]

V = TypeVar("V")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

Loader = Callable[[str], "Awaitable[V | Value[V]] | V | Value[V]"]
"""``async def load(key) -> V | Value[V]`` or a sync function of the same shape.

A loader raises :class:`~shoal.errors.NotFound` for a key that does not exist.
"""


class Group(Generic[V]):
    """A named, bounded, read-through cache.

    Args:
        config: the group's settings.
        loader: fills misses; None makes a plain cache whose misses raise NotFound.
        codec: turns values into bytes; default from ``config.codec``.
        executor: runs synchronous loaders; default the loop's default executor.
        clock: time source for TTLs (``time.time`` by default).
        rng: randomness for hot-cache admission (seed it in tests).
    """

    def __init__(
        self,
        config: GroupConfig,
        loader: Loader[V] | None = None,
        *,
        codec: Codec[V] | None = None,
        executor: Executor | None = None,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._loader = loader
        self._codec: Codec[V] = codec if codec is not None else codec_for(config.codec)
        # The bytes codec is the identity: skip the call on the hit path.
        self._decode: Callable[[bytes], V] | None = (
            None if isinstance(self._codec, BytesCodec) else self._codec.decode
        )
        # A loader that produces encoded bytes (the SQL loaders) is told the group's
        # codec, so that it hands back values the codec can encode.
        bind_codec = getattr(loader, "bind_codec", None)
        if callable(bind_codec):
            bind_codec(self._codec)
        self._executor = executor
        if isinstance(executor, LoaderPool) and loader is not None and not is_async(loader):
            executor.register(self.name)
        self._flight: Flight[bytes] = Flight()
        self._direct = DirectFetches(
            self.name,
            self._flight,
            took=self._took,
            remember_missing=self._remember_missing,
            fall_back=self._fall_back,
            peer_timeout=config.peer_timeout,
        )
        # A peer's request for a key this node's ring gives to someone else (the
        # views differ during a membership change) loads here, in a flight of its
        # own that never forwards (DESIGN §4.4): were it to join a local flight
        # waiting on a peer, two nodes could wait on each other for ever.
        self._peer_flight: Flight[bytes] = Flight()
        # The group's budget is split: the hot cache (copies of keys other nodes
        # own; empty while the group runs alone) gets hot_fraction, main the rest.
        stores = self._stores = LocalStores(config, clock, (self._flight, self._peer_flight))
        self._main, self._hot, self._negative = stores.main, stores.hot, stores.negative
        self._stale = stores.stale
        self._main_get = self._main.get
        self._hot_get = self._hot.get
        self._keeps_negative = stores.keeps_negative
        self._calls = PeerCalls(self.name, config.peer_timeout)
        self._writes = PartitionedWrites(self.name, self._calls, self._stores)
        self._admit_hot = HotAdmission(
            config, rng if rng is not None else random.Random(), clock
        ).admit
        self._clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop the group's async methods run on, once known (set by the
        node at start, or by the first async call); :mod:`shoal.sync` submits to it."""
        self._loads = 0
        self._local_loads = 0
        self._local_load_errors = 0
        self._peer_loads = 0
        self._duplicate_loads = 0
        self._oversized_values = 0
        self._server_requests = 0
        self.replica: Replica | None = None
        """The replicated state of a ``mode="replicated"`` group, else None."""
        if config.mode == "replicated":
            from .replication import LocalCaches, Replica

            caches = LocalCaches(
                self._stores.store,
                self._stores.drop,
                self._stores.fence_all,
                live_entries=self.live_entries,
                check_key=self.validate_key,
            )
            self.replica = Replica(self.name, config, caches, self._calls, clock=clock, rng=rng)
        self._atomic = AtomicOps(self.name, self._calls, self._stores, self.replica, clock)

    def __repr__(self) -> str:
        return f"<Group {self.name!r} items={len(self._main)} bytes={self._main.nbytes}>"

    @property
    def codec(self) -> Codec[V]:
        """How the group's values are encoded to bytes and decoded back."""
        return self._codec

    def hit_reader(
        self, on_miss: Callable[[str], V], on_hit: Callable[[bytes], V] | None
    ) -> Callable[[str], V]:
        """A lookup of the main cache with the miss and hit handling fused in
        (:meth:`Store.reader <shoal.store.Store.reader>`): ``on_hit(data)`` of a hit
        (the bytes themselves when None), else ``on_miss(key)``. Thread-safe; the
        whole hit path of the sync facade."""
        return cast(Callable[[str], V], self._main.reader(on_miss, on_hit))

    @property
    def peers(self) -> PeerPicker | None:
        """Who owns which key; set by the node when it has peers, None alone."""
        return self._calls.peers

    @peers.setter
    def peers(self, picker: PeerPicker | None) -> None:
        self._calls.peers = picker

    # -- reads ---------------------------------------------------------------

    def cached_bytes(self, key: str) -> bytes | None:
        """Return the cached bytes of ``key``, or None on a miss. Never awaits; thread-safe.

        Raises:
            NotFound: if the key is cached as missing (see ``negative_ttl``).
        """
        data = self._main_get(key)
        return data if data is not None else self._cached_elsewhere(key)

    def _cached_elsewhere(self, key: str) -> bytes | None:
        """:meth:`cached_bytes` after a main-cache miss: the hot copy, a negative
        entry (raises NotFound), or a stale value."""
        data = self._hot_get(key)
        if data is None:
            if self._keeps_negative and self._negative.get(key) is not None:
                raise NotFound(key)
            if self._stale is not None:
                data = self._serve_stale(key)
        return data

    async def get(self, key: str) -> V:
        """Return the value of ``key``, loading it once on a miss.

        Raises:
            NotFound: the loader (here or at the key's owner) says the key does not
                exist, or the group has no loader.
            PeerUnavailable: the key's owner cannot be reached and this node cannot
                load the key (no loader, or one that does not know it): the key may
                exist at its owner, so this is not NotFound.
            InvalidKey: the key is empty or not a str; KeyTooLarge if too long.
            LoadTimeout: the load took longer than ``load_timeout``.
            LoadedValueTooLarge: the value is over ``max_value_bytes``.
            LoadError: the loader returned something unusable.
            Exception: whatever the loader raised, unchanged.
        """
        data = self._main_get(key)
        if data is None:
            data = await self._fetch(key, None)
        decode = self._decode
        return cast(V, data) if decode is None else decode(data)

    async def get_bytes(self, key: str) -> bytes:
        """Like :meth:`get`, but return the stored bytes without decoding."""
        data = self._main_get(key)
        return data if data is not None else await self._fetch(key, None)

    async def get_or_load(
        self, key: str, filler: Callable[[], Awaitable[V | Value[V]] | V | Value[V]]
    ) -> V:
        """Return the value of ``key``, filling a miss with ``filler()`` instead of the loader.

        The fill is deduplicated per key like any load. ``filler`` may be async or
        sync (sync fillers run in the loader thread pool) and may return a
        :class:`~shoal.value.Value` to give a TTL.
        """
        data = self._main_get(key)
        if data is None:
            data = await self._fetch(key, filler)
        decode = self._decode
        return cast(V, data) if decode is None else decode(data)

    async def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """Return the values of the keys that exist; missing keys are left out.

        Cached keys are answered at once. In a cluster, the misses are grouped by
        owner and each peer is asked once for all of its keys; the rest load
        here, concurrently, each once. The first error other than ``NotFound`` is
        raised after every load has finished (``PeerUnavailable`` for a key whose
        owner cannot be reached and that this node cannot load: see :meth:`get`).
        """
        found = await self.get_many_bytes(keys)
        decode = self._decode
        if decode is None:
            return cast(dict[str, V], found)
        return {k: decode(data) for k, data in found.items()}

    async def get_many_bytes(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Like :meth:`get_many`, but return the stored bytes without decoding."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        local: list[str] = []
        remote: dict[PeerClient, list[str]] = {}
        for key in unique:
            try:
                data = self.cached_bytes(key)
            except NotFound:
                continue
            if data is not None:
                found[key] = data
                continue
            peer = self.peers.pick(key) if self.peers is not None else None
            if peer is None:
                local.append(key)
            else:
                remote.setdefault(peer, []).append(key)
        jobs = [self._fetch_many(peer, batch) for peer, batch in remote.items()]
        jobs.extend(self._get_one(key) for key in local)
        found.update(await gather_merged(jobs))
        return {k: found[k] for k in unique if k in found}

    async def _get_one(self, key: str) -> dict[str, bytes]:
        """One key through the normal miss path; {} if it does not exist."""
        try:
            return {key: await self._load(key, None)}
        except NotFound:
            return {}

    async def _fetch_many(self, peer: PeerClient, keys: list[str]) -> dict[str, bytes]:
        """Ask ``peer`` for all of ``keys`` at once; on a transport failure load them
        through the normal path (which skips the peer while it backs off)."""
        for key in keys:
            self.validate_key(key)
        try:
            fetched = await self._calls.within_peer_timeout(peer, peer.get_many(self.name, keys))
        except PeerError as exc:
            self._calls.failed(peer, f"{len(keys)} keys", exc, loads_here=self._loader is not None)
            outcomes = await asyncio.gather(*(self._get_one(k) for k in keys))
            return {k: v for outcome in outcomes for k, v in outcome.items()}
        if self.peers is not None:
            self.peers.succeeded(peer.url)
        for key, item in fetched.items():
            if len(item.value) > self.config.max_value_bytes:
                self._refuse_fetched(peer, key, item.value)
        self._peer_loads += len(fetched)
        if self.replica is None:  # a replicated group gets the values from the owner's push
            for key, item in fetched.items():
                if self._admit_hot(key):
                    self._hot.set(key, item.value, expires_at=item.expires_at)
        return {key: item.value for key, item in fetched.items()}

    # -- writes --------------------------------------------------------------

    async def set(self, key: str, value: V, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (the group's TTL unless ``ttl`` is given).

        In a partitioned group the value is stored at the key's owner and every
        other member drops its copy; in a replicated group every member gets
        it. A load of the key in flight anywhere will not overwrite it.

        Raises:
            InvalidKey, KeyTooLarge: for a bad key. ValueTooLarge: over ``max_value_bytes``.
            InvalidTTL: a TTL that is not positive and finite, or that ends after
                :data:`~shoal.wire.MAX_EXPIRES_AT` (year 2262).
            TypeError: the codec cannot encode ``value``.
            PeerUnavailable, PeerTimeout: the key's owner could not be reached
                (partitioned groups; the value is not stored).
            GroupFull: a replicated group holds its capacity.
        """
        await self.set_bytes(key, self._codec.encode(value), ttl)

    async def set_bytes(
        self,
        key: str,
        data: bytes,
        ttl: float | None = None,
        *,
        expires_at: float | None = None,
    ) -> None:
        """Like :meth:`set`, with bytes already encoded.

        ``expires_at`` (absolute Unix seconds) wins over ``ttl``.
        """
        expires_at = self._write_expiry(key, data, ttl, expires_at)
        if self.replica is not None:
            await self.replica.write(key, data, expires_at)
        else:
            await self._writes.set(key, data, expires_at)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every member's caches; return whether it was cached.

        A load of the key in flight on any member is fenced: its result reaches
        its waiters but is not cached.

        Returns:
            Whether the key was cached (or being loaded) at its owner (False when
            the owner is a Go node, which does not say).

        Raises:
            PeerUnavailable, PeerTimeout: the owner could not be reached (the key
                is still removed everywhere else).
        """
        self.validate_key(key)
        return await self.remove_keys([key]) > 0

    async def remove_keys(self, keys: Iterable[str]) -> int:
        """Remove several keys from every member's caches (see :meth:`delete`).

        Returns:
            How many of the keys were cached (or being loaded) at their owners (a Go
            owner does not say: its keys are not counted).

        Raises:
            PeerUnavailable, PeerTimeout: an owner could not be reached (the keys are
                still removed everywhere else).
        """
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            self.validate_key(key)
        if self.replica is not None:
            return await self.replica.delete(wanted)
        return await self._writes.remove(wanted)

    async def invalidate(self, key: str) -> None:
        """Drop every cached copy of ``key`` so the next get loads it afresh."""
        await self.delete(key)

    async def invalidate_group(self) -> int:
        """Drop every key of the group on every member (a cache reset).

        Loads in flight anywhere are fenced. In a replicated group this is a
        versioned write: a member that misses it (down, partitioned) drops its
        older keys when anti-entropy reaches it.

        Returns:
            How many keys this node had.
        """
        if self.replica is not None:
            return await self.replica.invalidate()
        return await self._writes.invalidate()

    # -- atomic operations at the key's owner (shoal._atomic) -------------------

    async def add(self, key: str, value: V, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (an expired entry is absent).

        Decided at the key's owner in one step, so of several concurrent adds of
        one key exactly one stores. Fences loads in flight, as :meth:`set` does.

        Returns:
            Whether the value was stored.

        Raises:
            The errors of :meth:`set`.
        """
        return await self.add_bytes(key, self._codec.encode(value), ttl)

    async def add_bytes(self, key: str, data: bytes, ttl: float | None = None) -> bool:
        """Like :meth:`add`, with bytes already encoded."""
        expires_at = self._write_expiry(key, data, ttl, None)
        return (await self._atomic.run(OP_ADD, key, data, expires_at)).done

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the decimal integer ``key`` holds, atomically at its owner.

        The entry keeps its expiry. Concurrent increments from any members all count.

        Returns:
            The new value.

        Raises:
            NotFound: the key is absent (a loader is not called).
            BadRequest: the value is not a decimal integer in the 64-bit signed
                range, ``delta`` is not an int in that range, or the result leaves it.
            PeerUnavailable, PeerTimeout: the owner could not be reached.
        """
        self.validate_key(key)
        check_delta(delta)
        return (await self._atomic.run(OP_INCR, key, b"", None, delta)).number

    async def decr(self, key: str, delta: int = 1) -> int:
        """Subtract ``delta`` from the integer ``key`` holds (see :meth:`incr`)."""
        return await self.incr(key, -check_delta(delta))

    async def touch(self, key: str, ttl: float | None = None) -> bool:
        """Give ``key`` a new time to live (None: never expires) without rewriting its value.

        Returns:
            Whether the key was there to touch.

        Raises:
            InvalidTTL: a TTL that is not positive and finite, or ends after 2262.
            PeerUnavailable, PeerTimeout: the owner could not be reached.
        """
        self.validate_key(key)
        expires_at = self._touch_expiry(ttl)
        return (await self._atomic.run(OP_TOUCH, key, b"", expires_at)).done

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left at its owner, or None if it never expires.

        Raises:
            NotFound: the key is absent.
            PeerUnavailable, PeerTimeout: the owner could not be reached.
        """
        self.validate_key(key)
        result = await self._atomic.run(OP_TTL, key, b"", None)
        return result.seconds if result.done else None

    async def get_or_set(
        self, key: str, default: V | Callable[[], V], ttl: float | None = None
    ) -> V:
        """The value of ``key`` (read through, as :meth:`get`), or else ``default``
        added with :meth:`add`; returns what is stored after, the winner of a race.

        ``default`` may be a callable, called only when the key is absent.
        """
        try:
            return await self.get(key)
        except NotFound:
            pass
        value = default() if callable(default) else default
        if await self.add(key, value, ttl):
            return value
        try:
            return await self.get(key)
        except NotFound:  # the winner's value is gone already
            return value

    async def set_many(self, mapping: Mapping[str, V], ttl: float | None = None) -> None:
        """Store every value of ``mapping`` (see :meth:`set`), one exchange per owner.

        Every key and value is checked before anything is stored.
        """
        encode = self._codec.encode
        await self.set_many_bytes({k: encode(v) for k, v in mapping.items()}, ttl)

    async def set_many_bytes(self, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Like :meth:`set_many`, with bytes already encoded."""
        items = [(k, d, self._write_expiry(k, d, ttl, None)) for k, d in mapping.items()]
        if items:
            await self._atomic.set_many(items)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove several keys everywhere (see :meth:`remove_keys`); how many there were."""
        return await self.remove_keys(keys)

    async def serve_op(self, request: OpRequestBody, *, client: bool) -> list[OpResultBody]:
        """Answer an ``op`` message: a client's runs this node's whole path (routed to
        the owner); a peer's is answered from this node's stores, never forwarded.

        Every key is checked first; an error about one key is that key's answer.
        """
        kind = request.kind
        if client and kind == OP_SET:
            try:
                await self.set_many_bytes(
                    {item.key: item.value for item in request.items}, request.items[0].ttl
                )
            except ShoalError as exc:
                return [result_of(exc)] * len(request.items)
            return [OpResultBody(done=True)] * len(request.items)
        results = []
        for item in request.items:
            try:
                results.append(await self._serve_item(kind, item, request.delta, client))
            except ShoalError as exc:
                results.append(result_of(exc))
        return results

    async def _serve_item(self, kind: int, item: OpItem, delta: int, client: bool) -> OpResultBody:
        key = item.key
        if client:
            if kind == OP_ADD:
                return OpResultBody(done=await self.add_bytes(key, item.value, item.ttl))
            if kind == OP_INCR:
                return OpResultBody(done=True, number=await self.incr(key, delta))
            if kind == OP_TOUCH:
                return OpResultBody(done=await self.touch(key, item.ttl))
            seconds = await self.ttl(key)
            return OpResultBody(done=seconds is not None, seconds=seconds or 0.0)
        self.validate_key(key)
        expires_at = expiry_of(item)
        if kind in (OP_ADD, OP_SET):
            check_write(self.config, item.value, None)
        if expires_at is not None:
            check_expiry(expires_at, f"expires_at={expires_at!r}")
        return await self._atomic.here(kind, key, item.value, expires_at, check_delta(delta))

    # -- write helpers -------------------------------------------------------

    def _check_write(self, key: str, data: bytes, ttl: float | None) -> None:
        self.validate_key(key)
        check_write(self.config, data, ttl)

    def _write_expiry(
        self, key: str, data: bytes, ttl: float | None, expires_at: float | None
    ) -> float | None:
        """Check a write; its absolute expiry (``expires_at``, else ``ttl``, else the
        group's TTL)."""
        self._check_write(key, data, ttl)
        if expires_at is None:
            if ttl is not None:
                expires_at = self._clock() + ttl
                check_expiry(expires_at, f"ttl={ttl!r}")
            elif self.config.ttl is not None:
                expires_at = self._clock() + self.config.ttl
        else:
            check_expiry(expires_at, f"expires_at={expires_at!r}")
        return expires_at

    def _touch_expiry(self, ttl: float | None) -> float | None:
        if ttl is None:
            return None
        check_write(self.config, b"", ttl)
        expires_at = self._clock() + ttl
        check_expiry(expires_at, f"ttl={ttl!r}")
        return expires_at

    # -- serving: what the servers call (ServedGroup, whose docstring is the contract)

    # a client's requests

    def on_change(self, listener: Callable[[str | None], object] | None) -> None:
        """Have ``listener(key)`` called on the loop thread whenever this node's copy
        of a key changes (stored, dropped; ``None``: the whole group was cleared),
        whoever made the change (see :mod:`shoal._changes`). One listener; None
        removes it."""
        self._stores.listener = listener

    def serve_cached(self, key: str) -> bytes | None:
        """:meth:`cached_bytes` for a get that arrived over the network (counted as one).

        Raises:
            NotFound: if the key is cached as missing (see ``negative_ttl``).
        """
        self._server_requests += 1
        data = self._main_get(key)  # as cached_bytes does, one call less on a hit
        return data if data is not None else self._cached_elsewhere(key)

    async def serve_load(self, key: str) -> bytes:
        """Load ``key`` through its flight without looking in the caches first.

        For a caller that has just missed with :meth:`cached_bytes` (the HTTP
        API does), so the miss is not counted twice; a load here re-checks the
        caches, so a value cached meanwhile is not loaded again (a key another
        member owns is fetched from it again).
        """
        return await self._load(key, None)

    def serve_load_future(self, key: str) -> asyncio.Future[bytes]:
        """:meth:`serve_load` as a future of the caller's own, returned at once (no
        coroutine, no task: what the HTTP API hands its server for a miss).
        Cancelling the future cancels only this caller's wait.

        Must be called from the group's event loop.

        Raises:
            InvalidKey, KeyTooLarge: a bad key. Closed: the group is closed.
        """
        self.validate_key(key)
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self._loads += 1
        return self._flight.join(key, self._load_once, self._fetch_directly)

    # a peer's requests: answered here, never forwarded

    async def serve_peer(self, key: str) -> tuple[bytes, float | None]:
        """Answer a peer's request for ``key``: from the caches, else loaded here.

        Never forwarded to another node, whatever this node's ring says (DESIGN §4.4).

        Returns:
            The value and its absolute expiry in Unix seconds, or None.
        """
        hit = self.serve_peer_nowait(key)
        if hit is not None:
            return hit
        return await self.serve_peer_load(key)

    def serve_peer_nowait(self, key: str) -> tuple[bytes, float | None] | None:
        """The cached answer to a peer's request for ``key``, or None on a miss.

        Never awaits, so a peer server answers a hit without a task; on None it
        calls :meth:`serve_peer_load`. Counts the request either way.

        Raises:
            NotFound: the key is cached as missing (see ``negative_ttl``).
        """
        self._server_requests += 1
        data = self._main_get(key)
        if data is not None:
            return data, self._main.expiry(key)
        data = self._hot_get(key)
        if data is not None:
            return data, self._hot.expiry(key)
        if self._keeps_negative and self._negative.get(key) is not None:
            raise NotFound(key)
        if self._stale is not None:
            data = self._serve_stale(key)
            if data is not None:  # with its real (past) expiry: the asker keeps no copy
                expiry = self._stale.expiry(key)
                grace = self.config.stale_while_revalidate or 0.0
                return data, None if expiry is None else expiry - grace
        return None

    async def serve_peer_load(self, key: str) -> tuple[bytes, float | None]:
        """Load ``key`` for a peer after :meth:`serve_peer_nowait` missed (never forwarded).

        Returns:
            The value and its absolute expiry in Unix seconds, or None.
        """
        data = await self._load(key, None, forward=False)
        return data, self._main.expiry(key)

    async def serve_peer_set(self, key: str, data: bytes, *, expires_at: float | None) -> None:
        """Store a value a peer sent (it owns the key here, or a Go peer wrote it).

        Never forwarded. In a replicated group it becomes a write of this node.
        """
        self._check_write(key, data, None)
        if expires_at is not None:
            check_expiry(expires_at, f"expires_at={expires_at!r}")
        if self.replica is not None:
            await self.replica.write(key, data, expires_at)
            return
        self._stores.store(key, data, expires_at)

    async def serve_peer_remove(self, keys: Iterable[str]) -> int:
        """Drop keys a peer named from this node's caches (never forwarded)."""
        wanted = list(keys)
        for key in wanted:
            self.validate_key(key)
        if self.replica is not None:
            return await self.replica.delete(wanted)
        return self._stores.drop(wanted)

    async def serve_peer_invalidate(self) -> int:
        """Drop every key from this node's caches, as a peer asked (never forwarded)."""
        if self.replica is not None:
            return await self.replica.invalidate()
        return self._stores.clear()

    def serve_count(self) -> None:
        """Count a get that arrived over the network."""
        self._server_requests += 1

    # -- decorator -----------------------------------------------------------

    def cached(
        self, *, key: Callable[..., str] | None = None, ttl: float | None = None
    ) -> Callable[[F], F]:
        """Decorate a function so its results are cached in this group by its arguments.

        Works on async functions (the wrapper is async) and on plain functions (the
        wrapper blocks, as :meth:`SyncGroup.cached <shoal.sync.SyncGroup.cached>`'s,
        and must be called from a thread other than the event loop's). Concurrent
        calls with the same key run the function once.

        Args:
            key: builds the cache key from the call's arguments; default: the
                function's qualified name plus the ``repr`` of the arguments
                (hashed when that would exceed ``max_key_bytes``).
            ttl: time to live of each result; default the group's TTL.

        Example::

            @users.cached(key=lambda user_id: str(user_id))
            async def fetch_user(user_id: int) -> bytes: ...
        """

        def decorate(fn: F) -> F:
            make_key = key or default_key(fn, self.config.max_key_bytes)
            if not inspect.iscoroutinefunction(fn):
                return cast(F, blocking_wrapper(self, fn, make_key, ttl, self._decode))

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async def fill() -> Any:
                    return with_ttl(await fn(*args, **kwargs), ttl)

                return await self.get_or_load(make_key(*args, **kwargs), fill)

            return cast(F, wrapper)

        return decorate

    # -- housekeeping --------------------------------------------------------

    def validate_key(self, key: str) -> None:
        """Raise InvalidKey for a non-str or empty key, KeyTooLarge past ``max_key_bytes``."""
        if type(key) is not str:
            raise InvalidKey(f"keys are str, got {type(key).__name__}")
        if not key:
            raise InvalidKey("the key is empty")
        limit = self.config.max_key_bytes
        # One character is at most 4 UTF-8 bytes: encode only when it could matter.
        if len(key) > limit or (len(key) * 4 > limit and len(key.encode()) > limit):
            raise KeyTooLarge(f"key longer than max_key_bytes={limit}")

    def live_entries(self) -> int:
        """Entries in the main cache (a replicated group: its live keys, give or take
        values expired but not yet swept)."""
        return len(self._main)

    def sweep(self) -> int:
        """Reclaim expired entries in both caches; return how many were removed."""
        return self._stores.sweep()

    def statistics(self) -> GroupStats:
        """A snapshot of the group's counters and both caches."""
        main, hot = self._main.statistics(), self._hot.statistics()
        return GroupStats(
            name=self.name,
            gets=main.gets,
            hits=main.hits + hot.hits + self._negative.statistics().hits,
            loads=self._loads,
            loads_run=self._flight.started + self._peer_flight.started,
            local_loads=self._local_loads,
            local_load_errors=self._local_load_errors,
            peer_loads=self._peer_loads,
            peer_errors=self._calls.errors,
            server_requests=self._server_requests,
            duplicate_loads=self._duplicate_loads,
            oversized_values=self._oversized_values,
            main=main,
            hot=hot,
            mode=self.config.mode,
            replication=self.replica.statistics() if self.replica is not None else None,
        )

    async def aclose(self) -> None:
        """Cancel loads in flight; their waiters get :class:`~shoal.errors.Closed`."""
        await self._flight.aclose()
        await self._peer_flight.aclose()

    # -- the miss path -------------------------------------------------------

    async def _fetch(self, key: str, filler: Callable[[], Any] | None) -> bytes:
        """The rest of the read path after a main-cache miss: hot, negative, stale, flight."""
        data = self._hot_get(key)
        if data is not None:
            return data
        if self._keeps_negative and self._negative.get(key) is not None:
            raise NotFound(key)
        if self._stale is not None and filler is None:
            data = self._serve_stale(key)
            if data is not None:
                return data
        return await self._load(key, filler)

    def _serve_stale(self, key: str) -> bytes | None:
        """An expired value still in its grace period, after starting its reload
        (once: later callers find the reload running). Thread-safe."""
        assert self._stale is not None
        data = self._stale.get(key)
        if data is not None and self.loop is not None:
            if _running_loop() is self.loop:
                self._revalidate(key)
            else:
                self.loop.call_soon_threadsafe(self._revalidate, key)
        return data

    def _revalidate(self, key: str) -> None:
        """Reload ``key`` in the background, through its flight."""
        self._flight.start(key, self._load_once)

    async def _load(
        self, key: str, filler: Callable[[], Any] | None, *, forward: bool = True
    ) -> bytes:
        self.validate_key(key)
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self._loads += 1
        if not forward and self.peers is not None and self.peers.owner(key) != self.peers.self_url:
            # A peer asked, but this node's ring names another owner (views differ
            # during a membership change): load here, in a flight that never forwards.
            return await self._peer_flight.do(key, self._load_here)
        if filler is None:
            return await self._flight.do(key, self._load_once, self._fetch_directly)
        # A filler is this caller's own function: only this node can run it.
        return await self._flight.do(key, functools.partial(self._load_here, filler=filler))

    async def _load_once(self, call: Call[bytes]) -> bytes:
        """A local-origin load: from the owner if that is a peer, else here."""
        cached = self._stores.recheck(call.key)
        if cached is not None:
            return cached
        replica = self.replica
        if replica is not None and (self._loader is None or call.key in replica.state):
            # A replicated group knows every key: without a loader a miss is NotFound
            # here and now; a key this node holds a delete (or an expired value) of
            # loads here, as the owner may not have seen that delete yet.
            return await self._load_here(call, recheck=False)
        peers = self.peers
        if peers is not None:
            peer = peers.pick(call.key)
            if peer is not None:
                try:
                    return await self._fetch_from_peer(peer, call)
                except PeerError as exc:
                    return await self._load_instead(call, exc)
            owner = peers.owner(call.key)
            if owner != peers.self_url:  # suspect: fail over at once, without asking
                return await self._load_instead(
                    call, PeerUnavailable(f"{owner} is not answering (skipped for now)")
                )
        return await self._load_here(call, recheck=False)

    def _fetch_directly(self, call: Call[bytes]) -> bool:
        """Start a new load of a key owned by a peer as a fetch with no task (see
        :mod:`shoal._direct_fetch`): the peer client's callback settles the flight. False
        (the load runs :meth:`_load_once` in a task) when anything else may be
        needed: a replicated group, a key owned here, a client that cannot fetch
        without a task.

        The caches are not looked at again: every caller joins right after its
        own miss, with nothing awaited in between, and a copy cached by a load
        that ended just before would only make this fetch redundant, not wrong.
        """
        if self.replica is not None or self.peers is None:
            return False
        peer = self.peers.pick(call.key)
        if peer is None:
            return False
        loop = self._flight.loop
        assert loop is not None  # the loop of the join that called this
        return self._direct.start(call, peer, self._calls.timer(loop))

    async def _fetch_from_peer(self, peer: PeerClient, call: Call[bytes]) -> bytes:
        """Ask the owner.

        Raises:
            PeerError: the peer failed (noted); the key should load here instead.
            NotFound: the owner says the key does not exist (remembered).
            LoadError: the owner's loader failed, or its value is over ``max_value_bytes``.
        """
        key = call.key
        try:
            fetched = await self._calls.within_peer_timeout(peer, peer.get(self.name, key))
        except PeerError as exc:
            self._calls.failed(peer, repr(key), exc, loads_here=self._loader is not None)
            raise
        except NotFound:
            self._remember_missing(call)
            raise
        return self._took(peer, call, fetched)

    def _took(self, peer: PeerClient, call: Call[bytes], fetched: Fetched) -> bytes:
        """A value fetched from ``peer`` for ``call``: count it, maybe keep a hot copy.

        Raises:
            LoadedValueTooLarge: the value is over ``max_value_bytes`` (the peer
                answered, so it stays healthy; the value is neither kept nor served).
        """
        if self.peers is not None:
            self.peers.succeeded(peer.url)
        if len(fetched.value) > self.config.max_value_bytes:
            self._refuse_fetched(peer, call.key, fetched.value)
        self._peer_loads += 1
        expires_at = fetched.expires_at
        if expires_at is not None and expires_at <= self._clock():
            return fetched.value  # a stale value the owner serves while it reloads
        # A replicated group gets the value from the owner's push; others may keep a copy.
        if not call.fenced and self.replica is None and self._admit_hot(call.key):
            self._hot.set(call.key, fetched.value, expires_at=expires_at)
        return fetched.value

    def _refuse_fetched(self, peer: PeerClient, key: str, value: bytes) -> NoReturn:
        """Refuse a peer's value over ``max_value_bytes`` (counted in ``oversized_values``)."""
        self._oversized_values += 1
        raise LoadedValueTooLarge(
            f"{peer.url} sent {len(value)} bytes for {key!r} in group {self.name!r}, "
            f"over max_value_bytes={self.config.max_value_bytes}"
        )

    async def _load_instead(self, call: Call[bytes], error: PeerError) -> bytes:
        """Load ``call.key`` here because its owner could not be reached (``error``).

        Only a value can come out of this: a node that cannot ask the owner does
        not know that the key is missing. With no loader, or a loader that says
        NotFound, the key may still exist at the owner (written there by ``set``,
        which a loader knows nothing of), so the answer is
        :class:`~shoal.errors.PeerUnavailable` (HTTP 503, gRPC ``UNAVAILABLE``: try
        again), never NotFound, and nothing is remembered as missing.

        After a :class:`~shoal.errors.PeerTimeout` the owner may well be loading the
        key itself, slower than ``peer_timeout``: this node loads it too, as
        groupcache does, and counts the load in ``duplicate_loads``. A cluster
        whose loaders are slower than ``peer_timeout`` should raise the latter.
        """
        key = call.key
        if self._loader is None:
            raise PeerUnavailable(
                f"the owner of {key!r} in group {self.name!r} cannot be reached ({error}), "
                "and the group has no loader here"
            ) from error
        if isinstance(error, PeerTimeout):
            self._duplicate_loads += 1
        try:
            return await self._load_here(call, recheck=False, owner_unreachable=True)
        except NotFound as exc:
            raise PeerUnavailable(
                f"the owner of {key!r} in group {self.name!r} cannot be reached ({error}), "
                "and the loader here does not know the key"
            ) from exc

    def _remember_missing(self, call: Call[bytes]) -> None:
        """The owner says ``call.key`` does not exist: cache that for ``negative_ttl``."""
        if self.config.negative_ttl is not None and not call.fenced:
            self._negative.set(call.key, b"", ttl=self.config.negative_ttl)

    def _fall_back(self, peer: PeerClient, call: Call[bytes], error: PeerError) -> None:
        """A direct fetch's peer failed: load here in a task, as :meth:`_load_once` does."""
        self._calls.failed(peer, repr(call.key), error, loads_here=self._loader is not None)
        self._flight.run(call, self._load_instead(call, error))

    async def _load_here(
        self,
        call: Call[bytes],
        filler: Callable[[], Any] | None = None,
        *,
        recheck: bool = True,
        owner_unreachable: bool = False,
    ) -> bytes:
        """Call the loader (or ``filler``) on this node and cache the result.

        ``owner_unreachable``: the key's owner could not be asked, so a NotFound
        from the loader is not remembered (see :meth:`_load_instead`).

        Raises:
            LoadedValueTooLarge: the encoded result is over ``max_value_bytes``
                (not cached; counted in ``oversized_values``).
        """
        key = call.key
        if recheck:
            cached = self._stores.recheck(key)
            if cached is not None:
                return cached
        # A replicated group's loaded value is a write made when the load started:
        # any set or delete made meanwhile, on any member, is newer and wins.
        version = self.replica.stamp() if self.replica is not None else None
        try:
            result = await self._call_loader(key, filler)
        except NotFound:
            self._local_load_errors += 1
            if self._stale is not None:
                self._stale.delete(key)  # gone at the source: stop serving it
            if self.config.negative_ttl is not None and not call.fenced and not owner_unreachable:
                self._negative.set(key, b"", ttl=self.config.negative_ttl)
            raise
        except BaseException:
            self._local_load_errors += 1
            raise
        ttl = self.config.ttl
        if isinstance(result, Value):
            ttl = result.ttl if result.ttl is not None else ttl
            result = result.data
        try:
            data = self._codec.encode(result)
        except (TypeError, ValueError) as exc:
            self._local_load_errors += 1
            raise LoadError(
                f"loader for group {self.name!r} returned an unusable value: {exc}"
            ) from exc
        if len(data) > self.config.max_value_bytes:
            self._local_load_errors += 1
            self._oversized_values += 1
            raise LoadedValueTooLarge(
                f"loader for group {self.name!r} returned {len(data)} bytes for {key!r}, "
                f"over max_value_bytes={self.config.max_value_bytes}"
            )
        self._local_loads += 1
        if call.fenced:
            return data
        if self.replica is not None and version is not None:
            expires_at = None if ttl is None else self._clock() + ttl
            self.replica.fill(key, data, expires_at, version)
        else:
            self._main.set(key, data, ttl=ttl)
        return data

    async def _call_loader(self, key: str, filler: Callable[[], Any] | None) -> Any:
        fn: Callable[..., Any] | None = filler if filler is not None else self._loader
        if fn is None:
            raise NotFound(key, f"key not found: {key!r} (group {self.name!r} has no loader)")
        return await call_loader(
            fn,
            () if filler is not None else (key,),
            key=key,
            group=self.name,
            load_timeout=self.config.load_timeout,
            executor=self._executor,
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
