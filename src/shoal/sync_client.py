"""SyncClient: the blocking twin of :class:`shoal.Client`, for threads and forked workers.

Same constructor, routing and errors as :class:`~shoal.client.Client` (both build
their view and route keys with :mod:`shoal._client_routing`), but every request
is made in the calling thread on a blocking socket: no event loop, no thread hop::

    with shoal.SyncClient("http://10.0.0.1:9999") as client:   # a node's HTTP API
        score = client.get("scores", "Tom")
        client.set("scores", "Tom", b"700", ttl=60)

    client = shoal.SyncClient("unix:/run/shoal/api.sock")      # the node on this host

**Connections.** Each member gets a small pool of keep-alive HTTP/1.1
connections to its peer port (the cluster's ``http`` peer protocol, as
:class:`~shoal.client.Client` uses it). A thread takes an idle connection (or
opens one), makes its request and puts it back, so several threads may share one
client; a connection is never used by two threads at once. A pooled connection
the node closed while it was idle is retried once on a new connection.

**Fork safety.** A client made before ``os.fork()`` (gunicorn ``--preload``)
forgets, in the child, every inherited connection (its copy of the socket is
closed; the parent's stays open) and its locks; the child's first request opens
its own connections. Two processes never share a socket.

Only ``http`` clusters (the default transport): against a cluster started with
``--transport grpc`` the client raises :class:`~shoal.errors.ConfigError` at
:meth:`SyncClient.start`; use the async :class:`~shoal.client.Client` there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self, TypeVar

from ._atomic import check_delta, raise_for
from ._client_routing import Router, check_seed, fetch_http_view, parse_cluster
from ._near_cache import Follower, NearCache, NearStore
from .client import DEFAULT_BACKOFF, DEFAULT_TIMEOUT
from .errors import (
    BadRequest,
    Closed,
    ConfigError,
    Forbidden,
    GroupNotFound,
    InvalidKey,
    NotFound,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    RemoteLoadError,
    ShoalError,
    Unauthorized,
)
from .ring import Ring
from .statuses import PEER_LOAD_FAILED, PEER_NODE_UNAVAILABLE, PEER_NOT_FOUND
from .tls import ClientTls
from .tokens import bearer
from .wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    LocalProtocolError,
    RemoteProtocolError,
    build_peer_path,
    build_remove_keys_path,
    decode_get_response,
    encode_remove_keys,
    encode_set_request,
    no_such_group_message,
    to_expire_ns,
)
from .wire.batch import (
    DEFAULT_MAX_BATCH_KEYS,
    GET_MANY_CONTENT_TYPE,
    build_get_many_path,
    build_group_path,
    decode_get_many_response,
    encode_get_many_request,
)
from .wire.ops import (
    OP_ADD,
    OP_INCR,
    OP_SEGMENT,
    OP_SET,
    OP_TOUCH,
    OP_TTL,
    OpItem,
    OpRequestBody,
    OpResultBody,
    decode_op_response,
    encode_op_request,
)

__all__ = ["SyncClient"]

T = TypeVar("T")

_NODE_FAILURES = (PeerUnavailable, PeerTimeout)
_MAX_IDLE: Final = 16
"""Idle connections a client keeps to one member; more are closed when put back."""
_MAX_HEAD: Final = 64 * 1024
_WRITE_HEADER: Final = b"Shoal-Write: client\r\n"
_NO_SUCH_GROUP: Final = no_such_group_message("").encode()
_GET_MANY_TYPE: Final = GET_MANY_CONTENT_TYPE.encode()
_MAX_ERROR_TEXT: Final = 1000


class _Dropped(Exception):
    """The connection closed before any byte of the answer (the idle-close race)."""


@dataclass(slots=True)
class _Answer:
    status: int
    content_type: bytes
    body: bytes
    keep_alive: bool


class _Connection:
    """One blocking keep-alive connection; used by one thread at a time."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def exchange(self, request: bytes) -> _Answer:
        sock = self.sock
        sock.sendall(request)
        data = sock.recv(65536)
        if not data:
            raise _Dropped("connection closed by the node")
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > _MAX_HEAD:
                raise PeerError("answer head too long")
            more = sock.recv(65536)
            if not more:
                raise PeerError("connection closed in the answer's head")
            data += more
        head = data[:end]
        line_end = head.find(b"\r\n")
        status_line = head if line_end < 0 else head[:line_end]
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise PeerError(f"bad status line {status_line[:80]!r}") from None
        length = 0
        content_type = b""
        keep_alive = status_line.startswith(b"HTTP/1.1")
        chunked = False
        if line_end >= 0:
            for raw in head[line_end + 2 :].split(b"\r\n"):
                name, _, value = raw.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"content-type":
                    content_type = value.strip()
                elif name == b"connection":
                    keep_alive = value.strip().lower() != b"close"
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
        if chunked:
            raise PeerError("chunked answers are not expected on the peer port")
        body = data[end + 4 :]
        if len(body) < length:
            parts = [body]
            have = len(body)
            while have < length:
                more = sock.recv(max(65536, length - have))
                if not more:
                    raise PeerError("connection closed in the answer's body")
                parts.append(more)
                have += len(more)
            body = b"".join(parts)
        if len(body) != length:
            keep_alive = False  # stray bytes: the connection's state is unknown
            body = body[:length]
        return _Answer(status, content_type, body, keep_alive)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _excerpt(body: bytes) -> str:
    text = body[: _MAX_ERROR_TEXT + 1].decode("utf-8", "replace").strip()
    return text[:_MAX_ERROR_TEXT] + "..." if len(text) > _MAX_ERROR_TEXT else text


def _media_type(content_type: bytes) -> bytes:
    return content_type.partition(b";")[0].strip().lower()


class _SyncHttpNode:
    """A member of an ``http`` cluster, reached over the groupcache peer protocol
    with blocking sockets."""

    def __init__(
        self, url: str, base_path: str, ssl_context: ssl.SSLContext | None, timeout: float
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._base = base_path
        self._timeout = timeout
        self._host_header = b"Host: %s:%d\r\n" % (self._host.encode("idna"), self._port)
        self._idle: list[_Connection] = []
        self._closed = False

    # -- the peer protocol -----------------------------------------------------------

    def get(self, group: str, key: str) -> bytes:
        return self.get_entry(group, key)[0]

    def get_entry(self, group: str, key: str) -> tuple[bytes, int | None]:
        """The value and its expiry (Unix nanoseconds; None: none)."""
        target = self._path(group, key)
        answer = self._exchange(b"GET %s HTTP/1.1\r\n%s\r\n" % (target, self._host_header))
        if answer.status != 200:
            raise self._read_error(answer, group, key)
        try:
            response = decode_get_response(answer.body, max_size=DEFAULT_MAX_MESSAGE_BYTES)
        except RemoteProtocolError as exc:
            raise PeerError(f"{self.url}: undecodable answer for {key!r}: {exc}") from exc
        return response.value, response.expire_ns

    def get_many(self, group: str, keys: list[str]) -> dict[str, bytes]:
        return {key: value for key, (value, _) in self.get_many_entries(group, keys).items()}

    def get_many_entries(self, group: str, keys: list[str]) -> dict[str, tuple[bytes, int | None]]:
        found: dict[str, tuple[bytes, int | None]] = {}
        for start in range(0, len(keys), DEFAULT_MAX_BATCH_KEYS):
            chunk = keys[start : start + DEFAULT_MAX_BATCH_KEYS]
            try:
                target = build_get_many_path(self._base, group).encode("ascii")
                body = encode_get_many_request(chunk)
            except LocalProtocolError as exc:
                raise InvalidKey(str(exc)) from exc
            answer = self._exchange(self._with_body(b"POST", target, body, _GET_MANY_TYPE))
            if answer.status == 200 and _media_type(answer.content_type) == _GET_MANY_TYPE:
                try:
                    items = decode_get_many_response(answer.body, max_items=len(chunk))
                except RemoteProtocolError as exc:
                    raise PeerError(f"{self.url}: undecodable batch answer: {exc}") from exc
                asked = set(chunk)
                found.update(
                    (item.key, (item.value, item.expire_ns)) for item in items if item.key in asked
                )
            elif answer.status == 200:
                raise PeerError(f"{self.url}: batch answer of type {answer.content_type!r}")
            else:
                raise self._read_error(answer, group, None)
        return found

    def set(self, group: str, key: str, value: bytes, ttl: float | None) -> None:
        target = self._path(group, key)
        expires_at = time.time() + ttl if ttl is not None else None
        try:
            body = encode_set_request(group, key, value, expire_ns=to_expire_ns(expires_at))
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        request = self._with_body(b"PUT", target, body, b"application/x-protobuf", write=True)
        self._check_written(self._exchange(request), group, f"set {key!r}")

    def delete(self, group: str, key: str) -> bool:
        target = self._path(group, key)
        request = b"DELETE %s HTTP/1.1\r\n%s%s\r\n" % (target, self._host_header, _WRITE_HEADER)
        answer = self._exchange(request)
        self._check_written(answer, group, f"delete {key!r}")
        return _removed(answer.body) > 0

    def remove_keys(self, group: str, keys: list[str]) -> int:
        """Drop ``keys`` from the whole cluster through this member (``_remove-keys/``,
        at most 1,000 per request); how many it had."""
        removed = 0
        for start in range(0, len(keys), DEFAULT_MAX_BATCH_KEYS):
            chunk = keys[start : start + DEFAULT_MAX_BATCH_KEYS]
            try:
                target = build_remove_keys_path(self._base, group).encode("ascii")
                body = encode_remove_keys(group, chunk)
            except LocalProtocolError as exc:
                raise InvalidKey(str(exc)) from exc
            request = self._with_body(b"POST", target, body, b"application/json", write=True)
            answer = self._exchange(request)
            self._check_written(answer, group, f"remove {len(chunk)} keys")
            removed += _removed(answer.body)
        return removed

    def op(self, group: str, request: bytes) -> bytes:
        """One atomic operation or write batch (``POST {base}{group}/_op/``), run
        through the member's whole write path; its serialized ``OpResponse``."""
        try:
            target = build_group_path(self._base, group, OP_SEGMENT).encode("ascii")
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc
        answer = self._exchange(
            self._with_body(b"POST", target, request, b"application/x-protobuf", write=True)
        )
        if answer.status == 200:
            return answer.body
        if answer.status == PEER_NOT_FOUND and answer.body.startswith(_NO_SUCH_GROUP):
            raise GroupNotFound(f"{self.url}: no such group: {group!r}")
        if answer.status == 400:
            raise BadRequest(_excerpt(answer.body))
        if answer.status == PEER_NODE_UNAVAILABLE:
            raise PeerUnavailable(f"{self.url}: operation answered {answer.status}")
        raise PeerError(f"{self.url}: operation answered {answer.status}: {_excerpt(answer.body)}")

    # -- answers -----------------------------------------------------------------------

    def _path(self, group: str, key: str) -> bytes:
        try:
            return build_peer_path(self._base, group, key).encode("ascii")
        except LocalProtocolError as exc:
            raise InvalidKey(str(exc)) from exc

    def _with_body(
        self, method: bytes, target: bytes, body: bytes, content_type: bytes, *, write: bool = False
    ) -> bytes:
        return b"%s %s HTTP/1.1\r\n%s%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            method,
            target,
            self._host_header,
            _WRITE_HEADER if write else b"",
            content_type,
            len(body),
            body,
        )

    def _read_error(self, answer: _Answer, group: str, key: str | None) -> Exception:
        status = answer.status
        text = _excerpt(answer.body)
        if status == PEER_NOT_FOUND:
            if answer.body.startswith(_NO_SUCH_GROUP):
                return GroupNotFound(f"{self.url}: no such group: {group!r}")
            if key is not None:
                return NotFound(key)
            return PeerError(f"{self.url}: 404 {text}")
        if status in PEER_LOAD_FAILED and text:
            what = repr(key) if key is not None else "a batch"
            return RemoteLoadError(f"{self.url}: loading {what} failed: {text}")
        if status == PEER_NODE_UNAVAILABLE:
            return PeerUnavailable(f"{self.url}: answered {status}: {text}")
        return PeerError(f"{self.url}: answered {status}: {text}")

    def _check_written(self, answer: _Answer, group: str, what: str) -> None:
        if answer.status == 200:
            return
        if answer.status == PEER_NOT_FOUND and answer.body.startswith(_NO_SUCH_GROUP):
            raise GroupNotFound(f"{self.url}: no such group: {group!r}")
        if answer.status == PEER_NODE_UNAVAILABLE:
            raise PeerUnavailable(f"{self.url}: {what} answered {answer.status}")
        raise PeerError(f"{self.url}: {what} answered {answer.status}: {_excerpt(answer.body)}")

    # -- the pool ----------------------------------------------------------------------

    def _connect(self) -> _Connection:
        if self._closed:
            raise PeerUnavailable(f"{self.url}: the client is closed")
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except TimeoutError as exc:
            raise PeerTimeout(f"{self.url}: no connection within {self._timeout}s") from exc
        except OSError as exc:
            raise PeerUnavailable(f"{self.url}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise PeerUnavailable(f"{self.url}: TLS: {exc}") from exc
        return _Connection(sock)

    def _exchange(self, request: bytes) -> _Answer:
        """One request on a connection of the calling thread's own; a pooled one that
        turns out closed by the node is replaced once by a new one."""
        try:
            connection = self._idle.pop()  # atomic: no two threads get the same one
            reused = True
        except IndexError:
            connection = self._connect()
            reused = False
        try:
            try:
                answer = connection.exchange(request)
            except (_Dropped, ConnectionError) as exc:
                connection.close()
                if not reused:
                    raise PeerUnavailable(f"{self.url}: {exc}") from exc
                connection = self._connect()
                answer = connection.exchange(request)
        except _Dropped as exc:
            connection.close()
            raise PeerUnavailable(f"{self.url}: {exc}") from exc
        except TimeoutError as exc:
            connection.close()
            raise PeerTimeout(f"{self.url} did not answer within {self._timeout}s") from exc
        except OSError as exc:
            connection.close()
            raise PeerUnavailable(f"{self.url}: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        if answer.keep_alive and not self._closed and len(self._idle) < _MAX_IDLE:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def forget(self) -> None:
        """In a forked child: close this process's copies of the inherited sockets."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def close(self) -> None:
        self._closed = True
        self.forget()


@dataclass(frozen=True)
class _View:
    ring: Ring
    base_path: str
    nodes: Mapping[str, _SyncHttpNode] = field(default_factory=dict)


def _as_bytes(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"a SyncClient stores bytes, got {type(value).__name__}")
    return bytes(value)


def _removed(body: bytes) -> int:
    """The count of a ``{"removed": n}`` answer (0 for any other)."""
    if not body.startswith(b'{"removed": '):
        return 0
    try:
        return int(body[12:].rstrip(b"}"))
    except ValueError:
        return 0


def _near_expiry(expire_ns: int | None) -> float | None:
    """An entry's expiry (Unix nanoseconds) on the near cache's clock (monotonic)."""
    if expire_ns is None:
        return None
    return time.monotonic() + (expire_ns / 1e9 - time.time())


_CLIENTS: weakref.WeakSet[SyncClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncClient:
    """A blocking smart client of a shoal cluster: each key goes straight to its owner.

    Use it as a context manager (or call :meth:`start`, then :meth:`close`). Safe to
    share between threads, and fork-safe (see the module documentation). Its methods
    return and raise what :class:`~shoal.client.Client`'s do, without ``await``.

    Args:
        seeds: one or more nodes to learn the cluster from: ``http://host:port`` or
            ``https://host:port`` (a node's HTTP API) or ``unix:/path`` (a node's HTTP
            API on a Unix socket, ``--api-unix``).
        timeout: seconds a request to one node may take. Default 5.
        backoff: seconds a node that failed is skipped; also the least time between
            two refreshes after failures. Default 1.
        token: the API token to present for ``/v1/cluster``. Default None.
        tls: TLS towards the nodes (:class:`shoal.tls.ClientTls`), for ``https://``
            seeds and members.
        near_cache: keep recent hits in this process (:class:`shoal.NearCache`), kept
            coherent by the changes the first seed's node pushes (docs/workers.md);
            ``True`` for the defaults. Default None: no near cache.

    Raises:
        ConfigError: no seed, a seed that is not such a URL, a malformed token, a value
            out of range, or a TLS file that cannot be loaded.
    """

    def __init__(
        self,
        seeds: str | Iterable[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        token: str | None = None,
        tls: ClientTls | None = None,
        near_cache: NearCache | bool | None = None,
    ) -> None:
        seed_list = [seeds] if isinstance(seeds, str) else list(seeds)
        if not seed_list:
            raise ConfigError("a SyncClient needs at least one seed URL")
        if near_cache is True:
            near_cache = NearCache()
        if near_cache is not None and near_cache is not False:
            if not isinstance(near_cache, NearCache):
                raise ConfigError(f"near_cache is a shoal.NearCache, got {near_cache!r}")
            self._near_options: NearCache | None = near_cache
            self._near: NearStore | None = NearStore(near_cache)
        else:
            self._near_options = None
            self._near = None
        self._follower: Follower | None = None
        self._seeds = [check_seed(url, grpc=False) for url in seed_list]
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        self._timeout = float(timeout)
        self._backoff = float(backoff)
        self._authorization = bearer(token) if token is not None else None
        self._ssl: ssl.SSLContext | None = tls.context() if tls is not None else None
        self._clock: Callable[[], float] = time.monotonic
        self._router = Router(self._backoff)
        self._view: _View | None = None
        self._refresh_lock = threading.Lock()
        self._refreshed_at = float("-inf")
        self._closed = False
        _CLIENTS.add(self)

    def __repr__(self) -> str:
        members = len(self._view.ring) if self._view is not None else 0
        return f"<SyncClient seeds={self._seeds} members={members}>"

    # -- the view ------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The members' URLs in ring order (empty before :meth:`start`)."""
        return self._view.ring.nodes if self._view is not None else ()

    @property
    def transport(self) -> str | None:
        """What the members speak (always ``http``); None before :meth:`start`."""
        return "http" if self._view is not None else None

    def owner(self, key: str) -> str:
        """The URL of the member that owns ``key`` on the client's ring.

        Raises:
            Closed: the client is not started (or closed).
        """
        return self._current().ring.owner(key)

    def start(self) -> Self:
        """Learn the cluster from the seeds; return the client.

        Raises:
            PeerUnavailable: no seed answered.
            ConfigError: a seed's node runs without a peer port, or the cluster
                speaks gRPC.
        """
        if self._closed:
            raise Closed("the client is closed")
        self.refresh()
        self._follow()
        return self

    @property
    def near_cache(self) -> NearStore | None:
        """The near cache (its ``hits``, ``misses``, ``flushes``, ``enabled`` and
        ``len()``), or None without one."""
        return self._near

    def _follow(self) -> None:
        """Start following the first seed's changes (again, in a forked child)."""
        near, options = self._near, self._near_options
        if near is None or options is None or self._follower is not None or self._closed:
            return
        follower = Follower(
            self._seeds[0],
            near,
            authorization=self._authorization,
            ssl_context=self._ssl,
            wait=options.wait,
            retry=min(self._backoff, 1.0),
        )
        self._follower = follower
        follower.start()

    def refresh(self) -> None:
        """Ask the seeds for the cluster's members and ring again.

        Raises:
            PeerUnavailable: nobody answered (the client keeps its current view).
        """
        with self._refresh_lock:
            self._refresh()

    def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        view, self._view = self._view, None
        if view is not None:
            for node in view.nodes.values():
                node.close()
        _CLIENTS.discard(self)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- data ----------------------------------------------------------------------

    def get(self, group: str, key: str) -> bytes:
        """The value of ``key`` in ``group``, from its owner (which loads it on a miss).

        Raises:
            NotFound: the key does not exist.
            GroupNotFound: no such group.
            RemoteLoadError: the owner's loader failed.
            InvalidKey: a key that cannot be sent (or refused by the node).
            PeerUnavailable, PeerTimeout: no node could answer, even after a retry.
        """
        near = self._near
        if near is not None:
            return self._near_get(near, group, key)
        view = self._view
        if view is not None:
            url = self._router.route(view.ring, key)
            try:
                return view.nodes[url].get(group, key)
            except _NODE_FAILURES as exc:
                return self._on_owner(key, lambda node: node.get(group, key), first_error=exc)
        return self._on_owner(key, lambda node: node.get(group, key))

    def _near_get(self, near: NearStore, group: str, key: str) -> bytes:
        value = near.get(group, key)
        if value is not None:
            return value
        if self._follower is None:
            self._follow()  # a forked child follows on its own
        generation = near.generation
        value, expire_ns = self._on_owner(key, lambda node: node.get_entry(group, key))
        near.put(group, key, value, _near_expiry(expire_ns), generation)
        return value

    def get_many(self, group: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that exist (missing keys are left out), asking each
        owner once for all of its keys.

        Raises:
            The errors of :meth:`get` except NotFound.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[str, bytes] = {}
        near = self._near
        generation = 0
        pending = wanted
        if near is not None:
            generation = near.generation
            for key in wanted:
                value = near.get(group, key)
                if value is not None:
                    found[key] = value
            pending = [key for key in wanted if key not in found]
        for last in (False, True):  # one round, and one more for the keys of failed nodes
            view = self._current() if not last else self._after_failure()
            failed: list[str] = []
            for url, batch in self._router.batches(view.ring, pending).items():
                try:
                    entries = view.nodes[url].get_many_entries(group, batch)
                    for key, (value, expire_ns) in entries.items():
                        found[key] = value
                        if near is not None:
                            near.put(group, key, value, _near_expiry(expire_ns), generation)
                except _NODE_FAILURES:
                    self._router.failed(url)
                    if last:
                        raise
                    failed.extend(batch)
            if not failed:
                break
            pending = failed
        return {key: found[key] for key in wanted if key in found}

    def set(self, group: str, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` through the key's owner (see
        :meth:`Client.set <shoal.client.Client.set>`).

        Raises:
            InvalidKey, ValueTooLarge, InvalidTTL: refused by the node (a PeerError
                naming the reason).
            GroupNotFound: no such group.
            PeerUnavailable, PeerTimeout: the owner (and its stand-in) could not be reached.
        """
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"a SyncClient stores bytes, got {type(value).__name__}")
        try:
            self._on_owner(key, lambda node: node.set(group, key, bytes(value), ttl))
        finally:
            if self._near is not None:
                self._near.drop(group, key)  # this client's own write, at once

    def delete(self, group: str, key: str) -> bool:
        """Drop ``key`` from every member's caches, through the key's owner; return
        whether the owner had it.

        Raises:
            GroupNotFound: no such group.
            PeerUnavailable, PeerTimeout: the owner (and its stand-in) could not be reached.
        """
        try:
            return self._on_owner(key, lambda node: node.delete(group, key))
        finally:
            if self._near is not None:
                self._near.drop(group, key)

    # -- atomic operations at the key's owner ------------------------------------------

    def add(self, group: str, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; whether it stored (see
        :meth:`Client.add <shoal.client.Client.add>`)."""
        return self._op(group, key, OP_ADD, OpItem(key, _as_bytes(value), ttl=ttl)).done

    def incr(self, group: str, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer ``key`` holds, at its owner; the new value.

        Raises:
            NotFound: the key is absent. BadRequest: not an integer, or out of range.
        """
        return self._op(group, key, OP_INCR, OpItem(key), check_delta(delta)).number

    def decr(self, group: str, key: str, delta: int = 1) -> int:
        """Subtract ``delta`` from the integer ``key`` holds (see :meth:`incr`)."""
        return self.incr(group, key, -check_delta(delta))

    def touch(self, group: str, key: str, ttl: float | None = None) -> bool:
        """A new TTL for ``key`` (None: never expires); whether the key was there."""
        return self._op(group, key, OP_TOUCH, OpItem(key, ttl=ttl)).done

    def ttl(self, group: str, key: str) -> float | None:
        """Seconds ``key`` has left, None if it never expires.

        Raises:
            NotFound: the key is absent.
        """
        result = self._op(group, key, OP_TTL, OpItem(key), drop=False)
        return result.seconds if result.done else None

    def get_or_set(self, group: str, key: str, default: bytes, ttl: float | None = None) -> bytes:
        """The value of ``key``, or else ``default`` added; what is stored after."""
        try:
            return self.get(group, key)
        except NotFound:
            pass
        if self.add(group, key, default, ttl):
            return default
        try:
            return self.get(group, key)
        except NotFound:
            return default

    def set_many(self, group: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every value of ``mapping``, one request per owner (per 1,000 keys)."""
        values = {key: _as_bytes(value) for key, value in mapping.items()}
        if not values:
            return
        view = self._current()
        try:
            for url, keys in self._router.batches(view.ring, list(values)).items():
                for start in range(0, len(keys), DEFAULT_MAX_BATCH_KEYS):
                    chunk = keys[start : start + DEFAULT_MAX_BATCH_KEYS]
                    items = tuple(OpItem(k, values[k], ttl=ttl) for k in chunk)
                    request = encode_op_request(OpRequestBody(group, OP_SET, items))
                    raw = self._on_member(
                        view, url, functools.partial(_SyncHttpNode.op, group=group, request=request)
                    )
                    for result in decode_op_response(raw):
                        raise_for(chunk[0], result, url)
        finally:
            if self._near is not None:
                for key in values:
                    self._near.drop(group, key)

    def delete_many(self, group: str, keys: Iterable[str]) -> int:
        """Drop the keys everywhere, one request per owner; how many there were."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        view = self._current()
        removed = 0
        try:
            for url, batch in self._router.batches(view.ring, wanted).items():
                remove = functools.partial(_SyncHttpNode.remove_keys, group=group, keys=batch)
                removed += self._on_member(view, url, remove)
        finally:
            if self._near is not None:
                for key in wanted:
                    self._near.drop(group, key)
        return removed

    def _op(
        self, group: str, key: str, kind: int, item: OpItem, delta: int = 0, *, drop: bool = True
    ) -> OpResultBody:
        request = encode_op_request(OpRequestBody(group, kind, (item,), delta))
        answered: list[str] = []

        def call(node: _SyncHttpNode) -> bytes:
            answered[:] = [node.url]
            return node.op(group, request)

        try:
            raw = self._on_owner(key, call)
        finally:
            if drop and self._near is not None:
                self._near.drop(group, key)  # this client's own write, at once
        results = decode_op_response(raw)
        url = answered[0] if answered else "?"
        if len(results) != 1:
            raise PeerError(f"{url}: {len(results)} answers to one operation")
        return raise_for(key, results[0], url)

    def _on_member(self, view: _View, url: str, call: Callable[[_SyncHttpNode], T]) -> T:
        """``call`` on member ``url`` (a batch of the keys it owns); a failed member is
        marked down for the next routing."""
        try:
            return call(view.nodes[url])
        except _NODE_FAILURES:
            self._router.failed(url)
            raise

    # -- routing and failures ---------------------------------------------------------

    def _current(self) -> _View:
        view = self._view
        if view is None:
            raise Closed("the client is closed" if self._closed else "the client is not started")
        return view

    def _on_owner(
        self,
        key: str,
        call: Callable[[_SyncHttpNode], T],
        *,
        first_error: PeerError | None = None,
    ) -> T:
        """``call`` on the node for ``key``; after a node failure, once more on the node
        a fresh view names. ``first_error``: the caller's own first try failed so."""
        view = self._current()
        url = self._router.route(view.ring, key)
        if first_error is None:
            try:
                return call(view.nodes[url])
            except _NODE_FAILURES as exc:
                first_error = exc
        self._router.failed(url)
        view = self._after_failure()
        retry = self._router.route(view.ring, key)
        if retry == url:  # every member is skipped: nowhere else to go
            raise first_error
        try:
            return call(view.nodes[retry])
        except _NODE_FAILURES:
            self._router.failed(retry)
            raise

    def _after_failure(self) -> _View:
        with self._refresh_lock:
            if self._clock() - self._refreshed_at >= self._backoff:
                with contextlib.suppress(ShoalError):
                    self._refresh()
        return self._current()

    # -- learning the cluster ---------------------------------------------------------

    def _refresh(self) -> None:
        if self._closed:
            raise Closed("the client is closed")
        reasons: list[str] = []
        for seed in self._seeds:
            try:
                info = fetch_http_view(
                    seed,
                    authorization=self._authorization,
                    ssl_context=self._ssl,
                    timeout=self._timeout,
                )
                self._apply(info, seed)
            except (ConfigError, Unauthorized, Forbidden):
                raise  # the same at every seed: the token or the setup is wrong
            except (PeerError, OSError, ValueError, KeyError, TypeError) as exc:
                reasons.append(f"{seed}: {exc}")
                continue
            self._refreshed_at = self._clock()
            return
        raise PeerUnavailable("no node told the cluster's members: " + "; ".join(reasons))

    def _apply(self, info: dict[str, Any], source: str) -> None:
        cluster = parse_cluster(info, source)
        if cluster.transport != "http":
            raise ConfigError(
                f"{source}: the cluster speaks {cluster.transport}; a SyncClient talks to "
                "http clusters (use the async shoal.Client for gRPC)"
            )
        old = self._view
        same = old is not None and old.base_path == cluster.base_path
        if same and old is not None and old.ring == cluster.ring:
            return
        nodes: dict[str, _SyncHttpNode] = {}
        for url in cluster.members:
            kept = old.nodes.get(url) if same and old is not None else None
            nodes[url] = kept or _SyncHttpNode(url, cluster.base_path, self._ssl, self._timeout)
        self._view = _View(cluster.ring, cluster.base_path, MappingProxyType(nodes))
        self._router.forget_except(cluster.members)
        if old is not None:
            for url, node in old.nodes.items():
                if nodes.get(url) is not node:
                    node.close()

    def _forked(self) -> None:
        """In a forked child: drop the parent's connections and locks; the child's
        first request opens its own connections."""
        self._refresh_lock = threading.Lock()
        self._router.clear()
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.forget()
        if self._near is not None:
            self._near.forked()
        view = self._view
        if view is not None:
            for node in view.nodes.values():
                node.forget()
