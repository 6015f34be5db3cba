"""SWIM membership as a pure state machine: failure detection plus dissemination.

Sans-I/O, after h11: no sockets, no asyncio, no clock reads. The caller feeds
datagrams in (:meth:`Swim.receive`), calls :meth:`Swim.tick` when
:meth:`Swim.next_deadline` comes, and sends what :meth:`Swim.take_outgoing`
returns; every entry point takes the current time as ``now`` (monotonic
seconds) and randomness comes from the injected ``rng``. Not safe for
concurrent use; one instance per node.

The protocol (Das, Gupta, Motivala: *SWIM*, 2002; with memberlist's and Serf's
refinements):

- **Probing.** Every ``probe_interval`` the node pings the next member of a
  shuffled round-robin list. No ack within ``probe_timeout``: it asks
  ``indirect_probes`` other members to ping it (``ping-req``) and relay the
  ack. No ack by the end of the interval: the member is *suspect*.
- **Suspicion and incarnations.** A suspect member that does not refute within
  ``suspicion_timeout`` is declared *dead*. Only a member raises its own
  incarnation number: hearing that it is suspected or dead, it refutes with
  ``alive`` at a higher incarnation, which overrides the rumour everywhere.
  Ordering at one incarnation: ``alive`` < ``suspect`` < ``dead`` < ``left``.
- **Dissemination.** Each change becomes an update that rides on the next
  pings, acks and gossip rounds (``gossip_fanout`` members every
  ``gossip_interval``), ``retransmit_mult * ceil(log10(N+1))`` times, newest news
  about a member replacing older news.
- **Joining and healing.** A node joins by exchanging whole tables (``sync``)
  with a bootstrap address, retried every ``join_interval`` while it knows no
  live member. Every ``sync_interval`` it syncs with a random member
  (anti-entropy), and every ``reconnect_interval`` it tries one member it
  believes dead, so two sides of a healed partition find each other again. In
  a sync, a remote ``dead`` counts only as ``suspect`` (the member gets its
  chance to refute), as in memberlist.
- **Leaving.** A node that stops announces ``left`` to every live member at
  once; a left member is never probed and drops out of every view at once.
  As with a death, recently left members still get gossip for a while: a
  member that hears it left while it has not (a forged or mistaken ``left``)
  refutes it like a suspicion, as memberlist's node does with a ``dead`` about
  itself.

Hostile input (every datagram is untrusted; see :mod:`.messages` for what the
decoder refuses) is dropped and counted by reason in :attr:`SwimStats.dropped`,
never raised:

- ``malformed``/``invalid``: the decoder refused the datagram.
- ``incarnation``: news about a known member (or this node) at an incarnation
  more than :data:`MAX_INCARNATION_JUMP` above the one known. A member raises
  its incarnation by one per refutation, and only in answer to news about
  itself, so honest news is within a few of what a node last knew; a jump of
  1024 is far past any honest burst of refutations, yet leaves the uint32 range
  four million refutations of headroom. (A member that refuted more than that
  while cut off from a node is taken again once that node forgets it, after
  ``dead_timeout``.) A node that has not joined yet takes any incarnation about
  itself from the first table it receives: a restart learns its previous
  life's incarnation.
- ``flood``: more than :data:`MAX_PENDING` members that never spoke to this
  node from their address nor answered its probe there (a burst of forged
  members: each further new one is dropped until some are confirmed, or die; a
  never-confirmed member that dies is forgotten once its death had
  ``suspicion_timeout`` to spread, not kept for
  ``dead_timeout``), or more than :data:`MAX_RELAYS` indirect probes pending.

Replies are bounded so that a small datagram cannot draw a large answer: an
ack is one datagram of at most ``max_packet`` bytes, and so is the answer to a
sync from anyone but a confirmed member at its known address (this node's row,
then as many others, live ones first, in random order, as fit). A joining node,
answered so, syncs again ``join_interval`` later, by when it is a confirmed
member and gets the whole table. A ping relayed for a ``ping-req`` to an
address that is not a known member's carries no news.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ...config import GossipConfig
from .messages import (
    MAX_INCARNATION,
    MAX_UPDATES,
    Ack,
    Gossip,
    GossipProtocolError,
    Message,
    Ping,
    PingReq,
    Sync,
    Update,
    decode,
    encode,
    encode_packed,
)

__all__ = [
    "Swim",
    "Status",
    "MemberState",
    "SwimStats",
    "Address",
    "DROP_REASONS",
    "MAX_INCARNATION_JUMP",
    "MAX_PENDING",
    "MAX_RELAYS",
]

DROP_REASONS: Final = (
    "malformed",
    "invalid",
    "incarnation",
    "flood",
    "error",
    "unsealed",
    "auth",
    "replay",
    "stale",
)
"""Why input is dropped (:attr:`SwimStats.dropped`); ``error`` is for the driver to
count an unexpected failure in handling a datagram, and the last four for it to
count a datagram its keyring refuses (see :mod:`.keyring`)."""

MAX_INCARNATION_JUMP: Final = 1024
"""How far above the known incarnation of a member news may be (see above)."""

MAX_PENDING: Final = 64
"""The most members heard of only second-hand (not confirmed: see above) at once."""

MAX_RELAYS: Final = 64
"""The most indirect probes relayed for others at once."""

Address = tuple[str, int]
"""``(host, port)`` of a member's gossip socket."""


class Status(enum.Enum):
    """What a node believes about a member."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


# At one incarnation a stronger claim overrides a weaker one.
_RANK: Final = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.DEAD: 2, Status.LEFT: 3}
_LIVE: Final = (Status.ALIVE, Status.SUSPECT)


@dataclass(frozen=True, slots=True)
class MemberState:
    """One row of the member table, as a snapshot."""

    name: str
    address: Address
    meta: Mapping[str, str]
    incarnation: int
    status: Status
    since: float
    """When the member entered its current status (the machine's clock)."""

    @property
    def live(self) -> bool:
        """Alive or suspect: still a member of the cluster."""
        return self.status in _LIVE


@dataclass(frozen=True, slots=True)
class SwimStats:
    """Counters of one node's gossip traffic and decisions."""

    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int
    bad_packets: int
    probes: int
    indirect_probes: int
    suspicions: int
    deaths: int
    refutations: int
    dropped: Mapping[str, int]
    """Datagrams (``malformed``, ``invalid``, ``error``) and updates (``incarnation``,
    ``flood``) dropped, by reason (:data:`DROP_REASONS`)."""


@dataclass(slots=True)
class _Entry:
    name: str
    address: Address
    meta: tuple[tuple[str, str], ...]
    incarnation: int
    status: Status
    since: float
    confirmed: bool = True
    """A datagram came from the member at its address, or it answered a probe there
    (False: only heard of second-hand)."""

    def as_update(self) -> Update:
        # Every row carries the address, so a member first heard of as suspect
        # can still be probed.
        return Update(self.status.value, self.name, self.incarnation, self.address, self.meta)


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    indirect_at: float
    deadline: float
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    requester: Address
    seq: int
    expires: float


@dataclass(slots=True)
class _Broadcast:
    update: Update
    transmits: int = 0


@dataclass(slots=True)
class _Counters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    bad_packets: int = 0
    probes: int = 0
    indirect_probes: int = 0
    suspicions: int = 0
    deaths: int = 0
    refutations: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


@dataclass(slots=True)
class _Schedule:
    probe: float
    gossip: float
    sync: float
    reconnect: float
    join: float


class Swim:
    """One node's view of a SWIM cluster and the protocol that maintains it.

    Args:
        name: this node's id (unique in the cluster).
        address: where the others send to this node.
        meta: what this node publishes about itself (its URL...).
        config: the timers and limits (:class:`~shoal.config.GossipConfig`).
        rng: randomness (probe order, gossip targets).
        now: the current time.
        seeds: bootstrap addresses to join through (this node's own is ignored).
        overhead: bytes the driver adds to every datagram (a sealed envelope): each
            message is kept within ``config.max_packet - overhead``.
    """

    def __init__(
        self,
        *,
        name: str,
        address: Address,
        meta: Mapping[str, str],
        config: GossipConfig,
        rng: random.Random,
        now: float,
        seeds: Iterable[Address] = (),
        overhead: int = 0,
    ) -> None:
        self.name = name
        self.address = address
        self.config = config
        self._rng = rng
        self._members: dict[str, _Entry] = {
            name: _Entry(name, address, tuple(sorted(meta.items())), 0, Status.ALIVE, now)
        }
        self._seeds = [s for s in dict.fromkeys(seeds) if s != address]
        self._outbox: list[tuple[Address, bytes]] = []
        self._broadcasts: dict[str, _Broadcast] = {}
        self._order: list[str] = []
        self._order_index = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = rng.randrange(1 << 30)
        self._leaving = False
        self._joined = not self._seeds
        c = config
        self._at = _Schedule(
            # A random phase, so nodes started together do not probe in lockstep.
            probe=now + rng.uniform(0, c.probe_interval),
            gossip=now + c.gossip_interval,
            sync=now + c.sync_interval,
            reconnect=now + c.reconnect_interval,
            join=now,
        )
        self._limit = config.max_packet - overhead
        """The most bytes a message may take: ``max_packet`` less what the driver adds
        to each datagram (a sealed envelope)."""
        self._counters = _Counters()
        self._pending = 0
        """Members not confirmed (see :data:`MAX_PENDING`)."""
        self._unwell: dict[str, None] = {}
        """Members suspect, dead or left, in the order they became so: the timers look
        at them only, so that the work after each datagram does not grow with the
        size of the cluster."""
        self.version = 0
        """Raised whenever the set of live members or what one publishes changes."""

    # -- views -----------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        """This node's incarnation number."""
        return self._members[self.name].incarnation

    @property
    def joined(self) -> bool:
        """True once a bootstrap member answered (always true without seeds)."""
        return self._joined

    def members(self) -> list[MemberState]:
        """Every member this node knows of, itself included, dead ones too."""
        return [
            MemberState(e.name, e.address, dict(e.meta), e.incarnation, e.status, e.since)
            for e in self._members.values()
        ]

    def live(self) -> list[MemberState]:
        """The members alive or suspect (this node included unless it left)."""
        return [m for m in self.members() if m.live]

    def statistics(self) -> SwimStats:
        """A snapshot of the counters."""
        c = self._counters
        return SwimStats(
            c.packets_sent,
            c.bytes_sent,
            c.packets_received,
            c.bytes_received,
            c.bad_packets,
            c.probes,
            c.indirect_probes,
            c.suspicions,
            c.deaths,
            c.refutations,
            dict(c.dropped),
        )

    def take_outgoing(self) -> list[tuple[Address, bytes]]:
        """The datagrams to send now, each with its destination; the outbox empties."""
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do (never, once the node left)."""
        if self._leaving:
            return math.inf
        at = self._at
        times = [at.probe, at.sync]
        if self._broadcasts:
            times.append(at.gossip)
        if self._probe is not None:
            times.append(self._probe.deadline)
            if not self._probe.indirect_sent:
                times.append(self._probe.indirect_at)
        if self._seeds and self._alone():
            times.append(at.join)
        dead = False
        members = self._members
        for name in self._unwell:
            e = members[name]
            if e.status is Status.SUSPECT:
                times.append(e.since + self.config.suspicion_timeout)
            elif e.status in (Status.DEAD, Status.LEFT):
                times.append(e.since + self.config.dead_timeout)
                dead = dead or e.status is Status.DEAD
        if dead:
            times.append(at.reconnect)
        return min(times)

    # -- input -----------------------------------------------------------------

    def receive(self, now: float, data: bytes, source: Address) -> None:
        """Handle one datagram from ``source``."""
        self._counters.packets_received += 1
        self._counters.bytes_received += len(data)
        try:
            message = decode(data)
        except GossipProtocolError as exc:
            self._counters.bad_packets += 1
            self.drop(exc.reason)
            return
        if self._leaving:
            return
        self._handle(now, message, source)
        sender = self._members.get(message.sender)
        if sender is not None and sender.address == source:
            self._confirm(sender)  # it spoke to this node itself

    def _confirm(self, entry: _Entry) -> None:
        """``entry`` is a member that exists: it spoke, or answered a probe."""
        if not entry.confirmed:
            entry.confirmed = True
            self._pending -= 1

    def _handle(self, now: float, message: Message, source: Address) -> None:
        match message:
            case Ping():
                self._apply_all(now, message.updates)
                if message.target == self.name:
                    self._send_packed(source, Ack(message.seq, self.name))
            case Ack():
                self._apply_all(now, message.updates)
                self._on_ack(message.seq)
            case PingReq():
                self._apply_all(now, message.updates)
                if len(self._relays) >= MAX_RELAYS:
                    self.drop("flood")
                    return
                seq = self._next_seq()
                self._relays[seq] = _Relay(source, message.seq, now + self.config.probe_interval)
                ping = Ping(seq, self.name, message.target)
                target = self._members.get(message.target)
                if target is not None and target.address == message.address:
                    self._send_packed(message.address, ping)
                else:  # not a member we know there: a plain ping, no amplified news
                    self._send(message.address, ping)
            case Gossip():
                self._apply_all(now, message.updates)
            case Sync():
                known = self._members.get(message.sender)
                member = known is not None and known.confirmed and known.address == source
                self._merge(now, message.members)
                if not self._joined and (message.reply or message.sender in self._seed_names()):
                    self._joined = True
                    # The answer to a join is one datagram: the whole table soon after.
                    self._at.sync = min(self._at.sync, now + self.config.join_interval)
                if not message.reply and message.part == 0:
                    self._send_sync(source, reply=True, whole=member)

    def refuse(self, reason: str, size: int) -> None:
        """Count a datagram of ``size`` bytes that the driver refused before decoding
        it (a sealed envelope that does not open), dropped for ``reason``."""
        self._counters.packets_received += 1
        self._counters.bytes_received += size
        self._counters.bad_packets += 1
        self.drop(reason)

    def drop(self, reason: str) -> None:
        """Count input dropped for ``reason`` (one of :data:`DROP_REASONS`)."""
        self._counters.dropped[reason] = self._counters.dropped.get(reason, 0) + 1

    def tick(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        if self._leaving:
            return
        c, at = self.config, self._at
        self._check_probe(now)
        if self._probe is None and now >= at.probe:
            at.probe = max(at.probe + c.probe_interval, now)
            self._start_probe(now)
        self._expire(now)
        if now >= at.gossip:
            at.gossip = now + c.gossip_interval
            self._gossip_round(now)
        if now >= at.sync:
            at.sync = now + c.sync_interval
            peers = self._live_others()
            if peers:
                self._send_sync(self._rng.choice(peers).address, reply=False)
        if self._seeds and self._alone() and now >= at.join:
            at.join = now + c.join_interval
            for seed in self._seeds:
                self._send_sync(seed, reply=False)
        if now >= at.reconnect:
            at.reconnect = now + c.reconnect_interval
            dead = [e for e in self._members.values() if e.status is Status.DEAD]
            if dead:
                self._send_sync(self._rng.choice(dead).address, reply=False)

    def leave(self, now: float) -> None:
        """Announce that this node leaves: every live member hears it at once.

        After this the node ignores input and timers; send the outbox, then stop.
        """
        if self._leaving:
            return
        me = self._members[self.name]
        me.status, me.since = Status.LEFT, now
        self._unwell[me.name] = None
        update = Update("left", self.name, me.incarnation)
        for entry in self._live_others():
            self._send(entry.address, Gossip(self.name, (update,)))
        self._leaving = True
        self.version += 1

    # -- probing ---------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        return self._seq

    def _next_target(self) -> _Entry | None:
        for _ in range(2):
            while self._order_index < len(self._order):
                name = self._order[self._order_index]
                self._order_index += 1
                entry = self._members.get(name)
                if entry is not None and entry.status in _LIVE and name != self.name:
                    return entry
            # One pass done: a new shuffled round over the current members.
            self._order = [e.name for e in self._live_others()]
            self._rng.shuffle(self._order)
            self._order_index = 0
        return None

    def _start_probe(self, now: float) -> None:
        target = self._next_target()
        if target is None:
            return
        c = self.config
        seq = self._next_seq()
        self._probe = _Probe(seq, target.name, now + c.probe_timeout, now + c.probe_interval)
        self._counters.probes += 1
        self._send_packed(target.address, Ping(seq, self.name, target.name))

    def _on_ack(self, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            self._probe = None
            target = self._members.get(probe.target)
            if target is not None:  # it answers at its address (maybe through a relay)
                self._confirm(target)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send_packed(relay.requester, Ack(relay.seq, self.name))

    def _check_probe(self, now: float) -> None:
        probe = self._probe
        if probe is None:
            return
        target = self._members.get(probe.target)
        if target is None or target.status not in _LIVE:
            self._probe = None
            return
        if not probe.indirect_sent and now >= probe.indirect_at:
            probe.indirect_sent = True
            helpers = [e for e in self._live_others() if e.name != target.name]
            k = min(self.config.indirect_probes, len(helpers))
            for helper in self._rng.sample(helpers, k):
                self._counters.indirect_probes += 1
                self._send_packed(
                    helper.address, PingReq(probe.seq, self.name, target.name, target.address)
                )
        if now >= probe.deadline:
            self._probe = None
            if target.status is Status.ALIVE:
                self._counters.suspicions += 1
                self._apply(
                    now, Update("suspect", target.name, target.incarnation, origin=self.name)
                )

    # -- timers ----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        c = self.config
        for name in list(self._unwell):
            entry = self._members[name]
            if entry.status is Status.SUSPECT and now >= entry.since + c.suspicion_timeout:
                self._counters.deaths += 1
                self._apply(now, Update("dead", name, entry.incarnation, origin=self.name))
            elif entry.status in (Status.DEAD, Status.LEFT) and now >= entry.since + (
                c.dead_timeout if entry.confirmed else c.suspicion_timeout
            ):
                # Never heard from directly: nothing to reconnect to; forgotten once
                # the news of its death had time to spread.
                del self._members[name]
                self._unwell.pop(name, None)
                self._broadcasts.pop(name, None)
                if not entry.confirmed:
                    self._pending -= 1
        for seq, relay in list(self._relays.items()):
            if now >= relay.expires:
                del self._relays[seq]

    def _gossip_round(self, now: float) -> None:
        if not self._broadcasts:
            return
        # Recently dead or left members are gossiped to as well: one declared dead
        # (or left) by mistake hears it and refutes (memberlist's "gossip to the dead").
        recent = 2 * self.config.suspicion_timeout
        candidates = [
            e
            for e in self._members.values()
            if e.name != self.name and (e.status in _LIVE or now < e.since + recent)
        ]
        for entry in self._rng.sample(candidates, min(self.config.gossip_fanout, len(candidates))):
            if not self._broadcasts:
                break
            self._send_packed(entry.address, Gossip(self.name))

    # -- state changes ---------------------------------------------------------

    def _apply_all(self, now: float, updates: Sequence[Update]) -> None:
        for update in updates:
            self._apply(now, update)

    def _merge(self, now: float, members: Sequence[Update]) -> None:
        """Merge a remote member table (a sync)."""
        for update in members:
            if update.name != self.name and update.name not in self._members:
                self._learn(now, update)
                continue
            if update.kind == "dead":
                # Our own view may be fresher: suspect it, and let it refute.
                update = Update(
                    "suspect",
                    update.name,
                    update.incarnation,
                    update.address,
                    update.meta,
                    update.origin,
                )
            self._apply(now, update)

    def _learn(self, now: float, update: Update) -> None:
        """Add a member first heard of, in the state the news gives it (alive or
        suspect; a member never known that is dead or left is nothing to track)."""
        if update.address is None:
            return  # not enough to reach it; alive news or a sync will follow
        status = Status(update.kind)
        if status not in _LIVE:
            return
        if self._pending >= MAX_PENDING:
            self.drop("flood")
            return
        self._pending += 1
        self._members[update.name] = _Entry(
            update.name, update.address, update.meta, update.incarnation, status, now, False
        )
        if status is not Status.ALIVE:
            self._unwell[update.name] = None
        self._order.insert(self._rng.randint(0, len(self._order)), update.name)
        self.version += 1
        if status is Status.ALIVE:
            self._queue(update)

    def _apply(self, now: float, update: Update) -> None:
        """Apply one piece of news; queue it for dissemination if it changed anything."""
        if update.name == self.name:
            self._about_me(update)
            return
        entry = self._members.get(update.name)
        if entry is None:
            if update.kind == "alive":
                self._learn(now, update)
            # Suspect/dead news of a member never seen: nothing to act on.
            return
        status = Status(update.kind)
        if update.incarnation < entry.incarnation:
            return
        if update.incarnation > entry.incarnation + MAX_INCARNATION_JUMP:
            self.drop("incarnation")
            return
        if update.incarnation == entry.incarnation and _RANK[status] <= _RANK[entry.status]:
            return
        was_live = entry.status in _LIVE
        old = (entry.address, entry.meta)
        entry.incarnation = update.incarnation
        if status is Status.ALIVE and update.address is not None:
            entry.address, entry.meta = update.address, update.meta
        if entry.status is not status:
            entry.status, entry.since = status, now
            if status is Status.ALIVE:
                self._unwell.pop(entry.name, None)
            else:
                self._unwell[entry.name] = None
        if was_live != (status in _LIVE) or old != (entry.address, entry.meta):
            self.version += 1
            if not was_live:  # back from the dead: probe it again
                self._order.insert(self._rng.randint(0, len(self._order)), entry.name)
        if status is Status.ALIVE and entry.address is not None:
            self._queue(Update("alive", entry.name, entry.incarnation, entry.address, entry.meta))
        else:
            self._queue(Update(status.value, entry.name, entry.incarnation, origin=update.origin))

    def _about_me(self, update: Update) -> None:
        me = self._members[self.name]
        if update.incarnation > me.incarnation + MAX_INCARNATION_JUMP and self._joined:
            self.drop("incarnation")
            return
        if update.kind == "alive":
            stale = update.incarnation > me.incarnation
            conflicting = update.incarnation == me.incarnation and (
                update.address != me.address or update.meta != me.meta
            )
            if stale or conflicting:
                # News of an earlier life of this node (or a wrong address):
                # override it with a fresher incarnation.
                self._refute(update.incarnation)
            return
        if update.incarnation >= me.incarnation:
            self._refute(update.incarnation)

    def _refute(self, incarnation: int) -> None:
        me = self._members[self.name]
        me.incarnation = min(max(me.incarnation, incarnation) + 1, MAX_INCARNATION)
        self._counters.refutations += 1
        self._queue(Update("alive", me.name, me.incarnation, me.address, me.meta))

    def _queue(self, update: Update) -> None:
        self._broadcasts[update.name] = _Broadcast(update)

    # -- sending ---------------------------------------------------------------

    def _retransmit_limit(self) -> int:
        members = self._members
        live = len(members) - sum(1 for n in self._unwell if members[n].status not in _LIVE)
        return self.config.retransmit_mult * max(1, math.ceil(math.log10(live + 1)))

    def _send(self, address: Address, message: Message) -> None:
        data = encode(message)
        self._outbox.append((address, data))
        self._counters.packets_sent += 1
        self._counters.bytes_sent += len(data)

    def _send_packed(self, address: Address, message: Ping | Ack | PingReq | Gossip) -> None:
        """Send ``message`` with as much pending news as fits in one datagram."""
        pending = sorted(self._broadcasts.values(), key=lambda b: b.transmits)
        data, count = encode_packed(message, [b.update for b in pending], self._limit)
        limit = self._retransmit_limit()
        for sent in pending[:count]:
            sent.transmits += 1
            if sent.transmits >= limit:
                del self._broadcasts[sent.update.name]
        self._outbox.append((address, data))
        self._counters.packets_sent += 1
        self._counters.bytes_sent += len(data)

    def _send_sync(self, address: Address, *, reply: bool, whole: bool = True) -> None:
        """Send the member table: all of it, in as many datagrams as it takes; unless
        not ``whole``: one datagram, this node then other rows (live first, random order)."""
        if not whole:
            me = self._members[self.name]
            others = [e for e in self._members.values() if e is not me]
            self._rng.shuffle(others)
            others.sort(key=lambda e: e.status not in _LIVE)
            table = [me.as_update(), *(e.as_update() for e in others)]
        else:
            table = [e.as_update() for e in self._members.values()]
        limit = self._limit
        part, chunk = 0, []
        for update in table:
            chunk.append(update)
            encoded = encode(Sync(self.name, tuple(chunk), reply, part))
            too_big = len(encoded) > limit or len(chunk) > MAX_UPDATES
            if too_big and len(chunk) > 1:
                chunk.pop()
                self._send(address, Sync(self.name, tuple(chunk), reply, part))
                if not whole:
                    return
                part, chunk = part + 1, [update]
        if chunk:
            self._send(address, Sync(self.name, tuple(chunk), reply, part))

    # -- helpers ---------------------------------------------------------------

    def _live_others(self) -> list[_Entry]:
        return [e for e in self._members.values() if e.status in _LIVE and e.name != self.name]

    def _alone(self) -> bool:
        return not any(e.status in _LIVE and e.name != self.name for e in self._members.values())

    def _seed_names(self) -> set[str]:
        seeds = set(self._seeds)
        return {e.name for e in self._members.values() if e.address in seeds}
