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
from collections.abc import Iterator
from typing import Any

from membership.test_gossip_cluster import gossip_args
from membership.views import all_see, cluster_view, member_urls, wait_for
from procs import ShoalServer, free_ports, shoal_nodes

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
