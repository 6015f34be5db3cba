"""etcd membership: a leased key per node, a watch on the cluster's prefix.

Each node puts ``{prefix}/{cluster}/members/{node_id}`` → JSON ``{node_id, url,
grpc, started_at}`` under a lease of ``lease_ttl`` seconds and refreshes the
lease itself every ``keepalive_interval`` (one request per refresh, each with
a deadline). It reads the prefix once and then watches it; every change
publishes a new snapshot. A killed node vanishes when its lease runs out; a
stopped node revokes its lease, which deletes its key at once.

When etcd cannot be reached the node keeps its last view and says so in the
log; it retries every ``retry_interval`` with a fresh connection, then checks
its lease (still alive: the key stays; expired: a new lease and the key
again), reads the whole prefix again and watches *from the revision of that
read*, so no change made meanwhile is missed, and a history compacted while
the node was away (``RevisionCompactedError``) cannot stop it: the read is the
state, the watch only what follows. A watch that reports a compaction is
answered the same way: read the prefix, watch from its revision. A node id is
the key, so a member can never be listed twice.

Records are untrusted input: one larger than :data:`MAX_RECORD_BYTES`, nested
deeper than :data:`MAX_RECORD_DEPTH`, not a JSON object, or with a field of the
wrong type (``url`` not a string, ``started_at`` not a finite number, ``grpc``
neither a string nor null, a key that is not a valid node id) is skipped and
logged when read; it never stops the others from being applied. Whether
the URL itself is usable is the node's check (:func:`~shoal.membership.check_member_url`).

The client is ``aetcd`` (extra ``shoal[etcd]``); its errors are caught here and
never reach the rest of shoal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from ..config import EtcdConfig, check_node_id
from ..errors import ConfigError, MembershipError, MissingExtra
from . import MAX_URL_LENGTH, BadInput, Member, MemberSet, SnapshotChannel, load_json

try:
    import aetcd
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("aetcd", "etcd") from exc

__all__ = ["EtcdMembership", "MAX_RECORD_BYTES", "MAX_RECORD_DEPTH"]

log = logging.getLogger("shoal.membership")

MAX_RECORD_BYTES: Final = 4096
"""The largest member record read (a record is four short fields: ~200 bytes)."""

MAX_RECORD_DEPTH: Final = 2
"""The deepest nesting of arrays and objects in a record (it is one flat object)."""

# Reconnect fast when etcd comes back: gRPC's default back-off grows to 120 s.
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
}


class EtcdMembership:
    """Members registered in etcd under the cluster's prefix.

    Args:
        config: endpoints, cluster name, lease TTL and timings.
        node_id: this node's id (the last segment of its key).
        url: this node's URL on the ring.
        grpc: this node's gRPC address, if it serves one.
        started_at: when this process started (Unix seconds; default now).
    """

    source = "etcd"

    def __init__(
        self,
        config: EtcdConfig,
        *,
        node_id: str,
        url: str,
        grpc: str | None = None,
        started_at: float | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.url = url
        self.key = f"{config.members_prefix}{node_id}".encode()
        """This node's key."""
        self._prefix = config.members_prefix.encode()
        self._value = json.dumps(
            {
                "node_id": node_id,
                "url": url,
                "grpc": grpc,
                "started_at": started_at if started_at is not None else time.time(),
            },
            separators=(",", ":"),
        ).encode()
        self._client: Any = None
        self._endpoint = 0
        self._lease: int | None = None
        self._members: dict[str, Member] = {}
        self._revision = 0
        """Every event up to this revision is applied (0: the prefix was never read)."""
        self._channel = SnapshotChannel()
        self._connected = False
        self._closed = False
        self._stats = {
            "connects": 0,
            "registrations": 0,
            "events": 0,
            "failures": 0,
            "rereads": 0,
            "bad_records": 0,
        }
        self._last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> MemberSet:
        """Register and read the members; if etcd does not answer, start alone.

        Never raises for an unreachable etcd: the node then serves alone and
        :meth:`run` keeps trying.
        """
        try:
            async with asyncio.timeout(3 * self.config.timeout):
                await self._establish()
        except Exception as exc:
            self._failed(exc, "etcd is unreachable; serving with this node alone until it answers")
            await self._drop_client()
        return self._channel.current

    async def run(self) -> None:
        """Keep the lease alive and follow the watch; reconnect whenever etcd fails."""
        while True:
            try:
                if self._client is None:
                    async with asyncio.timeout(3 * self.config.timeout):
                        await self._establish()
                await self._follow()
            except Exception as exc:
                was = self._connected
                self._failed(
                    exc,
                    "lost etcd; serving with the last view and retrying"
                    if was
                    else "etcd is still unreachable; retrying",
                )
                await self._drop_client()
                await asyncio.sleep(self.config.retry_interval)

    def snapshots(self) -> AsyncIterator[MemberSet]:
        """The registered members, then each change."""
        return self._channel.snapshots()

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """URL order: every node discovers the same members, in any order."""
        return sorted(urls)

    def statistics(self) -> dict[str, Any]:
        """Connection state, lease, revision and counters."""
        host, port = self.config.address(self.config.endpoints[self._endpoint])
        return {
            "source": self.source,
            "cluster": self.config.cluster,
            "endpoint": f"{host}:{port}",
            "key": self.key.decode(),
            "connected": self._connected,
            "lease": self._lease,
            "lease_ttl": self.config.lease_ttl,
            "revision": self._revision,
            "last_error": self._last_error,
            **self._stats,
        }

    async def aclose(self) -> None:
        """Revoke the lease (deleting the key at once), then close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self._lease is not None:
            try:
                async with asyncio.timeout(self.config.timeout):
                    await self._client.revoke_lease(self._lease)
                log.info("deregistered from etcd (%s)", self.key.decode())
            except Exception as exc:
                log.warning(
                    "could not deregister from etcd (%s); the key expires with its lease in %ds",
                    _describe(exc),
                    self.config.lease_ttl,
                )
        await self._drop_client()

    # -- one connection --------------------------------------------------------

    async def _establish(self) -> None:
        """Connect, make sure this node is registered, and catch up with the prefix."""
        host, port = self.config.address(self.config.endpoints[self._endpoint])
        self._client = aetcd.Client(
            host=host, port=port, timeout=self.config.timeout, options=_CHANNEL_OPTIONS
        )
        await self._client.connect()
        await self._register()
        # Always read again: what changed while away, whatever etcd compacted meanwhile.
        await self._load()
        self._stats["connects"] += 1
        if self._last_error is not None:
            log.info("etcd answers again (%s:%d); registered as %s", host, port, self.key.decode())
        else:
            log.info(
                "registered in etcd (%s:%d) as %s, lease TTL %ds",
                host,
                port,
                self.key.decode(),
                self.config.lease_ttl,
            )
        self._connected = True
        self._last_error = None

    async def _register(self) -> None:
        """Put this node's key under a live lease (the old one if it survived)."""
        client = self._client
        if self._lease is not None:
            reply = await client.refresh_lease(self._lease)
            if reply is None or reply.TTL <= 0:
                log.info("the etcd lease expired; registering again")
                self._lease = None
        if self._lease is None:
            lease = await client.lease(self.config.lease_ttl)
            self._lease = int(lease.id)
            self._stats["registrations"] += 1
        # Also after a surviving lease: the key may have been deleted by hand.
        await client.put(self.key, self._value, lease=self._lease)

    async def _load(self) -> None:
        """Read every member under the prefix."""
        result = await self._client.get_prefix(self._prefix)
        members = {}
        for kv in result:
            member = self._parse(kv.key, kv.value)
            if member is not None:
                members[member.node_id] = member
        self._members = members
        self._revision = int(result.header.revision)
        self._publish()

    async def _follow(self) -> None:
        """Watch the prefix from the last revision and keep the lease alive, until
        either fails."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._keep_alive())
            tasks.create_task(self._watch())

    async def _watch(self) -> None:
        """Apply the watch's events; after a compaction, read the prefix and watch again."""
        client = self._client
        while True:
            try:
                watch = await client.watch_prefix(self._prefix, start_revision=self._revision + 1)
            except aetcd.RevisionCompactedError as exc:
                await self._reread(exc)
                continue
            try:
                await self._apply_events(watch)
            except aetcd.RevisionCompactedError as exc:
                await self._reread(exc)
            finally:
                with contextlib.suppress(Exception):
                    await watch.cancel()

    async def _reread(self, exc: aetcd.RevisionCompactedError) -> None:
        """The history after our revision is gone: read the whole prefix again."""
        log.info(
            "etcd compacted its history up to revision %s, past %d; reading the members again",
            exc.compacted_revision,
            self._revision,
        )
        self._stats["rereads"] += 1
        await self._load()

    async def _keep_alive(self) -> None:
        client = self._client
        while True:
            await asyncio.sleep(self.config.refresh_interval)
            async with asyncio.timeout(self.config.timeout):
                reply = await client.refresh_lease(self._lease)
            if reply is None or reply.TTL <= 0:
                # etcd was away longer than the TTL: the key is gone.
                log.warning("the etcd lease expired; registering again")
                self._lease = None
                async with asyncio.timeout(self.config.timeout):
                    await self._register()

    async def _apply_events(self, watch: Any) -> None:
        async for event in watch:
            kv = event.kv
            node_id = self._node_id(kv.key)
            if node_id is None:
                continue
            member = self._parse(kv.key, kv.value) if event.kind == "PUT" else None
            if member is not None:
                self._members[node_id] = member
            else:  # deleted, or overwritten by a record that is not a member
                self._members.pop(node_id, None)
            self._revision = max(self._revision, int(kv.mod_revision))
            self._stats["events"] += 1
            self._publish()
        raise MembershipError("the etcd watch ended")

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.timeout):
                    await client.close()

    # -- helpers ---------------------------------------------------------------

    def _failed(self, exc: BaseException, what: str) -> None:
        self._stats["failures"] += 1
        # Warn once per outage; the retries that follow are debug noise.
        level = logging.WARNING if self._last_error is None else logging.DEBUG
        self._last_error = _describe(exc)
        log.log(level, "%s (%s)", what, self._last_error)
        if len(self.config.endpoints) > 1:
            self._endpoint = (self._endpoint + 1) % len(self.config.endpoints)

    def _publish(self) -> None:
        self._channel.publish(self._members.values())

    def _node_id(self, key: bytes) -> str | None:
        if not key.startswith(self._prefix):
            return None
        node_id = key[len(self._prefix) :].decode("utf-8", "replace")
        return node_id or None

    def _parse(self, key: bytes, value: bytes) -> Member | None:
        """The member a record describes; None (logged) for a record that is not one."""
        try:
            return self._member(key, value)
        except (BadInput, ConfigError) as exc:
            self._stats["bad_records"] += 1
            name = key.decode(errors="replace")[:200]
            log.warning("ignoring the malformed etcd member %r: %s", name, exc)
            return None

    def _member(self, key: bytes, value: bytes) -> Member | None:
        node_id = self._node_id(key)
        if node_id is None:
            return None
        check_node_id(node_id)
        doc = load_json(value, max_bytes=MAX_RECORD_BYTES, max_depth=MAX_RECORD_DEPTH)
        if not isinstance(doc, dict):
            raise BadInput(f"a record is a JSON object, got {type(doc).__name__}")
        url = doc.get("url")
        if not isinstance(url, str) or not url:
            raise BadInput(f"'url' must be a non-empty string, got {_short(url)}")
        grpc = doc.get("grpc")
        if grpc is not None and (not isinstance(grpc, str) or len(grpc) > MAX_URL_LENGTH):
            raise BadInput(f"'grpc' must be a short string or null, got {_short(grpc)}")
        started = doc.get("started_at")
        started_at = None if started is None else _seconds(started)
        if started_at is not None and not math.isfinite(started_at):
            raise BadInput(f"'started_at' must be a number, got {_short(started)}")
        return Member(
            node_id=node_id, url=url, source=self.source, grpc=grpc, started_at=started_at
        )


def _seconds(value: object) -> float:
    """``value`` as a float; NaN for anything but a number a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _short(value: object) -> str:
    """``repr(value)``, cut for the log."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _describe(exc: BaseException) -> str:
    """One line for the log: the first real error inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
