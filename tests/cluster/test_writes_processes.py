"""Writes across a cluster of real ``shoal serve`` processes (partitioned groups): a
set on any node is what every node answers at once, deletes and invalidations reach
every copy, a delete during a slow load is not undone by it, TTLs expire everywhere,
and bad writes get a clear 4xx."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from helpers.processes import (
    CountedCluster,
    ShoalServer,
    group_stats,
    http_get,
    http_request,
    loaded_value,
)

GROUP = "data"


def get(node: ShoalServer, key: str) -> tuple[int, bytes]:
    return http_get(f"{node.url}/v1/groups/{GROUP}/keys/{key}")


def put(node: ShoalServer, key: str, value: bytes, query: str = "") -> tuple[int, bytes]:
    return http_request("PUT", f"{node.url}/v1/groups/{GROUP}/keys/{key}{query}", value)


def delete(node: ShoalServer, key: str) -> tuple[int, Any]:
    status, body = http_request("DELETE", f"{node.url}/v1/groups/{GROUP}/keys/{key}")
    return status, json.loads(body)


def test_a_set_on_a_non_owner_is_what_every_node_answers_at_once(
    counted: CountedCluster,
) -> None:
    c = counted.cluster
    (key,) = c.keys_owned_by(1, "set")
    for node in c.nodes:  # the owner loads; the others keep hot copies (always)
        assert get(node, key) == (200, loaded_value(key))
    hot_before = [group_stats(n, GROUP)["hot"]["items"] for n in c.nodes]
    assert put(c.nodes[0], key, b"written") == (204, b"")
    hot_after = [group_stats(n, GROUP)["hot"]["items"] for n in c.nodes]
    assert hot_after[0] == hot_before[0] - 1  # the hot copies are gone
    assert hot_after[2] == hot_before[2] - 1
    # No waiting: when the PUT returns, every node answers the new value.
    assert [get(node, key) for node in c.nodes] == [(200, b"written")] * 3
    assert counted.loads.nodes(key) == [c.nodes[1].peer_url]  # never reloaded


def test_a_delete_removes_every_copy(counted: CountedCluster) -> None:
    c = counted.cluster
    (key,) = c.keys_owned_by(2, "delete")
    for node in c.nodes:
        get(node, key)
    assert delete(c.nodes[0], key) == (200, {"deleted": True})
    assert delete(c.nodes[1], key) == (200, {"deleted": False})
    # Every node asks the owner again, which loads once more.
    assert [get(node, key) for node in c.nodes] == [(200, loaded_value(key))] * 3
    assert counted.loads.nodes(key) == [c.nodes[2].peer_url] * 2


def test_a_delete_during_a_slow_load_is_not_undone_by_the_load(
    counted: CountedCluster,
) -> None:
    c, loads = counted.cluster, counted.loads
    (key,) = c.keys_owned_by(1, "fence")
    answers: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: answers.append(get(c.nodes[0], key)))
    reader.start()  # node 0 asks the owner, whose load takes 0.2 s
    deadline = time.monotonic() + 10
    while not loads.nodes(key) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert delete(c.nodes[2], key)[0] == 200  # while the load is in flight
    reader.join()
    assert answers == [(200, loaded_value(key))]  # the waiter got the load's value
    # ... which nobody cached: the next read loads again.
    assert get(c.nodes[0], key) == (200, loaded_value(key))
    assert len(loads.nodes(key)) == 2


def test_a_ttl_expires_on_every_node(counted: CountedCluster) -> None:
    c = counted.cluster
    (key,) = c.keys_owned_by(0, "ttl")
    assert put(c.nodes[1], key, b"brief", "?ttl=0.5") == (204, b"")
    assert [get(node, key) for node in c.nodes] == [(200, b"brief")] * 3
    time.sleep(0.6)
    assert [get(node, key) for node in c.nodes] == [(200, loaded_value(key))] * 3


def test_invalidate_drops_the_group_on_every_node(counted: CountedCluster) -> None:
    c = counted.cluster
    keys = [k for i in range(3) for k in c.keys_owned_by(i, "reset", 2)]
    for node in c.nodes:
        for key in keys:
            get(node, key)
    status, body = http_request("POST", f"{c.nodes[2].url}/v1/groups/{GROUP}/invalidate")
    assert status == 200
    assert json.loads(body)["removed"] > 0
    for node in c.nodes:
        s = group_stats(node, GROUP)
        assert (s["main"]["items"], s["hot"]["items"]) == (0, 0)


def test_bad_writes_get_a_clear_4xx_and_change_nothing(counted: CountedCluster) -> None:
    node = counted.cluster.nodes[0]
    for query in ("?ttl=0", "?ttl=-1", "?ttl=abc", "?ttl=inf"):
        status, body = put(node, "bad", b"x", query)
        assert status == 400, (query, body)
        assert json.loads(body)["code"] == "bad_request"
    status, body = http_request("POST", f"{node.url}/v1/groups/nope/invalidate")
    assert (status, json.loads(body)["code"]) == (404, "unknown_group")
    status, _ = http_request("GET", f"{node.url}/v1/groups/{GROUP}/invalidate")
    assert status == 405
    # The peer port refuses a garbage replica message (the group is not replicated).
    peer = f"{node.peer_url}/_groupcache/{GROUP}/_replica/"
    status, body = http_request("POST", peer, b"\xff\xff\xff")
    assert status == 400, body
    assert get(node, "bad")[1] == loaded_value("bad")  # nothing was stored
