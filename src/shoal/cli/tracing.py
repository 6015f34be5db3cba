"""Log lines like the groupcache demos': which node said it, and where each miss went.

``shoal serve`` in a cluster wraps the node's peer transport and its loaders
with the tracers below, so that a node's log tells the story of every miss::

    [node 8002] INFO    shoal.cluster: miss 'Tom' -> fetched from http://127.0.0.1:8001 in 52 ms
    [node 8001] INFO    shoal.cluster: load 'Tom' here (this node owns it)
    [node 8001] INFO    shoal.demo: [SlowDB] search key Tom

The wrappers only log around calls; they change no result and no error. They
live here, in the composition root, so the core (:mod:`shoal.group`) keeps its
miss path free of per-request logging that embedded users did not ask for.
Hits are not logged: they never leave the cache (see ``/v1/stats``).
"""

from __future__ import annotations

import inspect
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._printable import printable
from ..errors import NotFound, PeerError

if TYPE_CHECKING:
    from ..codec import Codec
    from ..node import Node
    from ..transport import FetchDone, Fetched, PeerClient, Transport

__all__ = ["NodeLabel", "node_label", "TracingTransport", "TracingClient", "traced_loader"]

log = logging.getLogger("shoal.cluster")


def node_label(url: str) -> str:
    """A short name for the node at ``url``: ``node 8001`` on loopback, else ``node host:port``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or url
    if parts.port is None:
        return f"node {host}"
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"node {parts.port}"
    return f"node {host}:{parts.port}"


class NodeLabel(logging.Filter):
    """Adds ``record.node`` (``"[node 8001] "``, or ``""`` for a node alone) to every record.

    Attached to the log handler, so the lines of every logger get it. The label
    can change after start-up (``--port 0`` is only known once bound).
    """

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.prefix = ""
        self.set(label)

    def set(self, label: str) -> None:
        """Use ``label`` from now on (empty: no prefix)."""
        self.prefix = f"[{label}] " if label else ""

    def filter(self, record: logging.LogRecord) -> bool:
        """Label the record; never drops one."""
        record.node = self.prefix
        return True


def _why(exc: BaseException, url: str) -> str:
    # Transport errors usually start with the peer's URL, which the line already names.
    # The text may come from the peer: escaped, so it cannot forge log lines.
    return printable(str(exc).removeprefix(f"{url}: ")) or type(exc).__name__


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


class TracingClient:
    """A :class:`~shoal.transport.PeerClient` that logs each fetch and its outcome."""

    def __init__(self, inner: PeerClient) -> None:
        self._inner = inner

    @property
    def url(self) -> str:
        """The peer's URL."""
        return self._inner.url

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Always None: every fetch goes through :meth:`get`, which logs it."""
        return None

    def statistics(self) -> Any:
        """The wrapped client's counters, if it keeps any (else None)."""
        statistics = getattr(self._inner, "statistics", None)
        return statistics() if statistics is not None else None

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch from the owner, logging where the miss went and how it ended."""
        start = time.perf_counter()
        try:
            fetched = await self._inner.get(group, key)
        except NotFound:
            log.info("miss %r -> %s: not found (%s)", key, self.url, _ms(start))
            raise
        except PeerError as exc:
            # The group logs the fallback ("loading locally"); this line names the cause.
            log.info(
                "miss %r -> %s failed after %s: %s", key, self.url, _ms(start), _why(exc, self.url)
            )
            raise
        except Exception as exc:
            log.info("miss %r -> %s: %s (%s)", key, self.url, printable(str(exc)), _ms(start))
            raise
        log.info(
            "miss %r -> fetched from %s in %s (%d bytes)",
            key,
            self.url,
            _ms(start),
            len(fetched.value),
        )
        return fetched

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch a batch from the owner, logging it as one line."""
        start = time.perf_counter()
        try:
            found = await self._inner.get_many(group, keys)
        except PeerError as exc:
            log.info(
                "miss %d keys -> %s failed after %s: %s",
                len(keys),
                self.url,
                _ms(start),
                _why(exc, self.url),
            )
            raise
        log.info(
            "miss %d keys -> fetched %d from %s in %s", len(keys), len(found), self.url, _ms(start)
        )
        return found

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store at the peer, logging the write."""
        await self._inner.set(group, key, value, expires_at)
        log.info("set %r -> stored at %s", key, self.url)

    async def remove_keys(self, group: str, keys: list[str]) -> int | None:
        """Drop keys at the peer, logging the write."""
        removed = await self._inner.remove_keys(group, keys)
        log.info("delete %d keys -> %s (removed %s)", len(keys), self.url, removed)
        return removed

    async def invalidate(self, group: str) -> int | None:
        """Drop the group at the peer, logging it."""
        removed = await self._inner.invalidate(group)
        log.info("invalidate group %r -> %s (removed %s)", group, self.url, removed)
        return removed

    async def replica(self, group: str, request: bytes) -> bytes:
        """Pass a replicated group's message through (not logged: anti-entropy is periodic)."""
        return await self._inner.replica(group, request)

    async def op(self, group: str, request: bytes) -> bytes:
        """Pass an atomic operation through (not logged)."""
        return await self._inner.op(group, request)

    async def aclose(self) -> None:
        """Close the wrapped client."""
        await self._inner.aclose()


class TracingTransport:
    """A :class:`~shoal.transport.Transport` whose clients log (see :class:`TracingClient`)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    def client(self, url: str) -> TracingClient:
        """A logging client for the peer at ``url``."""
        return TracingClient(self._inner.client(url))

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def _why_here(node: Node, key: str) -> str:
    picker = node.peers
    if picker is None:
        return ""
    owner = picker.owner(key)
    if owner == picker.self_url:
        return " (this node owns it)"
    if owner in picker.backing_off():
        return f" (its owner {owner} is failing and skipped for now)"
    # A peer's request for a key this node's ring gives to someone else, or the
    # owner just failed (the group logged why).
    return f" (its owner is {owner})"


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class _Traced:
    """What both loader wrappers share: the wrapped loader, the node, and closing."""

    def __init__(self, inner: Callable[[str], Any], node: Node) -> None:
        self._inner = inner
        self._node = node

    def _log(self, key: str) -> None:
        log.info("load %r here%s", key, _why_here(self._node, key))

    async def aclose(self) -> None:
        """Close the wrapped loader, if it has anything to close (the node calls this)."""
        close = getattr(self._inner, "aclose", None)
        if callable(close):
            await close()

    def bind_codec(self, codec: Codec[Any]) -> None:
        """Tell the wrapped loader its group's codec, if it wants it (the SQL loaders)."""
        bind = getattr(self._inner, "bind_codec", None)
        if callable(bind):
            bind(codec)


class _AsyncTraced(_Traced):
    """An async loader that logs each load, then awaits the wrapped loader."""

    async def __call__(self, key: str) -> Any:
        self._log(key)
        return await self._inner(key)


class _SyncTraced(_Traced):
    """A sync loader (run in the loader threads) that logs each load first."""

    def __call__(self, key: str) -> Any:
        self._log(key)
        return self._inner(key)


def traced_loader(loader: Callable[[str], Any], node: Node) -> Callable[[str], Any]:
    """Wrap ``loader`` so that every call logs ``load 'KEY' here (why)``.

    The wrapper is async exactly when ``loader`` is, so the group still runs a
    sync loader in its thread pool, and it forwards ``aclose`` so the node
    still closes the loader on shutdown (and ``bind_codec``, so that a SQL loader
    still decodes with its group's codec).
    """
    if _is_async(loader):
        return _AsyncTraced(loader, node)
    return _SyncTraced(loader, node)
