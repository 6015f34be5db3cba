"""Ring: Go-compatible owners (shared vectors), a readable hash, collisions, validation,
the multi-probe lookup (against a reference, compiled and in Python), its shares, and
the consistent-hashing properties (a membership change moves only ~1/n of keys)."""

from __future__ import annotations

import array
import copy
import hashlib
import json
import math
import os
import pickle
import random
import zlib
from bisect import bisect_left
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import xxhash
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shoal import _speedups
from shoal import ring as ring_module
from shoal.config import RINGS
from shoal.errors import ConfigError
from shoal.ring import DEFAULT_PROBES, DEFAULT_REPLICAS, FLAVOURS, HashFn, Ring

# The shared vectors live beside the repository, in shared/vectors/.
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"

# Columns of the owner table: which flavour reproduces each Go implementation.
GO_IMPLEMENTATIONS = {
    "golang": "golang",
    "mailgun_v2": "groupcache-go",
    "groupcache_go_v3": "groupcache-go",
}

SAMPLE_KEYS = 20_000


def vector_file(name: str) -> Path:
    """A file of the shared vectors; fails under ``CI=true`` when missing, skips otherwise."""
    path = VECTORS / name
    if not path.is_file():
        reason = f"shared test vector {name} not found in {VECTORS}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def owner_table() -> dict[str, Any]:
    """The ``ring_owner_table`` part of ring_and_proto_vectors.json."""
    data = json.loads(vector_file("ring_and_proto_vectors.json").read_text("utf-8"))
    table: dict[str, Any] = data["ring_owner_table"]
    return table


def readable(data: bytes) -> int:
    """golang's test hash: the label or key read as a decimal number."""
    return int(data)


def table_hash(points: Mapping[bytes, int]) -> HashFn:
    """A hash that places the labels in ``points`` by hand; any other input is a number."""

    def hash_fn(data: bytes) -> int:
        return points[data] if data in points else int(data)

    return hash_fn


def sample_keys(count: int = SAMPLE_KEYS, seed: int = 7) -> list[str]:
    """Random keys shaped like real ones."""
    rng = random.Random(seed)
    return [f"user:{rng.getrandbits(48):x}" for _ in range(count)]


def vnode_owners(
    nodes: list[str], replicas: int, vnode_hash: Callable[[bytes], int]
) -> dict[int, str]:
    """Point -> node for every vnode, spelled out: the later node wins a point."""
    owner_of: dict[int, str] = {}
    for node in nodes:
        for i in range(replicas):
            owner_of[vnode_hash(f"{i}{node}".encode())] = node
    return owner_of


def reference_lookup(
    nodes: list[str],
    replicas: int,
    vnode_hash: Callable[[bytes], int],
    key_hash: Callable[[bytes], int],
) -> Callable[[str], str]:
    """The Go lookup, spelled out: the later node wins a point; first point >= key, or wrap."""
    owner_of = vnode_owners(nodes, replicas, vnode_hash)
    points = sorted(owner_of)

    def owner(key: str) -> str:
        index = bisect_left(points, key_hash(key.encode()))
        return owner_of[points[index if index < len(points) else 0]]

    return owner


def splitmix64(value: int) -> int:
    """The splitmix64 finalizer, written out here independently of shoal.ring."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 % 2**64
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB % 2**64
    return value ^ (value >> 31)


def multi_probe_lookup(
    nodes: list[str], replicas: int, probes: int, point: Callable[[bytes], int], size: int = 2**64
) -> Callable[[str], str]:
    """The multi-probe rule, spelled out: probes k + j * step, the closest next point wins,
    the earlier probe on a tie."""
    owner_of = vnode_owners(nodes, replicas, point)
    points = sorted(owner_of)

    def owner(key: str) -> str:
        k = point(key.encode())
        step = splitmix64(k) % size | 1
        best: tuple[int, int] | None = None
        for j in range(probes):
            probe = (k + j * step) % size
            index = bisect_left(points, probe)
            following = points[index] if index < len(points) else points[0]
            distance = (following - probe) % size
            if best is None or distance < best[0]:
                best = (distance, following)
        assert best is not None
        return owner_of[best[1]]

    return owner


def fnv1_64(data: bytes) -> int:
    """FNV-1 64, written out here independently of shoal.ring."""
    h = 14695981039346656037
    for byte in data:
        h = (h * 1099511628211) % 2**64 ^ byte
    return h


def as_int64(value: int) -> int:
    """Go's ``int(uint64)``: the same bits read as a signed int64."""
    return value - 2**64 if value >= 2**63 else value


def go_signed_vnode(label: bytes) -> int:
    """mailgun/groupcache-go vnode point, as Go computes and compares it (signed)."""
    return as_int64(fnv1_64(hashlib.md5(label).hexdigest().encode()))


def go_signed_key(key: bytes) -> int:
    """mailgun/groupcache-go key point, signed."""
    return as_int64(fnv1_64(key))


GO_RULES: dict[str, tuple[Callable[[bytes], int], Callable[[bytes], int]]] = {
    "shoal": (xxhash.xxh3_64_intdigest, xxhash.xxh3_64_intdigest),
    "golang": (zlib.crc32, zlib.crc32),
    "groupcache-go": (go_signed_vnode, go_signed_key),
}


node_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)
url_nodes = st.builds(
    "http://10.{}.{}.{}:8080".format, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)
)


class TestGoVectors:
    @pytest.mark.parametrize("implementation", sorted(GO_IMPLEMENTATIONS))
    def test_owner_table(self, implementation: str) -> None:
        """Every owner the Go code computed for three peers (golang, mailgun v2, v3)."""
        table = owner_table()
        peers: list[str] = table["peers"][implementation]
        ring = Ring.build(peers, flavour=GO_IMPLEMENTATIONS[implementation])
        assert ring.replicas == table["replicas"]

        def peer(suffix: str) -> str:
            # ".2" names the peer whose address contains 10.0.0.2.
            (match,) = [p for p in peers if f"10.0.0{suffix}:" in p]
            return match

        rows = [row for row in table["owners"] if implementation in row]
        assert rows
        expected = {row["key"]: peer(row[implementation]) for row in rows}
        assert {key: ring.owner(key) for key in expected} == expected

    def test_live_golang_owner_map(self) -> None:
        """Every line of the owner map dumped by a live golang/groupcache node."""
        lines = vector_file("golang_ring_owner_map.tsv").read_text("utf-8").splitlines()
        header, rows = lines[0], [line for line in lines[1:] if line.strip()]
        assert header.startswith("#")
        assert "50 replicas" in header
        peers = header.rpartition("for peers ")[2].strip().split(",")
        assert len(peers) == 3
        expected = dict(line.split("\t") for line in rows)
        assert len(expected) == 200
        ring = Ring.build(peers, flavour="golang")
        assert {key: ring.owner(key) for key in expected} == expected

    def test_raw_hashes(self) -> None:
        """The hash primitives give the vectors' raw values (crc32, FNV-1 64, signed)."""
        raw = json.loads(vector_file("ring_and_proto_vectors.json").read_text("utf-8"))[
            "raw_hashes"
        ]
        for text, value in raw["crc32_ieee"].items():
            assert zlib.crc32(text.encode()) == value
        for text, value in raw["fnv1_64_unsigned"].items():
            assert fnv1_64(text.encode()) == value
        for text, value in raw["fnv1_64_as_signed_int64"].items():
            assert as_int64(fnv1_64(text.encode())) == value

    @pytest.mark.parametrize("flavour", FLAVOURS)
    def test_prefix_table_agrees_with_the_go_lookup(self, flavour: str) -> None:
        """With one probe, owners equal a plain Go-style lookup on Go's own (for
        groupcache-go: signed) points."""
        nodes = [f"http://10.0.0.{i}:8080" for i in range(1, 8)]
        ring = Ring.build(nodes, flavour=flavour, probes=1)
        expected = reference_lookup(nodes, ring.replicas, *GO_RULES[flavour])
        for key in sample_keys(5_000):
            assert ring.owner(key) == expected(key), key


class TestReadableHash:
    def test_golang_hashing_example(self) -> None:
        """golang's TestHashing: replicas at 2, 4, 6, 12, 14, 16, 22, 24, 26."""
        ring = Ring.build(["6", "4", "2"], replicas=3, probes=1, hash_fn=readable)
        assert [ring.owner(k) for k in ("2", "11", "23", "27")] == ["2", "2", "4", "2"]
        # Adding "8" puts points at 8, 18, 28: 27 now maps to 8, the rest stay.
        bigger = ring.with_nodes(["6", "4", "2", "8"])
        assert [bigger.owner(k) for k in ("2", "11", "23", "27")] == ["2", "2", "4", "8"]

    def test_style_example(self) -> None:
        """The example in the style guide, nodes given in ascending order."""
        ring = Ring.build(["2", "4", "6"], replicas=3, probes=1, hash_fn=lambda b: int(b))
        assert [ring.owner(k) for k in ("2", "11", "23", "27")] == ["2", "2", "4", "2"]

    def test_boundaries(self) -> None:
        """A key on a point belongs to it; one past it, to the next; past the last, to the first."""
        ring = Ring.build(["2", "4", "6"], replicas=3, probes=1, hash_fn=readable)
        assert [ring.owner(k) for k in ("0", "4", "5", "26")] == ["2", "4", "6", "6"]
        # Outside the hash space, Go's comparisons still send the key to the first point.
        assert ring.owner("-5") == "2"
        assert ring.owner(str(2**64 + 5)) == "2"

    def test_golang_consistency(self) -> None:
        """golang's TestConsistency: the order nodes are added does not change owners."""
        one = Ring.build(["Bill", "Bob", "Bonny"], flavour="golang", replicas=1)
        two = Ring.build(["Bob", "Bonny", "Bill"], flavour="golang", replicas=1)
        assert one.owner("Ben") == two.owner("Ben")

    def test_signed_points_for_groupcache_go(self) -> None:
        """groupcache-go compares points as signed int64; comparing the bits unsigned picks
        the same owners, also for keys that wrap round at a different place."""
        minus = 2**64  # Go reads the uint64 2**64 - n as the int64 -n
        hash_fn = table_hash({b"0a": minus - 100, b"0b": 100})
        ring = Ring.build(["a", "b"], flavour="groupcache-go", replicas=1, hash_fn=hash_fn)
        # Go's signed view: a at -100, b at 100.
        go = {-200: "a", -100: "a", -50: "b", 0: "b", 100: "b", 150: "a"}
        assert {k: ring.owner(str(k % 2**64)) for k in go} == go

    def test_exact_shares(self) -> None:
        """Shares are arc lengths over the hash space; the wrap-around arc goes to the first."""
        ring = Ring.build(["2", "4", "6"], flavour="golang", replicas=3, hash_fn=readable)
        space = 2**32
        assert ring.shares() == {"2": (space - 12) / space, "4": 6 / space, "6": 6 / space}

    def test_multi_probe_shares(self) -> None:
        """Arcs of 3/4 and 1/4 with two probes: the short arc's point wins when both probes
        fall in it, or when the one that does is closer to its point than the other is to
        its own: 2 * integral from 0 to 1/4 of (1 - 2d) dd = 3/8, not 1/4."""
        points = {b"0a": 0, b"0b": 2**62}
        ring = Ring.build(["a", "b"], replicas=1, probes=2, hash_fn=table_hash(points))
        shares = ring.shares()
        assert shares == pytest.approx({"a": 5 / 8, "b": 3 / 8}, abs=1e-15)
        rng = random.Random(3)
        keys = [str(rng.getrandbits(64)) for _ in range(SAMPLE_KEYS)]
        got = sum(ring.owner(k) == "b" for k in keys) / len(keys)
        assert within_sampling_error(got, 3 / 8, len(keys))


class TestMultiProbe:
    @settings(max_examples=40, deadline=None)
    @given(
        nodes=st.lists(node_ids, min_size=1, max_size=8, unique=True),
        replicas=st.integers(1, 40),
        probes=st.integers(1, 12),
    )
    def test_matches_the_reference(self, nodes: list[str], replicas: int, probes: int) -> None:
        """Owners equal the rule spelled out independently, for any nodes, replicas and probes."""
        ring = Ring.build(nodes, replicas=replicas, probes=probes)
        expected = multi_probe_lookup(nodes, replicas, probes, xxhash.xxh3_64_intdigest)
        for key in ["", *sample_keys(300)]:
            assert ring.owner(key) == expected(key), key

    def test_default_shoal_ring_matches_the_reference(self) -> None:
        """The default ring (160 vnodes, 8 probes) on 20 nodes, over thousands of keys; and
        some keys do get another owner than the one-probe lookup gives them."""
        nodes = [f"http://10.0.0.{i}:8080" for i in range(1, 21)]
        ring, textbook = Ring.build(nodes), Ring.build(nodes, probes=1)
        expected = multi_probe_lookup(nodes, 160, 8, xxhash.xxh3_64_intdigest)
        keys = sample_keys(5_000)
        assert [ring.owner(k) for k in keys] == [expected(k) for k in keys]
        differ = sum(ring.owner(k) != textbook.owner(k) for k in keys)
        assert 0.2 < differ / len(keys) < 0.95

    def test_32_bit_space(self) -> None:
        """Probes work modulo the flavour's hash space (golang's is 32-bit)."""
        nodes = [f"http://10.0.0.{i}:8080" for i in range(1, 6)]
        ring = Ring.build(nodes, flavour="golang", probes=5)
        expected = multi_probe_lookup(nodes, 50, 5, zlib.crc32, size=2**32)
        for key in sample_keys(3_000):
            assert ring.owner(key) == expected(key), key

    def test_a_later_probe_wins_only_when_strictly_closer(self) -> None:
        """Two probes the same distance before their points: the first probe's point wins;
        one closer by one, the second probe's."""
        k = 1_000
        step = splitmix64(k) | 1
        for offset, winner in ((10, "a"), (9, "b")):
            points = {b"0a": k + 10, b"0b": (k + step + offset) % 2**64}
            ring = Ring.build(["a", "b"], replicas=1, probes=2, hash_fn=table_hash(points))
            assert ring.owner(str(k)) == winner

    @settings(max_examples=300, deadline=None)
    @given(
        points=st.lists(
            st.integers(0, 2**64 - 1) | st.integers(0, 300) | st.integers(2**64 - 300, 2**64 - 1),
            max_size=40,
            unique=True,
        ),
        point=st.integers(0, 2**64 - 1) | st.integers(0, 400),
        probes=st.integers(1, 64),
        space=st.sampled_from([32, 64]),
    )
    def test_compiled_lookup_equals_the_python_one(
        self, points: list[int], point: int, probes: int, space: int
    ) -> None:
        """shoal._speedups.probe_owner gives the Python lookup's answer on any points,
        crowded ones, ones at the ends of the space, and none."""
        size = 2**space
        points = sorted({p % size for p in points})
        point %= size
        starts, shift = ring_module._probe_starts(points, size)
        packed = (
            array.array("Q", points).tobytes(),
            array.array("I", starts).tobytes(),
        )
        expected = ring_module._probe_owner(points, starts, shift, point, probes, size - 1)
        assert _speedups.probe_owner(*packed, shift, point, probes, size - 1) == expected
        # The slot index only narrows the search: one slot for the whole space agrees.
        assert (
            ring_module._probe_owner(points, [0, len(points)], space, point, probes, size - 1)
            == expected
        )

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ((b"", b"\0" * 8, 63, 1, 1), TypeError),  # five arguments
            (("x", b"\0" * 8, 63, 1, 1, 2**64 - 1), TypeError),  # points not bytes
            ((b"\0" * 7, b"\0" * 8, 63, 1, 1, 2**64 - 1), TypeError),  # not whole uint64s
            ((b"\0" * 8, b"\0" * 7, 63, 1, 1, 2**64 - 1), TypeError),  # not whole uint32s
            ((b"\0" * 8, b"\0" * 8, 62, 1, 1, 2**64 - 1), ValueError),  # slots do not cover
            ((b"\0" * 8, b"\0" * 8, 64, 1, 1, 2**64 - 1), ValueError),  # shift too large
            ((b"\0" * 8, b"\0" * 4, 63, 1, 1, 2**64 - 1), ValueError),  # no slots
            ((b"\0" * 8, b"\0" * 8, 63, -1, 1, 2**64 - 1), OverflowError),
            ((b"\0" * 8, b"\0" * 8, 63, 2**64, 1, 2**64 - 1), OverflowError),
            ((b"\0" * 8, b"\0" * 8, 63, 1.5, 1, 2**64 - 1), TypeError),
        ],
    )
    def test_compiled_lookup_refuses_bad_arguments(
        self, args: tuple[Any, ...], error: type
    ) -> None:
        """Wrong argument counts, types or tables raise; they never read out of bounds."""
        with pytest.raises(error):
            _speedups.probe_owner(*args)

    def test_the_ring_uses_the_compiled_lookup_unless_told_not_to(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Compiled by default; ``SHOAL_NO_SPEEDUPS`` picks the Python lookup."""
        monkeypatch.delenv("SHOAL_NO_SPEEDUPS", raising=False)
        compiled, pack_points, pack_starts = ring_module._load_probe_owner()
        assert compiled is _speedups.probe_owner
        assert pack_points([1, 2**64 - 1]) == array.array("Q", [1, 2**64 - 1]).tobytes()
        assert pack_starts([0, 2]) == array.array("I", [0, 2]).tobytes()
        monkeypatch.setenv("SHOAL_NO_SPEEDUPS", "1")
        assert ring_module._load_probe_owner() == (ring_module._probe_owner, list, list)

    def test_compiled_lookup_of_no_points(self) -> None:
        """No points: index 0, which the empty ring turns into a LookupError."""
        assert _speedups.probe_owner(b"", b"", 0, 5, 8, 2**64 - 1) == 0
        with pytest.raises(LookupError, match="no nodes"):
            Ring.build([], probes=4).owner("k")


class TestCollisions:
    def test_later_node_wins_a_shared_point(self) -> None:
        """Two vnodes on one point: the node later in the list owns it (golang's hashMap)."""
        hash_fn = table_hash({b"0a": 10, b"0b": 10})
        ring = Ring.build(["a", "b"], replicas=1, probes=1, hash_fn=hash_fn)
        assert ring.owner("5") == ring.owner("10") == ring.owner("11") == "b"
        assert ring.shares() == {"a": 0.0, "b": 1.0}
        swapped = Ring.build(["b", "a"], replicas=1, probes=1, hash_fn=hash_fn)
        assert swapped.owner("5") == "a"
        assert swapped != ring

    def test_only_the_shared_point_changes_hands(self) -> None:
        """The loser keeps its other points."""
        points = {b"0a": 10, b"1a": 20, b"0b": 20, b"1b": 30}
        ring = Ring.build(["a", "b"], replicas=2, probes=1, hash_fn=table_hash(points))
        assert [ring.owner(k) for k in ("10", "15", "20", "25", "31")] == ["a", "b", "b", "b", "a"]

    def test_with_nodes_keeps_the_rule(self) -> None:
        """A ring made by with_nodes settles collisions by its own node order."""
        hash_fn = table_hash({b"0a": 10, b"0b": 10, b"0c": 50})
        ring = Ring.build(["a", "b"], replicas=1, probes=1, hash_fn=hash_fn).with_nodes(
            ["b", "c", "a"]
        )
        assert ring.owner("10") == "a"

    @settings(max_examples=200, deadline=None)
    @given(
        points=st.lists(
            st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 64), min_size=1, max_size=6),
            min_size=1,
            max_size=6,
        ),
        extra_keys=st.lists(st.integers(0, 2**32 - 1), max_size=20),
    )
    def test_matches_the_go_lookup(self, points: list[list[int]], extra_keys: list[int]) -> None:
        """Random points with many collisions: owners equal the plain Go lookup everywhere,
        on every point, next to every point and at the ends of the space."""
        replicas = max(len(p) for p in points)
        nodes = [f"n{j}" for j in range(len(points))]
        placed = {
            f"{i}{node}".encode(): node_points[i % len(node_points)]
            for node, node_points in zip(nodes, points, strict=True)
            for i in range(replicas)
        }
        hash_fn = table_hash(placed)
        ring = Ring.build(nodes, flavour="golang", replicas=replicas, hash_fn=hash_fn)
        keys = {0, 2**32 - 1, *extra_keys}
        for p in placed.values():
            keys |= {p - 1, p, p + 1}
        expected = reference_lookup(nodes, replicas, hash_fn, hash_fn)
        for key in sorted(keys):
            assert ring.owner(str(key)) == expected(str(key)), key


class TestValidation:
    def test_empty_ring(self) -> None:
        """An empty ring is allowed, has no shares, and cannot name an owner."""
        ring = Ring.build([])
        assert len(ring) == 0
        assert ring.nodes == ()
        assert ring.shares() == {}
        with pytest.raises(LookupError, match="no nodes"):
            ring.owner("k")
        assert ring.with_nodes(["a"]).owner("k") == "a"

    @pytest.mark.parametrize("replicas", [0, -1, True, 1.5, "3"])
    def test_bad_replicas(self, replicas: Any) -> None:
        """Replicas must be an int >= 1."""
        with pytest.raises(ConfigError, match="replicas"):
            Ring.build(["a"], replicas=replicas)

    @pytest.mark.parametrize("probes", [0, -1, 65, True, 2.0, "8"])
    def test_bad_probes(self, probes: Any) -> None:
        """Probes must be an int from 1 to 64."""
        with pytest.raises(ConfigError, match="probes must be an int from 1 to 64"):
            Ring.build(["a"], probes=probes)

    @pytest.mark.parametrize(
        "nodes",
        [["a", ""], ["a", None], ["a", b"b"], ["a", "\ud800"], "abc", b"abc"],
        ids=["empty", "none", "bytes", "surrogate", "str", "bytes-iterable"],
    )
    def test_bad_node_ids(self, nodes: Any) -> None:
        """Node ids are non-empty str that encode as UTF-8; a bare str is not a list of them."""
        with pytest.raises(ConfigError, match="node"):
            Ring.build(nodes)

    def test_duplicate_node_ids(self) -> None:
        """The same id twice is a ConfigError, in build and in with_nodes."""
        with pytest.raises(ConfigError, match="duplicate node id 'a'"):
            Ring.build(["a", "b", "a"])
        with pytest.raises(ConfigError, match="duplicate"):
            Ring.build(["a"]).with_nodes(["b", "b"])

    @pytest.mark.parametrize("flavour", ["crc32", "", "Shoal", None])
    def test_unknown_flavour(self, flavour: Any) -> None:
        """An unknown flavour is a ConfigError naming the choices."""
        with pytest.raises(ConfigError, match="groupcache-go"):
            Ring.build(["a"], flavour=flavour)

    @pytest.mark.parametrize(
        ("flavour", "point"),
        [
            ("shoal", -1),
            ("shoal", 2**64),
            ("golang", 2**32),
            ("groupcache-go", -1),
            ("groupcache-go", 2**64),
            ("shoal", 1.5),
        ],
    )
    def test_hash_fn_points_must_fit_the_space(self, flavour: str, point: Any) -> None:
        """A hash_fn point outside the flavour's hash space (or not an int) is refused."""
        with pytest.raises(ConfigError, match="hash_fn"):
            Ring.build(["a"], flavour=flavour, replicas=1, hash_fn=lambda b: point)

    def test_config_error_is_a_value_error(self) -> None:
        """ConfigError keeps ``except ValueError`` working."""
        with pytest.raises(ValueError, match="replicas"):
            Ring.build(["a"], replicas=0)

    def test_surrogate_key(self) -> None:
        """A key that is not valid UTF-8 cannot be hashed as UTF-8."""
        with pytest.raises(UnicodeEncodeError):
            Ring.build(["a"]).owner("\udc80")


class TestValue:
    def test_defaults(self) -> None:
        """Defaults per flavour: 160 replicas and 8 probes for shoal, 50 replicas and one
        probe for the Go flavours."""
        assert FLAVOURS == ("shoal", "golang", "groupcache-go")
        assert set(FLAVOURS) == set(RINGS)
        assert dict(DEFAULT_REPLICAS) == {"shoal": 160, "golang": 50, "groupcache-go": 50}
        assert dict(DEFAULT_PROBES) == {"shoal": 8, "golang": 1, "groupcache-go": 1}
        for flavour in FLAVOURS:
            ring = Ring.build(["a"], flavour=flavour)
            assert ring.replicas == DEFAULT_REPLICAS[flavour]
            assert ring.probes == DEFAULT_PROBES[flavour]
        assert Ring.build(["a"]).flavour == "shoal"

    def test_accessors(self) -> None:
        """nodes keeps the given order; len counts nodes."""
        ring = Ring.build(["b", "a", "c"], flavour="golang", replicas=7)
        assert ring.nodes == ("b", "a", "c")
        assert len(ring) == 3
        assert (ring.flavour, ring.replicas) == ("golang", 7)

    def test_with_nodes_keeps_settings_and_the_original(self) -> None:
        """with_nodes returns a new ring with the same settings; the old one is unchanged."""
        ring = Ring.build(["a", "b"], flavour="groupcache-go", replicas=9)
        other = ring.with_nodes(["b", "c"])
        assert (other.flavour, other.replicas, other.nodes) == ("groupcache-go", 9, ("b", "c"))
        assert ring.nodes == ("a", "b")
        assert other == Ring.build(["b", "c"], flavour="groupcache-go", replicas=9)

    def test_equality_and_hash(self) -> None:
        """Equal when built the same way from the same nodes in the same order."""
        ring = Ring.build(["a", "b"])
        assert ring == Ring.build(["a", "b"]) == Ring(["a", "b"])
        assert hash(ring) == hash(Ring.build(["a", "b"]))
        assert ring != Ring.build(["b", "a"])
        assert ring != Ring.build(["a", "b"], replicas=100)
        assert ring != Ring.build(["a", "b"], probes=1)
        assert ring == Ring.build(["a", "b"], probes=8)
        assert ring != Ring.build(["a", "b"], flavour="golang")
        assert ring != Ring.build(["a", "b"], hash_fn=xxhash.xxh3_64_intdigest)
        assert ring != ("a", "b")

    def test_repr(self) -> None:
        """The repr names the flavour, replicas and (the first) nodes."""
        assert repr(Ring.build(["a", "b"])) == "<Ring shoal replicas=160 probes=8 nodes=['a', 'b']>"
        many = repr(Ring.build([str(i) for i in range(20)], flavour="golang"))
        assert many.startswith("<Ring golang replicas=50 probes=1 nodes=['0', '1',")
        assert many.endswith("'7', ... (12 more)]>")
        assert "hash_fn=" in repr(Ring.build(["1"], hash_fn=readable))

    def test_immutable(self) -> None:
        """No attribute can be set or deleted."""
        ring = Ring.build(["a"])
        with pytest.raises(AttributeError):
            ring._nodes = ("b",)
        with pytest.raises(AttributeError):
            del ring._points
        with pytest.raises(AttributeError):
            ring.nodes = ("b",)  # type: ignore[misc]
        assert ring.nodes == ("a",)

    def test_pickle_and_copy(self) -> None:
        """A ring survives pickling and copying (it is rebuilt from its settings)."""
        for ring in (
            Ring.build(["a", "b", "c"], flavour="golang"),
            Ring.build(list("abc"), probes=3),
        ):
            for clone in (pickle.loads(pickle.dumps(ring)), copy.copy(ring), copy.deepcopy(ring)):
                assert clone == ring
                assert clone.probes == ring.probes
                assert [clone.owner(k) for k in "xyz"] == [ring.owner(k) for k in "xyz"]


def moved(before: Ring, after: Ring, keys: list[str]) -> dict[str, tuple[str, str]]:
    """Keys whose owner differs between two rings: ``{key: (old owner, new owner)}``."""
    changes = {}
    for key in keys:
        old, new = before.owner(key), after.owner(key)
        if old != new:
            changes[key] = (old, new)
    return changes


def within_sampling_error(observed: float, share: float, count: int) -> bool:
    """``observed`` is a fraction of ``count`` random keys expected to be ``share``: 5 sigma."""
    sigma = math.sqrt(share * (1 - share) / count)
    return abs(observed - share) <= 5 * sigma + 1 / count


class TestConsistentHashing:
    KEYS = sample_keys()

    @settings(max_examples=20, deadline=None)
    @given(
        nodes=st.lists(url_nodes, min_size=1, max_size=12, unique=True),
        newcomer=url_nodes,
        at=st.integers(0, 12),
    )
    def test_adding_a_node_moves_about_one_nth_to_it(
        self, nodes: list[str], newcomer: str, at: int
    ) -> None:
        """Adding a node to N moves ~1/(N+1) of the keys, all of them to the new node."""
        assume(newcomer not in nodes)
        before = Ring.build(nodes)
        bigger = [*nodes[:at], newcomer, *nodes[at:]]  # anywhere in the list
        after = before.with_nodes(bigger)
        changes = moved(before, after, self.KEYS)
        assert {new for _, new in changes.values()} <= {newcomer}
        fraction = len(changes) / len(self.KEYS)
        share = after.shares()[newcomer]
        assert within_sampling_error(fraction, share, len(self.KEYS))
        # 160 vnodes: a node's share is within ~8% of 1/n (one sigma); allow 6 sigma.
        assert 0.5 <= share * len(bigger) <= 1.5

    @settings(max_examples=20, deadline=None)
    @given(nodes=st.lists(url_nodes, min_size=2, max_size=12, unique=True), data=st.data())
    def test_removing_a_node_moves_only_its_keys(
        self, nodes: list[str], data: st.DataObject
    ) -> None:
        """Removing a node moves exactly its keys, to the others; nothing else moves."""
        leaver = data.draw(st.sampled_from(nodes))
        before = Ring.build(nodes)
        after = before.with_nodes([n for n in nodes if n != leaver])
        changes = moved(before, after, self.KEYS)
        owned = [k for k in self.KEYS if before.owner(k) == leaver]
        assert sorted(changes) == sorted(owned)
        assert all(new != leaver for _, new in changes.values())
        fraction = len(owned) / len(self.KEYS)
        assert within_sampling_error(fraction, before.shares()[leaver], len(self.KEYS))

    @settings(max_examples=60, deadline=None)
    @given(
        nodes=st.lists(node_ids, min_size=1, max_size=8, unique=True),
        keys=st.lists(st.text(st.characters(codec="utf-8"), max_size=40), min_size=1),
        flavour=st.sampled_from(FLAVOURS),
        replicas=st.integers(1, 64),
    )
    def test_owner_is_a_member_and_deterministic(
        self, nodes: list[str], keys: list[str], flavour: str, replicas: int
    ) -> None:
        """Any key (the empty one too) maps to a member; the same build gives the same owners."""
        ring = Ring.build(nodes, flavour=flavour, replicas=replicas)
        again = Ring.build(list(nodes), flavour=flavour, replicas=replicas)
        assert ring == again
        for key in keys:
            assert ring.owner(key) in nodes
            assert ring.owner(key) == again.owner(key)

    @settings(max_examples=30, deadline=None)
    @given(
        nodes=st.lists(node_ids, min_size=0, max_size=8, unique=True),
        more=st.lists(node_ids, max_size=4, unique=True),
        flavour=st.sampled_from(FLAVOURS),
        data=st.data(),
    )
    def test_with_nodes_equals_a_fresh_build(
        self, nodes: list[str], more: list[str], flavour: str, data: st.DataObject
    ) -> None:
        """Reusing vnode points in with_nodes gives what building from scratch gives."""
        ring = Ring.build(nodes, flavour=flavour, replicas=20)
        kept = data.draw(st.lists(st.sampled_from(nodes), unique=True)) if nodes else []
        target = [*kept, *(n for n in more if n not in kept)]
        fresh = Ring.build(target, flavour=flavour, replicas=20)
        reused = ring.with_nodes(target)
        assert reused == fresh
        assert reused.shares() == fresh.shares()
        if target:
            for key in self.KEYS[:300]:
                assert reused.owner(key) == fresh.owner(key)


class TestShares:
    @settings(max_examples=50, deadline=None)
    @given(
        nodes=st.lists(node_ids, min_size=1, max_size=10, unique=True),
        flavour=st.sampled_from(FLAVOURS),
        replicas=st.integers(1, 200),
        probes=st.integers(1, 64),
    )
    def test_sum_to_one(self, nodes: list[str], flavour: str, replicas: int, probes: int) -> None:
        """Every node has a share, none negative, and they add up to 1."""
        shares = Ring.build(nodes, flavour=flavour, replicas=replicas, probes=probes).shares()
        assert list(shares) == nodes
        assert all(s >= 0 for s in shares.values())
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)

    @pytest.mark.parametrize("count", [1, 3, 10, 100])
    def test_close_to_one_nth_for_shoal(self, count: int) -> None:
        """At 160 vnodes and 8 probes each of N shoal nodes gets within 10% of 1/N of the keys;
        with one probe, a node's arcs vary by about 1/sqrt(160) = 8% of 1/N, and the busiest
        of 10 or 100 gets more than 10% over."""
        nodes = [f"http://10.0.0.{i}:8080" for i in range(1, count + 1)]
        shares = Ring.build(nodes).shares()
        assert sum(shares.values()) == pytest.approx(1.0)
        assert max(abs(s * count - 1) for s in shares.values()) <= 0.10
        if count >= 10:
            arcs = Ring.build(nodes, probes=1).shares()
            assert max(arcs.values()) * count > 1.10

    @pytest.mark.parametrize(("flavour", "probes"), [(f, None) for f in FLAVOURS] + [("shoal", 2)])
    def test_match_the_keys_each_node_gets(self, flavour: str, probes: int | None) -> None:
        """The share of a node is the fraction of random keys it owns."""
        nodes = [f"http://10.0.0.{i}:8080" for i in range(1, 6)]
        ring = Ring.build(nodes, flavour=flavour, probes=probes)
        keys = sample_keys()
        counts = dict.fromkeys(nodes, 0)
        for key in keys:
            counts[ring.owner(key)] += 1
        for node, share in ring.shares().items():
            assert within_sampling_error(counts[node] / len(keys), share, len(keys)), node
