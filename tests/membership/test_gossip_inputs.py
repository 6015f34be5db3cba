"""Hostile gossip datagrams against real ``shoal serve`` nodes over real UDP on 127.0.0.1.

Each test sends forged datagrams from a socket of its own: unusable member URLs,
out-of-range and jumping incarnations, a forged ``left``, a flood of forged
members, and (fuzzed) well-formed JSON with wrong types and values. Every one must
be dropped and counted, or applied within the documented bounds; no real member
may be removed for longer than a refutation takes, and no node may stop.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.cluster_views import all_see, cluster_view, member_urls, none_see, wait_for
from helpers.processes import ShoalServer, free_ports, shoal_nodes
from membership.test_gossip_cluster import LOCAL, gossip_args
from shoal.membership.gossip.messages import (
    MAX_INCARNATION,
    MAX_PART,
    MAX_UPDATES,
    Ack,
    Ping,
    decode,
    encode,
)
from shoal.membership.gossip.swim import MAX_INCARNATION_JUMP, MAX_PENDING

CONVERGE_WITHIN = 10.0

UNREACHABLE = "127.0.0.1:9"
"""A gossip address nothing answers on (the discard port, closed): forged members'."""


def send(target: tuple[str, int], payload: Any, sock: socket.socket | None = None) -> None:
    """Send one datagram to ``target``: ``payload`` as compact JSON, or raw bytes."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if sock is not None:
        sock.sendto(data, target)
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
        own.sendto(data, target)


def gossip_address(node: ShoalServer) -> tuple[str, int]:
    """Where ``node`` receives gossip (its peer port number, over UDP)."""
    assert node.peer_port is not None
    return ("127.0.0.1", node.peer_port)


def name_of(node: ShoalServer) -> str:
    """The node id of ``node`` in the member table."""
    return f"127.0.0.1:{node.peer_port}"


def membership(node: ShoalServer) -> dict[str, Any]:
    """The ``membership`` part of a node's ``GET /v1/cluster``."""
    info: dict[str, Any] = cluster_view(node)["membership"]
    return info


def dropped(node: ShoalServer, reason: str) -> int:
    """How many inputs ``node`` dropped for ``reason``."""
    count: int = membership(node)["dropped"][reason]
    return count


@contextlib.contextmanager
def gossip_cluster(size: int) -> Iterator[list[ShoalServer]]:
    """``size`` gossiping ``shoal serve`` nodes (local timers), converged."""
    ports = free_ports(size)
    args = [gossip_args("127.0.0.1", port, ports[0]) for port in ports]
    with shoal_nodes(args, peer_ports=ports) as nodes:
        urls = [n.peer_url for n in nodes]
        wait_for(all_see(nodes, urls), f"{size} members everywhere", CONVERGE_WITHIN)
        yield nodes


class FakeMember:
    """A member that is only a UDP socket: it answers every ping with an ack, so the
    nodes keep it alive, and publishes whatever meta the test gives it."""

    def __init__(self, name: str, meta: dict[str, str]) -> None:
        self.name = name
        self.meta = meta
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._answer, daemon=True)

    def alive(self) -> dict[str, Any]:
        """Its own ``alive`` row."""
        return {"k": "alive", "n": self.name, "i": 0, "a": self.address, "m": self.meta}

    def join(self, seed: tuple[str, int]) -> None:
        """Announce itself to ``seed`` with a sync, as a joining node does."""
        sync = {"t": "sync", "f": self.name, "r": False, "p": 0, "m": [self.alive()]}
        send(seed, sync, self.sock)

    def _answer(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(ValueError):
                message = decode(data)
                if isinstance(message, Ping) and message.target == self.name:
                    self.sock.sendto(encode(Ack(message.seq, self.name)), source)

    def __enter__(self) -> FakeMember:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_deep_or_broken_json_is_counted_as_malformed_and_never_logged() -> None:
    """Deeply nested JSON, a datagram past the UDP limit's worth of JSON, and bytes
    that are not UTF-8: each counted as malformed, no traceback, the view intact."""
    with gossip_cluster(2) as nodes:
        urls = [n.peer_url for n in nodes]
        node = nodes[0]
        before = dropped(node, "malformed")
        deep = b'{"t":"gossip","f":"x","u":[' + b"[" * 30_000 + b"]" * 30_000 + b"]}"
        assert len(deep) < 65_507
        datagrams = [b"[" * 5000, deep, b'{"t":"gossip","f":"\xff"}', b"\xff\xfe{}"]
        for data in datagrams:
            send(gossip_address(node), data)
        wait_for(
            lambda: dropped(node, "malformed") == before + len(datagrams),
            "every datagram counted",
            2.0,
        )
        assert all(member_urls(n) == set(urls) for n in nodes)
        log = node.stderr()
        assert "Traceback" not in log
        assert "RecursionError" not in log
        assert dropped(node, "error") == 0


def test_a_member_with_an_unusable_url_never_keeps_a_crash_out_of_the_rings() -> None:
    """A live member (it answers probes) publishing the URL ``http://`` is left out of
    every ring and logged once; a SIGKILLed node still leaves every view in time."""
    with gossip_cluster(3) as nodes, FakeMember("bad-url", {"url": "http://"}) as fake:
        fake.join(gossip_address(nodes[0]))
        wait_for(
            lambda: all(membership(n)["states"]["alive"] == 4 for n in nodes),
            "the member with a bad URL in every table",
            CONVERGE_WITHIN,
        )
        urls = [n.peer_url for n in nodes]
        assert all(member_urls(n) == set(urls) for n in nodes)
        victim, survivors = nodes[2], nodes[:2]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        bound = LOCAL.detection_bound(4)
        wait_for(none_see(survivors, victim.peer_url), "the crash noticed", bound)
        assert all(membership(n)["states"]["alive"] == 3 for n in survivors)  # fake is alive
        for node in survivors:
            log = node.stderr()
            assert log.count("leaving member 'bad-url' (gossip) out of the ring") == 1
            assert "applying a membership change failed" not in log


def test_incarnations_out_of_range_or_jumping_are_dropped_and_a_forged_left_refuted() -> None:
    """``left``/``dead`` about a live member with a 1,300-digit incarnation, or one past
    uint32, are dropped as invalid; one more than MAX_INCARNATION_JUMP above the known
    one is dropped as suspect input; neither touches the view. A ``left`` forged at the
    member's own incarnation takes it off for no longer than its refutation, one
    incarnation up."""
    with gossip_cluster(3) as nodes:
        urls = [n.peer_url for n in nodes]
        target, victim = nodes[0], nodes[1]
        before = membership(victim)["incarnation"]
        invalid = dropped(target, "invalid")
        for kind in ("left", "dead"):
            for incarnation in (10**1300, MAX_INCARNATION + 1, -1):
                forged = {"k": kind, "n": name_of(victim), "i": incarnation, "o": "x"}
                send(gossip_address(target), {"t": "gossip", "f": "x", "u": [forged]})
        wait_for(lambda: dropped(target, "invalid") == invalid + 6, "6 invalid datagrams", 2.0)
        jumps = dropped(target, "incarnation")
        for kind in ("left", "dead", "suspect", "alive"):
            update: dict[str, Any] = {
                "k": kind,
                "n": name_of(victim),
                "i": before + MAX_INCARNATION_JUMP + 1,
            }
            if kind == "alive":
                update |= {"a": UNREACHABLE, "m": {"url": "http://127.0.0.1:9"}}
            send(gossip_address(target), {"t": "gossip", "f": "x", "u": [update]})
        wait_for(lambda: dropped(target, "incarnation") == jumps + 4, "4 jumps dropped", 2.0)
        assert all(member_urls(n) == set(urls) for n in nodes)
        assert membership(victim)["incarnation"] == before

        # At its own incarnation a forged left is news like any; the member refutes it.
        update = {"k": "left", "n": name_of(victim), "i": before}
        sent = time.monotonic()
        send(gossip_address(target), {"t": "gossip", "f": "x", "u": [update]})
        seen = all_see(nodes, urls)

        def refuted() -> bool:
            return bool(membership(victim)["incarnation"] == before + 1 and seen())

        wait_for(refuted, "the refutation everywhere", 1.5)
        assert time.monotonic() - sent < 1.5
        assert membership(target)["refutations"] == 0
        assert membership(victim)["refutations"] == 1


def test_a_flood_of_forged_members_is_bounded_and_replies_stay_small() -> None:
    """3,300 forged members in 300 syncs add at most MAX_PENDING members (the rest are
    dropped and counted as a flood); every sync is answered with one datagram of at
    most max_packet bytes, the 56-byte one included; the real members stay."""
    with gossip_cluster(2) as nodes, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        target = nodes[0]
        urls = [n.peer_url for n in nodes]
        floods = dropped(target, "flood")
        syncs = 300
        for i in range(syncs):
            rows = [
                {
                    "k": "alive",
                    "n": f"forged-{i}-{j}",
                    "i": 0,
                    "a": UNREACHABLE,
                    "m": {"url": f"http://127.0.0.1:{1000 + j}"},
                }
                for j in range(11)
            ]
            send(gossip_address(target), {"t": "sync", "f": "x", "p": 0, "m": rows}, sock)
            time.sleep(0.002)  # what one node takes in; not a test of the socket buffer
        small = b'{"t":"sync","f":"forger-of-syncs","r":false,"p":0,"m":[]}'
        assert len(small) <= 60
        send(gossip_address(target), small, sock)
        wait_for(
            lambda: dropped(target, "flood") >= floods + 11 * syncs - MAX_PENDING,
            "the flood dropped",
            5.0,
        )
        states = membership(target)["states"]
        assert states["alive"] + states["suspect"] <= len(nodes) + MAX_PENDING
        sock.settimeout(0.5)
        replies: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            while True:
                replies.append(sock.recv(65536))
        assert 0 < len(replies) <= syncs + 1
        assert max(len(r) for r in replies) <= LOCAL.max_packet
        assert all(url in member_urls(target) for url in urls)
        assert target.proc.poll() is None


# ------------------------------------------------------------------------------ fuzz

NAME = st.from_regex(r"fuzz-[a-z0-9]{1,8}", fullmatch=True)
"""Names of members no one runs (the real ones are never the subject of a valid update)."""

BAD_NAME = st.one_of(
    st.just(""),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
    st.text(alphabet=" é\n/#?\t", min_size=1, max_size=5),
    st.just("n" * 129),
)
BAD_INT = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_INCARNATION + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="0123456789", min_size=1, max_size=4),
    st.booleans(),
    st.none(),
    st.just(10**1300),
)
BAD_ADDRESS = st.one_of(
    st.sampled_from(
        ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:7000", "127.0.0.1:²", ":7000"]
    ),
    st.just("127.0.0.1:" + "1" * 5000),
    st.integers(),
    st.lists(st.integers(), max_size=2),
)
BAD_META = st.one_of(
    st.lists(st.text(max_size=3), max_size=3),
    st.text(max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=3),
    st.just({f"k{i}": "v" for i in range(9)}),
    st.just({"url": "u" * 600}),
    st.just({"k" * 40: "v"}),
)
FINE_META = st.dictionaries(
    st.sampled_from(["url", "grpc", "started_at", "zone"]),
    st.sampled_from(["http://", "http://u@h:1", "ftp://h:1", "nan", "inf", "1e999", "x"]),
    max_size=3,
)
"""Meta of forged members: no usable URL, so they never join a ring."""


@st.composite
def fine_update(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed update about a forged member."""
    kind = draw(st.sampled_from(["alive", "suspect", "dead", "left"]))
    update: dict[str, Any] = {
        "k": kind,
        "n": draw(NAME),
        "i": draw(st.integers(0, MAX_INCARNATION)),
    }
    if kind == "alive" or draw(st.booleans()):
        update["a"] = UNREACHABLE
        update["m"] = draw(FINE_META)
    if kind in ("suspect", "dead") and draw(st.booleans()):
        update["o"] = draw(NAME)
    return update


@st.composite
def fine_message(draw: st.DrawFn, real: list[str]) -> dict[str, Any]:
    """A well-formed message whose news is about forged members only."""
    kind = draw(st.sampled_from(["ping", "ack", "ping-req", "gossip", "sync"]))
    updates = draw(st.lists(fine_update(), max_size=4))
    message: dict[str, Any] = {"t": kind, "f": draw(st.one_of(NAME, st.sampled_from(real)))}
    if kind in ("ping", "ack", "ping-req"):
        message["s"] = draw(st.integers(0, MAX_INCARNATION))
    if kind in ("ping", "ping-req"):
        message["to"] = draw(st.one_of(NAME, st.sampled_from(real)))
    if kind == "ping-req":
        message["a"] = UNREACHABLE
    if kind == "sync":
        message |= {"r": draw(st.booleans()), "p": draw(st.integers(0, MAX_PART)), "m": updates}
    else:
        message["u"] = updates
    return message


@st.composite
def bad_message(draw: st.DrawFn, real: list[str]) -> dict[str, Any] | list[Any] | str | int:
    """A well-formed JSON document that is not a valid message: one field of a valid
    one (about any member, the real ones too) made wrong."""
    message = draw(fine_message(real))
    updates = message.get("u", message.get("m"))
    if updates and draw(st.booleans()):
        update = draw(st.sampled_from(updates))
        update["n"] = draw(st.sampled_from(real))  # news about a real member...
        field, wrong = draw(
            st.sampled_from(
                [
                    ("k", st.sampled_from(["alive!", "", "ALIVE", None])),
                    ("n", BAD_NAME),
                    ("i", BAD_INT),
                    ("a", BAD_ADDRESS),
                    ("m", BAD_META),
                    ("o", BAD_NAME),
                ]
            )
        )
        if field == "o" and update["k"] == "alive":
            field, wrong = "i", BAD_INT
        value = draw(wrong)
        if field == "o" and value is None:
            value = ""
        update[field] = value  # ...but never valid
        return message
    choices: list[tuple[str, st.SearchStrategy[Any]]] = [
        ("t", st.sampled_from(["pong", "", "PING", None, 1])),
        ("f", BAD_NAME),
    ]
    if "s" in message:
        choices.append(("s", BAD_INT))
    if "to" in message:
        choices.append(("to", BAD_NAME))
    if "a" in message:
        choices.append(("a", BAD_ADDRESS))
    if message["t"] == "sync":
        choices += [
            ("p", st.one_of(BAD_INT, st.integers(min_value=MAX_PART + 1))),
            ("r", st.sampled_from([0, 1, "true", None])),
        ]
    key = "m" if message["t"] == "sync" else "u"
    choices.append(
        (
            key,
            st.one_of(
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                st.text(max_size=3),
                st.integers(),
                st.lists(st.one_of(st.integers(), st.text(max_size=2)), min_size=1, max_size=3),
                st.just([{"k": "left", "n": "x", "i": 0}] * (MAX_UPDATES + 1)),
            ),
        )
    )
    field, wrong = draw(st.sampled_from(choices))
    message[field] = draw(wrong)
    wrappers: list[dict[str, Any] | list[Any] | str | int] = [[message], json.dumps(message), 7]
    if draw(st.integers(0, 9)) == 0:  # a valid message, but not as the datagram's object
        wrapped: dict[str, Any] | list[Any] | str | int = draw(st.sampled_from(wrappers))
        return wrapped
    return message


class FuzzTarget:
    """The cluster the fuzz test runs against, started once for all its examples,
    and how many datagrams of each kind it was sent."""

    def __init__(self, nodes: list[ShoalServer]) -> None:
        self.nodes = nodes
        self.real = [name_of(n) for n in nodes]
        self.sent = dict.fromkeys(("bad", "jump", "fine"), 0)


def wait_count(node: ShoalServer, reasons: tuple[str, ...], expected: int) -> None:
    """Wait until ``node`` dropped ``expected`` inputs for ``reasons`` together."""

    def reached() -> bool:
        counts: dict[str, int] = membership(node)["dropped"]
        return sum(counts[r] for r in reasons) >= expected

    wait_for(reached, f"{expected} drops for {reasons}", 2.0)


def test_fuzzed_datagrams_are_dropped_and_counted_or_applied_within_bounds() -> None:
    """Hypothesis sends node 0 of a 3-node cluster well-formed JSON datagrams: messages
    with one field of a wrong type or out of range (each must be counted as invalid),
    news about real members with incarnations far past theirs (each dropped as a
    jump), and valid news about forged members only (applied within the pending
    bound). Throughout, every node runs, the real members' rings are unchanged, and
    their incarnations never move."""
    with gossip_cluster(3) as nodes:
        target = FuzzTarget(nodes)
        urls = [n.peer_url for n in nodes]
        node = nodes[0]
        address = gossip_address(node)
        incarnations = [membership(n)["incarnation"] for n in nodes]
        base_bad = dropped(node, "invalid") + dropped(node, "malformed")
        base_jump = dropped(node, "incarnation")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        deadline = time.monotonic() + 25

        @settings(
            max_examples=600,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def fuzz(data: st.DataObject) -> None:
            if time.monotonic() > deadline:
                return  # bounded in time on a slow machine, whatever the example count
            choice = data.draw(st.sampled_from(["bad", "bad", "jump", "fine"]))
            if choice == "bad":
                send(address, data.draw(bad_message(target.real)), sock)
                target.sent["bad"] += 1
                wait_count(node, ("invalid", "malformed"), base_bad + target.sent["bad"])
            elif choice == "jump":
                member = data.draw(st.sampled_from(range(len(nodes))))
                kind = data.draw(st.sampled_from(["alive", "suspect", "dead", "left"]))
                low = incarnations[member] + MAX_INCARNATION_JUMP + 1
                update: dict[str, Any] = {
                    "k": kind,
                    "n": target.real[member],
                    "i": data.draw(st.integers(low, MAX_INCARNATION)),
                }
                if kind == "alive":
                    update |= {"a": UNREACHABLE, "m": {"url": "http://127.0.0.1:9"}}
                send(address, {"t": "gossip", "f": data.draw(NAME), "u": [update]}, sock)
                target.sent["jump"] += 1
                wait_count(node, ("incarnation",), base_jump + target.sent["jump"])
            else:
                send(address, data.draw(fine_message(target.real)), sock)
                target.sent["fine"] += 1
            states = membership(node)["states"]
            assert states["alive"] + states["suspect"] <= len(nodes) + MAX_PENDING

        try:
            fuzz()
        finally:
            sock.close()
        assert min(target.sent.values()) > 0, target.sent
        for observer in nodes:
            assert observer.proc.poll() is None
            assert member_urls(observer) == set(urls)
            info = membership(observer)
            assert info["dropped"]["error"] == 0
            assert "Traceback" not in observer.stderr()
        assert [membership(n)["incarnation"] for n in nodes] == incarnations
