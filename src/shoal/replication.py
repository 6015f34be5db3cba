"""Replicated groups: every member keeps every key (DESIGN §5, docs/replication.md).

A ``mode="replicated"`` group has a :class:`Replica`: the last-writer-wins state
of :mod:`shoal.lww`, a hybrid logical clock (:mod:`shoal.hlc`) stamping this
node's writes, and two supervised background rounds the node owns: the
**pusher** (new writes to every live peer, batched while a push is in flight)
and **anti-entropy** (a digest with one random peer every
``anti_entropy_interval``; only the keys that differ travel). Rules:

* The state is the truth; the group's caches mirror its live values, through
  :class:`LocalCaches` only, so reads take the group's ordinary path.
* A miss loads through the group's flight (once in the cluster, at the key's
  owner) and becomes a write stamped when its load *started* (:meth:`Replica.fill`):
  a write made while it ran is newer and wins on every member. A round between
  members in sync changes nothing: only a *newer* group clear fences the loads
  in flight.
* A replica sees its group only as a name, a config, :class:`LocalCaches` and
  :class:`ReplicaPeers`; messages are the plain dataclasses of
  :mod:`shoal.wire.replica`, which alone knows their protobuf encoding.
* Every message from a peer is checked whole before any of it changes the state,
  here and only here (:func:`serve_replica`): keys and values against the group's
  limits, expiries against what the wire can carry again, node ids, timestamps at
  most :data:`MAX_CLOCK_DRIFT` ahead, lists against :data:`MAX_PUSH_ENTRIES`,
  :data:`MAX_SYNC_SUMMARIES` and the bucket count. A bad request is refused whole
  (:class:`~shoal.errors.BadRequest`); a bad answer fails the exchange
  (:class:`~shoal.errors.PeerError`), which anti-entropy counts and survives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from ._printable import printable
from .config import check_node_id
from .errors import BadRequest, ConfigError, GroupFull, PeerError, ShoalError
from .hlc import HybridClock, hlc_from_seconds
from .lww import DEFAULT_BUCKETS, ZERO_VERSION, Entry, ReplicaState, Version
from .supervise import REPLICA_TASKS, BackgroundErrors, supervised
from .wire import ProtocolError, expires_at_from_wire, to_expire_ns
from .wire.replica import (
    ReplicaDigest,
    ReplicaDigestReply,
    ReplicaEntry,
    ReplicaPush,
    ReplicaPushed,
    ReplicaRequestBody,
    ReplicaResponseBody,
    ReplicaSummary,
    ReplicaSync,
    ReplicaSyncReply,
    ReplicaVersion,
    decode_replica_request,
    decode_replica_response,
    encode_replica_request,
    encode_replica_response,
)

if TYPE_CHECKING:
    from .config import GroupConfig
    from .peers import PeerClient, PeerPicker
    from .store import Clock

__all__ = ["LocalCaches", "Replica", "ReplicaPeers", "serve_replica"]

log = logging.getLogger("shoal.replication")

_T = TypeVar("_T")
_R = TypeVar("_R", ReplicaPushed, ReplicaDigestReply, ReplicaSyncReply)

_KINDS: Final[dict[type[ReplicaResponseBody], str]] = {
    ReplicaPushed: "pushed",
    ReplicaDigestReply: "digest",
    ReplicaSyncReply: "sync",
}
"""The field of ``ReplicaResponse`` each kind of answer is sent in."""

MAX_MESSAGE_BYTES: Final = 1 << 20
"""A push or a sync answer is cut into messages of about this size."""
MAX_SUMMARIES: Final = 20_000
"""Keys summarised in one sync request at most (about 0.5 MiB)."""
MAX_CLOCK_DRIFT: Final = 300.0
"""Seconds a peer's timestamps may run ahead of this node's clock: a write, a
clear or a summary stamped later is refused."""
MAX_PUSH_ENTRIES: Final = 100_000
"""Entries one push or sync answer may hold (a sender cuts them at
:data:`MAX_MESSAGE_BYTES`, a few tens of thousands of the smallest entries)."""
MAX_SYNC_SUMMARIES: Final = 5 * MAX_SUMMARIES
"""Summaries one sync request may hold (a sender aims at :data:`MAX_SUMMARIES`;
room for buckets fuller than the average)."""


@dataclass(frozen=True, slots=True)
class LocalCaches:
    """What a replica may change of its group: this node's caches and loads in flight.

    The group hands these to its replica; merged writes reach the caches only
    through them (reads then take the group's ordinary path).
    """

    keep: Callable[[str, bytes, float | None], None]
    """``keep(key, data, expires_at)``: make ``data`` this node's value of ``key``
    (absolute expiry in Unix seconds, or None), fencing loads of it in flight."""
    drop: Callable[[Iterable[str]], int]
    """``drop(keys)``: remove ``keys``, fencing their loads; return how many were held."""
    fence_all: Callable[[], None]
    """``fence_all()``: fence every load in flight (their results are not cached)."""
    live_entries: Callable[[], int]
    """``live_entries()``: how many entries the group's main cache holds."""
    check_key: Callable[[str], None]
    """``check_key(key)``: raise InvalidKey or KeyTooLarge for a key the group refuses."""


class ReplicaPeers(Protocol):
    """How a replica reaches the other members: its group's peers (set by the node
    once it has any, so read at each use) and its group's ``peer_timeout``."""

    @property
    def peers(self) -> PeerPicker | None:
        """Who the other members are and which are backing off; None alone."""
        ...

    def within_peer_timeout(self, peer: PeerClient, exchange: Awaitable[_T]) -> Awaitable[_T]:
        """Await ``exchange`` with ``peer`` for at most ``peer_timeout`` (PeerTimeout)."""
        ...


class Replica:
    """The replicated state of one group on one node.

    Made by the group when ``config.mode == "replicated"``; the node sets
    :attr:`node_id` and runs :meth:`run` while it is started.

    Args:
        name: the group's name.
        config: the group's configuration (limits, capacity, anti-entropy timing).
        caches: how merged writes reach the group's caches.
        peers: how the other members are reached (given by the group: its peer calls).
        clock: Unix time in seconds (the group's clock).
        rng: picks anti-entropy partners and jitter (seed it in tests).
        buckets: digest buckets; every member of the cluster must use the same.
    """

    def __init__(
        self,
        name: str,
        config: GroupConfig,
        caches: LocalCaches,
        peers: ReplicaPeers,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        self._name = name
        self._caches = caches
        self._peers = peers
        self._config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.hlc = HybridClock(clock)
        """Stamps this node's writes."""
        self.state = ReplicaState(buckets=buckets)
        """Every key's latest write, with digests."""
        self.node_id = uuid.uuid4().hex[:12]
        """This node's id, the tie-break of equal timestamps (the node's own id once
        it starts; a random one for a group used alone)."""
        self._outbox: list[Entry] = []
        self._cleared_out: Version | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._active = False
        self._partner: str | None = None
        self.errors = BackgroundErrors(REPLICA_TASKS)
        """Failed background rounds (the node's counters once it starts this replica)."""
        self._counters = dict.fromkeys(
            (
                "pushes",
                "push_failures",
                "writes_received",
                "sync_rounds",
                "sync_rounds_in_sync",
                "sync_failures",
                "entries_repaired",
                "bytes_sent",
                "bytes_received",
                "messages_refused",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<Replica {self._name!r} node={self.node_id} {self.state!r}>"

    # -- this node's writes -------------------------------------------------------------

    def stamp(self) -> Version:
        """A version for a write of this node made now."""
        return Version(self.hlc.now(), self.node_id)

    def _stamp_after(self, key: str) -> Version:
        """A version for a write of ``key`` made now, above every version of ``key``
        this node knows, whatever its wall clock says (after a restart, or with a
        peer's clock ahead): a client's write always supersedes what it could read."""
        known = self.state.get(key)
        if known is not None:
            self.hlc.observe(known.version.hlc)
        return self.stamp()

    async def write(self, key: str, data: bytes, expires_at: float | None) -> None:
        """Store ``data`` under ``key`` on every member (last writer wins).

        Raises:
            GroupFull: the group holds its capacity (the write is not made).
        """
        self._check_room(key, data)
        entry = Entry(key, self._stamp_after(key), data, expires_at)
        self._apply(entry, self._clock())
        await self._push([entry])

    async def write_many(self, items: Iterable[tuple[str, bytes, float | None]]) -> None:
        """Store several ``(key, data, expires_at)`` on every member in one push.

        Raises:
            GroupFull: the group holds its capacity (the writes before it are made).
        """
        now = self._clock()
        entries = []
        for key, data, expires_at in items:
            self._check_room(key, data)
            entry = Entry(key, self._stamp_after(key), data, expires_at)
            self._apply(entry, now)
            entries.append(entry)
        await self._push(entries)

    async def delete(self, keys: Iterable[str]) -> int:
        """Delete keys on every member (tombstones); return how many were live here."""
        now = self._clock()
        removed = 0
        entries = []
        for key in keys:
            known = self.state.get(key)
            removed += known is not None and not known.dead(now)
            entry = Entry(key, self._stamp_after(key), None)
            self._apply(entry, now)
            entries.append(entry)
        await self._push(entries)
        return removed

    async def invalidate(self) -> int:
        """Drop every key written until now, on every member; return how many were live."""
        self.hlc.observe(self.state.cleared.hlc)  # above a peer's clear, whatever the clock
        version = self.stamp()
        removed = self._clear(version)
        self._cleared_out = version
        await self._push([])
        return removed

    def fill(self, key: str, data: bytes, expires_at: float | None, version: Version) -> None:
        """Make a loaded value a write of this node, stamped when its load started.

        Sent to the other members in the background (the caller does not wait).
        """
        entry = Entry(key, version, data, expires_at)
        if self._apply(entry, self._clock()):
            self._enqueue([entry])

    # -- what peers send --------------------------------------------------------------

    async def serve(self, request: ReplicaRequestBody | None) -> ReplicaResponseBody:
        """Answer a peer's push or anti-entropy step (None: a request of no kind).

        Raises:
            BadRequest: a malformed message (unknown kind, bad key, bad bucket, a
                field out of range, a list over its cap), counted in
                ``messages_refused``; nothing is changed.
        """
        try:
            if isinstance(request, ReplicaPush):
                return self._serve_push(request)
            if isinstance(request, ReplicaDigest):
                return self._serve_digest(request)
            if isinstance(request, ReplicaSync):
                return self._serve_sync(request)
            raise BadRequest("a replica request needs one of push, digest, sync")
        except BadRequest:
            self._counters["messages_refused"] += 1
            raise

    def _serve_push(self, push: ReplicaPush) -> ReplicaPushed:
        now = self._clock()
        if len(push.entries) > MAX_PUSH_ENTRIES:
            raise BadRequest(
                f"a replica push of {len(push.entries)} entries; at most {MAX_PUSH_ENTRIES}"
            )
        # All checked first: a bad push changes nothing.
        cleared = self._cleared(push.cleared, now) if push.cleared is not None else None
        entries = [self._entry(item, now) for item in push.entries]
        if cleared is not None:
            self._clear(cleared)
        applied = sum(self._apply(entry, now) for entry in entries)
        self._counters["writes_received"] += len(entries)
        return ReplicaPushed(applied)

    def _serve_digest(self, digest: ReplicaDigest) -> ReplicaDigestReply:
        state = self.state
        cleared = self._cleared(digest.cleared, self._clock())
        if digest.cleared is not None:
            self._clear(cleared)
        in_sync = (
            digest.buckets == state.buckets
            and digest.root == state.root()
            and digest.count == len(state)
            and cleared == state.cleared
        )
        hashes = [] if in_sync else list(state.bucket_hashes())
        return ReplicaDigestReply(in_sync, hashes, _message(state.cleared))

    def _serve_sync(self, sync: ReplicaSync) -> ReplicaSyncReply:
        if len(sync.buckets) > self.state.buckets:
            raise BadRequest(
                f"a sync request of {len(sync.buckets)} buckets; the group has {self.state.buckets}"
            )
        if len(sync.have) > MAX_SYNC_SUMMARIES:
            raise BadRequest(
                f"a sync request of {len(sync.have)} summaries; at most {MAX_SYNC_SUMMARIES}"
            )
        now = self._clock()
        theirs = [(item.key, self._summary(item, now)) for item in sync.have]
        try:
            send, want = self.state.compare(sync.buckets, theirs)
        except ValueError as exc:
            raise BadRequest(f"bad sync request: {exc}") from exc
        entries: list[ReplicaEntry] = []
        truncated = False
        size = 0
        for entry in send:
            if size >= MAX_MESSAGE_BYTES:
                truncated = True
                break
            entries.append(_item(entry))
            size += _size(entry)
        return ReplicaSyncReply(entries, list(want), truncated)

    # -- anti-entropy ---------------------------------------------------------------------

    async def sync_with(self, peer: PeerClient) -> int:
        """One anti-entropy round with ``peer``; return how many entries changed here
        or there.

        Raises:
            PeerError: the exchange failed (nothing is left half-applied: every
                entry received is a complete write).
        """
        state = self.state
        self._counters["sync_rounds"] += 1
        digest = ReplicaDigest(state.root(), len(state), state.buckets, _message(state.cleared))
        reply = await self._ask(peer, digest, ReplicaDigestReply)
        theirs = self._answered(peer, self._cleared, reply.cleared, self._clock())
        if theirs > state.cleared:
            self._clear(theirs)
        elif state.cleared > theirs:
            await self._send(peer, [], state.cleared)
        if reply.in_sync:
            self._counters["sync_rounds_in_sync"] += 1
            return 0
        if len(reply.hashes) != state.buckets:
            raise PeerError(
                f"{peer.url}: replica digest has {len(reply.hashes)} buckets, "
                f"this node {state.buckets}"
            )
        changed = 0
        for buckets in self._bucket_chunks(state.differing(reply.hashes)):
            while True:
                have = [
                    ReplicaSummary(key, version.hlc, version.node)
                    for key, version in state.summaries(buckets)
                ]
                answer = await self._ask(peer, ReplicaSync(buckets, have), ReplicaSyncReply)
                now = self._clock()
                received = self._answered(peer, self._sync_answer, answer, len(have), now)
                for entry in received:
                    changed += self._apply(entry, now)
                wanted = [e for e in map(state.get, answer.wanted) if e is not None]
                if wanted:
                    await self._send(peer, wanted, None)
                    changed += len(wanted)
                if not answer.truncated:
                    break
        self._counters["entries_repaired"] += changed
        return changed

    def _sync_answer(self, answer: ReplicaSyncReply, asked: int, now: float) -> list[Entry]:
        """The entries of a peer's sync answer, every one checked (and its list of
        wanted keys no longer than the summaries sent)."""
        if len(answer.entries) > MAX_PUSH_ENTRIES:
            raise BadRequest(f"a sync answer of {len(answer.entries)} entries")
        if len(answer.wanted) > asked:
            raise BadRequest(f"a sync answer wants {len(answer.wanted)} keys of {asked} sent")
        return [self._entry(item, now) for item in answer.entries]

    @staticmethod
    def _answered(peer: PeerClient, check: Callable[..., _T], *args: Any) -> _T:
        """``check(*args)``, a check of a peer's answer: a bad one fails the exchange."""
        try:
            return check(*args)
        except BadRequest as exc:
            raise PeerError(f"{peer.url}: bad replica answer: {exc}") from exc

    def _bucket_chunks(self, buckets: list[int]) -> Iterator[list[int]]:
        """Differing buckets in runs whose summaries fit in one request."""
        chunk: list[int] = []
        keys = 0
        per_bucket = max(1, len(self.state) // self.state.buckets)
        for bucket in buckets:
            chunk.append(bucket)
            keys += per_bucket
            if keys >= MAX_SUMMARIES:
                yield chunk
                chunk, keys = [], 0
        if chunk:
            yield chunk

    def collect_garbage(self) -> int:
        """Forget tombstones and expired values older than ``tombstone_ttl``."""
        horizon = self._clock() - self._config.tombstone_ttl
        return len(self.state.collect_garbage(horizon))

    # -- background -------------------------------------------------------------------------

    def start(
        self, tasks: asyncio.TaskGroup, errors: BackgroundErrors | None = None
    ) -> asyncio.Task[None]:
        """Run :meth:`run` in ``tasks``; writes wait for their pushes from now on.

        Args:
            tasks: the owner's task group.
            errors: where failed rounds are counted (the node's); kept in :attr:`errors`.
        """
        if errors is not None:
            self.errors = errors
        self._active = True
        return tasks.create_task(self.run(), name=f"shoal-replica-{self._name}")

    async def run(self) -> None:
        """Push writes and run anti-entropy until cancelled (the node's task).

        A round of either that fails is counted in :attr:`errors` (tasks
        ``replica-push``, ``replica-probe`` and ``anti-entropy``) and retried after a
        pause (:func:`~shoal.supervise.supervised`): it never stops the other, nor
        the node.
        """
        self._active = True
        name = self._name
        probing: set[str] = set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    supervised(
                        "replica-push",
                        lambda: self._push_round(self._wake, tasks, probing),
                        self.errors,
                        context=f"group {name!r}",
                        rng=self._rng,
                    )
                )
                tasks.create_task(self._anti_entropy_forever())
        finally:
            self._active = False
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    async def _push_round(
        self, wake: asyncio.Event, tasks: asyncio.TaskGroup, probing: set[str]
    ) -> None:
        """Send what the writes queued: writers wait for the live peers; a peer skipped
        after failures gets the push too, in the background (one at a time), so a
        member that was only briefly away misses nothing and rejoins at once. Writers
        are released whatever happens (a push that fails is repaired by anti-entropy)."""
        await wake.wait()
        wake.clear()
        entries, self._outbox = self._outbox, []
        cleared, self._cleared_out = self._cleared_out, None
        waiters, self._waiters = self._waiters, []
        try:
            live = self._live()
            for peer in self._skipped():
                if peer.url not in probing:
                    probing.add(peer.url)
                    tasks.create_task(self._probe(peer, entries, cleared, probing))
            await asyncio.gather(*(self._send_logged(peer, entries, cleared) for peer in live))
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _anti_entropy_forever(self) -> None:
        """Anti-entropy rounds, every ``anti_entropy_interval`` (jittered)."""
        interval = self._config.anti_entropy_interval
        # The first round soon after start: a node that was down catches up at once.
        await asyncio.sleep(self._rng.uniform(0.05, 0.25) * interval)
        await supervised(
            "anti-entropy",
            self._anti_entropy_round,
            self.errors,
            context=lambda: f"group {self._name!r}, peer {self._partner}",
            rng=self._rng,
        )

    async def _anti_entropy_round(self) -> None:
        """One round with a random live peer, tombstone collection, then the pause."""
        interval = self._config.anti_entropy_interval
        peers = self._live()
        self._partner = None
        if peers:
            peer = self._rng.choice(peers)
            self._partner = peer.url
            try:
                await self.sync_with(peer)
            except PeerError as exc:
                self._counters["sync_failures"] += 1
                self._failed(peer)
                log.info(
                    "group %r: anti-entropy with %s failed: %s",
                    self._name,
                    peer.url,
                    printable(str(exc)),
                )
        self._partner = None
        self.collect_garbage()
        await asyncio.sleep(interval * self._rng.uniform(0.8, 1.2))

    # -- internals --------------------------------------------------------------------------

    def _live(self) -> list[PeerClient]:
        """Every peer not skipped after failures."""
        peers = self._peers.peers
        if peers is None:
            return []
        slow = set(peers.backing_off())
        return [c for url, c in peers.view.clients.items() if url not in slow]

    def _skipped(self) -> list[PeerClient]:
        """The peers in their failure back-off."""
        peers = self._peers.peers
        if peers is None:
            return []
        clients = peers.view.clients
        return [clients[url] for url in peers.backing_off() if url in clients]

    async def _probe(
        self, peer: PeerClient, entries: list[Entry], cleared: Version | None, probing: set[str]
    ) -> None:
        try:
            await self._send(peer, entries, cleared)
        except PeerError:
            self._counters["push_failures"] += 1  # still away: anti-entropy will repair
        except Exception as exc:  # a failed probe must not stop the pushes
            self.errors.record("replica-probe", exc, f"group {self._name!r}, peer {peer.url}")
        finally:
            probing.discard(peer.url)

    def _failed(self, peer: PeerClient) -> None:
        if self._peers.peers is not None:
            self._peers.peers.failed(peer.url)

    async def _push(self, entries: list[Entry]) -> None:
        """Send ``entries`` (and a pending clear) to every peer; wait for the push to
        the live ones (the others get it in the background)."""
        if not self._enqueue(entries) or not self._live():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _enqueue(self, entries: list[Entry]) -> bool:
        """Queue ``entries`` for the next push without waiting for it; False when there
        is nobody to push to (alone, or not started: anti-entropy will tell them)."""
        peers = self._peers.peers
        if not self._active or peers is None or not peers.view.clients:
            return False
        self._outbox.extend(entries)
        self._wake.set()
        return True

    async def _send_logged(
        self, peer: PeerClient, entries: list[Entry], cleared: Version | None
    ) -> None:
        try:
            await self._send(peer, entries, cleared)
        except PeerError as exc:
            self._counters["push_failures"] += 1
            self._failed(peer)
            log.info(
                "group %r: push of %d writes to %s failed (anti-entropy will repair): %s",
                self._name,
                len(entries),
                peer.url,
                printable(str(exc)),
            )

    async def _send(self, peer: PeerClient, entries: list[Entry], cleared: Version | None) -> None:
        """Push ``entries`` to ``peer`` in messages of about MAX_MESSAGE_BYTES."""
        for chunk in _chunks(entries) if entries else [[]]:
            push = ReplicaPush(
                [_item(e) for e in chunk], _message(cleared) if cleared is not None else None
            )
            await self._ask(peer, push, ReplicaPushed)
            self._counters["pushes"] += 1

    async def _ask(self, peer: PeerClient, request: ReplicaRequestBody, expected: type[_R]) -> _R:
        """One exchange within ``peer_timeout``; the answer must be of the ``expected`` kind."""
        raw = encode_replica_request(self._name, request)
        self._counters["bytes_sent"] += len(raw)
        answer = await self._peers.within_peer_timeout(peer, peer.replica(self._name, raw))
        self._counters["bytes_received"] += len(answer)
        try:
            response = decode_replica_response(answer)
        except ProtocolError as exc:
            raise PeerError(f"{peer.url}: undecodable replica answer: {exc}") from exc
        if not isinstance(response, expected):
            raise PeerError(f"{peer.url}: a replica answer without {_KINDS[expected]}")
        if self._peers.peers is not None:
            self._peers.peers.succeeded(peer.url)
        return response

    def _entry(self, item: ReplicaEntry, now: float) -> Entry:
        """A received write, checked like a write of this node's own clients, and
        against what this node can store and send again (see the module rules).

        Raises:
            BadRequest: a field out of range; nothing is changed.
        """
        self._check_key(item.key, "replica entry")
        what = f"replica entry {item.key!r}"
        value = item.value
        if value is not None and len(value) > self._config.max_value_bytes:
            raise BadRequest(f"{what}: value over max_value_bytes")
        version = self._peer_version(item.hlc, item.node, what, now)
        try:
            expires_at = expires_at_from_wire(item.expire, "ReplicaEntry")
        except ProtocolError as exc:
            raise BadRequest(f"{what}: {exc}") from exc
        return Entry(item.key, version, value, expires_at)

    def _summary(self, item: ReplicaSummary, now: float) -> Version:
        """The version of a peer's summary of one key, checked as an entry's is."""
        self._check_key(item.key, "replica summary")
        return self._peer_version(item.hlc, item.node, f"replica summary {item.key!r}", now)

    def _cleared(self, message: ReplicaVersion | None, now: float) -> Version:
        """The version of a peer's clear (an absent or zero one: none), checked."""
        if message is None or not message.hlc:
            return ZERO_VERSION
        return self._peer_version(message.hlc, message.node, "replica clear", now)

    def _check_key(self, key: str, what: str) -> None:
        try:
            self._caches.check_key(key)
        except ShoalError as exc:
            raise BadRequest(f"{what}: {exc}") from exc

    @staticmethod
    def _peer_version(hlc: int, node: str, what: str, now: float) -> Version:
        """A version a peer sent: a valid node id, a timestamp within
        :data:`MAX_CLOCK_DRIFT` of this node's clock."""
        if not node:
            raise BadRequest(f"{what} has no node id")
        try:
            check_node_id(node)
        except ConfigError as exc:
            raise BadRequest(f"{what}: {exc}") from exc
        try:
            limit = hlc_from_seconds(max(now, 0.0) + MAX_CLOCK_DRIFT)
        except ValueError as exc:  # this node's own clock is out of the HLC range
            raise BadRequest(f"{what}: {exc}") from exc
        if hlc > limit:
            raise BadRequest(
                f"{what}: timestamp {hlc} is more than {MAX_CLOCK_DRIFT:.0f} s ahead "
                "of this node's clock"
            )
        return Version(hlc, node)

    def _apply(self, entry: Entry, now: float) -> bool:
        """Merge one write into the state and mirror it into the group's caches."""
        # Own entries too: a restarted node (same id) may get back versions it
        # made before, ahead of its clock now.
        self._observe(entry.version.hlc, now)
        if not self.state.apply(entry, horizon=now - self._config.tombstone_ttl):
            return False
        current = self.state.get(entry.key)
        if current is None or current.dead(now):
            self._caches.drop([entry.key])
        else:
            assert current.value is not None
            self._caches.keep(entry.key, current.value, current.expires_at)
        return True

    def _observe(self, hlc: int, now: float) -> None:
        try:
            if hlc <= hlc_from_seconds(now + MAX_CLOCK_DRIFT):
                self.hlc.observe(hlc)
        except ValueError as exc:
            raise BadRequest(f"bad replica timestamp: {exc}") from exc

    def _clear(self, version: Version) -> int:
        """Drop every write older than ``version`` here; return how many were live.

        Only a clear newer than this node's ``cleared`` changes anything: an older or
        equal one (every anti-entropy round between members in sync carries one)
        leaves the state alone and fences no load in flight.
        """
        if version <= self.state.cleared:
            return 0
        now = self._clock()
        dropped = self.state.clear(version)
        if version.node != self.node_id and version != ZERO_VERSION:
            self._observe(version.hlc, now)
        self._caches.fence_all()
        return self._caches.drop(dropped)

    def _check_room(self, key: str, data: bytes) -> None:
        config = self._config
        state = self.state
        known = state.get(key)
        live = known is not None and not known.dead(self._clock())
        old = len(key.encode()) + len(known.value) if live and known and known.value else 0
        new = len(key.encode()) + len(data)
        if config.capacity_bytes is not None and state.nbytes - old + new > config.capacity_bytes:
            raise GroupFull(
                f"group {self._name!r} holds {state.nbytes} of its "
                f"{config.capacity_bytes} bytes; delete keys or raise capacity_bytes"
            )
        entries = config.capacity_entries
        if entries is not None and not live and self._caches.live_entries() >= entries:
            raise GroupFull(f"group {self._name!r} holds its {entries} entries")

    def statistics(self) -> dict[str, int]:
        """Counters of the replicated state and its traffic (``GET /v1/stats``)."""
        return {"entries": len(self.state), "live_bytes": self.state.nbytes, **self._counters}


async def serve_replica(groups: Any, raw: bytes, *, group: str | None = None) -> bytes:
    """Decode a peer's ``ReplicaRequest``, hand it to its group, encode the answer.

    Args:
        groups: the node's groups by name.
        raw: the serialized request.
        group: the group the transport's path names, if any (must match the message's).

    Raises:
        BadRequest: undecodable, or naming another group than the path, or a group
            that is not replicated. GroupNotFound: no such group.
    """
    from .errors import GroupNotFound

    try:
        named, request = decode_replica_request(raw)
    except ProtocolError as exc:
        raise BadRequest(f"undecodable replica request: {exc}") from exc
    if group is not None and named != group:
        raise BadRequest(f"the request names group {named!r}, the path {group!r}")
    target = groups.get(named)
    if target is None:
        raise GroupNotFound(named)
    if target.replica is None:
        raise BadRequest(f"group {named!r} is not replicated on this node")
    response: ReplicaResponseBody = await target.replica.serve(request)
    return encode_replica_response(response)


def _message(version: Version) -> ReplicaVersion:
    return ReplicaVersion(version.hlc, version.node)


def _item(entry: Entry) -> ReplicaEntry:
    return ReplicaEntry(
        entry.key,
        entry.version.hlc,
        entry.version.node,
        entry.value,
        to_expire_ns(entry.expires_at) or 0,
    )


def _size(entry: Entry) -> int:
    return len(entry.key) + len(entry.version.node) + 24 + len(entry.value or b"")


def _chunks(entries: list[Entry]) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    size = 0
    for entry in entries:
        chunk.append(entry)
        size += _size(entry)
        if size >= MAX_MESSAGE_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
