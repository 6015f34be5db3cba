"""The HTTP peer transport: groupcache's wire protocol over keep-alive HTTP/1.1.

Server side, :class:`PeerServer` answers the peer protocol of Go groupcache
(golang/groupcache, mailgun/groupcache v2, groupcache-go v3) under the node's
``base_path``, on the HTTP/1.1 server of :mod:`shoal.api._http`:

===========================================  ============================================
request                                      answer
===========================================  ============================================
``GET {base}{group}/{key}``                  200 ``application/x-protobuf`` GetResponse
                                             (``expire`` only when the value expires)
``PUT {base}{group}/{key}``, SetRequest      200, empty (the body's key is set, as v3 does)
``DELETE {base}{group}/{key}``               200 ``{"removed": n}`` (Go clients read 200)
``POST {base}{group}/_remove-keys/``, JSON   200 ``{"removed": n}`` (at most ``max_batch_keys``)
``POST {base}{group}/_get-many/``            200 batch answer (shoal only, :mod:`~shoal.wire.batch`;
                                             at most ``max_batch_keys``)
``POST {base}{group}/_invalidate/``          200 ``{"removed": n}``: the group emptied (shoal only)
``POST {base}{group}/_replica/``             200 ``shoal.v1.ReplicaResponse`` for a
                                             ``ReplicaRequest`` (shoal only, replicated groups)
===========================================  ============================================

Writes that arrive here change this node only, as between Go peers (the node a
client wrote to tells the others); a ``PUT`` or ``DELETE`` with the header
``Shoal-Write: client`` (:data:`WRITE_HEADER`) runs the node's whole write path
instead, for clients such as :class:`shoal.Client`.

Errors are answered as Go's ``http.Error`` writes them (``text/plain``, the
message and a newline): 404 for an unknown group (``no such group: G``, byte for
byte Go's) or a key the loader says does not exist; 503
(:data:`~shoal.wire.codec.STATUS_LOAD_FAILED`) when the loader failed, the body
being the error's text; 400 for a malformed path, escape or body (``bad
request`` for a path without a key, as Go); 414 for a key over the group's
``max_key_bytes`` (the key is in the URL), 413 for a value or body over a
limit; 405 for another method; 502 when this node cannot serve for a reason of
its own (it is closing), which clients treat as a failed peer. A failed load is
503 rather than golang/groupcache's 500 because groupcache-go v3 clients read
503, and only 503, as "the owner tried and failed" and do not load the key a
second time; golang clients treat every status but 200 alike. Input is checked
completely before anything changes, so a bad request never touches the cache:
by the validating decoders of :mod:`shoal.wire` (an expiry past the int64
nanoseconds a node can send again is a 400, a list over its cap a 413) and,
for ``_replica/``, by :func:`shoal.replication.serve_replica`, which the gRPC
transport shares.
A request that arrives here is never forwarded (``Group.serve_peer``).

Every answer names the shoal extensions this server speaks in the
``Shoal-Extensions`` header; Go servers send no such header, which is how a
shoal client knows not to send them a batch get, nor pipelined GETs.

A plain GET of a cached key (the hot path: what every fetch from a peer is)
is answered through the HTTP server's ``fast_get`` shortcut, from the raw
request target, with no task and no request object; the answer is byte for
byte the general path's, and leaves in the same write as the other answers of
its read (so a pipelined batch of hits costs one write).

Client side, :class:`HttpTransport` makes one :class:`HttpPeerClient` per peer,
each with its own pool of keep-alive connections (``asyncio.Protocol`` plus the
``httptools`` response parser). The pool's rules:

- A connection carries one batch at a time: one request, or several GETs
  written together and answered in order (HTTP/1.1 pipelining). It goes back
  to the pool only after the batch's last answer, if that allows keep-alive.
  A transport error, a malformed or oversized answer, ``Connection: close``,
  bytes nobody asked for, or a cancellation in the middle of an exchange
  discards it: its state is unknown, and a half-read answer must never be read
  by the next request.
- Pipelining, for GETs to a shoal peer only (one that sent a
  ``Shoal-Extensions`` header: its server answers pipelined GETs
  concurrently, where a Go server would answer them one after the other): the
  GETs issued during one event-loop iteration are written at the end of it,
  up to ``max_pipeline`` per connection, in one write each. Under load this
  turns many small exchanges into a few (one write and one read on each side
  for a batch instead of one per key), which is most of the cost of a fetch;
  the price is that the answers of a batch come back together, so a hit
  batched behind a key the owner has to load waits for that load. A lone GET
  is a batch of one. ``max_pipeline=1`` turns it off; writes, batch gets and
  requests to Go peers always have a connection of their own.
- Fetches (:meth:`HttpPeerClient.fetch`, what a group uses for a miss on a key
  the peer owns) need no task: the answer's parser callback hands the outcome
  to the fetch's callback. The fetches of one loop iteration to a peer that
  lists ``get-many-errors`` go as one batch get per group (``key_errors``),
  which the peer answers key by key, each key as a GET of it alone would be
  answered; to an older shoal peer they are pipelined GETs. Retries, broken
  answers and a caller that gives up are handled as for pipelined GETs (a batch
  whose every fetch was given up drops its connection).
- At most ``max_connections`` per peer; further requests wait for one to be
  released (the caller bounds the wait with ``asyncio.timeout``).
- An exchange that fails before any byte of its answer arrived, on a
  connection that had answered before (a reused one, or one whose earlier
  answers of the batch came in), is sent once more on a new connection: the
  peer may have closed the idle connection just as the request went out, or
  closed it after an answer of a batch, which says nothing about the peer's
  health; so are the exchanges pipelined behind one whose caller gave up
  (this client dropped the connection). Every request of the protocol is
  idempotent.

Every foreign error (``OSError``, ``httptools`` errors, codec errors) is
translated here, with its cause chained: a connection that cannot be made or is
lost, or a 502 (the peer is closing), becomes
:class:`~shoal.errors.PeerUnavailable`; a malformed answer or an
unexpected status :class:`~shoal.errors.PeerError`; 404 on a key
:class:`~shoal.errors.NotFound`; a 500 or 503 with a body (the owner's loader
failed) :class:`~shoal.errors.RemoteLoadError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from urllib.parse import urlsplit

import httptools

from .._gather import gather_merged
from ..api._http import SHUTDOWN_TIMEOUT, TEXT, HttpServer, Request, Response
from ..errors import (
    BadRequest,
    Closed,
    ConfigError,
    GroupFull,
    InvalidKey,
    InvalidTTL,
    NotFound,
    PeerError,
    PeerUnavailable,
    RemoteLoadError,
    ValueTooLarge,
)
from ..wire.batch import (
    DEFAULT_MAX_BATCH_KEYS,
    EXTENSIONS_HEADER,
    GET_MANY_CONTENT_TYPE,
    GET_MANY_ERRORS_EXTENSION,
    GET_MANY_EXTENSION,
    GET_MANY_SEGMENT,
    INVALIDATE_EXTENSION,
    INVALIDATE_SEGMENT,
    REPLICA_EXTENSION,
    REPLICA_SEGMENT,
    BatchError,
    build_get_many_path,
    build_group_path,
    decode_batch_entries,
    decode_batch_request,
    decode_get_many_response,
    encode_batch_entries,
    encode_get_many_request,
    parse_extensions,
)
from ..wire.codec import (
    BAD_REQUEST_MESSAGE,
    DEFAULT_BASE_PATH,
    DEFAULT_MAX_MESSAGE_BYTES,
    ERROR_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    STATUS_LOAD_FAILED,
    STATUS_METHOD_NOT_ALLOWED,
    LocalProtocolError,
    PathOutsideBase,
    PeerReply,
    RemoteProtocolError,
    build_peer_path,
    build_remove_keys_path,
    classify_get_status,
    decode_get_response,
    decode_remove_keys,
    decode_set_request,
    encode_get_response,
    encode_remove_keys,
    encode_set_request,
    error_body,
    from_expire_ns,
    no_such_group_message,
    parse_peer_path,
    to_expire_ns,
)
from . import FetchDone, Fetched

if TYPE_CHECKING:
    from ..serving import ServedGroup, ServedNode

__all__ = [
    "PeerServer",
    "HttpTransport",
    "HttpPeerClient",
    "PeerClientStats",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PIPELINE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "STATUS_NODE_UNAVAILABLE",
    "WRITE_HEADER",
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
STATUS_NODE_UNAVAILABLE: Final = 502
"""What the server answers when it cannot serve for a reason of its own (closing).
Not 500 or 503: those say the loader failed, and the asking node would not load the
key itself."""

# Error texts travel in bodies and exception messages: long ones are cut.
_MAX_ERROR_TEXT: Final = 1000
_ALLOW: Final = "GET, PUT, DELETE, POST"
_NOSNIFF: Final = ("X-Content-Type-Options", "nosniff")
# PeerServer.fast_get leaves to the general path a target with anything to decode
# (an escape, a control character) or to cut off (a query, a fragment).
_NOT_FAST: Final = re.compile(rb"[%?#\x00-\x20\x7f]")
_EXTENSIONS: Final = (
    EXTENSIONS_HEADER,
    f"{GET_MANY_EXTENSION}, {GET_MANY_ERRORS_EXTENSION}, {INVALIDATE_EXTENSION}, "
    f"{REPLICA_EXTENSION}",
)
_OK_HEADERS: Final = (_EXTENSIONS,)
_ERROR_HEADERS: Final = (_NOSNIFF, _EXTENSIONS)
_OK_EMPTY: Final = Response(200, b"", TEXT, _OK_HEADERS)
_NO_SUCH_GROUP: Final = no_such_group_message("").encode()
_GET_MANY_TYPE: Final = GET_MANY_CONTENT_TYPE.encode()
# The lengths of the answer headers a client reads (see _Connection.on_header).
_CLIENT_HEADER_SIZES: Final = frozenset(
    len(name) for name in ("content-length", "transfer-encoding", "content-type", EXTENSIONS_HEADER)
)
_PROTOBUF_TYPE: Final = PROTOBUF_CONTENT_TYPE.encode()
_JSON_TYPE: Final = "application/json"
_WRITES: Final = frozenset({"PUT", "DELETE"})
WRITE_HEADER: Final = "Shoal-Write"
"""Request header of a ``PUT`` or ``DELETE`` sent by a client (``shoal.Client``) rather
than a peer: ``Shoal-Write: client`` runs the node's whole write path (the owner
stores, the other members drop their copies; a replicated group's write reaches
every member). Without it the write changes the receiving node only, as between peers."""


# ============================================================================ server


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """An error answer as Go's ``http.Error`` writes it."""
    if len(message) > _MAX_ERROR_TEXT:
        message = message[:_MAX_ERROR_TEXT] + "..."
    return Response(status, error_body(message), ERROR_CONTENT_TYPE, _ERROR_HEADERS + headers)


def _removed(count: int) -> Response:
    """The answer to a delete: 200 (all Go asks for) with ``{"removed": n}`` for shoal."""
    return Response(200, b'{"removed": %d}' % count, _JSON_TYPE, _OK_HEADERS)


def _failure(exc: Exception) -> Response:
    """The answer for an exception raised while serving a key."""
    if isinstance(exc, NotFound):
        return _error(404, str(exc))
    if isinstance(exc, InvalidKey | ValueTooLarge | InvalidTTL | BadRequest | GroupFull):
        return _error(exc.http_status, str(exc))
    if isinstance(exc, Closed):
        return _error(STATUS_NODE_UNAVAILABLE, str(exc))
    # Anything else came out of the loader: "the owner tried and failed".
    log.debug("serving a peer failed: %r", exc)
    return _error(STATUS_LOAD_FAILED, str(exc) or type(exc).__name__)


def _key_error(key: str, exc: Exception) -> BatchError:
    """A key of a batch that failed, as the answer a GET of it would have had."""
    answer = _failure(exc)
    return BatchError(key, answer.status, answer.body)


def _batch_answer(items: list[tuple[str, bytes, int | None]], errors: list[BatchError]) -> Response:
    return Response(200, encode_batch_entries(items, errors), GET_MANY_CONTENT_TYPE, _OK_HEADERS)


class PeerServer:
    """Serves the groupcache peer protocol for one node (see the module docstring).

    The node starts it when ``NodeConfig.port`` is set. Paths live under
    ``config.base_path``; header, body and time limits are the node's
    :class:`~shoal.config.NodeConfig` limits.

    Args:
        node: the node whose groups are served (groups added later are served too).
        max_batch_keys: most keys one batch get may name (more: 413).
        shutdown_timeout: seconds :meth:`aclose` lets in-flight requests finish.
    """

    def __init__(
        self,
        node: ServedNode,
        *,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        if max_batch_keys < 1:
            raise ConfigError(f"max_batch_keys must be at least 1, got {max_batch_keys}")
        # A live read-only view: groups added later are served.
        self._node = node
        self._groups = node.groups
        self._base = node.config.base_path.encode("utf-8")
        self._max_body = node.config.max_body_bytes
        self._max_batch_keys = max_batch_keys
        self._server = HttpServer(
            self.handle,
            node.config,
            fast_get=self.fast_get,
            fast_content_type=PROTOBUF_CONTENT_TYPE,
            fast_headers=_OK_HEADERS,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started."""
        return self._server.address

    @property
    def accept_errors(self) -> int:
        """Times accepting a connection failed for lack of file descriptors."""
        return self._server.accept_errors

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0 picks a free port); return the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        return await self._server.start(host, port)

    async def aclose(self) -> None:
        """Stop listening, let in-flight requests finish briefly, then drop the rest."""
        await self._server.aclose()

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Answer one request: a ready :class:`Response` when no waiting is needed
        (hits, errors), else a coroutine (loads, writes)."""
        method = request.method
        client = method in _WRITES and request.header(WRITE_HEADER) == b"client"
        return self._route(method, request.path, request.body, client=client)

    def fast_get(self, target: bytes) -> bytes | Response | Awaitable[Response] | None:
        """The server's shortcut for a plain ``GET {base}{group}/{key}`` (see
        :data:`~shoal.api._http.FastGet`): on a hit, the GetResponse body itself.

        Takes only targets that need no decoding (printable ASCII without ``%``,
        ``?`` or ``#``) and name a group of the node; hands anything else to
        :meth:`handle` (returns None) before touching any state. Answers exactly
        as :meth:`handle` would.
        """
        base = self._base
        if not target.startswith(base) or not target.isascii() or _NOT_FAST.search(target):
            return None
        group_name, slash, raw_key = target[len(base) :].partition(b"/")
        if not slash:
            return None
        group = self._groups.get(group_name.decode("ascii"))
        if group is None:
            return None
        key = raw_key.decode("ascii")
        try:
            group.validate_key(key)
        except InvalidKey as exc:
            return _error(exc.http_status, str(exc))
        return self._answer_get(group, key)

    def _route(
        self, method: str, path: bytes, body: bytes, *, client: bool = False
    ) -> Response | Awaitable[Response]:
        try:
            parsed = parse_peer_path(path, self._base)
        except PathOutsideBase as exc:
            return _error(404, str(exc))
        except RemoteProtocolError as exc:
            return _error(400, self._path_error(path, exc))
        group = self._groups.get(parsed.group)
        if group is None:
            return _error(404, no_such_group_message(parsed.group))
        key = parsed.key
        if method == "GET":
            try:
                group.validate_key(key)
            except InvalidKey as exc:
                return _error(exc.http_status, str(exc))
            answer = self._answer_get(group, key)
            if isinstance(answer, bytes):
                return Response(200, answer, PROTOBUF_CONTENT_TYPE, _OK_HEADERS)
            return answer
        if method == "PUT":
            return self._set(group, body, client=client)
        if method == "DELETE":
            try:
                group.validate_key(key)
            except InvalidKey as exc:
                return _error(exc.http_status, str(exc))
            return self._delete(group, [key], client=client)
        if method == "POST":
            if key == GET_MANY_SEGMENT:
                return self._get_many(group, body)
            if parsed.is_remove_keys:
                return self._remove_keys(group, body)
            if key == INVALIDATE_SEGMENT:
                return self._invalidate(group)
            if key == REPLICA_SEGMENT:
                return self._replica(group, body)
        return _error(
            STATUS_METHOD_NOT_ALLOWED,
            f"method {method} is not allowed on {path[:128].decode('latin-1')}",
            (("Allow", _ALLOW),),
        )

    def _path_error(self, path: bytes, exc: RemoteProtocolError) -> str:
        # A path without a key segment gets exactly Go's body; the others say what is wrong.
        return BAD_REQUEST_MESSAGE if b"/" not in path[len(self._base) :] else str(exc)

    # -- GET ---------------------------------------------------------------------

    def _answer_get(self, group: ServedGroup, key: str) -> bytes | Awaitable[Response] | Response:
        """A hit's GetResponse body (a 200 answer), a 404, or a coroutine loading the key.

        A hit is answered here and now: no task, no timeout, and the answer
        leaves in the same write as the others of its read.
        """
        try:
            hit = group.serve_peer_nowait(key)
        except NotFound as exc:
            return _error(404, str(exc))
        if hit is None:
            return self._load(group, key)
        value, expires_at = hit
        return encode_get_response(value, expire_ns=to_expire_ns(expires_at))

    async def _load(self, group: ServedGroup, key: str) -> Response:
        try:
            value, expires_at = await group.load_for_peer(key)
        except Exception as exc:
            return _failure(exc)
        body = encode_get_response(value, expire_ns=to_expire_ns(expires_at))
        return Response(200, body, PROTOBUF_CONTENT_TYPE, _OK_HEADERS)

    # -- writes ------------------------------------------------------------------

    def _set(
        self, group: ServedGroup, body: bytes, *, client: bool = False
    ) -> Response | Awaitable[Response]:
        try:
            request = decode_set_request(body, max_size=self._max_body)
        except RemoteProtocolError as exc:
            return _error(exc.error_status_hint, str(exc))
        # The body names the key, as groupcache-go v3 reads it (its clients escape
        # the path in ways that do not always decode back to the same key); the
        # path names the group.
        try:
            group.validate_key(request.key)
        except InvalidKey as exc:
            return _error(exc.http_status, str(exc))
        expires_at = from_expire_ns(request.expire_ns)
        return self._store(group, request.key, request.value, expires_at, client=client)

    async def _store(
        self, group: ServedGroup, key: str, value: bytes, expires_at: float | None, *, client: bool
    ) -> Response:
        try:
            if client:  # a client's write: the node's write path tells the others
                await group.set_bytes(key, value, expires_at=expires_at)
            else:
                await group.apply_set(key, value, expires_at=expires_at)
        except Exception as exc:
            return _failure(exc)
        return _OK_EMPTY

    def _remove_keys(self, group: ServedGroup, body: bytes) -> Response | Awaitable[Response]:
        try:
            request = decode_remove_keys(
                body, max_keys=self._max_batch_keys, max_size=self._max_body
            )
        except RemoteProtocolError as exc:
            return _error(exc.error_status_hint, str(exc))
        # Every key is checked before the first is removed: a bad request changes nothing.
        # The path names the group; the body's group is ignored, as Go does.
        try:
            for key in request.keys:
                group.validate_key(key)
        except InvalidKey as exc:
            return _error(exc.http_status, str(exc))
        return self._delete(group, request.keys)

    async def _delete(
        self, group: ServedGroup, keys: Iterable[str], *, client: bool = False
    ) -> Response:
        try:
            if client:
                removed = await group.remove_keys(keys)
            else:
                removed = await group.apply_remove(keys)
        except Exception as exc:
            return _failure(exc)
        return _removed(removed)

    async def _invalidate(self, group: ServedGroup) -> Response:
        try:
            removed = await group.apply_invalidate()
        except Exception as exc:
            return _failure(exc)
        return _removed(removed)

    def _replica(self, group: ServedGroup, body: bytes) -> Response | Awaitable[Response]:
        if len(body) > self._max_body:
            return _error(413, f"body of {len(body)} bytes exceeds {self._max_body}")
        return self._serve_replica(group, body)

    async def _serve_replica(self, group: ServedGroup, body: bytes) -> Response:
        try:
            answer = await self._node.serve_replica(body, group=group.name)
        except Exception as exc:
            return _failure(exc)
        return Response(200, answer, PROTOBUF_CONTENT_TYPE, _OK_HEADERS)

    # -- batch get -----------------------------------------------------------------

    def _get_many(self, group: ServedGroup, body: bytes) -> Response | Awaitable[Response]:
        try:
            keys, key_errors = decode_batch_request(
                body, max_keys=self._max_batch_keys, max_size=self._max_body
            )
        except RemoteProtocolError as exc:
            return _error(exc.error_status_hint, str(exc))
        unique = list(dict.fromkeys(keys))
        if not key_errors:  # a bad key fails the whole batch, as its GET would fail
            try:
                for key in unique:
                    group.validate_key(key)
            except InvalidKey as exc:
                return _error(exc.http_status, str(exc))
        return self._serve_many(group, unique, key_errors=key_errors)

    def _serve_many(
        self, group: ServedGroup, keys: list[str], *, key_errors: bool
    ) -> Response | Awaitable[Response]:
        """A batch get: the hits at once, with no task; a coroutine when some key has
        to be loaded. A key the loader says does not exist is left out. Any other
        failure of a key is, with ``key_errors``, that key's error entry; without,
        the answer to the whole batch, as the first failing GET of its keys."""
        items: list[tuple[str, bytes, int | None]] = []
        errors: list[BatchError] = []
        misses: list[str] = []
        serve = group.serve_peer_nowait
        for key in keys:
            try:
                group.validate_key(key)
                hit = serve(key)
            except NotFound:
                continue
            except InvalidKey as exc:
                errors.append(_key_error(key, exc))
                continue
            if hit is None:
                misses.append(key)
            else:
                items.append((key, hit[0], to_expire_ns(hit[1])))
        if misses:
            return self._load_many(group, misses, items, errors, key_errors=key_errors)
        return _batch_answer(items, errors)

    async def _load_many(
        self,
        group: ServedGroup,
        keys: list[str],
        items: list[tuple[str, bytes, int | None]],
        errors: list[BatchError],
        *,
        key_errors: bool,
    ) -> Response:
        # All load concurrently, each in its own flight.
        outcomes = await asyncio.gather(
            *(group.load_for_peer(key) for key in keys), return_exceptions=True
        )
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                continue
            if isinstance(outcome, Exception):
                if not key_errors:
                    return _failure(outcome)
                errors.append(_key_error(key, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome  # cancellation of a load under us: the server's business
            else:
                items.append((key, outcome[0], to_expire_ns(outcome[1])))
        return _batch_answer(items, errors)


# ============================================================================ client


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


class _Dropped(Exception):
    """The connection closed (or could not be written) before an answer was complete."""

    def __init__(self, message: str, *, received: bool, retry: bool = False) -> None:
        super().__init__(message)
        self.received = received
        """Whether any byte of this answer had arrived."""
        self.retry = retry
        """Whether the request may go out once more: no byte of its answer arrived, and
        the connection had answered before (a peer that closes a connection that
        worked is not a failed peer; see the module docstring)."""


class _Broken(Exception):
    """The answer broke HTTP or a limit; the connection is unusable."""


class _Answer:
    """A complete HTTP answer, as the client needs it."""

    __slots__ = ("body", "content_type", "extensions", "keep_alive", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        keep_alive: bool,
        content_type: bytes,
        extensions: bytes | None,
    ) -> None:
        self.status = status
        self.body = body
        self.keep_alive = keep_alive
        self.content_type = content_type
        self.extensions = extensions


class _Waiter(Protocol):
    """What waits for an answer on a connection: a future, or a :class:`_Sink`."""

    def done(self) -> bool: ...

    def set_result(self, answer: _Answer, /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


class _Queued:
    """A GET waiting for the next flush, then for its answer (pipelining)."""

    __slots__ = ("connection", "request", "waiter")

    def __init__(self, request: bytes, waiter: _Waiter) -> None:
        self.request = request
        self.waiter = waiter
        self.connection: _Connection | None = None
        """The connection it was written on, once written."""


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
        self.item: _Queued | None = None
        """The GET carrying it alone, once flushed."""
        self.batch: _Batch | None = None
        """The batch carrying it, once flushed."""

    def done(self) -> bool:
        """Whether the outcome was delivered, or the fetch abandoned."""
        return self._finished

    def set_result(self, answer: _Answer) -> None:
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


class _Over:
    """The waiter of a request whose batch is over: answers nothing more."""

    __slots__ = ()

    def done(self) -> bool:
        return True

    def set_result(self, answer: _Answer) -> None:
        pass

    def set_exception(self, exc: BaseException) -> None:
        pass


_OVER: Final = _Over()


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
        self.item = _Queued(request, self)
        """The request carrying the batch (let go once it is over: it refers back)."""
        for sink in sinks.values():
            sink.batch = self

    def done(self) -> bool:
        """Whether the answer was handed out (or every fetch of it abandoned)."""
        return self._finished

    def set_result(self, answer: _Answer) -> None:
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
        self.item.waiter = _OVER
        self.sinks = {}


class _Connection(asyncio.Protocol):
    """One keep-alive connection of a client's pool: one batch of requests at a time.

    A batch is one request, or several written together (pipelined) and answered
    in order; each answer fills the next waiter. When the last answer of a batch
    is in, ``on_idle(connection, keep_alive)`` hands the connection back to the
    client. The ``on_*`` methods are the response parser's callbacks.
    """

    def __init__(
        self,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        on_idle: Callable[[_Connection, bool], None],
    ) -> None:
        self._limit = limit
        self._loop = loop
        self._on_idle = on_idle
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiters: deque[_Waiter] = deque()
        self.closed = False
        self.answers = 0
        """Complete answers read on this connection."""
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._body: list[bytes] = []
        self._size = 0
        self._received = False
        self._headers_done = False
        self._framed = False
        self._content_type = b""
        self._extensions: bytes | None = None

    # -- used by the client --------------------------------------------------------

    def send(self, requests: list[bytes], waiters: list[_Waiter]) -> None:
        """Write ``requests`` at once; their answers fill ``waiters``, in order.

        Raises:
            _Dropped: the connection is already closing (nothing was sent).
        """
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise _Dropped("the connection was closed", received=False, retry=self.answers > 0)
        self._waiters.extend(waiters)
        transport.write(requests[0] if len(requests) == 1 else b"".join(requests))

    def exchange(self, request: bytes) -> asyncio.Future[_Answer]:
        """Send one request; the future resolves to its answer.

        Raises:
            _Dropped: the connection is already closing (nothing was sent).
        """
        waiter: asyncio.Future[_Answer] = self._loop.create_future()
        self.send([request], [waiter])
        return waiter

    def abort(self) -> None:
        """Drop the connection now (no lingering: nothing more is expected from it).

        Exchanges still waiting on it (pipelined behind one whose caller gave up)
        may be sent again: the peer did nothing wrong.
        """
        self.closed = True
        self._fail_all("the connection was dropped by this client", None, retry=True)
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; requests go out whole, so Nagle would only add latency."""
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the exchanges in progress, or complete an answer delimited by the close."""
        self.closed = True
        self._transport = None
        waiters = self._waiters
        if waiters and self._headers_done and not self._framed:
            # No Content-Length and not chunked: the body ended with the connection.
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._answer(keep_alive=False))
            self.answers += 1
            self._received = False
        what = "the peer closed the connection" if exc is None else f"connection lost: {exc}"
        self._fail_all(what, exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed or unexpected answer breaks the connection."""
        if not self._waiters:
            # Bytes nobody asked for.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(_Broken(str(exc.__context__ or exc)), exc)
        except httptools.HttpParserError as exc:
            self._fail(_Broken(f"malformed HTTP answer: {exc}"), exc)

    def eof_received(self) -> bool | None:
        """The peer shut its side: let the transport close (connection_lost follows)."""
        return None

    def _fail(self, error: Exception, cause: BaseException) -> None:
        """The answer being read is unusable: fail it, and the connection with it."""
        error.__cause__ = cause
        if self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self._received = False
        self._fail_all("the connection broke on an earlier answer", cause)
        self.abort()

    def _fail_all(
        self, what: str, cause: BaseException | None, *, retry: bool | None = None
    ) -> None:
        """Fail every exchange still waiting (the first may have part of its answer).

        ``retry`` None: each may be sent again if no byte of its answer arrived and
        the connection had answered before (see :class:`_Dropped`).
        """
        received = self._received
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                again = not received and self.answers > 0 if retry is None else retry
                dropped = _Dropped(what, received=received, retry=again)
                dropped.__cause__ = cause
                waiter.set_exception(dropped)
            received = False

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._waiters:
            raise _Broken("the peer sent an answer nobody asked for")
        self._reset()
        self._received = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) not in _CLIENT_HEADER_SIZES:
            return  # most headers (Date, Server): cheaper than lower-casing every name
        lowered = name.lower()
        if lowered == b"content-length":
            self._framed = True
            with contextlib.suppress(ValueError):  # the parser rejects a bad length itself
                if int(value) > self._limit:
                    raise _Broken(f"an answer of {int(value)} bytes exceeds {self._limit}")
        elif lowered == b"transfer-encoding":
            self._framed = True
        elif lowered == b"content-type":
            self._content_type = value
        elif lowered == b"shoal-extensions":
            self._extensions = value

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            raise _Broken(f"an answer of more than {self._limit} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        answer = self._answer(keep_alive)
        self._received = False
        self.answers += 1
        waiters = self._waiters
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(answer)
        if not waiters:
            self._on_idle(self, keep_alive)

    def _answer(self, keep_alive: bool) -> _Answer:
        body = self._body
        return _Answer(
            self._parser.get_status_code(),
            body[0] if len(body) == 1 else b"".join(body),
            keep_alive,
            self._content_type,
            self._extensions,
        )


def _removed_count(answer: _Answer) -> int | None:
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
        ssl_context: TLS settings for an ``https://`` URL (default: the system's).
        on_close: called once by :meth:`aclose` (the transport forgets the client).

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
        ssl_context: ssl.SSLContext | None = None,
        on_close: Callable[[HttpPeerClient], None] | None = None,
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
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
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

        self._idle: deque[_Connection] = deque()  # most recently used at the right
        self._all: set[_Connection] = set()
        self._open = 0  # open or being opened (slots taken)
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
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
        self._queue: list[_Queued] = []
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

    def _fetched(self, answer: _Answer, key: str) -> Fetched:
        """The value in an answer to a GET of ``key``, or the error it says."""
        if answer.status != 200:
            raise self._read_error(answer, key)
        try:
            response = decode_get_response(answer.body, max_size=self._limit)
        except RemoteProtocolError as exc:
            raise PeerError(f"{self._url}: undecodable answer for {key!r}: {exc}") from exc
        return Fetched(response.value, from_expire_ns(response.expire_ns), response.minute_qps)

    def _read_error(self, answer: _Answer, key: str | None) -> Exception:
        """The error for an answer to a read other than 200."""
        status = answer.status
        text = _excerpt(answer.body)
        if status == 404:
            if key is not None and not answer.body.startswith(_NO_SUCH_GROUP):
                return NotFound(key)
            # The peer lacks the group: a peer misconfigured, not a missing key.
            return PeerError(f"{self._url}: 404 {text}")
        if classify_get_status(status) is PeerReply.LOAD_FAILED and text:
            what = repr(key) if key is not None else "a batch"
            return RemoteLoadError(f"{self._url}: loading {what} failed: {text}")
        if status == STATUS_NODE_UNAVAILABLE:
            # The peer cannot serve at all (it is closing): fail over as for a dead peer.
            return PeerUnavailable(f"{self._url}: answered {status}: {text}")
        return PeerError(f"{self._url}: answered {status}: {text}")

    def _check_written(self, answer: _Answer, what: str) -> None:
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

    def _learn(self, answer: _Answer) -> None:
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

    async def _exchange(self, request: bytes) -> _Answer:
        """Send one request on a pooled connection of its own and read the answer."""
        self._requests += 1
        connection = await self._acquire()
        try:
            return await self._on(connection, request)
        except _Dropped as exc:
            # The idle-close race (see the module docstring): once more, on a new connection.
            if not exc.retry or self._closed:
                raise PeerUnavailable(f"{self._url}: {exc}") from exc
        return await self._retry(request)

    async def _retry(self, request: bytes) -> _Answer:
        self._retries += 1
        connection = await self._acquire(fresh=True)
        try:
            return await self._on(connection, request)
        except _Dropped as exc:
            raise PeerUnavailable(f"{self._url}: {exc}") from exc

    async def _on(self, connection: _Connection, request: bytes) -> _Answer:
        """One exchange on ``connection``; the connection goes back to the pool (or
        away) through :meth:`_answered` once the answer is in."""
        try:
            answer = await connection.exchange(request)
        except _Broken as exc:
            self._discard(connection)
            raise PeerError(f"{self._url}: {exc}") from exc
        except BaseException:
            # Lost, or cancelled mid-exchange: the connection's state is unknown.
            self._discard(connection)
            raise
        self._learn(answer)
        return answer

    async def _get_exchange(self, request: bytes) -> _Answer:
        """Send a GET and read its answer: pipelined with the other GETs of this loop
        iteration when the peer is a shoal node, else on a connection of its own."""
        loop = self._loop
        if not self._pipelining or loop is None:
            return await self._exchange(request)
        self._requests += 1
        waiter: asyncio.Future[_Answer] = loop.create_future()
        item = _Queued(request, waiter)
        self._queue.append(item)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        try:
            answer = await waiter
        except (_Dropped, _Broken) as exc:
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

    def _requests_for(self, fetches: list[_Sink]) -> list[_Queued]:
        """The requests that carry ``fetches``: one batch get per group (of at most
        ``max_batch_keys`` keys) when the peer answers batches key by key, else (and
        for a key alone) one GET each."""
        live = [sink for sink in fetches if not sink.done()]  # not abandoned meanwhile
        alone: list[_Sink] = live
        requests: list[_Queued] = []
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
            item = sink.item = _Queued(self._request(b"GET", target), sink)
            requests.append(item)
        self._requests += len(requests)
        return requests

    def _batch_request(self, group: str, sinks: dict[str, _Sink]) -> _Queued:
        target = build_get_many_path(self._base, group)
        body = encode_get_many_request(sinks, key_errors=True)
        self._batched += len(sinks)
        return _Batch(self, sinks, self._request(b"POST", target, body, _GET_MANY_TYPE)).item

    def _hand_out(self, answer: _Answer, sinks: dict[str, _Sink]) -> None:
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
                        alone = _Answer(error.status, error.message, True, b"", None)
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

    def _exchange_failed(self, item: _Queued, exc: BaseException) -> BaseException | None:
        """What a queued request's failure means for its waiter: None when it may go
        once more (see :class:`_Dropped`), else the error to give. A connection whose
        exchange broke goes."""
        if isinstance(exc, (_Dropped, _Broken)) and item.connection is not None:
            self._discard(item.connection)
        if isinstance(exc, _Dropped):
            if exc.retry and not self._closed:
                return None
            return PeerUnavailable(f"{self._url}: {exc}")
        if isinstance(exc, _Broken):
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

    def _send(self, connection: _Connection, items: list[_Queued]) -> None:
        if len(items) > 1:
            self._pipelined += len(items)
        for item in items:
            item.connection = connection
        try:
            connection.send([item.request for item in items], [item.waiter for item in items])
        except _Dropped as exc:
            for item in items:
                item.waiter.set_exception(_Dropped(str(exc), received=False, retry=exc.retry))

    async def _send_when_connected(self, items: list[_Queued]) -> None:
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

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection that is still good, or None."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.closed or self._is_stale(connection):
                self._discard(connection)
                continue
            return connection
        return None

    async def _acquire(self, *, fresh: bool = False) -> _Connection:
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

    def _is_stale(self, connection: _Connection) -> bool:
        return time.monotonic() - connection.idle_since > self._idle_timeout

    async def _wait(self) -> _Connection | None:
        """Wait for a released connection, or for a free slot (None)."""
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
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

    async def _connect(self) -> _Connection:
        """Open a connection in a slot already counted in ``_open``."""
        loop = self._loop = asyncio.get_running_loop()
        limit, answered = self._limit, self._answered
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(limit, loop, answered),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                )
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

    def _answered(self, connection: _Connection, keep_alive: bool) -> None:
        """Every answer of the connection's batch is in: pool it again, or close it."""
        if keep_alive:
            self._release(connection)
        else:
            self._discard(connection)

    def _release(self, connection: _Connection) -> None:
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

    def _discard(self, connection: _Connection) -> None:
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
        ssl_context: TLS settings for ``https://`` peers; default the system's.

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
        ssl_context: ssl.SSLContext | None = None,
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
