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
again), and watches again *from the last revision it applied*, so no change
made meanwhile is missed. Events are states (a put sets a member, a delete
removes it), so replaying the last revision is harmless. A node id is the key,
so a member can never be listed twice.

The client is ``aetcd`` (extra ``shoal[etcd]``); its errors are caught here and
never reach the rest of shoal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ..config import EtcdConfig
from ..errors import MembershipError, MissingExtra
from . import Member, MemberSet, SnapshotChannel

try:
    import aetcd
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("aetcd", "etcd") from exc

__all__ = ["EtcdMembership"]

log = logging.getLogger("shoal.membership")

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
        self._stats = {"connects": 0, "registrations": 0, "events": 0, "failures": 0}
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
        if self._revision == 0:
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
        client = self._client
        try:
            watch = await client.watch_prefix(self._prefix, start_revision=self._revision)
        except aetcd.RevisionCompactedError:
            # The history we missed is gone: read the whole prefix again.
            log.info("etcd compacted past revision %d; reading the members again", self._revision)
            await self._load()
            watch = await client.watch_prefix(self._prefix, start_revision=self._revision + 1)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._keep_alive())
                tasks.create_task(self._apply_events(watch))
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()

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
            if event.kind == "PUT":
                member = self._parse(kv.key, kv.value)
                if member is not None:
                    self._members[node_id] = member
            else:
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
        node_id = self._node_id(key)
        try:
            doc = json.loads(value)
            url = doc["url"]
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"bad url {url!r}")
            grpc = doc.get("grpc")
            started = doc.get("started_at")
        except (ValueError, KeyError, TypeError) as exc:
            name = key.decode(errors="replace")
            log.warning("ignoring the malformed etcd member %r: %s", name, exc)
            return None
        if node_id is None:
            return None
        return Member(
            node_id=node_id,
            url=url,
            source=self.source,
            grpc=grpc if isinstance(grpc, str) else None,
            started_at=float(started) if isinstance(started, int | float) else None,
        )


def _describe(exc: BaseException) -> str:
    """One line for the log: the first real error inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
