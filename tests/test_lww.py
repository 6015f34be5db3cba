"""Replica state: last-writer-wins merging, tombstones, group-wide clears, the horizon,
garbage collection, incremental digests, and the anti-entropy exchange; properties show
that any delivery order, duplicates included, and any split healed by one sync round
converge to the same state."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import reduce
from operator import xor
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ConfigError
from shoal.hlc import HLC_MAX, hlc_from_seconds
from shoal.lww import (
    DEFAULT_BUCKETS,
    ZERO_VERSION,
    Entry,
    ReplicaState,
    Version,
    merge_all,
)

NOW = 1_700_000_000.0
KEEP = 3600.0
HORIZON = NOW - KEEP
NEVER = -math.inf

Op = Entry | Version
"""A write to apply, or a Version to clear the group at."""


def ver(t: float, node: str = "a", counter: int = 0) -> Version:
    """The version of a write by ``node`` at Unix time ``t``."""
    return Version(hlc_from_seconds(t) + counter, node)


def put(key: str, version: Version, value: bytes = b"v", expires_at: float | None = None) -> Entry:
    return Entry(key, version, value, expires_at)


def tomb(key: str, version: Version) -> Entry:
    return Entry(key, version, None)


def entry_hash(entry: Entry) -> int:
    """The digest hash of an entry, computed from its definition."""
    version = entry.version
    return xxhash.xxh3_64_intdigest(
        entry.key.encode() + b"\0" + version.hlc.to_bytes(8, "big") + version.node.encode()
    )


def check_digests(state: ReplicaState) -> None:
    """The incrementally kept digests and byte count equal a recomputation from scratch."""
    buckets = [0] * state.buckets
    nbytes = 0
    for entry in state.entries():
        bucket = xxhash.xxh3_64_intdigest(entry.key.encode()) % state.buckets
        assert state.bucket_of(entry.key) == bucket
        buckets[bucket] ^= entry_hash(entry)
        if entry.value is not None:
            nbytes += len(entry.key.encode()) + len(entry.value)
    assert state.bucket_hashes() == buckets
    assert state.root() == reduce(xor, buckets, 0)
    assert state.nbytes == nbytes


def snapshot(state: ReplicaState) -> tuple[Any, ...]:
    """Everything that must agree between converged states."""
    check_digests(state)
    entries = {entry.key: entry for entry in state.entries()}
    assert len(entries) == len(state)
    return entries, state.cleared, state.root(), state.bucket_hashes(), state.nbytes


def run(ops: Iterable[Op], buckets: int = 8, horizon: float = NEVER) -> ReplicaState:
    """A new state with ``ops`` applied in order."""
    state = ReplicaState(buckets=buckets)
    for op in ops:
        if isinstance(op, Entry):
            state.apply(op, horizon=horizon)
        else:
            state.clear(op)
    return state


# --- Version and Entry ------------------------------------------------------------------------


def test_versions_order_by_hlc_then_node() -> None:
    """The timestamp decides; the node id breaks ties; ZERO_VERSION is below every write."""
    assert Version(2, "a") > Version(1, "z")
    assert Version(1, "b") > Version(1, "a")
    assert Version(1, "a") == Version(1, "a")
    assert ZERO_VERSION < Version(0, "a") < Version(1, "")
    assert sorted([Version(2, "a"), Version(1, "b"), Version(1, "a")]) == [
        Version(1, "a"),
        Version(1, "b"),
        Version(2, "a"),
    ]


def test_entry_dead() -> None:
    """A tombstone is always dead; a value is dead from its expiry on, inclusive."""
    assert tomb("k", ver(NOW)).dead(0.0)
    assert not put("k", ver(NOW)).dead(math.inf)
    expiring = put("k", ver(NOW), expires_at=NOW + 10)
    assert not expiring.dead(NOW + 9.999)
    assert expiring.dead(NOW + 10)


def test_entry_dead_since() -> None:
    """A tombstone is dead since its delete, an expiring value since its expiry."""
    assert tomb("k", ver(NOW + 0.25, counter=7)).dead_since() == NOW + 0.25
    assert put("k", ver(NOW), expires_at=NOW + 10).dead_since() == NOW + 10
    assert put("k", ver(NOW)).dead_since() is None


def test_entries_are_immutable() -> None:
    """Entries and versions are frozen values."""
    entry = put("k", ver(NOW))
    with pytest.raises(AttributeError):
        entry.value = b"x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        entry.version.hlc = 0  # type: ignore[misc]


# --- Construction and queries -----------------------------------------------------------------


def test_empty_state() -> None:
    """A new state is empty, uncleared, and digests to zeros."""
    state = ReplicaState()
    assert state.buckets == DEFAULT_BUCKETS
    assert len(state) == 0
    assert state.cleared == ZERO_VERSION
    assert state.root() == 0
    assert state.bucket_hashes() == [0] * DEFAULT_BUCKETS
    assert state.nbytes == 0
    assert state.get("k") is None
    assert "k" not in state
    assert list(state.entries()) == []


@pytest.mark.parametrize("buckets", [0, -1, True, 1.5, "8"])
def test_bad_bucket_count(buckets: Any) -> None:
    """The bucket count must be an int >= 1."""
    with pytest.raises(ConfigError, match="buckets"):
        ReplicaState(buckets=buckets)


def test_queries() -> None:
    """get, in, len and entries see values and tombstones alike."""
    state = merge_all([put("a", ver(NOW)), tomb("b", ver(NOW))], buckets=4)
    assert len(state) == 2
    assert "a" in state
    assert "b" in state
    assert state.get("b") == tomb("b", ver(NOW))
    assert sorted(entry.key for entry in state.entries()) == ["a", "b"]
    assert "ReplicaState(entries=2, buckets=4" in repr(state)


def test_bucket_hashes_is_a_copy() -> None:
    """Changing the returned list does not touch the state."""
    state = merge_all([put("a", ver(NOW))], buckets=4)
    hashes = state.bucket_hashes()
    hashes[:] = [0] * 4
    check_digests(state)


# --- Last writer wins -------------------------------------------------------------------------


def test_first_write_is_stored() -> None:
    """A write to an unknown key is stored."""
    state = ReplicaState()
    assert state.apply(put("k", ver(NOW), b"one"), horizon=HORIZON)
    assert state.get("k") == put("k", ver(NOW), b"one")
    check_digests(state)


def test_newer_write_replaces_older() -> None:
    """A higher version replaces the stored entry; a lower one loses and changes nothing."""
    state = ReplicaState()
    state.apply(put("k", ver(NOW), b"one"), horizon=HORIZON)
    assert state.apply(put("k", ver(NOW + 1), b"two"), horizon=HORIZON)
    root = state.root()
    assert not state.apply(put("k", ver(NOW + 0.5), b"late"), horizon=HORIZON)
    assert state.get("k") == put("k", ver(NOW + 1), b"two")
    assert state.root() == root
    check_digests(state)


def test_counter_orders_writes_in_one_millisecond() -> None:
    """The HLC counter orders writes within one millisecond."""
    state = merge_all([put("k", ver(NOW, counter=2), b"2"), put("k", ver(NOW, counter=1), b"1")])
    entry = state.get("k")
    assert entry is not None
    assert entry.value == b"2"


def test_tie_breaks_by_node_id() -> None:
    """At the same timestamp the greater node id wins, in either order."""
    a = put("k", ver(NOW, "node-a"), b"a")
    b = put("k", ver(NOW, "node-b"), b"b")
    for order in ([a, b], [b, a]):
        assert merge_all(order).get("k") == b


def test_equal_version_is_idempotent() -> None:
    """The same version again changes nothing, whatever it carries."""
    state = ReplicaState()
    assert state.apply(put("k", ver(NOW), b"one"), horizon=HORIZON)
    before = snapshot(state)
    assert not state.apply(put("k", ver(NOW), b"one"), horizon=HORIZON)
    assert not state.apply(put("k", ver(NOW), b"other"), horizon=HORIZON)
    assert not state.apply(tomb("k", ver(NOW)), horizon=HORIZON)
    assert snapshot(state) == before


def test_tombstone_beats_older_value() -> None:
    """A newer delete replaces the value with a tombstone, and the older value cannot
    come back afterwards."""
    state = merge_all([put("k", ver(NOW), b"one")])
    assert state.apply(tomb("k", ver(NOW + 1)), horizon=HORIZON)
    assert state.get("k") == tomb("k", ver(NOW + 1))
    assert state.nbytes == 0
    assert not state.apply(put("k", ver(NOW), b"one"), horizon=HORIZON)
    assert not state.apply(put("k", ver(NOW + 0.5), b"mid"), horizon=HORIZON)
    assert state.get("k") == tomb("k", ver(NOW + 1))
    check_digests(state)


def test_tombstone_loses_to_newer_value() -> None:
    """A value written after the delete wins, whichever arrives first."""
    value = put("k", ver(NOW + 2), b"back")
    deleted = tomb("k", ver(NOW + 1))
    for order in ([value, deleted], [deleted, value]):
        assert merge_all(order).get("k") == value


def test_writes_to_other_keys_are_independent() -> None:
    """Versions compare per key only."""
    state = merge_all([put("a", ver(NOW + 5)), put("b", ver(NOW))])
    assert state.get("b") == put("b", ver(NOW))


def test_nbytes_counts_utf8_keys_and_values() -> None:
    """nbytes sums UTF-8 key lengths and value lengths of values, not of tombstones."""
    state = ReplicaState(buckets=4)
    state.apply(put("é", ver(NOW), b"12345"), horizon=HORIZON)
    assert state.nbytes == 2 + 5
    state.apply(put("é", ver(NOW + 1), b"12"), horizon=HORIZON)
    assert state.nbytes == 2 + 2
    state.apply(tomb("x", ver(NOW)), horizon=HORIZON)
    assert state.nbytes == 4
    state.apply(tomb("é", ver(NOW + 2)), horizon=HORIZON)
    assert state.nbytes == 0
    state.apply(put("é", ver(NOW + 3), b""), horizon=HORIZON)
    assert state.nbytes == 2


def test_oversized_timestamp_is_refused() -> None:
    """A winning write whose timestamp does not fit in 64 bits raises; the state is
    unchanged. A negative timestamp is below ZERO_VERSION and simply loses."""
    state = merge_all([put("k", ver(NOW))])
    before = snapshot(state)
    with pytest.raises(ValueError, match="64-bit"):
        state.apply(put("k", Version(HLC_MAX + 1, "a")), horizon=HORIZON)
    with pytest.raises(ValueError, match="64-bit"):
        state.apply(tomb("new", Version(HLC_MAX + 1, "a")), horizon=HORIZON)
    assert not state.apply(put("n", Version(-1, "a")), horizon=HORIZON)
    assert snapshot(state) == before
    assert state.apply(put("k", Version(HLC_MAX, "a")), horizon=HORIZON)


# --- clear() ----------------------------------------------------------------------------------


def test_clear_drops_older_entries() -> None:
    """A clear drops every entry at or below its version, returns the keys that held
    values (not tombstones), and keeps newer entries."""
    state = merge_all(
        [
            put("old", ver(NOW)),
            tomb("gone", ver(NOW)),
            put("same", ver(NOW + 1)),
            put("new", ver(NOW + 2), b"keep"),
        ]
    )
    dropped = state.clear(ver(NOW + 1))
    assert sorted(dropped) == ["old", "same"]
    assert state.cleared == ver(NOW + 1)
    assert [entry.key for entry in state.entries()] == ["new"]
    check_digests(state)


def test_clear_refuses_older_writes_afterwards() -> None:
    """Writes at or below the cleared version are refused; newer ones are stored."""
    state = ReplicaState()
    state.clear(ver(NOW, "m"))
    assert not state.apply(put("k", ver(NOW - 1)), horizon=HORIZON)
    assert not state.apply(put("k", ver(NOW, "m")), horizon=HORIZON)
    assert not state.apply(put("k", ver(NOW, "a")), horizon=HORIZON)
    assert state.apply(put("k", ver(NOW, "z")), horizon=HORIZON)
    assert state.apply(put("j", ver(NOW + 1)), horizon=HORIZON)
    assert len(state) == 2


def test_older_or_equal_clear_changes_nothing() -> None:
    """A clear not above the current one returns [] and changes nothing."""
    state = ReplicaState()
    state.clear(ver(NOW))
    state.apply(put("k", ver(NOW + 1)), horizon=HORIZON)
    before = snapshot(state)
    assert state.clear(ver(NOW)) == []
    assert state.clear(ver(NOW - 1)) == []
    assert state.clear(ZERO_VERSION) == []
    assert snapshot(state) == before


def test_clear_then_newer_clear() -> None:
    """A later clear raises the cleared version again."""
    state = merge_all([put("a", ver(NOW)), put("b", ver(NOW + 2))])
    assert state.clear(ver(NOW + 1)) == ["a"]
    assert state.clear(ver(NOW + 3)) == ["b"]
    assert state.cleared == ver(NOW + 3)
    assert len(state) == 0
    assert state.root() == 0


# --- The horizon and garbage collection -------------------------------------------------------


def test_old_tombstone_for_unknown_key_is_not_stored() -> None:
    """A tombstone older than the horizon is forgotten straight away."""
    state = ReplicaState()
    assert not state.apply(tomb("k", ver(HORIZON - 1)), horizon=HORIZON)
    assert "k" not in state


def test_old_tombstone_still_removes_an_older_value() -> None:
    """A forgotten tombstone still deletes the older value it beats."""
    state = merge_all([put("k", ver(HORIZON - 10), b"one")])
    assert state.apply(tomb("k", ver(HORIZON - 1)), horizon=HORIZON)
    assert "k" not in state
    assert state.nbytes == 0
    check_digests(state)


def test_old_tombstone_loses_to_a_newer_value() -> None:
    """A forgotten tombstone older than the stored value changes nothing."""
    state = merge_all([put("k", ver(HORIZON - 1), b"one")])
    assert not state.apply(tomb("k", ver(HORIZON - 10)), horizon=HORIZON)
    assert state.get("k") == put("k", ver(HORIZON - 1), b"one")


def test_tombstone_at_the_horizon_is_kept() -> None:
    """Only tombstones dead since strictly before the horizon are forgotten."""
    state = ReplicaState()
    assert state.apply(tomb("k", ver(HORIZON)), horizon=HORIZON)
    assert state.apply(tomb("j", ver(NOW)), horizon=HORIZON)
    assert len(state) == 2


def test_long_expired_value_is_like_an_old_tombstone() -> None:
    """A value that expired before the horizon is not stored, but removes what it beats;
    one that expires at or after the horizon is stored, even if already expired."""
    state = ReplicaState()
    assert not state.apply(put("k", ver(NOW), expires_at=HORIZON - 1), horizon=HORIZON)
    state.apply(put("j", ver(NOW)), horizon=HORIZON)
    assert state.apply(put("j", ver(NOW + 1), expires_at=HORIZON - 1), horizon=HORIZON)
    assert "j" not in state
    assert state.apply(put("i", ver(NOW), expires_at=HORIZON), horizon=HORIZON)
    assert state.apply(put("h", ver(NOW), expires_at=NOW - 1), horizon=HORIZON)
    assert len(state) == 2
    check_digests(state)


def test_collect_garbage() -> None:
    """Garbage collection drops old tombstones and long-expired values, and nothing else."""
    state = merge_all(
        [
            tomb("old-tomb", ver(HORIZON - 1)),
            tomb("new-tomb", ver(HORIZON + 1)),
            put("long-expired", ver(NOW), expires_at=HORIZON - 1),
            put("just-expired", ver(NOW), expires_at=NOW - 1),
            put("expiring", ver(NOW), expires_at=NOW + 60),
            put("forever", ver(HORIZON - 100)),
        ]
    )
    assert sorted(state.collect_garbage(HORIZON)) == ["long-expired", "old-tomb"]
    assert sorted(entry.key for entry in state.entries()) == [
        "expiring",
        "forever",
        "just-expired",
        "new-tomb",
    ]
    check_digests(state)
    assert state.collect_garbage(HORIZON) == []


def test_expired_lists_expired_values_and_keeps_them() -> None:
    """expired(now) names the values expired by now (inclusive), not tombstones; the
    entries stay, still beating older writes."""
    state = merge_all(
        [
            put("a", ver(NOW), expires_at=NOW - 1),
            put("b", ver(NOW), expires_at=NOW),
            put("c", ver(NOW), expires_at=NOW + 1),
            put("d", ver(NOW)),
            tomb("e", ver(NOW)),
        ]
    )
    assert sorted(state.expired(NOW)) == ["a", "b"]
    assert len(state) == 5
    assert not state.apply(put("a", ver(NOW - 1)), horizon=HORIZON)


# --- Digests ----------------------------------------------------------------------------------


def test_entry_hash_is_key_and_version() -> None:
    """An entry hashes by key and version only, per the documented formula."""
    state = merge_all([put("k", Version(0x0102030405060708, "n"), b"x")], buckets=1)
    expected = xxhash.xxh3_64_intdigest(b"k\0\x01\x02\x03\x04\x05\x06\x07\x08n")
    assert state.root() == expected
    assert state.bucket_hashes() == [expected]
    assert merge_all([tomb("k", Version(0x0102030405060708, "n"))], buckets=1).root() == expected


def test_bucket_of() -> None:
    """A key's bucket is xxh3_64 of its UTF-8 bytes modulo the bucket count."""
    state = ReplicaState(buckets=7)
    for key in ["", "k", "日本語", "\0", "a" * 300]:
        assert state.bucket_of(key) == xxhash.xxh3_64_intdigest(key.encode()) % 7
        assert 0 <= state.bucket_of(key) < 7
    assert ReplicaState(buckets=1).bucket_of("anything") == 0


def test_digests_follow_every_change() -> None:
    """Insert, replace, tombstone, horizon removal, clear and garbage collection all keep
    the digests equal to a recomputation."""
    state = ReplicaState(buckets=4)
    state.apply(put("a", ver(NOW)), horizon=HORIZON)
    check_digests(state)
    state.apply(put("b", ver(NOW)), horizon=HORIZON)
    check_digests(state)
    state.apply(put("a", ver(NOW + 1), b"xx"), horizon=HORIZON)
    check_digests(state)
    state.apply(tomb("b", ver(NOW + 1)), horizon=HORIZON)
    check_digests(state)
    state.apply(tomb("a", ver(NOW + 2)), horizon=NOW + 3)  # forgotten, but removes "a"
    check_digests(state)
    state.apply(put("c", ver(NOW + 5)), horizon=HORIZON)
    check_digests(state)
    state.clear(ver(NOW + 1))
    check_digests(state)
    state.collect_garbage(NOW + 10)
    check_digests(state)
    assert [entry.key for entry in state.entries()] == ["c"]


def test_same_entries_in_any_order_give_equal_digests() -> None:
    """Two states built from the same writes in different orders digest equally."""
    writes = [put(f"key-{i}", ver(NOW + i % 5, f"n{i % 3}"), str(i).encode()) for i in range(300)]
    writes += [tomb(f"key-{i}", ver(NOW + 10)) for i in range(0, 300, 7)]
    forward = merge_all(writes, buckets=16)
    backward = merge_all(reversed(writes), buckets=16)
    assert forward.root() == backward.root() != 0
    assert forward.bucket_hashes() == backward.bucket_hashes()
    assert snapshot(forward) == snapshot(backward)


def test_differing_finds_exactly_the_buckets_of_differing_keys() -> None:
    """Buckets differ exactly where a key is missing or held at another version."""
    common = [put(f"k{i}", ver(NOW)) for i in range(200)]
    ours = merge_all([*common, put("only-ours", ver(NOW)), put("k5", ver(NOW + 1))], buckets=64)
    theirs = merge_all([*common, tomb("only-theirs", ver(NOW))], buckets=64)
    expected = sorted({ours.bucket_of(k) for k in ("only-ours", "k5", "only-theirs")})
    assert ours.differing(theirs.bucket_hashes()) == expected
    assert theirs.differing(ours.bucket_hashes()) == expected
    assert ours.differing(ours.bucket_hashes()) == []


@pytest.mark.parametrize("count", [0, 63, 65])
def test_differing_wants_one_hash_per_bucket(count: int) -> None:
    """differing() refuses a digest list of the wrong length."""
    with pytest.raises(ValueError, match="64 bucket hashes"):
        ReplicaState(buckets=64).differing([0] * count)


# --- summaries() and compare() ----------------------------------------------------------------


def keys_in_bucket(state: ReplicaState, bucket: int, count: int) -> list[str]:
    """``count`` keys that fall into ``bucket``."""
    keys = (f"key-{i}" for i in range(10_000))
    return [key for key in keys if state.bucket_of(key) == bucket][:count]


def test_summaries_list_keys_and_versions() -> None:
    """summaries() gives every entry of the asked buckets, tombstones included, once."""
    state = ReplicaState(buckets=8)
    k0 = keys_in_bucket(state, 0, 2)
    (k3,) = keys_in_bucket(state, 3, 1)
    for entry in [put(k0[0], ver(NOW)), tomb(k0[1], ver(NOW + 1)), put(k3, ver(NOW + 2))]:
        state.apply(entry, horizon=HORIZON)
    assert sorted(state.summaries([0])) == sorted([(k0[0], ver(NOW)), (k0[1], ver(NOW + 1))])
    assert sorted(state.summaries([3, 0, 3, 0])) == sorted(
        [(k0[0], ver(NOW)), (k0[1], ver(NOW + 1)), (k3, ver(NOW + 2))]
    )
    assert state.summaries([1, 2]) == []
    assert state.summaries([]) == []


@pytest.mark.parametrize("bad", [-1, 8, 1.0, "0"])
def test_summaries_and_compare_check_bucket_indexes(bad: Any) -> None:
    """A bucket index outside [0, buckets) or not an int is refused."""
    state = ReplicaState(buckets=8)
    with pytest.raises(ValueError, match="bucket index"):
        state.summaries([0, bad])
    with pytest.raises(ValueError, match="bucket index"):
        state.compare([bad], [])


def test_compare() -> None:
    """compare() sends what the other side lacks or holds older, and asks for what it
    holds newer or this side lacks."""
    mine = merge_all(
        [
            put("x", ver(NOW + 1)),
            put("y", ver(NOW + 5), b"y5"),
            tomb("z", ver(NOW + 3)),
            put("same", ver(NOW)),
        ],
        buckets=1,
    )
    theirs = merge_all(
        [put("x", ver(NOW + 2)), put("y", ver(NOW + 4)), put("w", ver(NOW)), put("same", ver(NOW))],
        buckets=1,
    )
    send, want = mine.compare([0], theirs.summaries([0]))
    assert sorted(send, key=lambda entry: entry.key) == [
        put("y", ver(NOW + 5), b"y5"),
        tomb("z", ver(NOW + 3)),
    ]
    assert sorted(want) == ["w", "x"]
    assert mine.compare([0], mine.summaries([0])) == ([], [])


def test_compare_sends_only_from_the_asked_buckets() -> None:
    """Entries outside the compared buckets are not sent."""
    state = ReplicaState(buckets=8)
    (a,) = keys_in_bucket(state, 1, 1)
    (b,) = keys_in_bucket(state, 2, 1)
    state.apply(put(a, ver(NOW)), horizon=HORIZON)
    state.apply(put(b, ver(NOW)), horizon=HORIZON)
    assert state.compare([1], []) == ([put(a, ver(NOW))], [])


def test_compare_skips_cleared_versions_and_repeats() -> None:
    """Keys offered at or below the cleared version are not asked for; a key offered
    twice counts at its highest version."""
    state = ReplicaState(buckets=1)
    state.clear(ver(NOW))
    state.apply(put("k", ver(NOW + 2)), horizon=HORIZON)
    offered = [("old", ver(NOW - 1)), ("k", ver(NOW + 1)), ("k", ver(NOW + 3)), ("n", ver(NOW + 1))]
    send, want = state.compare([0], offered)
    assert send == []
    assert sorted(want) == ["k", "n"]


# --- Properties: convergence ------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d", "é", "日本", ""])
NODES = st.sampled_from(["n1", "n2", "n3"])
# Few timestamps, so that versions tie on the timestamp and clears cut between writes.
VERSIONS = st.builds(Version, st.integers(0, 30), NODES)
WRITES = st.builds(
    Entry,
    key=KEYS,
    version=VERSIONS,
    value=st.none() | st.binary(max_size=4),
    expires_at=st.none() | st.sampled_from([NOW - 10, NOW + 10]),
)
CLEARS = st.builds(Version, st.integers(0, 30), NODES)


def op_identity(op: Op) -> tuple[object, ...]:
    """One version names one write: two writes may share a key or a version, not both."""
    return (0, op.key, op.version) if isinstance(op, Entry) else (1, op)


OPS = st.lists(st.one_of(WRITES, WRITES, WRITES, CLEARS), max_size=40, unique_by=op_identity)


def model(ops: list[Op]) -> tuple[dict[str, Entry], Version]:
    """The converged state by definition: per key the highest write above the highest clear."""
    cleared = max((op for op in ops if isinstance(op, Version)), default=ZERO_VERSION)
    latest: dict[str, Entry] = {}
    for op in ops:
        if isinstance(op, Entry) and op.version > cleared:
            known = latest.get(op.key)
            if known is None or op.version > known.version:
                latest[op.key] = op
    return latest, cleared


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ops=OPS, buckets=st.sampled_from([1, 4, DEFAULT_BUCKETS]))
def test_any_order_with_duplicates_converges(
    data: st.DataObject, ops: list[Op], buckets: int
) -> None:
    """Applying the same writes and clears in any order, with any repeats, gives the same
    entries, cleared version, root, bucket hashes and byte count, and the state that
    last-writer-wins defines."""
    reference = snapshot(run(ops, buckets))
    entries, cleared = model(ops)
    assert reference[0] == entries
    assert reference[1] == cleared

    shuffled = data.draw(st.permutations(ops), label="order")
    assert snapshot(run(shuffled, buckets)) == reference

    extra = data.draw(st.lists(st.sampled_from(ops)), label="repeats") if ops else []
    repeated = data.draw(st.permutations(ops + extra), label="order with repeats")
    assert snapshot(run(repeated, buckets)) == reference


def sync(a: ReplicaState, b: ReplicaState) -> None:
    """One anti-entropy round between ``a`` and ``b``, as in the module documentation."""
    a.clear(b.cleared)
    b.clear(a.cleared)
    if a.root() == b.root() and a.bucket_hashes() == b.bucket_hashes():
        return
    buckets = b.differing(a.bucket_hashes())
    send, want = a.compare(buckets, b.summaries(buckets))
    for entry in send:
        b.apply(entry, horizon=NEVER)
    for key in want:
        wanted = b.get(key)
        assert wanted is not None
        a.apply(wanted, horizon=NEVER)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ops=OPS, buckets=st.sampled_from([1, 4, 64]))
def test_one_sync_round_converges(data: st.DataObject, ops: list[Op], buckets: int) -> None:
    """Two states that received different subsets of the writes (each in its own order)
    are equal after one sync round, and equal to a state that received them all."""
    where = data.draw(st.lists(st.sampled_from("ab+"), min_size=len(ops), max_size=len(ops)))
    got_a = [op for op, to in zip(ops, where, strict=True) if to in "a+"]
    got_b = [op for op, to in zip(ops, where, strict=True) if to in "b+"]
    a = run(data.draw(st.permutations(got_a)), buckets)
    b = run(data.draw(st.permutations(got_b)), buckets)
    sync(a, b)
    assert snapshot(a) == snapshot(b) == snapshot(run(got_a + got_b, buckets))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("apply"), WRITES, st.sampled_from([NEVER, 0.0, 0.001, 0.02])),
            st.tuples(st.just("clear"), CLEARS, st.just(0.0)),
            st.tuples(st.just("gc"), st.none(), st.sampled_from([0.0, 0.01, NOW])),
        ),
        max_size=40,
    )
)
def test_digests_always_match_a_recomputation(steps: list[tuple[str, Any, float]]) -> None:
    """Under any mix of writes with any horizon, clears and garbage collection, the
    incremental digests and byte count equal a recomputation, every entry is above the
    cleared version, and no stored entry is dead since before a horizon still in force."""
    state = ReplicaState(buckets=4)
    for action, arg, horizon in steps:
        if action == "apply":
            state.apply(arg, horizon=horizon)
        elif action == "clear":
            state.clear(arg)
        else:
            state.collect_garbage(horizon)
        check_digests(state)
        assert all(entry.version > state.cleared for entry in state.entries())
    state.collect_garbage(NOW)
    for entry in state.entries():
        since = entry.dead_since()
        assert since is None or since >= NOW
