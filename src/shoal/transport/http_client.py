"""The HTTP peer client: a pool of keep-alive HTTP/1.1 connections to one peer.

Rules of this module (the pool, pipelining, batching and retries are described
in docs/protocol.md, "The client"):

- A connection carries one batch at a time and goes back to the pool only after
  its last answer, if that allows keep-alive; any doubt about its state (an
  error, a cancellation mid-exchange, stray bytes) discards it.
- Pipelined GETs and batch gets go to shoal peers only (those that send
  ``Shoal-Extensions``); Go peers get one plain request per connection.
- Every foreign error (``OSError``, ``httptools`` errors, codec errors) is
  translated here, cause chained, into shoal's errors; which status means which
  error comes from the one table of :mod:`shoal.statuses`.
- A connection knows nothing of the client (:mod:`._http_connection`); the
  pool, the fetches and their batches share the client's private state, so they
  live here with it, which is why this module is long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import urlsplit

from .._gather import gather_merged
from .._http import connect_tls
from ..errors import (
    ConfigError,
    InvalidKey,
    NotFound,
    PeerError,
    PeerUnavailable,
    RemoteLoadError,
)
from ..statuses import PEER_LOAD_FAILED, PEER_NOT_FOUND
from ..wire import (
    DEFAULT_BASE_PATH,
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOBUF_CONTENT_TYPE,
    LocalProtocolError,
    RemoteProtocolError,
    build_peer_path,
    build_remove_keys_path,
    decode_get_response,
    encode_remove_keys,
    encode_set_request,
    from_expire_ns,
    no_such_group_message,
    to_expire_ns,
)
from ..wire.batch import (
    DEFAULT_MAX_BATCH_KEYS,
    GET_MANY_CONTENT_TYPE,
    GET_MANY_ERRORS_EXTENSION,
    GET_MANY_EXTENSION,
    INVALIDATE_EXTENSION,
    INVALIDATE_SEGMENT,
    REPLICA_EXTENSION,
    REPLICA_SEGMENT,
    build_get_many_path,
    build_group_path,
    decode_batch_entries,
    decode_get_many_response,
    encode_get_many_request,
    parse_extensions,
)
from . import FetchDone, Fetched
from ._http_connection import OVER, Answer, Broken, Connection, Dropped, Queued
from ._http_shared import MAX_ERROR_TEXT as _MAX_ERROR_TEXT
from ._http_shared import STATUS_NODE_UNAVAILABLE, WRITE_HEADER

__all__ = [
    "HttpTransport",
    "HttpPeerClient",
    "PeerClientStats",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PIPELINE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
]

log = logging.getLogger("shoal.transport.http")

DEFAULT_MAX_CONNECTIONS: Final = 64
"""Connections a client keeps to one peer at most."""
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
"""Seconds a client waits for a new connection before the peer counts as unavailable."""
DEFAULT_MAX_PIPELINE: Final = 16
"""GETs a client pipelines on one connection to a shoal peer at most."""
DEFAULT_IDLE_TIMEOUT: Final = 30.0
"""Seconds an idle pooled connection is kept. Shorter than the keep-alive timeout of
shoal's server (75 s by default), so the server rarely closes one the client is about
to use."""

_NO_SUCH_GROUP: Final = no_such_group_message("").encode()
_GET_MANY_TYPE: Final = GET_MANY_CONTENT_TYPE.encode()
_PROTOBUF_TYPE: Final = PROTOBUF_CONTENT_TYPE.encode()


@dataclass(frozen=True, slots=True)
class PeerClientStats:
    """A snapshot of one :class:`HttpPeerClient`'s counters."""

    url: str
    requests: int
    """Exchanges begun (a retried one counts once)."""
    retries: int
    """Exchanges sent again after a reused connection turned out to be closed."""
    connections_opened: int
    """Connections ever opened to the peer."""
    connections_open: int
    """Connections open or being opened now."""
    connections_idle: int
    """Open connections waiting in the pool."""
    waiting: int
    """Requests waiting for a connection (all ``max_connections`` are busy)."""
    pipelined: int = 0
    """GETs that went out in one write with others (pipelining)."""
    batched: int = 0
    """Keys of single-key fetches that went out together in one batch get."""


class _Sink:
    """One :meth:`HttpPeerClient.fetch`: where its outcome goes.

    Sent alone, it stands in for the waiter future of a queued GET (the same
    ``done``/``set_result``/``set_exception``) and turns the answer into the
    value or the error :meth:`HttpPeerClient.get` would give; gathered into a
    batch, the :class:`_Batch` hands it its part of the answer. Either way the
    fetch's callback runs at once, from the connection's parser callback.
    """

    __slots__ = ("_client", "_done", "_finished", "_retry", "batch", "group", "item", "key")

    def __init__(self, client: HttpPeerClient, group: str, key: str, done: FetchDone) -> None:
        self._client = client
        self.group = group
        self.key = key
        self._done = done
        self._finished = False
        self._retry: asyncio.Task[None] | None = None
        self.item: Queued | None = None
        """The GET carrying it alone, once flushed."""
        self.batch: _Batch | None = None
        """The batch carrying it, once flushed."""

    def done(self) -> bool:
        """Whether the outcome was delivered, or the fetch abandoned."""
        return self._finished

    def set_result(self, answer: Answer) -> None:
        """The answer to its own GET is in: deliver the value or the error it says."""
        if self._finished:
            return
        client = self._client
        client._learn(answer)
        try:
            fetched = client._fetched(answer, self.key)
        except Exception as exc:
            self.deliver(None, exc)
        else:
            self.deliver(fetched, None)

    def set_exception(self, exc: BaseException) -> None:
        """Its GET failed: deliver the error, or send the GET once more when the
        connection dropped it through no fault of the peer (as :meth:`get`)."""
        if self._finished:
            return
        assert self.item is not None
        error = self._client._exchange_failed(self.item, exc)
        if error is None:
            self._retry = self._client._spawn(self._again(self.item.request))
        else:
            self.deliver(None, error)

    def deliver(self, fetched: Fetched | None, error: BaseException | None) -> None:
        """Hand the outcome to the fetch's callback (once)."""
        if self._finished:
            return
        self._finished = True
        self.item = self.batch = None  # both refer back to this fetch
        # Called from the connection's parser callbacks: an error escaping here would
        # break the connection for every exchange on it.
        try:
            self._done(fetched, error)
        except Exception as exc:
            self._client._loop_error(exc)

    def abandon(self) -> None:
        """The caller gave up: deliver nothing. A GET already written leaves its
        connection in an unknown state, so the connection goes."""
        if self._finished:
            return
        self._finished = True
        if self._retry is not None:
            self._retry.cancel()
        elif self.batch is not None:
            self.batch.abandoned()
        elif self.item is not None and self.item.connection is not None:
            self._client._discard(self.item.connection)
        self.item = self.batch = None

    async def _again(self, request: bytes) -> None:
        try:
            answer = await self._client._retry(request)
        except asyncio.CancelledError:
            # Abandoned (nothing to deliver), or the client was closed.
            self.deliver(None, PeerUnavailable(f"{self._client.url}: the client is closed"))
            raise
        except Exception as exc:
            self.deliver(None, exc)
        else:
            self.set_result(answer)


class _Batch:
    """Several fetches of one group gathered into one batch get (``key_errors``),
    waiting for its answer as a queued request's waiter does; each fetch gets its
    key's part of the answer, as a GET of the key alone would have had it."""

    __slots__ = ("_client", "_finished", "_retry", "item", "sinks")

    def __init__(self, client: HttpPeerClient, sinks: dict[str, _Sink], request: bytes) -> None:
        self._client = client
        self.sinks = sinks
        self._finished = False
        self._retry: asyncio.Task[None] | None = None
        self.item = Queued(request, self)
        """The request carrying the batch (let go once it is over: it refers back)."""
        for sink in sinks.values():
            sink.batch = self

    def done(self) -> bool:
        """Whether the answer was handed out (or every fetch of it abandoned)."""
        return self._finished

    def set_result(self, answer: Answer) -> None:
        """The answer is in: each fetch gets its part."""
        if self._finished:
            return
        self._finished = True
        self._client._learn(answer)
        self._client._hand_out(answer, self.sinks)
        self._over()

    def set_exception(self, exc: BaseException) -> None:
        """The exchange failed: every fetch gets the error, unless it may go again."""
        if self._finished:
            return
        error = self._client._exchange_failed(self.item, exc)
        if error is None:
            self._retry = self._client._spawn(self._again())
        else:
            self._fail(error)

    def abandoned(self) -> None:
        """One of its fetches was abandoned: once all are, drop the exchange."""
        if self._finished or not all(sink.done() for sink in self.sinks.values()):
            return
        self._finished = True
        if self._retry is not None:
            self._retry.cancel()
        elif self.item.connection is not None:
            self._client._discard(self.item.connection)
        self._over()

    async def _again(self) -> None:
        try:
            answer = await self._client._retry(self.item.request)
        except asyncio.CancelledError:
            # Abandoned (nothing to deliver), or the client was closed.
            self._fail(PeerUnavailable(f"{self._client.url}: the client is closed"))
            raise
        except Exception as exc:
            self._fail(exc)
        else:
            self.set_result(answer)

    def _fail(self, error: BaseException) -> None:
        """Every fetch of the batch still waiting gets ``error``."""
        if self._finished:
            return
        self._finished = True
        for sink in self.sinks.values():
            sink.deliver(None, error)
        self._over()

    def _over(self) -> None:
        # The request and this batch refer to each other: break that here, so both go
        # by reference counting rather than a later GC run.
        self.item.waiter = OVER
        self.sinks = {}


def _removed_count(answer: Answer) -> int | None:
    """The ``{"removed": n}`` of a shoal peer's answer to a delete; None from Go."""
    if not answer.body.startswith(b'{"removed": '):
        return None
    try:
        return int(answer.body[12:].rstrip(b"}"))
    except ValueError:
        return None


def _excerpt(body: bytes) -> str:
    """An error body as text for a message: decoded, stripped, cut."""
    text = body[: _MAX_ERROR_TEXT + 1].decode("utf-8", "replace").strip()
    return text[:_MAX_ERROR_TEXT] + "..." if len(text) > _MAX_ERROR_TEXT else text


def _media_type(content_type: bytes) -> bytes:
    return content_type.partition(b";")[0].strip().lower()


class HttpPeerClient:
    """Talks to one peer over a pool of keep-alive HTTP/1.1 connections.

    Made by :meth:`HttpTransport.client`; safe to share between the tasks of one
    event loop. Connections open lazily, on the first request.

    Args:
        url: the peer's URL (``http://host:port``, maybe with a path prefix).
        base_path: the peer protocol's path prefix.
        max_connections: connections to the peer at most.
        connect_timeout: seconds to wait for a new connection.
        idle_timeout: seconds an idle connection is kept in the pool.
        max_response_bytes: longest answer body accepted.
        max_batch_keys: keys per batch get; more are split into several batches.
        max_pipeline: GETs one connection carries at once to a shoal peer (pipelined
            in one write); 1 sends each on a connection of its own.
        ssl_context: TLS settings for an ``https://`` URL (default: the system's), or
            a function that gives the current ones, asked at each new connection
            (certificate rotation: :meth:`shoal.tls.NodeTls.client`).
        on_close: called once by :meth:`aclose` (the transport forgets the client).
        request_headers: called as each request is written, for header lines to add
            (``b"Name: value\r\n"`` each, or ``b""``): the trace context of the
            caller (:mod:`shoal.otel`). Default None: none.

    Raises:
        ConfigError: a URL that is not ``http://`` or ``https://`` with a host.
    """

    def __init__(
        self,
        url: str,
        *,
        base_path: str = DEFAULT_BASE_PATH,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        max_pipeline: int = DEFAULT_MAX_PIPELINE,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        on_close: Callable[[HttpPeerClient], None] | None = None,
        request_headers: Callable[[], bytes] | None = None,
    ) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"invalid peer URL {url!r}: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"a peer URL is http(s)://host[:port], got {url!r}")
        self._url = url
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._ssl: Callable[[], ssl.SSLContext] | None = None
        if parts.scheme == "https":
            if callable(ssl_context):
                self._ssl = ssl_context
            else:
                fixed = ssl_context or ssl.create_default_context()
                self._ssl = lambda: fixed
        # As Go's HTTPPool: the peer's URL, then the base path.
        self._base = parts.path.rstrip("/") + base_path
        if not self._base.isascii() or any(c <= " " or c == "\x7f" for c in self._base):
            raise ConfigError(f"the path {self._base!r} must be printable ASCII, escaped")
        netloc = parts.netloc.rpartition("@")[2]
        try:
            host = netloc.encode("ascii")
        except UnicodeEncodeError:
            try:
                host = netloc.encode("idna")
            except UnicodeError as exc:
                raise ConfigError(f"invalid host in peer URL {url!r}: {exc}") from exc
        self._host_header = b"Host: " + host + b"\r\n"
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._limit = max_response_bytes
        self._max_batch_keys = max_batch_keys
        self._on_close = on_close
        self._request_headers = request_headers

        self._idle: deque[Connection] = deque()  # most recently used at the right
        self._all: set[Connection] = set()
        self._open = 0  # open or being opened (slots taken)
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False
        # What the peer said about itself in its last answer.
        self._extensions_raw: bytes | None = None
        self._probed = False
        self._batch = False
        self._key_errors = False
        self._pipelining = False
        self._pipeline = max_pipeline
        # GETs and fetches queued for the next flush (pipelining), and the tasks
        # sending the ones that found no idle connection (and retrying fetches).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[Queued] = []
        self._fetches: list[_Sink] = []
        self._flush_due = False
        self._senders: set[asyncio.Task[None]] = set()
        self._pipelined = 0
        self._batched = 0

        self._requests = 0
        self._retries = 0
        self._opened = 0

    def __repr__(self) -> str:
        return f"<HttpPeerClient {self._url} open={self._open} idle={len(self._idle)}>"

    @property
    def url(self) -> str:
        """The peer's URL, its identity on the ring."""
        return self._url

    def statistics(self) -> PeerClientStats:
        """A snapshot of the client's counters."""
        return PeerClientStats(
            url=self._url,
            requests=self._requests,
            retries=self._retries,
            connections_opened=self._opened,
            connections_open=self._open,
            connections_idle=len(self._idle),
            waiting=sum(1 for waiter in self._waiters if not waiter.done()),
            pipelined=self._pipelined,
            batched=self._batched,
        )

    # -- the peer protocol -------------------------------------------------------------

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch ``key`` of ``group`` from the peer, which loads it if needed.

        Raises:
            NotFound: the peer says the key does not exist.
            RemoteLoadError: the peer's loader failed (500 or 503 with a body).
            PeerUnavailable: the connection could not be made or was lost.
            PeerError: any other failure (unknown group, bad status, bad body).
            InvalidKey: group or key cannot be encoded (a lone surrogate).
        """
        try:
            target = build_peer_path(self._base, group, key)
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        return self._fetched(await self._get_exchange(self._request(b"GET", target)), key)

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """:meth:`get` without a task: ``done(fetched, error)`` is called from the
        answer's callback (see :meth:`PeerClient.fetch`).

        Only for a shoal peer, once it has answered (its GETs are pipelined): the
        fetches of one loop iteration go out together at the end of it, those of
        one group in one batch get when the peer answers batches key by key
        (:data:`~shoal.wire.batch.GET_MANY_ERRORS_EXTENSION`), each fetch
        getting the value or error a GET of its key would have. Returns None for
        any other peer, and for a key that cannot be encoded (:meth:`get` raises
        the error).
        """
        loop = self._loop
        if not self._pipelining or loop is None or self._closed:
            return None
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return None
        sink = _Sink(self, group, key, done)
        self._fetches.append(sink)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return sink.abandon

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch several keys; keys the peer lacks are left out.

        A peer that serves shoal's batch get (it said so in an earlier answer)
        gets one request per ``max_batch_keys`` keys; any other peer (a Go node,
        or a shoal node not yet heard from) gets one GET per key, concurrently.

        Raises:
            The errors of :meth:`get` except NotFound (the first one, once every
            request has finished).
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        if not self._batch:
            return await self._get_each(group, wanted)
        size = self._max_batch_keys
        if len(wanted) <= size:
            return await self._get_batch(group, wanted)
        return await gather_merged(
            self._get_batch(group, wanted[i : i + size]) for i in range(0, len(wanted), size)
        )

    async def set(
        self,
        group: str,
        key: str,
        value: bytes,
        expires_at: float | None = None,
        *,
        client: bool = False,
    ) -> None:
        """Store ``value`` under ``key`` on the peer (``PUT``, groupcache-go v3's form).

        Args:
            expires_at: absolute expiry in Unix seconds; None: never.
            client: send it as a client's write (see :data:`WRITE_HEADER`): the peer
                runs its whole write path instead of storing it in its own caches.

        Raises:
            PeerUnavailable, PeerError: as :meth:`get` (any answer but 200 is a PeerError).
            InvalidKey: group or key cannot be encoded.
        """
        try:
            target = build_peer_path(self._base, group, key)
            body = encode_set_request(group, key, value, expire_ns=to_expire_ns(expires_at))
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        request = self._request(b"PUT", target, body, _PROTOBUF_TYPE, client=client)
        self._check_written(await self._exchange(request), f"set {key!r}")

    async def delete(self, group: str, key: str, *, client: bool = False) -> int | None:
        """Remove ``key`` from the peer's caches (``DELETE``); with ``client``, from the
        whole cluster (see :meth:`set`).

        Returns:
            1 if the peer had the key, 0 if not, None if it does not say (Go).

        Raises:
            PeerUnavailable, PeerError: as :meth:`set`.
        """
        try:
            target = build_peer_path(self._base, group, key)
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        answer = await self._exchange(self._request(b"DELETE", target, client=client))
        self._check_written(answer, f"delete {key!r}")
        return _removed_count(answer)

    async def remove_keys(self, group: str, keys: Iterable[str]) -> int | None:
        """Remove keys from the peer's caches: one key with ``DELETE``, several with
        ``POST .../_remove-keys/`` (groupcache-go's forms), ``max_batch_keys`` per request
        (a shoal server refuses more).

        Returns:
            How many of the keys the peer had; None if it does not say (Go).

        Raises:
            PeerUnavailable, PeerError: as :meth:`set`.
        """
        key_list = list(keys)
        if not key_list:
            return 0
        if len(key_list) == 1:
            return await self.delete(group, key_list[0])
        size = self._max_batch_keys
        removed: int | None = 0
        for start in range(0, len(key_list), size):
            chunk = key_list[start : start + size]
            try:
                target = build_remove_keys_path(self._base, group)
                body = encode_remove_keys(group, chunk)
            except LocalProtocolError as exc:
                raise InvalidKey(str(exc)) from exc
            request = self._request(b"POST", target, body, b"application/json")
            answer = await self._exchange(request)
            self._check_written(answer, f"remove {len(chunk)} keys")
            count = _removed_count(answer)
            removed = None if count is None or removed is None else removed + count
        return removed

    async def invalidate(self, group: str) -> int | None:
        """Drop every key of ``group`` on the peer (``POST .../_invalidate/``).

        Only a shoal peer gets the request: a Go peer would read it as a GET of the
        key ``_invalidate/``. A peer not heard from yet is asked what it is first.

        Returns:
            How many keys the peer dropped; None for a Go peer (left alone).

        Raises:
            PeerUnavailable, PeerError: as :meth:`set`.
        """
        if INVALIDATE_EXTENSION not in await self._peer_extensions():
            return None
        try:
            target = build_group_path(self._base, group, INVALIDATE_SEGMENT)
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        answer = await self._exchange(self._request(b"POST", target, b"", b"text/plain"))
        self._check_written(answer, "invalidate")
        return _removed_count(answer)

    async def replica(self, group: str, request: bytes) -> bytes:
        """One exchange of a replicated group (``POST {base}{group}/_replica/``).

        Raises:
            PeerUnavailable, PeerError: as :meth:`set`; PeerError also for a peer
                that does not serve replicated groups.
        """
        if REPLICA_EXTENSION not in await self._peer_extensions():
            raise PeerError(f"{self._url}: the peer does not serve replicated groups")
        try:
            target = build_group_path(self._base, group, REPLICA_SEGMENT)
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        answer = await self._exchange(self._request(b"POST", target, request, _PROTOBUF_TYPE))
        if answer.status != 200:
            raise PeerError(
                f"{self._url}: replica exchange answered {answer.status}: {_excerpt(answer.body)}"
            )
        return answer.body

    async def _peer_extensions(self) -> frozenset[str]:
        """The extensions the peer serves, asking it (``GET {base}``, which every
        groupcache server answers 400) if no answer has said yet."""
        if self._extensions_raw is None and not self._probed:
            answer = await self._exchange(self._request(b"GET", self._base))
            self._probed = True
            self._learn(answer)
        return parse_extensions(self._extensions_raw)

    async def aclose(self) -> None:
        """Close every connection; requests in flight fail with PeerUnavailable. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PeerUnavailable(f"{self._url}: the client is closed"))
        self._waiters.clear()
        queue, self._queue = self._queue, []
        for item in queue:
            if not item.waiter.done():
                item.waiter.set_exception(PeerUnavailable(f"{self._url}: the client is closed"))
        fetches, self._fetches = self._fetches, []
        for sink in fetches:
            sink.deliver(None, PeerUnavailable(f"{self._url}: the client is closed"))
        for task in list(self._senders):
            task.cancel()
        self._idle.clear()
        for connection in list(self._all):
            connection.abort()
        self._all.clear()
        self._open = 0
        if self._on_close is not None:
            self._on_close(self)

    # -- batch get -------------------------------------------------------------------

    async def _get_batch(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        try:
            target = build_get_many_path(self._base, group)
            body = encode_get_many_request(keys)
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        answer = await self._exchange(self._request(b"POST", target, body, _GET_MANY_TYPE))
        if answer.status == 200 and _media_type(answer.content_type) == _GET_MANY_TYPE:
            try:
                items = decode_get_many_response(
                    answer.body, max_items=len(keys), max_size=self._limit
                )
            except RemoteProtocolError as exc:
                raise PeerError(f"{self._url}: undecodable batch answer: {exc}") from exc
            asked = set(keys)
            return {
                item.key: Fetched(item.value, from_expire_ns(item.expire_ns))
                for item in items
                if item.key in asked  # never cache what was not asked for
            }
        if not self._batch:
            # The answer shows the peer no longer serves batches (another program now
            # answers at its URL): ask key by key.
            return await self._get_each(group, keys)
        if answer.status == 200:
            raise PeerError(
                f"{self._url}: batch answer of type {answer.content_type.decode('latin-1')!r}"
            )
        raise self._read_error(answer, None)

    async def _get_each(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        async def one(key: str) -> dict[str, Fetched]:
            try:
                return {key: await self.get(group, key)}
            except NotFound:
                return {}

        if len(keys) == 1:
            return await one(keys[0])
        return await gather_merged(one(key) for key in keys)

    # -- answers ---------------------------------------------------------------------

    def _fetched(self, answer: Answer, key: str) -> Fetched:
        """The value in an answer to a GET of ``key``, or the error it says."""
        if answer.status != 200:
            raise self._read_error(answer, key)
        try:
            response = decode_get_response(answer.body, max_size=self._limit)
        except RemoteProtocolError as exc:
            raise PeerError(f"{self._url}: undecodable answer for {key!r}: {exc}") from exc
        return Fetched(response.value, from_expire_ns(response.expire_ns), response.minute_qps)

    def _read_error(self, answer: Answer, key: str | None) -> Exception:
        """The error for an answer to a read other than 200."""
        status = answer.status
        text = _excerpt(answer.body)
        if status == PEER_NOT_FOUND:
            if key is not None and not answer.body.startswith(_NO_SUCH_GROUP):
                return NotFound(key)
            # The peer lacks the group: a peer misconfigured, not a missing key.
            return PeerError(f"{self._url}: 404 {text}")
        if status in PEER_LOAD_FAILED and text:
            what = repr(key) if key is not None else "a batch"
            return RemoteLoadError(f"{self._url}: loading {what} failed: {text}")
        if status == STATUS_NODE_UNAVAILABLE:
            # The peer cannot serve at all (it is closing): fail over as for a dead peer.
            return PeerUnavailable(f"{self._url}: answered {status}: {text}")
        return PeerError(f"{self._url}: answered {status}: {text}")

    def _check_written(self, answer: Answer, what: str) -> None:
        if answer.status != 200:
            text = _excerpt(answer.body)
            raise PeerError(f"{self._url}: {what} answered {answer.status}: {text}")
        if _media_type(answer.content_type) == _PROTOBUF_TYPE:
            # golang/groupcache has no writes: it serves every method as a GET and
            # answers a GetResponse. The write did not happen.
            raise PeerError(
                f"{self._url}: {what} was answered like a read; the peer does not "
                "support writes (golang/groupcache)"
            )

    def _learn(self, answer: Answer) -> None:
        """Note which shoal extensions the peer serves (from the answer just read).

        A peer that names any is a shoal node, whose server answers pipelined GETs
        concurrently (a Go node answers them one after the other): GETs to it are
        pipelined. An error answer without the header says nothing (a shoal server
        refuses an oversized or malformed request before its peer protocol sees it).
        """
        extensions = answer.extensions
        if extensions is None and answer.status >= 400:
            return
        if extensions != self._extensions_raw:
            self._extensions_raw = extensions
            tokens = parse_extensions(extensions)
            self._batch = GET_MANY_EXTENSION in tokens
            self._key_errors = GET_MANY_ERRORS_EXTENSION in tokens
            self._pipelining = extensions is not None and self._pipeline > 1

    # -- requests and the pool ---------------------------------------------------------

    def _request(
        self,
        method: bytes,
        target: str,
        body: bytes | None = None,
        content_type: bytes = b"",
        *,
        client: bool = False,
    ) -> bytes:
        head = b"%s %s HTTP/1.1\r\n%s" % (method, target.encode("ascii"), self._host_header)
        if self._request_headers is not None:
            head += self._request_headers()
        if client:
            head += b"%s: client\r\n" % WRITE_HEADER.encode()
        if body is None:
            return head + b"\r\n"
        return b"%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            head,
            content_type,
            len(body),
            body,
        )

    async def _exchange(self, request: bytes) -> Answer:
        """Send one request on a pooled connection of its own and read the answer."""
        self._requests += 1
        connection = await self._acquire()
        try:
            return await self._on(connection, request)
        except Dropped as exc:
            # The idle-close race (docs/protocol.md, "The client"): once more, on a new connection.
            if not exc.retry or self._closed:
                raise PeerUnavailable(f"{self._url}: {exc}") from exc
        return await self._retry(request)

    async def _retry(self, request: bytes) -> Answer:
        self._retries += 1
        connection = await self._acquire(fresh=True)
        try:
            return await self._on(connection, request)
        except Dropped as exc:
            raise PeerUnavailable(f"{self._url}: {exc}") from exc

    async def _on(self, connection: Connection, request: bytes) -> Answer:
        """One exchange on ``connection``; the connection goes back to the pool (or
        away) through :meth:`_answered` once the answer is in."""
        try:
            answer = await connection.exchange(request)
        except Broken as exc:
            self._discard(connection)
            raise PeerError(f"{self._url}: {exc}") from exc
        except BaseException:
            # Lost, or cancelled mid-exchange: the connection's state is unknown.
            self._discard(connection)
            raise
        self._learn(answer)
        return answer

    async def _get_exchange(self, request: bytes) -> Answer:
        """Send a GET and read its answer: pipelined with the other GETs of this loop
        iteration when the peer is a shoal node, else on a connection of its own."""
        loop = self._loop
        if not self._pipelining or loop is None:
            return await self._exchange(request)
        self._requests += 1
        waiter: asyncio.Future[Answer] = loop.create_future()
        item = Queued(request, waiter)
        self._queue.append(item)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        try:
            answer = await waiter
        except (Dropped, Broken) as exc:
            error = self._exchange_failed(item, exc)
            if error is not None:
                raise error from exc
        except BaseException:
            # Cancelled (or no connection could be had): a request not yet written is
            # skipped by the flush; one written leaves its connection in an unknown
            # state, and the others on it are sent again.
            if item.connection is not None:
                self._discard(item.connection)
            raise
        else:
            self._learn(answer)
            return answer
        return await self._retry(request)

    def _flush(self) -> None:
        """Write the GETs and fetches queued during the last loop iteration: up to
        ``max_pipeline`` per idle connection, in one write each; the rest wait for
        connections. The fetches of one group go in one batch get if they can."""
        self._flush_due = False
        queue, self._queue = self._queue, []
        if self._fetches:
            fetches, self._fetches = self._fetches, []
            queue += self._requests_for(fetches)
        items = [item for item in queue if not item.waiter.done()]  # not cancelled meanwhile
        depth = self._pipeline
        start = 0
        while start < len(items):
            connection = self._take_idle()
            if connection is None:
                break
            self._send(connection, items[start : start + depth])
            start += depth
        while start < len(items):
            self._spawn(self._send_when_connected(items[start : start + depth]))
            start += depth

    def _requests_for(self, fetches: list[_Sink]) -> list[Queued]:
        """The requests that carry ``fetches``: one batch get per group (of at most
        ``max_batch_keys`` keys) when the peer answers batches key by key, else (and
        for a key alone) one GET each."""
        live = [sink for sink in fetches if not sink.done()]  # not abandoned meanwhile
        alone: list[_Sink] = live
        requests: list[Queued] = []
        if self._key_errors and len(live) > 1:
            alone = []
            groups: dict[str, dict[str, _Sink]] = {}
            for sink in live:
                sinks = groups.setdefault(sink.group, {})
                if sink.key in sinks:  # a second flight of the key (the first was fenced)
                    alone.append(sink)
                else:
                    sinks[sink.key] = sink
            size = self._max_batch_keys
            for group, sinks in groups.items():
                if len(sinks) == 1:
                    alone += sinks.values()
                    continue
                keys = list(sinks)
                for start in range(0, len(keys), size):
                    chunk = {key: sinks[key] for key in keys[start : start + size]}
                    requests.append(self._batch_request(group, chunk))
        for sink in alone:
            target = build_peer_path(self._base, sink.group, sink.key)
            item = sink.item = Queued(self._request(b"GET", target), sink)
            requests.append(item)
        self._requests += len(requests)
        return requests

    def _batch_request(self, group: str, sinks: dict[str, _Sink]) -> Queued:
        target = build_get_many_path(self._base, group)
        body = encode_get_many_request(sinks, key_errors=True)
        self._batched += len(sinks)
        return _Batch(self, sinks, self._request(b"POST", target, body, _GET_MANY_TYPE)).item

    def _hand_out(self, answer: Answer, sinks: dict[str, _Sink]) -> None:
        """Give each fetch of a batch its part of the batch's answer."""
        if answer.status == 200 and _media_type(answer.content_type) == _GET_MANY_TYPE:
            try:
                items, errors = decode_batch_entries(
                    answer.body, max_items=len(sinks), max_size=self._limit
                )
            except RemoteProtocolError as exc:
                failure: Exception = PeerError(f"{self._url}: undecodable batch answer: {exc}")
            else:
                for key, value, expire_ns in items:
                    sink = sinks.pop(key, None)
                    if sink is not None:  # never deliver what was not asked for
                        sink.deliver(Fetched(value, from_expire_ns(expire_ns)), None)
                for error in errors:
                    sink = sinks.pop(error.key, None)
                    if sink is not None:
                        alone = Answer(error.status, error.message, True, b"", None)
                        sink.deliver(None, self._read_error(alone, error.key))
                for key, sink in sinks.items():  # left out: the peer does not have it
                    sink.deliver(None, NotFound(key))
                return
        elif answer.status == 200:
            failure = PeerError(
                f"{self._url}: batch answer of type {answer.content_type.decode('latin-1')!r}"
            )
        else:
            failure = self._read_error(answer, None)
        for sink in sinks.values():
            sink.deliver(None, failure)

    def _exchange_failed(self, item: Queued, exc: BaseException) -> BaseException | None:
        """What a queued request's failure means for its waiter: None when it may go
        once more (see :class:`Dropped`), else the error to give. A connection whose
        exchange broke goes."""
        if isinstance(exc, (Dropped, Broken)) and item.connection is not None:
            self._discard(item.connection)
        if isinstance(exc, Dropped):
            if exc.retry and not self._closed:
                return None
            return PeerUnavailable(f"{self._url}: {exc}")
        if isinstance(exc, Broken):
            return PeerError(f"{self._url}: {exc}")
        return exc

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of the client's (cancelled by :meth:`aclose`)."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)
        return task

    def _loop_error(self, exc: Exception) -> None:
        """Report an error raised by a fetch's callback (a bug) to the event loop."""
        assert self._loop is not None
        self._loop.call_exception_handler(
            {"message": f"{self._url}: a fetch callback raised", "exception": exc}
        )

    def _send(self, connection: Connection, items: list[Queued]) -> None:
        if len(items) > 1:
            self._pipelined += len(items)
        for item in items:
            item.connection = connection
        try:
            connection.send([item.request for item in items], [item.waiter for item in items])
        except Dropped as exc:
            for item in items:
                item.waiter.set_exception(Dropped(str(exc), received=False, retry=exc.retry))

    async def _send_when_connected(self, items: list[Queued]) -> None:
        """Send ``items`` on the next connection to be had (a new one, or one released)."""
        try:
            connection = await self._acquire()
        except BaseException as exc:
            reason = exc if isinstance(exc, PeerError) else f"{self._url}: the client is closed"
            for item in items:
                if not item.waiter.done():
                    item.waiter.set_exception(PeerUnavailable(str(reason)))
            if not isinstance(exc, Exception):
                raise
            return
        items = [item for item in items if not item.waiter.done()]
        if items:
            self._send(connection, items)
        else:
            self._release(connection)

    def _take_idle(self) -> Connection | None:
        """The most recently used idle connection that is still good, or None."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.closed or self._is_stale(connection):
                self._discard(connection)
                continue
            return connection
        return None

    async def _acquire(self, *, fresh: bool = False) -> Connection:
        """A connection for one exchange: an idle one, a new one, or the next released.

        ``fresh`` skips the idle ones (a retry after one of them turned out closed).
        """
        while True:
            if self._closed:
                raise PeerUnavailable(f"{self._url}: the client is closed")
            if not fresh:
                connection = self._take_idle()
                if connection is not None:
                    return connection
            if self._open < self._max:
                self._open += 1
                return await self._connect()
            handed = await self._wait()
            if handed is None:  # a slot was handed over: open a connection in it
                return await self._connect()
            if handed.closed:
                self._discard(handed)
                continue
            return handed

    def _is_stale(self, connection: Connection) -> bool:
        return time.monotonic() - connection.idle_since > self._idle_timeout

    async def _wait(self) -> Connection | None:
        """Wait for a released connection, or for a free slot (None)."""
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Something may have been handed over just before the cancellation: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def _connect(self) -> Connection:
        """Open a connection in a slot already counted in ``_open``."""
        loop = self._loop = asyncio.get_running_loop()
        limit, answered = self._limit, self._answered
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._ssl is None:
                    _, connection = await loop.create_connection(
                        lambda: Connection(limit, loop, answered), self._host, self._port
                    )
                else:
                    # shoal's own TLS transport (see _http.tls_transport): cheaper
                    # per request than the loop's; the timeout bounds the handshake too.
                    transport = await connect_tls(
                        loop,
                        self._host,
                        self._port,
                        self._ssl(),
                        lambda: Connection(limit, loop, answered),
                        self._connect_timeout,
                    )
                    connection = cast(Connection, transport.get_protocol())
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, TimeoutError):
                raise PeerUnavailable(
                    f"{self._url}: no connection within {self._connect_timeout}s"
                ) from exc
            if isinstance(exc, OSError):
                raise PeerUnavailable(f"{self._url}: cannot connect: {exc}") from exc
            raise
        if self._closed:  # closed while connecting
            connection.abort()
            raise PeerUnavailable(f"{self._url}: the client is closed")
        self._opened += 1
        self._all.add(connection)
        return connection

    def _answered(self, connection: Connection, keep_alive: bool) -> None:
        """Every answer of the connection's batch is in: pool it again, or close it."""
        if keep_alive:
            self._release(connection)
        else:
            self._discard(connection)

    def _release(self, connection: Connection) -> None:
        """Give a healthy connection to the next waiter, or back to the pool."""
        if self._closed or connection.closed:
            self._discard(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle
        idle.append(connection)
        # The least recently used connection is at the left; retire it when stale.
        # (An idle pool with no traffic keeps its connections until the peer closes them.)
        while idle and (idle[0].closed or now - idle[0].idle_since > self._idle_timeout):
            self._discard(idle.popleft())

    def _discard(self, connection: Connection) -> None:
        """Close a connection and free its slot."""
        connection.abort()
        if connection in self._all:
            self._all.discard(connection)
            self._free_slot()

    def _free_slot(self) -> None:
        """Hand a freed slot to the next waiter (who opens a connection), or count it free."""
        if self._closed:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1


class HttpTransport:
    """Makes :class:`HttpPeerClient` objects that share one configuration.

    Args:
        base_path: the peer protocol's path prefix; default groupcache's ``/_groupcache/``.
        max_connections: connections per peer at most. Default 64.
        connect_timeout: seconds to wait for a new connection. Default 5.
        idle_timeout: seconds an idle connection stays pooled. Default 30.
        max_response_bytes: longest answer body accepted. Default 64 MiB.
        max_batch_keys: keys per batch get request. Default 1000 (the server's default limit).
        max_pipeline: GETs pipelined on one connection to a shoal peer. Default 16;
            1 turns pipelining off.
        ssl_context: TLS settings for ``https://`` peers; default the system's. A
            function is asked for the current ones at each new connection.
        request_headers: header lines added to every request (see
            :class:`HttpPeerClient`); default None.

    Raises:
        ConfigError: a value out of range.
    """

    def __init__(
        self,
        base_path: str = DEFAULT_BASE_PATH,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        max_pipeline: int = DEFAULT_MAX_PIPELINE,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        request_headers: Callable[[], bytes] | None = None,
    ) -> None:
        if not (base_path.startswith("/") and base_path.endswith("/")):
            raise ConfigError(f"base_path must start and end with '/', got {base_path!r}")
        for name, value in (
            ("max_connections", max_connections),
            ("connect_timeout", connect_timeout),
            ("idle_timeout", idle_timeout),
            ("max_response_bytes", max_response_bytes),
            ("max_batch_keys", max_batch_keys),
            ("max_pipeline", max_pipeline),
        ):
            if isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        self._options: dict[str, Any] = {
            "base_path": base_path,
            "max_connections": max_connections,
            "connect_timeout": connect_timeout,
            "idle_timeout": idle_timeout,
            "max_response_bytes": max_response_bytes,
            "max_batch_keys": max_batch_keys,
            "max_pipeline": max_pipeline,
            "ssl_context": ssl_context,
            "request_headers": request_headers,
        }
        self._clients: set[HttpPeerClient] = set()

    def client(self, url: str) -> HttpPeerClient:
        """A client for the peer at ``url`` (connections open on the first request).

        Raises:
            ConfigError: ``url`` is not an ``http(s)://host[:port]`` URL.
        """
        client = HttpPeerClient(url, on_close=self._clients.discard, **self._options)
        self._clients.add(client)
        return client

    async def aclose(self) -> None:
        """Close every client this transport made that is still open."""
        for client in list(self._clients):
            await client.aclose()
