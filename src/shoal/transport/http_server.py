"""The HTTP peer server: groupcache's peer protocol, answered for one node.

Rules of this module (the protocol itself is described in docs/protocol.md):

- Go's wire format and Go's error answers, byte for byte: ``text/plain`` error
  bodies as Go's ``http.Error`` writes them, with the peer port's statuses of
  the one table in :mod:`shoal.statuses`.
- Input is checked completely (by the validating decoders of :mod:`shoal.wire`)
  before anything changes, so a bad request never touches the cache.
- A request that arrives here is never forwarded (``Group.serve_peer``); writes
  change this node only unless they carry ``Shoal-Write: client``.
- A plain GET of a cached key is answered through the HTTP server's
  ``fast_get`` shortcut, byte for byte what the general path would send.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

from .._http import (
    SHUTDOWN_TIMEOUT,
    TEXT,
    Handler,
    HttpLimits,
    HttpServer,
    Request,
    Response,
    ServerFront,
)
from ..errors import (
    ConfigError,
    InvalidKey,
    NotFound,
)
from ..statuses import LOAD_FAILED, statuses_of
from ..wire import (
    BAD_REQUEST_MESSAGE,
    ERROR_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    STATUS_METHOD_NOT_ALLOWED,
    PathOutsideBase,
    RemoteProtocolError,
    decode_remove_keys,
    decode_set_request,
    encode_get_response,
    error_body,
    from_expire_ns,
    no_such_group_message,
    parse_peer_path,
    to_expire_ns,
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
    decode_batch_request,
    encode_batch_entries,
)
from ._http_shared import MAX_ERROR_TEXT as _MAX_ERROR_TEXT
from ._http_shared import WRITE_HEADER

if TYPE_CHECKING:
    from ..serving import ServedGroup, ServedNode

__all__ = ["PeerServer"]

log = logging.getLogger("shoal.transport.http")

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
_JSON_TYPE: Final = "application/json"
_WRITES: Final = frozenset({"PUT", "DELETE"})


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """An error answer as Go's ``http.Error`` writes it."""
    if len(message) > _MAX_ERROR_TEXT:
        message = message[:_MAX_ERROR_TEXT] + "..."
    return Response(status, error_body(message), ERROR_CONTENT_TYPE, _ERROR_HEADERS + headers)


def _removed(count: int) -> Response:
    """The answer to a delete: 200 (all Go asks for) with ``{"removed": n}`` for shoal."""
    return Response(200, b'{"removed": %d}' % count, _JSON_TYPE, _OK_HEADERS)


def _failure(exc: Exception) -> Response:
    """The answer for an exception raised while serving a key: its peer-port status."""
    status = statuses_of(exc).peer
    if status != LOAD_FAILED.peer:
        return _error(status, str(exc))
    # A failed load (the loader's own exception, mostly): "the owner tried and failed".
    log.debug("serving a peer failed: %r", exc)
    return _error(status, str(exc) or type(exc).__name__)


def _key_error(key: str, exc: Exception) -> BatchError:
    """A key of a batch that failed, as the answer a GET of it would have had."""
    answer = _failure(exc)
    return BatchError(key, answer.status, answer.body)


def _batch_answer(items: list[tuple[str, bytes, int | None]], errors: list[BatchError]) -> Response:
    return Response(200, encode_batch_entries(items, errors), GET_MANY_CONTENT_TYPE, _OK_HEADERS)


class PeerServer(ServerFront):
    """Serves the groupcache peer protocol for one node (see docs/protocol.md).

    The node starts it when ``NodeConfig.port`` is set. Paths live under
    ``config.base_path``; header, body and time limits are the node's
    :class:`~shoal.config.NodeConfig` limits.

    Args:
        node: the node whose groups are served (groups added later are served too).
        max_batch_keys: most keys one batch get may name (more: 413).
        shutdown_timeout: seconds :meth:`aclose` lets in-flight requests finish.
        tls: the current TLS server context, asked at each connection (see
            :class:`shoal.tls.NodeTls`); None serves plain HTTP.
        trace: wraps the handler (a server span per request, :mod:`shoal.otel`);
            every request then goes through the handler, none through
            :meth:`fast_get`. Default None: no wrapping, the fast path on.
    """

    def __init__(
        self,
        node: ServedNode,
        *,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        tls: Callable[[], ssl.SSLContext] | None = None,
        trace: Callable[[Handler], Handler] | None = None,
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
            self.handle if trace is None else trace(self.handle),
            HttpLimits.of(node.config),
            fast_get=self.fast_get if trace is None else None,
            fast_content_type=PROTOBUF_CONTENT_TYPE,
            fast_headers=_OK_HEADERS,
            shutdown_timeout=shutdown_timeout,
            tls=tls,
        )

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Answer one request: a ready :class:`Response` when no waiting is needed
        (hits, errors), else a coroutine (loads, writes)."""
        method = request.method
        client = method in _WRITES and request.header(WRITE_HEADER) == b"client"
        return self._route(method, request.path, request.body, client=client)

    def fast_get(self, target: bytes) -> bytes | Response | Awaitable[Response] | None:
        """The server's shortcut for a plain ``GET {base}{group}/{key}`` (see
        :data:`~shoal._http.FastGet`): on a hit, the GetResponse body itself.

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
            return _failure(exc)
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
                return _failure(exc)
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
                return _failure(exc)
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
            value, expires_at = await group.serve_peer_load(key)
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
            return _failure(exc)
        expires_at = from_expire_ns(request.expire_ns)
        return self._store(group, request.key, request.value, expires_at, client=client)

    async def _store(
        self, group: ServedGroup, key: str, value: bytes, expires_at: float | None, *, client: bool
    ) -> Response:
        try:
            if client:  # a client's write: the node's write path tells the others
                await group.set_bytes(key, value, expires_at=expires_at)
            else:
                await group.serve_peer_set(key, value, expires_at=expires_at)
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
            return _failure(exc)
        return self._delete(group, request.keys)

    async def _delete(
        self, group: ServedGroup, keys: Iterable[str], *, client: bool = False
    ) -> Response:
        try:
            if client:
                removed = await group.remove_keys(keys)
            else:
                removed = await group.serve_peer_remove(keys)
        except Exception as exc:
            return _failure(exc)
        return _removed(removed)

    async def _invalidate(self, group: ServedGroup) -> Response:
        try:
            removed = await group.serve_peer_invalidate()
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
                return _failure(exc)
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
            *(group.serve_peer_load(key) for key in keys), return_exceptions=True
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
