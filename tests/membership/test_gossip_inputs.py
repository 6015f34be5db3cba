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
import socket
import time
from collections.abc import Iterator
from typing import Any

from membership.test_gossip_cluster import LOCAL, gossip_args
from membership.views import all_see, cluster_view, member_urls, wait_for
from procs import ShoalServer, free_ports, shoal_nodes
from shoal.membership.gossip.messages import (
    MAX_INCARNATION,
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
