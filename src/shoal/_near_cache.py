"""The near cache of a client: a small, bounded, in-process LRU of recent hits, kept
coherent by the changes its node pushes (``GET /v1/invalidations``, a long poll).

:class:`NearCache` is the public options object; :class:`NearStore` the cache;
:class:`Follower` the thread that follows the node's change log and drops what
changed. See docs/workers.md for the staleness bound.

Rules: an entry never outlives its own TTL (the node's expiry) nor the near
cache's ``ttl``; the cache is used only while the follower is in step with the node
(a lost connection empties it and turns it off until the next answer); a value
fetched while a change was applied is not kept (a change could be older than it).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Follower", "NearCache", "NearStore"]


@dataclass(frozen=True, slots=True)
class NearCache:
    """Options of a client's near cache (``SyncClient(..., near_cache=NearCache())``).

    Args:
        max_entries: entries kept at most (least recently used go first). Default 10,000.
        max_bytes: bytes of values kept at most. Default 64 MiB.
        ttl: seconds an entry is kept at most (also bounded by the entry's own TTL);
            None: until it changes or is evicted. Default None.
        wait: seconds one long poll of the node's changes waits for one. Default 20.
    """

    max_entries: int = 10_000
    max_bytes: int = 64 << 20
    ttl: float | None = None
    wait: float = 20.0

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"near cache {name} must be a positive integer, got {value!r}")
        for name in ("ttl", "wait"):
            value = getattr(self, name)
            if value is None and name == "ttl":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"near cache {name} must be positive seconds, got {value!r}")


class NearStore:
    """The entries of a near cache, shared by the threads of one client."""

    __slots__ = (
        "_bytes",
        "_clock",
        "_entries",
        "_lock",
        "_options",
        "enabled",
        "flushes",
        "generation",
        "hits",
        "misses",
    )

    def __init__(self, options: NearCache, clock: Callable[[], float] = time.monotonic) -> None:
        self._options = options
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self.enabled = False
        """True while the follower is in step with the node."""
        self.generation = 0
        """Grows with every change applied (see :meth:`put`)."""
        self.hits = 0
        self.misses = 0
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, group: str, key: str) -> bytes | None:
        """The value kept for ``key``, or None."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get((group, key))
            if entry is None:
                self.misses += 1
                return None
            value, expires = entry
            if expires is not None and expires <= self._clock():
                self._pop((group, key))
                self.misses += 1
                return None
            self._entries.move_to_end((group, key))
            self.hits += 1
            return value

    def put(
        self, group: str, key: str, value: bytes, expires_at: float | None, generation: int
    ) -> None:
        """Keep ``value`` (fetched when the generation was ``generation``; if a change
        was applied since, it may be older than that change: not kept).

        ``expires_at``: the entry's own expiry, on this cache's clock (None: none).
        """
        options = self._options
        if not self.enabled or len(value) > options.max_bytes:
            return
        if options.ttl is not None:
            limit = self._clock() + options.ttl
            expires_at = limit if expires_at is None else min(expires_at, limit)
        with self._lock:
            if generation != self.generation or not self.enabled:
                return
            self._pop((group, key))
            self._entries[(group, key)] = (value, expires_at)
            self._bytes += len(value)
            while len(self._entries) > options.max_entries or self._bytes > options.max_bytes:
                _, (old, _) = self._entries.popitem(last=False)
                self._bytes -= len(old)

    def drop(self, group: str, key: str | None) -> None:
        """Forget ``key`` of ``group`` (None: every key of the group)."""
        with self._lock:
            self.generation += 1
            if key is not None:
                self._pop((group, key))
            else:
                for pair in [p for p in self._entries if p[0] == group]:
                    self._pop(pair)

    def flush(self) -> None:
        """Forget everything."""
        with self._lock:
            self.generation += 1
            self.flushes += 1
            self._entries.clear()
            self._bytes = 0

    def disable(self) -> None:
        """Stop serving (the follower lost the node): forget everything."""
        self.enabled = False
        self.flush()

    def _pop(self, pair: tuple[str, str]) -> None:
        old = self._entries.pop(pair, None)
        if old is not None:
            self._bytes -= len(old[0])

    def forked(self) -> None:
        """In a forked child: a fresh lock, nothing kept, off until followed again."""
        self._lock = threading.Lock()
        self.enabled = False
        self._entries.clear()
        self._bytes = 0
        self.generation += 1


class Follower:
    """A daemon thread that follows a node's change log into a :class:`NearStore`.

    Args:
        seed: the node's HTTP API (``http://``, ``https://`` or ``unix:/path``).
        store: the near cache to keep coherent.
        authorization: the ``Authorization`` header value, or None.
        ssl_context: for an ``https://`` seed.
        wait: seconds one poll waits for a change.
        retry: seconds between attempts after a failure.
    """

    def __init__(
        self,
        seed: str,
        store: NearStore,
        *,
        authorization: str | None,
        ssl_context: ssl.SSLContext | None,
        wait: float,
        retry: float,
    ) -> None:
        self._seed = seed
        self._store = store
        self._authorization = authorization
        self._ssl = ssl_context
        self._wait = wait
        self._retry = retry
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._epoch: str | None = None
        self._seq = -1
        self.polls = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="shoal-near-cache", daemon=True)

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the near cache goes off) and wait for the thread."""
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends the poll in flight
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._store.disable()

    def forget(self) -> None:
        """In a forked child: the thread is the parent's; close this process's copy of
        its socket (no shutdown: the parent's poll goes on)."""
        self._stop.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        store = self._store
        while not self._stop.is_set():
            try:
                answer = self._poll()
            except (OSError, ValueError, KeyError, TypeError):
                self.failures += 1
                store.disable()
                self._close()
                self._stop.wait(self._retry)
                continue
            self.polls += 1
            if answer["flush"]:
                store.flush()
            else:
                for group, key in answer["keys"]:
                    store.drop(str(group), None if key is None else str(key))
            self._epoch = str(answer["epoch"])
            self._seq = int(answer["seq"])
            store.enabled = True
        self._close()

    def _poll(self) -> dict[str, Any]:
        if self._sock is None:
            self._sock = self._connect()
        query = urllib.parse.urlencode(
            {"since": self._seq, "epoch": self._epoch or "", "wait": self._wait}
        )
        head = f"GET /v1/invalidations?{query} HTTP/1.1\r\nHost: shoal\r\n"
        if self._authorization is not None:
            head += f"Authorization: {self._authorization}\r\n"
        sock = self._sock
        sock.settimeout(self._wait + 10)
        sock.sendall(head.encode() + b"\r\n")
        status, body = _read_answer(sock)
        if status != 200:
            raise ValueError(f"GET /v1/invalidations answered {status}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def _connect(self) -> socket.socket:
        seed = self._seed
        if seed.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            try:
                sock.connect(seed.removeprefix("unix:"))
            except BaseException:
                sock.close()
                raise
            return sock
        parts = urllib.parse.urlsplit(seed)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = socket.create_connection((host, port), timeout=10)
        if parts.scheme == "https":
            context = self._ssl or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
        return sock

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length body."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("the node closed the connection")
        data += more
        if len(data) > 65536:
            raise ValueError("answer head too long")
    head = data[:end].decode("latin-1").split("\r\n")
    status = int(head[0][9:12])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = data[end + 4 :]
    while len(body) < length:
        more = sock.recv(max(65536, length - len(body)))
        if not more:
            raise ConnectionError("the node closed the connection")
        body += more
    return status, body[:length]
