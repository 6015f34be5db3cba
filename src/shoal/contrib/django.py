"""Django cache backend: ``django.core.cache`` on a shoal cluster.

::

    CACHES = {
        "default": {
            "BACKEND": "shoal.contrib.django.ShoalCache",
            "LOCATION": "http://127.0.0.1:9999",        # one node's HTTP API, or several
            "OPTIONS": {"group": "django"},
        }
    }

The nodes serve a group without a loader (``shoal serve --group django``), so a
miss is simply a miss. Each key goes straight to the node that owns it
(:class:`shoal.Client` routing). Values are pickled here, in the Django process,
as every Django backend does; the nodes only ever see bytes and never unpickle
them. An ``int`` is stored as its decimal text (``b"41"``) so that
:meth:`ShoalCache.incr` runs atomically at the key's owner.

The sync methods (``get``, ``set``, ...) use a :class:`shoal.SyncClient` (blocking
sockets in the calling thread, fork-safe); the async methods (``aget``, ``aset``,
...) run on the caller's own event loop with a :class:`shoal.Client` of that
loop: no ``sync_to_async`` thread hop. Both run the atomic operations (``add``,
``incr``, ``touch``, ``set_many``, ...) at the key's owner. Every
backend of a process with the same ``LOCATION`` and ``OPTIONS`` shares these
clients (and their near cache); each write drops its keys from every one of them.

``OPTIONS``:

- ``group``: the shoal group (default ``"django"``).
- ``timeout``: seconds one request to a node may take (default 5).
- ``token``: the API token, when the nodes have API tokens.
- ``tls``: ``{"ca": PATH, "cert": PATH, "key": PATH}`` towards ``https://`` nodes.
- ``near_cache``: keep recent hits in the process (:class:`shoal.NearCache`):
  ``True`` for its defaults, or a mapping of its fields
  (``{"max_entries": 10000, "ttl": 30}``). Default: none.
"""

# Django's async cache API names a parameter ``timeout`` (the entry's, not a deadline).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import functools
import json
import pickle
import threading
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, ParamSpec, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, memcache_key_warnings

from .._near_cache import NearCache, NearStore
from ..client import Client
from ..errors import BadRequest, ConfigError, NotFound
from ..sync_client import SyncClient
from ..tls import ClientTls
from ..tokens import bearer

__all__ = ["ShoalCache", "releases_connections"]

P = ParamSpec("P")
R = TypeVar("R")

_PICKLE_MARK: Final = 0x80
"""The first byte of every pickle of protocol 2 and later; decimal text never starts so."""
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def dumps(value: Any) -> bytes:
    """The bytes stored for ``value``: an int as decimal text, anything else pickled."""
    if type(value) is int and _INT_MIN <= value <= _INT_MAX:
        return str(value).encode("ascii")
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """The value that :func:`dumps` stored as ``data``."""
    if data and data[0] == _PICKLE_MARK:
        return pickle.loads(data)  # written by a Django process: the backend's own format
    return int(data)


def releases_connections(loader: Callable[P, R]) -> Callable[P, R]:
    """Make a sync loader that uses Django's ORM give back its database connection.

    shoal runs a sync loader in its own thread pool, outside Django's request
    cycle, so the ``request_started``/``request_finished`` signals that close
    Django's connections never fire there: each pool thread would keep its own
    connection open for as long as it lives. Wrapped, the loader calls
    :func:`django.db.close_old_connections` before and after each call, as
    Django does around a request: with ``CONN_MAX_AGE = 0`` (Django's default)
    the connection is closed after every load; with a positive ``CONN_MAX_AGE``
    each pool thread reuses one until it is that old (so at most
    ``loader_threads`` connections stay open). An ``async`` loader needs none of
    this (it does not use Django's thread-bound connections)::

        @releases_connections
        def load_user(key: str) -> bytes:
            return User.objects.get(pk=key).name.encode()
    """
    from django.db import close_old_connections

    @functools.wraps(loader)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return loader(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


def _seeds(location: str | Iterable[str]) -> list[str]:
    parts = location.replace(";", ",").split(",") if isinstance(location, str) else list(location)
    seeds = [part.strip() for part in parts if part.strip()]
    if not seeds:
        raise ConfigError("ShoalCache needs LOCATION: one or more shoal node URLs")
    return seeds


def _near_cache(option: Any) -> NearCache | None:
    if option is None or option is False:
        return None
    if option is True:
        return NearCache()
    if isinstance(option, NearCache):
        return option
    if not isinstance(option, Mapping):
        raise ConfigError(
            "OPTIONS['near_cache'] is True, a shoal.NearCache or a mapping of its fields"
        )
    try:
        return NearCache(**option)
    except TypeError as exc:
        raise ConfigError(f"OPTIONS['near_cache']: {exc}") from None


def _tls(option: Any) -> ClientTls | None:
    if option is None or isinstance(option, ClientTls):
        return option
    if not isinstance(option, Mapping):
        raise ConfigError("OPTIONS['tls'] is a mapping with ca, cert and key file paths")
    return ClientTls(ca=option.get("ca"), cert=option.get("cert"), key=option.get("key"))


_KEY_MEMO_SIZE: Final = 10_000
"""Keys a backend remembers as made and validated (forgotten all at once when full)."""


class _KeyMemo:
    """Made keys by (key, version), valid for one key function and prefix."""

    __slots__ = ("keys", "owner")

    def __init__(self, owner: tuple[Any, str]) -> None:
        self.owner = owner
        self.keys: dict[tuple[str, int], str] = {}


class _Shared:
    """The clients of one process for one LOCATION and OPTIONS, shared by every
    ShoalCache built with them (Django builds one per thread and alias), so that
    they share connections and one near cache, which their own writes keep exact."""

    def __init__(self, seeds: list[str], options: dict[str, Any]) -> None:
        self._seeds = seeds
        self._options = options
        self._lock = threading.Lock()
        self._sync: SyncClient | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )

    def sync_client(self) -> SyncClient:
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = SyncClient(self._seeds, **self._options).start()
                client = self._sync
        return client

    async def async_client(self) -> Client:
        """The async client of the running loop."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = Client(self._seeds, **self._options)
            await client.start()
            self._async[loop] = client
        return client

    def near_caches(self) -> list[NearStore]:
        clients: list[SyncClient | Client | None] = [self._sync, *self._async.values()]
        return [c.near_cache for c in clients if c is not None and c.near_cache is not None]


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, _Shared] = {}


def _shared(seeds: list[str], options: dict[str, Any]) -> _Shared:
    key = repr((seeds, sorted(options.items())))
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = _Shared(seeds, options)
        return shared


class ShoalCache(BaseCache):  # type: ignore[misc]  # Django ships no type information
    """A Django cache backend on a shoal cluster.

    Args:
        server: ``LOCATION``: a node URL (``http://host:port`` of its HTTP API,
            ``grpc://``, ``https://`` or ``unix:/path``), several separated by
            commas or semicolons, or a list of them.
        params: the rest of the ``CACHES`` entry (``TIMEOUT``, ``KEY_PREFIX``,
            ``VERSION``, ``KEY_FUNCTION``, ``OPTIONS``).
    """

    def __init__(self, server: str | Iterable[str], params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        self._group: str = options.pop("group", "django")
        client_options: dict[str, Any] = {"timeout": float(options.pop("timeout", 5.0))}
        token = options.pop("token", None)
        if token is not None:
            client_options["token"] = token
        tls = _tls(options.pop("tls", None))
        if tls is not None:
            client_options["tls"] = tls
        near = _near_cache(options.pop("near_cache", None))
        if near is not None:
            client_options["near_cache"] = near
        if options:
            raise ConfigError(f"ShoalCache: unknown OPTIONS {sorted(options)}")
        super().__init__({**params, "OPTIONS": {}})
        self._seeds = _seeds(server)
        self._client_options = client_options
        self._token: str | None = token
        self._made = _KeyMemo((self.key_func, self.key_prefix))
        self._shared = _shared(self._seeds, client_options)

    # -- clients ---------------------------------------------------------------------------

    def _client(self) -> SyncClient:
        """The blocking client of the process for this LOCATION and OPTIONS."""
        return self._shared.sync_client()

    def _dropped(self, keys: Iterable[str] | None) -> None:
        """Drop ``keys`` (None: the whole group) from every near cache of the process's
        clients for this LOCATION, after a write that did not go through all of them."""
        for near in self._shared.near_caches():
            if keys is None:
                near.drop(self._group, None)
            else:
                for key in keys:
                    near.drop(self._group, key)

    async def _aclient(self) -> Client:
        return await self._shared.async_client()

    # -- the operations, written once as async functions of a client -----------------------

    def _key(self, key: str, version: int | None) -> str:
        """Django's ``make_and_validate_key``, remembered for keys that raise no warning.

        Making and validating a key costs more than a near-cache hit; a key once made
        (for the same key function and prefix) is looked up instead. A key that warns
        is made and validated every time, so that every use warns.
        """
        if version is None:
            version = self.version
        memo = self._made
        if memo.owner != (self.key_func, self.key_prefix):
            memo = self._made = _KeyMemo((self.key_func, self.key_prefix))
        made = memo.keys.get((key, version))
        if made is not None:
            return made
        made = self.make_key(key, version=version)
        self.validate_key(made)
        if not any(memcache_key_warnings(made)):
            if len(memo.keys) >= _KEY_MEMO_SIZE:
                memo.keys.clear()
            memo.keys[(key, version)] = made
        assert isinstance(made, str)
        return made

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Django's timeout as seconds to live: None never expires, 0 (or less) expires now."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0.0, float(timeout))

    def _ttl(self, timeout: Any) -> float | None:
        return self.get_backend_timeout(timeout)

    async def _get(self, client: Client, key: str, default: Any) -> Any:
        try:
            return loads(await client.get(self._group, key))
        except NotFound:
            return default

    async def _set(self, client: Client, key: str, data: bytes, ttl: float | None) -> None:
        try:
            if ttl is not None and ttl <= 0:
                await client.delete(self._group, key)
            else:
                await client.set(self._group, key, data, ttl=ttl)
        finally:
            self._dropped([key])

    async def _add(self, client: Client, key: str, data: bytes, ttl: float | None) -> bool:
        try:
            return await self._add_at_owner(client, key, data, ttl)
        finally:
            self._dropped([key])

    async def _add_at_owner(self, client: Client, key: str, data: bytes, ttl: float | None) -> bool:
        if ttl is not None and ttl <= 0:
            # Stored and expired at once: it counts as added when the key was absent.
            stored = bool(await client.add(self._group, key, data, ttl=None))
            if stored:
                await client.delete(self._group, key)
            return stored
        return bool(await client.add(self._group, key, data, ttl=ttl))

    async def _touch(self, client: Client, key: str, ttl: float | None) -> bool:
        try:
            if ttl is not None and ttl <= 0:
                return await client.delete(self._group, key)
            return bool(await client.touch(self._group, key, ttl))
        finally:
            self._dropped([key])

    async def _incr(self, client: Client, key: str, delta: int, shown: str) -> int:
        try:
            return int(await client.incr(self._group, key, delta))
        except NotFound:
            raise ValueError(f"Key '{shown}' not found") from None
        except BadRequest as exc:
            raise TypeError(f"Key '{shown}' does not hold an integer: {exc}") from None
        finally:
            self._dropped([key])

    async def _get_many(self, client: Client, keys: Mapping[str, str]) -> dict[str, Any]:
        if not keys:
            return {}
        found = await client.get_many(self._group, list(keys))
        return {keys[made]: loads(data) for made, data in found.items()}

    async def _set_many(
        self, client: Client, data: Mapping[str, bytes], ttl: float | None
    ) -> list[str]:
        if not data:
            return []
        if ttl is not None and ttl <= 0:
            await self._delete_many(client, list(data))
            return []
        try:
            await client.set_many(self._group, dict(data), ttl=ttl)
        finally:
            self._dropped(data)
        return []

    async def _delete_many(self, client: Client, keys: list[str]) -> None:
        if not keys:
            return
        try:
            await client.delete_many(self._group, keys)
        finally:
            self._dropped(keys)

    def _clear_blocking(self) -> None:
        """Drop every key of the group on every node (``POST .../invalidate``)."""
        errors: list[Exception] = []
        for seed in self._seeds:
            if not seed.startswith(("http://", "https://")):
                continue
            request = urllib.request.Request(
                f"{seed.rstrip('/')}/v1/groups/{self._group}/invalidate", method="POST", data=b""
            )
            if self._token is not None:
                request.add_header("Authorization", bearer(self._token))
            try:
                with urllib.request.urlopen(request, timeout=self._client_options["timeout"]) as r:
                    json.loads(r.read())
                return
            except OSError as exc:
                errors.append(exc)
        raise ConfigError(
            f"clear() needs a reachable node HTTP API among LOCATION {self._seeds}: {errors}"
        )

    # -- Django's sync API -----------------------------------------------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The cached value of ``key``, or ``default``."""
        made = self._key(key, version)
        try:
            return loads(self._client().get(self._group, made))
        except NotFound:
            return default

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key``."""
        made, data, ttl = self._key(key, version), dumps(value), self._ttl(timeout)
        if ttl is not None and ttl <= 0:
            self._client().delete(self._group, made)
        else:
            self._client().set(self._group, made, data, ttl=ttl)
        self._dropped([made])

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent (atomic at its owner); whether it did."""
        made, data, ttl = self._key(key, version), dumps(value), self._ttl(timeout)
        client = self._client()
        try:
            if ttl is not None and ttl <= 0:
                # Stored and expired at once: it counts as added when the key was absent.
                stored = bool(client.add(self._group, made, data, ttl=None))
                if stored:
                    client.delete(self._group, made)
                return stored
            return bool(client.add(self._group, made, data, ttl=ttl))
        finally:
            self._dropped([made])

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout without rewriting it; False if absent."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        client = self._client()
        try:
            if ttl is not None and ttl <= 0:
                return bool(client.delete(self._group, made))
            return bool(client.touch(self._group, made, ttl))
        finally:
            self._dropped([made])

    def delete(self, key: str, version: int | None = None) -> bool:
        """Remove ``key``; whether it was there."""
        made = self._key(key, version)
        try:
            return self._client().delete(self._group, made)
        finally:
            self._dropped([made])

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Whether ``key`` is cached."""
        missing = self._missing_key
        return self.get(key, missing, version=version) is not missing

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` atomically at its owner; the result."""
        made = self._key(key, version)
        try:
            return int(self._client().incr(self._group, made, delta))
        except NotFound:
            raise ValueError(f"Key '{key}' not found") from None
        except BadRequest as exc:
            raise TypeError(f"Key '{key}' does not hold an integer: {exc}") from None
        finally:
            self._dropped([made])

    def decr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Subtract ``delta`` from the integer under ``key``; the result."""
        return self.incr(key, -delta, version=version)

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """The cached values of ``keys`` (absent ones left out), one round trip per owner."""
        made = {self._key(key, version): key for key in keys}
        if not made:
            return {}
        found = self._client().get_many(self._group, list(made))
        return {made[k]: loads(data) for k, data in found.items()}

    def set_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item; the keys that could not be stored (none: errors raise)."""
        ttl = self._ttl(timeout)
        encoded = {self._key(key, version): dumps(value) for key, value in data.items()}
        if not encoded:
            return []
        client = self._client()
        try:
            if ttl is not None and ttl <= 0:
                client.delete_many(self._group, list(encoded))
            else:
                client.set_many(self._group, encoded, ttl=ttl)
        finally:
            self._dropped(encoded)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Remove every key."""
        made = [self._key(key, version) for key in keys]
        if not made:
            return
        try:
            self._client().delete_many(self._group, made)
        finally:
            self._dropped(made)

    def clear(self) -> None:
        """Remove every key of the group, on every node."""
        self._clear_blocking()
        self._dropped(None)

    def close(self, **kwargs: Any) -> None:
        """Nothing to do per request: the client's connections are pooled for the process."""

    # -- Django's async API, on the caller's loop ------------------------------------------

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """Async :meth:`get`."""
        return await self._get(await self._aclient(), self._key(key, version), default)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Async :meth:`set`."""
        made, data, ttl = self._key(key, version), dumps(value), self._ttl(timeout)
        await self._set(await self._aclient(), made, data, ttl)

    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`add`."""
        made, data, ttl = self._key(key, version), dumps(value), self._ttl(timeout)
        return await self._add(await self._aclient(), made, data, ttl)

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`touch`."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        return await self._touch(await self._aclient(), made, ttl)

    async def adelete(self, key: str, version: int | None = None) -> bool:
        """Async :meth:`delete`."""
        made = self._key(key, version)
        try:
            return await (await self._aclient()).delete(self._group, made)
        finally:
            self._dropped([made])

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        """Async :meth:`has_key`."""
        missing = self._missing_key
        return await self.aget(key, missing, version=version) is not missing

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Async :meth:`incr`."""
        return await self._incr(await self._aclient(), self._key(key, version), delta, key)

    async def adecr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Async :meth:`decr`."""
        return await self.aincr(key, -delta, version=version)

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Async :meth:`get_many`."""
        made = {self._key(key, version): key for key in keys}
        return await self._get_many(await self._aclient(), made)

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Async :meth:`set_many`."""
        ttl = self._ttl(timeout)
        encoded = {self._key(key, version): dumps(value) for key, value in data.items()}
        return await self._set_many(await self._aclient(), encoded, ttl)

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Async :meth:`delete_many`."""
        made = [self._key(key, version) for key in keys]
        await self._delete_many(await self._aclient(), made)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await asyncio.to_thread(self._clear_blocking)
        self._dropped(None)

    async def aclose(self, **kwargs: Any) -> None:
        """Async :meth:`close`: nothing to do per request."""
