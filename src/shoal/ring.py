"""Ring: the immutable consistent-hash ring that maps every key to its owner node.

Each node is placed on the ring ``replicas`` times (virtual nodes): replica ``i``
of node ``n`` sits at ``vnode_hash(f"{i}{n}")``. With one probe (the Go flavours)
a key is owned by the node of the first point at or after ``key_hash(key)``,
wrapping round to the first point when the key hashes past the last one. Keys
and labels hash as UTF-8 bytes.

Multi-probe lookup (the ``shoal`` flavour, ``probes`` > 1): the key is looked up
from ``probes`` points instead of one, and the point that follows one of them
most closely (the shortest distance forward, wrapping round) names the owner.
The probes are ``(k + j * step) mod size`` for ``j`` in ``0 .. probes - 1``,
where ``k = key_hash(key)`` and ``step = (splitmix64(k) mod size) | 1`` (odd, so
the probes differ); on equal distances the earlier probe wins. Probe 0 is the
key point itself, so one probe is the rule above. The points are the same
whatever the probe count; only the lookup differs. It stays consistent: when a
node joins, the only keys that change owner are those it takes, and when one
leaves, only those it had (a probe's distance to its next point only shrinks
when points come and only grows when they go). What the extra probes buy is
balance: a node's share of the keys varies far less than the length of its arcs
does. At 160 vnodes the busiest of 100 nodes gets some 20% more keys than the
mean with one probe and about 5% more with 8 (multi-probe consistent hashing,
Appleton and O'Reilly 2015, here with vnodes as well).

Flavours (how points are computed; the Go ones match a Go implementation bit for bit):

``shoal`` (default, 160 replicas, 8 probes)
    Vnode point ``xxh3_64(f"{i}{n}")``, key point ``xxh3_64(key)``; unsigned,
    hash space ``[0, 2**64)``. The best balance and the cheapest hash. Its
    lookup is compiled (``shoal._speedups``) when shoal is built with a C
    compiler; the Python code gives the same owners, some ten times slower.
``golang`` (50 replicas, 1 probe; golang/groupcache ``consistenthash``)
    Vnode point ``crc32_ieee(f"{i}{n}")``, key point ``crc32_ieee(key)``; hash
    space ``[0, 2**32)``. Node ids are the peer URLs (``http://host:port``).
``groupcache-go`` (50 replicas, 1 probe; mailgun/groupcache v2 and groupcache-go v3)
    Vnode point ``fnv1_64(md5(f"{i}{n}").hexdigest())``: FNV-1 (multiply, then
    xor; not FNV-1a) of the 32 lowercase hex digits, as Go's ``fmt.Sprintf("%x",
    md5.Sum(...))``. Key point ``fnv1_64(key)``, with no md5. Go converts both
    to ``int`` and so compares them as signed int64; shoal compares the same 64
    bits unsigned, which picks the same owners: reading the bits as unsigned
    rotates the whole circle by ``2**63``, and the first point after a key does
    not change when keys and points rotate together. Node ids are URLs for
    mailgun v2, ``host:port`` for v3.

A ``hash_fn`` stands for the Go hash function, so it returns what Go's does: an
unsigned int below ``2**32`` for ``golang`` and below ``2**64`` otherwise.

The shared vectors (owners computed by the Go code for three peers, and a live
golang/groupcache node's owner map) pin these rules; the tests check every one.

Collisions: when two virtual nodes land on the same point, the node that comes
later in the ``nodes`` order owns it, as in golang/groupcache, whose ``hashMap``
keeps the last node written under a point. For the ``golang`` flavour this is a
real concern, not a curiosity: 50 points per peer in a 32-bit space collide with
a probability near ``(50 * peers) ** 2 / 2**33`` (0.3% for 100 peers, 25% for
1,000), so give shoal the peer list in the same order the Go nodes get it. (mailgun and
groupcache-go sort with an unstable sort, so their winner is unspecified; at 64
bits a collision is not expected to happen.)

Lookup speed: with one probe, as in golang/groupcache, a prefix table indexed by
the top bits of the key point answers directly for every slot of the hash space
that holds no point (most of them); only a key in a slot that holds a point pays
the binary search. Both give the same owner by construction. With several
probes, a table over the same slots holds the index of each slot's first point,
so each probe searches only its own slot (in C when the extension is built).

A ring never changes after it is built, so it is safe to read from any thread
without a lock. A membership change builds a new ring (:meth:`Ring.with_nodes`)
and swaps it in with one assignment.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from types import MappingProxyType
from typing import Any, Final

import xxhash

from ._native import load_speedups
from .errors import ConfigError

__all__ = ["DEFAULT_PROBES", "DEFAULT_REPLICAS", "FLAVOURS", "HashFn", "Ring"]

HashFn = Callable[[bytes], int]
"""A hash from bytes to an int point on the ring (``zlib.crc32``, for example)."""

_U64: Final = 1 << 64
_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_MASK64: Final = _U64 - 1
# Prefix table slots per point, at least (golang/groupcache uses 6). With 4 to 8 slots
# per point, 12-22% of the slots hold a point and need the binary search.
_TABLE_EXPANSION: Final = 4
# At most 2**20 slots (8 MiB of references): a 1,000-node ring at 160 vnodes needs no more.
_TABLE_MAX_BITS: Final = 20
_REPR_NODES: Final = 8
_MAX_PROBES: Final = 64


def _fnv1_64(data: bytes) -> int:
    """FNV-1 64 of ``data`` (segmentio/fasthash ``fnv1.HashBytes64``), unsigned."""
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h * _FNV64_PRIME) & _MASK64) ^ byte
    return h


def _md5_fnv1_64(label: bytes) -> int:
    """The groupcache-go vnode point: FNV-1 64 of the lowercase md5 hex of ``label``."""
    return _fnv1_64(hashlib.md5(label).hexdigest().encode("ascii"))


@dataclass(frozen=True, slots=True)
class _Flavour:
    """How one flavour computes points, and its hash space."""

    replicas: int
    probes: int
    vnode_point: HashFn
    key_point: HashFn
    size: int
    """The number of distinct points, a power of two: the hash space is ``[0, size)``."""


_FLAVOURS: Final[Mapping[str, _Flavour]] = MappingProxyType(
    {
        "shoal": _Flavour(160, 8, xxhash.xxh3_64_intdigest, xxhash.xxh3_64_intdigest, _U64),
        "golang": _Flavour(50, 1, zlib.crc32, zlib.crc32, 1 << 32),
        # Unsigned FNV values: Go's signed points rotated by 2**63, the same owners.
        "groupcache-go": _Flavour(50, 1, _md5_fnv1_64, _fnv1_64, _U64),
    }
)

FLAVOURS: Final[tuple[str, ...]] = tuple(_FLAVOURS)
"""The ring flavours, default first: ``shoal``, ``golang``, ``groupcache-go``."""

DEFAULT_REPLICAS: Final[Mapping[str, int]] = MappingProxyType(
    {name: spec.replicas for name, spec in _FLAVOURS.items()}
)
"""Virtual nodes per node when ``replicas`` is not given: 160 for ``shoal``, 50 for the Go
flavours (their own defaults)."""

DEFAULT_PROBES: Final[Mapping[str, int]] = MappingProxyType(
    {name: spec.probes for name, spec in _FLAVOURS.items()}
)
"""Lookup probes per key when ``probes`` is not given: 8 for ``shoal``, 1 for the Go
flavours (more would pick other owners than the Go nodes do)."""


def _mix64(value: int) -> int:
    """The splitmix64 finalizer of a 64-bit value."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _probe_owner(
    points: Sequence[int], starts: Sequence[int], shift: int, point: int, probes: int, mask: int
) -> int:
    """The multi-probe lookup (module documentation): the index in the sorted
    ``points`` of the point that follows one of the key's probes most closely, 0
    when there are no points. ``starts[s]`` is the index of the first point in slot
    ``s`` (``point >> shift``) or after it, so a probe searches only its own slot.
    The C extension's ``probe_owner`` is the same code."""
    if not points:
        return 0
    step = (_mix64(point) & mask) | 1
    count = len(points)
    best, found = mask + 1, 0
    for _ in range(probes):
        slot = point >> shift
        index = bisect_left(points, point, starts[slot], starts[slot + 1])
        if index < count:
            distance = points[index] - point
        else:  # past the last point: the first one, one turn on
            index, distance = 0, (points[0] - point) & mask
        if distance < best:  # strictly: on a tie the earlier probe wins
            best, found = distance, index
        point = (point + step) & mask
    return found


def _probe_starts(points: list[int], size: int) -> tuple[list[int], int]:
    """The slot index of the multi-probe lookup, and the shift that turns a point into
    a slot: entry ``s`` is the index of the first point at or after the start of slot
    ``s``, for every slot and one past the last (``len(points)``)."""
    bits, shift = _slot_bits(len(points), size)
    starts: list[int] = []
    for index, point in enumerate(points):
        slot = point >> shift
        if slot >= len(starts):  # the slots up to this point's own start at this point
            starts.extend(repeat(index, slot + 1 - len(starts)))
    starts.extend(repeat(len(points), (1 << bits) + 1 - len(starts)))
    return starts, shift


_ProbeOwner = Callable[[Any, Any, int, int, int, int], int]


_Pack = Callable[[list[int]], Any]


def _packed(typecode: str) -> _Pack:
    """Packs a list of ints as native C values of ``typecode`` (``array`` codes)."""
    return lambda values: array(typecode, values).tobytes()


def _load_probe_owner() -> tuple[_ProbeOwner, _Pack, _Pack]:
    """The lookup to use, and how it wants the points and the slot index: compiled
    (packed native uint64 and uint32 values) or Python (lists)."""
    speedups = load_speedups()
    if speedups is None:
        return _probe_owner, list, list
    compiled: _ProbeOwner = speedups.probe_owner
    return compiled, _packed("Q"), _packed("I")


_PROBE_OWNER, _PACK_POINTS, _PACK_STARTS = _load_probe_owner()
"""The multi-probe lookup in use (compiled unless not built or ``SHOAL_NO_SPEEDUPS``)."""


def _clamped_hash(hash_fn: HashFn, size: int) -> HashFn:
    """``hash_fn`` for keys, kept in ``[0, size)`` so that it always indexes the table.

    A key point outside the space is sent to 0: a point below every vnode and a
    point past every vnode both belong to the first vnode, and so does 0.
    """

    def point(data: bytes) -> int:
        value = hash_fn(data)
        return value if 0 <= value < size else 0

    return point


def _checked_hash(hash_fn: HashFn, flavour: str, size: int) -> HashFn:
    """``hash_fn`` for vnode labels, refusing points outside ``[0, size)``."""

    def point(data: bytes) -> int:
        value = hash_fn(data)
        if not isinstance(value, int) or not 0 <= value < size:
            raise ConfigError(
                f"hash_fn({data!r}) = {value!r}: a {flavour!r} point must be an int "
                f"in [0, 2**{size.bit_length() - 1})"
            )
        return value

    return point


def _slot_bits(count: int, size: int) -> tuple[int, int]:
    """How finely a table over the hash space ``[0, size)`` slices it for ``count``
    points: ``2**bits`` slots, and the shift that turns a point into its slot."""
    space_bits = size.bit_length() - 1
    bits = min((count * _TABLE_EXPANSION).bit_length(), _TABLE_MAX_BITS, space_bits)
    return bits, space_bits - bits


def _prefix_table(points: list[int], owners: list[str], size: int) -> tuple[list[str | None], int]:
    """The lookup table of ``points``, and the shift that turns a point into a slot.

    Slot ``s`` covers the points ``[s << shift, (s + 1) << shift)``. A slot that
    holds no vnode point has one owner for all its keys, the owner of the first
    point after it (or of the first point, past the last); a slot that holds one
    is None: bisect.
    """
    if not points:
        return [], 0
    bits, shift = _slot_bits(len(points), size)
    table: list[str | None] = []
    for point, owner in zip(points, owners, strict=True):
        slot = point >> shift
        if slot >= len(table):
            # The empty slots since the previous point's slot lead to this point.
            table.extend(repeat(owner, slot - len(table)))
            table.append(None)
    table.extend(repeat(owners[0], (1 << bits) - len(table)))  # wrap round to the first
    return table, shift


class Ring:
    """An immutable consistent-hash ring with virtual nodes.

    ``Ring(...)`` and :meth:`Ring.build` take the same arguments. Two rings are
    equal when built with the same flavour, replica count, probe count and hash
    function from the same nodes in the same order (order only matters for point
    collisions, but it decides them, so it is part of the ring).

    Args:
        nodes: the node ids (peer URLs, usually), in the order that settles
            point collisions: a later node wins.
        flavour: ``shoal`` (default), ``golang`` or ``groupcache-go``; see the
            module documentation.
        replicas: virtual nodes per node; None takes the flavour's default.
        probes: lookup probes per key (module documentation); None takes the
            flavour's default, 8 for ``shoal`` and 1 for the Go flavours.
        hash_fn: replaces the flavour's hashes of both vnode labels and keys;
            it returns ints in the flavour's hash space, ``[0, 2**32)`` for
            ``golang`` and ``[0, 2**64)`` otherwise. Meant for tests with a
            readable hash such as ``lambda b: int(b)`` (and ``probes=1``).

    Raises:
        ConfigError: an unknown flavour, ``replicas`` below 1, ``probes`` not
            in 1..64, a node id that is not a non-empty str encodable as UTF-8,
            a duplicate node id, or a ``hash_fn`` point outside the flavour's
            hash space.
    """

    __slots__ = (
        "_flavour",
        "_hash_fn",
        "_key_point",
        "_mask",
        "_nodes",
        "_owners",
        "_points",
        "_probe_points",
        "_probe_starts",
        "_probes",
        "_replicas",
        "_shift",
        "_size",
        "_table",
        "_vnodes",
    )

    _flavour: str
    _hash_fn: HashFn | None
    _key_point: HashFn
    _mask: int
    """``size - 1``: the probes' arithmetic is modulo the hash space."""
    _nodes: tuple[str, ...]
    _owners: list[str]
    """The owner of each point of ``_points``, plus the first one again at the end."""
    _points: list[int]
    """The distinct vnode points, sorted."""
    _probe_points: Any
    """``_points`` as :data:`_PROBE_OWNER` takes them (None with one probe)."""
    _probe_starts: Any
    """The slot index of the multi-probe lookup, as :data:`_PROBE_OWNER` takes it."""
    _probes: int
    _replicas: int
    _shift: int
    _size: int
    _table: list[str | None]
    """The prefix table: the owner of every key in a slot, or None (bisect)."""
    _vnodes: dict[str, tuple[int, ...]]
    """Each node's vnode points (``with_nodes`` reuses them)."""

    def __init__(
        self,
        nodes: Iterable[str] = (),
        *,
        flavour: str = "shoal",
        replicas: int | None = None,
        probes: int | None = None,
        hash_fn: HashFn | None = None,
    ) -> None:
        self._assemble(nodes, flavour, replicas, probes, hash_fn, {})

    @classmethod
    def build(
        cls,
        nodes: Iterable[str],
        *,
        flavour: str = "shoal",
        replicas: int | None = None,
        probes: int | None = None,
        hash_fn: HashFn | None = None,
    ) -> Ring:
        """Build a ring holding ``nodes``.

        Args:
            nodes: the node ids, in the order that settles point collisions
                (a later node wins). May be empty; :meth:`owner` then raises.
            flavour: ``shoal`` (default), ``golang`` or ``groupcache-go``.
            replicas: virtual nodes per node; None takes the flavour's default
                (160 for ``shoal``, 50 for the Go flavours).
            probes: lookup probes per key; None takes the flavour's default (8
                for ``shoal``, 1 for the Go flavours, as Go nodes look up).
            hash_fn: replaces the flavour's hashes of vnode labels and keys
                (tests use a readable one), returning ints in the flavour's hash
                space; None keeps the flavour's.

        Returns:
            The new ring.

        Raises:
            ConfigError: an unknown flavour, ``replicas`` below 1, ``probes``
                not in 1..64, a node id that is not a non-empty str encodable as
                UTF-8, a duplicate node id, or a ``hash_fn`` point outside the
                flavour's hash space.
        """
        return cls(nodes, flavour=flavour, replicas=replicas, probes=probes, hash_fn=hash_fn)

    def with_nodes(self, nodes: Iterable[str]) -> Ring:
        """A new ring with the same flavour, replicas, probes and hash, holding ``nodes``.

        The points of nodes already on this ring are reused, not hashed again.

        Args:
            nodes: the node ids of the new ring, in collision order.

        Returns:
            The new ring; this one is unchanged.

        Raises:
            ConfigError: a node id that is not a non-empty str encodable as
                UTF-8, or a duplicate node id.
        """
        ring = Ring.__new__(Ring)
        ring._assemble(
            nodes, self._flavour, self._replicas, self._probes, self._hash_fn, self._vnodes
        )
        return ring

    def _assemble(
        self,
        nodes: Iterable[str],
        flavour: str,
        replicas: int | None,
        probes: int | None,
        hash_fn: HashFn | None,
        known: Mapping[str, tuple[int, ...]],
    ) -> None:
        """Validate the settings, hash the vnodes (reusing ``known`` ones) and fill the slots."""
        spec = _FLAVOURS.get(flavour) if isinstance(flavour, str) else None
        if spec is None:
            raise ConfigError(f"unknown ring flavour {flavour!r}; choose one of {FLAVOURS}")
        if replicas is None:
            replicas = spec.replicas
        elif isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(f"replicas must be an int >= 1, got {replicas!r}")
        if probes is None:
            probes = spec.probes
        elif (
            isinstance(probes, bool)
            or not isinstance(probes, int)
            or not 1 <= probes <= _MAX_PROBES
        ):
            raise ConfigError(f"probes must be an int from 1 to {_MAX_PROBES}, got {probes!r}")
        if isinstance(nodes, (str, bytes)):
            # Iterating a str would make one node per character.
            raise ConfigError(f"nodes must be an iterable of node ids, not {nodes!r}")
        node_ids = tuple(nodes)
        seen: set[str] = set()
        for node in node_ids:
            if not isinstance(node, str) or not node:
                raise ConfigError(f"a node id must be a non-empty str, got {node!r}")
            if not node.isascii():
                try:
                    node.encode()
                except UnicodeEncodeError:
                    raise ConfigError(f"a node id must be valid UTF-8, got {node!r}") from None
            if node in seen:
                raise ConfigError(f"duplicate node id {node!r}")
            seen.add(node)
        if hash_fn is None:
            vnode_point, key_point = spec.vnode_point, spec.key_point
        else:
            vnode_point = _checked_hash(hash_fn, flavour, spec.size)
            key_point = _clamped_hash(hash_fn, spec.size)

        # point -> node, written in ``nodes`` order so that a later node overwrites an
        # earlier one on a collision: golang/groupcache's hashMap rule.
        owner_of: dict[int, str] = {}
        vnodes: dict[str, tuple[int, ...]] = {}
        for node in node_ids:
            points = known.get(node)
            if points is None:
                points = tuple(vnode_point(f"{i}{node}".encode()) for i in range(replicas))
            vnodes[node] = points
            for point in points:
                owner_of[point] = node
        sorted_points = sorted(owner_of)
        owners = [owner_of[p] for p in sorted_points]
        table: list[str | None] = []
        probe_points = probe_starts = None
        if probes == 1:
            table, shift = _prefix_table(sorted_points, owners, spec.size)
        else:
            starts, shift = _probe_starts(sorted_points, spec.size)
            probe_points, probe_starts = _PACK_POINTS(sorted_points), _PACK_STARTS(starts)
        if owners:
            # A key past the last point wraps to the first: one extra owner at the end
            # lets owner() index with bisect's answer directly, without a branch.
            owners.append(owners[0])

        setattr_ = object.__setattr__
        setattr_(self, "_flavour", flavour)
        setattr_(self, "_hash_fn", hash_fn)
        setattr_(self, "_key_point", key_point)
        setattr_(self, "_mask", spec.size - 1)
        setattr_(self, "_nodes", node_ids)
        setattr_(self, "_owners", owners)
        setattr_(self, "_points", sorted_points)
        setattr_(self, "_probe_points", probe_points)
        setattr_(self, "_probe_starts", probe_starts)
        setattr_(self, "_probes", probes)
        setattr_(self, "_replicas", replicas)
        setattr_(self, "_shift", shift)
        setattr_(self, "_size", spec.size)
        setattr_(self, "_table", table)
        setattr_(self, "_vnodes", vnodes)

    def owner(self, key: str) -> str:
        """The node that owns ``key``.

        Args:
            key: the key; it hashes as its UTF-8 bytes.

        Returns:
            With one probe, the id of the node owning the first point at or after
            the key's point, or the first point's node when the key hashes past
            the last point; with several, the node of the point that follows one
            of the key's probes most closely (module documentation).

        Raises:
            LookupError: the ring has no nodes.
            UnicodeEncodeError: the key holds a lone surrogate (not valid UTF-8).
        """
        # The hot path of every miss. Key points are in [0, size), so only an empty ring
        # raises IndexError (an empty table; no owners, while the probe says 0).
        point = self._key_point(key.encode())
        try:
            if self._probes != 1:
                index = _PROBE_OWNER(
                    self._probe_points,
                    self._probe_starts,
                    self._shift,
                    point,
                    self._probes,
                    self._mask,
                )
                return self._owners[index]
            # One hash, one table slot; the C bisect only for a key whose slot holds a
            # vnode point.
            node = self._table[point >> self._shift]
        except IndexError:
            raise LookupError("the ring has no nodes: no owner for any key") from None
        if node is None:
            node = self._owners[bisect_left(self._points, point)]
        return node

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node ids, in the order given (the order that settles collisions)."""
        return self._nodes

    @property
    def flavour(self) -> str:
        """The flavour: ``shoal``, ``golang`` or ``groupcache-go``."""
        return self._flavour

    @property
    def replicas(self) -> int:
        """Virtual nodes per node."""
        return self._replicas

    @property
    def probes(self) -> int:
        """Lookup probes per key (1: the textbook lookup)."""
        return self._probes

    def shares(self) -> dict[str, float]:
        """The fraction of the keys each node gets, on average: its share of the load.

        With one probe it is exact: a point owns the arc from the previous point
        (excluded) to itself (included); the first point also owns the arc that
        wraps round from the last one. A node's share is the sum of its arcs
        over the size of the flavour's hash space.

        With ``p`` probes a point owns the keys whose closest probe falls in its
        arc. Taking the probes as ``p`` independent uniform points, a point whose
        arc is ``g`` (as a fraction of the space) wins with probability
        ``integral from 0 to g of p * S(d) ** (p - 1) dd``, where ``S(d)``, the
        chance that one probe lies further than ``d`` before its next point, is
        the sum of ``max(0, a - d)`` over all arcs ``a``. ``S`` is linear between
        arc lengths, so the integral is exact in closed form.

        Either way the shares add up to 1.

        Returns:
            ``{node: share}`` for every node, in the order of :attr:`nodes` (0.0
            for a node whose every point was taken by a collision); empty for an
            empty ring.
        """
        points = self._points
        if not points:
            return {}
        size = self._size
        arcs = []  # the arc that leads to each point, as a fraction of the space
        previous = points[-1] - size  # the last point, one turn back
        for point in points:
            arcs.append((point - previous) / size)
            previous = point
        wins = arcs if self._probes == 1 else _probe_wins(arcs, self._probes)
        shares = dict.fromkeys(self._nodes, 0.0)
        # strict=False: _owners ends with one extra entry, the wrap-around copy.
        for win, node in zip(wins, self._owners, strict=False):
            shares[node] += win
        return shares

    def __len__(self) -> int:
        """The number of nodes."""
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (
            self._flavour == other._flavour
            and self._replicas == other._replicas
            and self._probes == other._probes
            and self._hash_fn is other._hash_fn
            and self._nodes == other._nodes
        )

    def __hash__(self) -> int:
        return hash((self._flavour, self._replicas, self._probes, self._nodes))

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self._nodes[:_REPR_NODES]))
        if len(self._nodes) > _REPR_NODES:
            shown += f", ... ({len(self._nodes) - _REPR_NODES} more)"
        custom = "" if self._hash_fn is None else f" hash_fn={self._hash_fn!r}"
        return (
            f"<Ring {self._flavour} replicas={self._replicas} probes={self._probes}{custom} "
            f"nodes=[{shown}]>"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Ring is immutable; use with_nodes() to make another ({name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Ring is immutable ({name})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots plus a refusing __setattr__ would defeat pickle's default; rebuild instead.
        return (
            _rebuild,
            (self._nodes, self._flavour, self._replicas, self._probes, self._hash_fn),
        )


def _probe_wins(arcs: list[float], probes: int) -> list[float]:
    """The chance that each point wins a random key (see :meth:`Ring.shares`), given
    the arcs that lead to the points (fractions of the space), in point order."""
    order = sorted(range(len(arcs)), key=arcs.__getitem__)
    # Walk the arcs from the shortest up: between two arc lengths, S(d) = rest - longer * d,
    # where ``longer`` arcs exceed d and ``rest`` is their total length.
    wins = [0.0] * len(arcs)
    rest = 1.0
    won = previous = 0.0
    for rank, index in enumerate(order):
        arc = arcs[index]
        longer = len(arcs) - rank
        if arc > previous:
            outer, inner = max(rest - longer * previous, 0.0), max(rest - longer * arc, 0.0)
            won += (outer**probes - inner**probes) / longer
            previous = arc
        wins[index] = won
        rest -= arc
    return wins


def _rebuild(
    nodes: tuple[str, ...], flavour: str, replicas: int, probes: int, hash_fn: HashFn | None
) -> Ring:
    """Unpickle a ring by building it again from its settings."""
    return Ring(nodes, flavour=flavour, replicas=replicas, probes=probes, hash_fn=hash_fn)
