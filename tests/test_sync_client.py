"""shoal.SyncClient against real ``shoal serve`` nodes: routing to owners, the same
answers and errors as the async client, threads sharing one client, a fork, and the
stand-in for a dead node."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.processes import LoadLog, ShoalCluster, loaded_value, shoal_cluster
from shoal import BadRequest, Closed, ConfigError, GroupNotFound, NotFound, SyncClient


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShoalCluster, LoadLog]]:
    loads = LoadLog(tmp_path_factory.mktemp("sync-client") / "calls")
    with shoal_cluster(
        2, "--group", "data=helpers.loadlog:load", "--hot-admission", "never", env=loads.env()
    ) as cluster:
        yield cluster, loads


def test_keys_go_to_their_owner_once(two_nodes: tuple[ShoalCluster, LoadLog]) -> None:
    """Each key is loaded once, by its owner; the client's ring is the nodes' ring."""
    cluster, loads = two_nodes
    with SyncClient(cluster.nodes[1].url) as client:
        assert client.members == tuple(cluster.urls)
        assert client.transport == "http"
        keys = [f"route-{i}" for i in range(30)]
        for key in keys * 2:
            assert client.get("data", key) == loaded_value(key)
        for key in keys:
            assert client.owner(key) == cluster.urls[cluster.owner(key)]
            assert loads.nodes(key) == [cluster.urls[cluster.owner(key)]]
        many = client.get_many("data", [*keys, "missing-1", keys[0]])
        assert many == {key: loaded_value(key) for key in keys}


def test_writes_and_errors_match_the_async_client(two_nodes: tuple[ShoalCluster, LoadLog]) -> None:
    cluster, _ = two_nodes
    with SyncClient([cluster.nodes[0].url, cluster.nodes[1].url]) as client:
        client.set("data", "w-1", b"written")
        assert client.get("data", "w-1") == b"written"
        assert client.delete("data", "w-1") is True
        assert client.delete("data", "w-1") is False
        assert client.get("data", "w-1") == loaded_value("w-1")  # loaded again
        with pytest.raises(NotFound):
            client.get("data", "missing-key")
        with pytest.raises(GroupNotFound):
            client.get("nope", "k")
        with pytest.raises(GroupNotFound):
            client.set("nope", "k", b"v")
        assert client.get_many("data", []) == {}
    with pytest.raises(Closed):
        client.get("data", "k")


def test_atomic_operations_at_the_owner(two_nodes: tuple[ShoalCluster, LoadLog]) -> None:
    """add/incr/decr/touch/ttl/get_or_set/set_many/delete_many, as the async client
    answers them; 8 threads x 50 increments through one client lose none."""
    cluster, _ = two_nodes
    with SyncClient(cluster.nodes[0].url) as client, SyncClient(cluster.nodes[1].url) as other:
        assert client.add("data", "a-1", b"10", ttl=60) is True
        assert other.add("data", "a-1", b"99") is False
        assert other.incr("data", "a-1", 5) == 15
        assert client.decr("data", "a-1", 3) == 12
        ttl = client.ttl("data", "a-1")
        assert ttl is not None
        assert 50 < ttl <= 60  # incr kept the TTL
        assert client.touch("data", "a-1", None) is True
        assert other.ttl("data", "a-1") is None
        assert client.touch("data", "a-missing", 5) is False
        with pytest.raises(NotFound):
            client.incr("data", "a-missing")
        with pytest.raises(NotFound):
            client.ttl("data", "a-missing")
        client.set("data", "a-text", b"not a number")
        with pytest.raises(BadRequest):
            client.incr("data", "a-text")
        with pytest.raises(GroupNotFound):
            client.add("nope", "k", b"v")
        # "missing-..." keys: the loader answers NotFound.
        assert client.get_or_set("data", "missing-gos", b"first") == b"first"
        assert other.get_or_set("data", "missing-gos", b"second") == b"first"
        values = {f"a-many-{i}": str(i).encode() for i in range(40)}
        client.set_many("data", values, ttl=60)
        assert other.get_many("data", list(values)) == values
        assert other.delete_many("data", [*values, "a-never"]) == 40
        client.add("data", "a-count", b"0")

        def bump() -> None:
            for _ in range(50):
                client.incr("data", "a-count")

        threads = [threading.Thread(target=bump) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert other.get("data", "a-count") == b"400"


def test_threads_share_one_client(two_nodes: tuple[ShoalCluster, LoadLog]) -> None:
    """8 threads x 100 reads and writes on one client: every answer right, and a
    connection never serves two threads at once (an answer would go to the wrong one)."""
    cluster, _ = two_nodes
    errors: list[str] = []
    with SyncClient(cluster.nodes[0].url) as client:

        def work(t: int) -> None:
            for i in range(100):
                key = f"t{t}-{i % 10}"
                if i % 10 == 0:
                    client.set("data", key, f"{t}:{i}".encode())
                got = client.get("data", key)
                if not (got == loaded_value(key) or got.startswith(f"{t}:".encode())):
                    errors.append(f"{key}: {got!r}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


def test_a_forked_child_opens_its_own_connections(two_nodes: tuple[ShoalCluster, LoadLog]) -> None:
    """A client used before fork(): the child starts with no inherited connection and
    works; the parent's connections keep working beside it."""
    cluster, _ = two_nodes
    with SyncClient(cluster.nodes[0].url) as client:
        for i in range(10):
            client.get("data", f"fork-{i}")
        inherited = [id(c) for node in client._view.nodes.values() for c in node._idle]  # type: ignore[union-attr]
        assert inherited
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running pytest's teardown
            status = 1
            try:
                pooled = [c for node in client._view.nodes.values() for c in node._idle]  # type: ignore[union-attr]
                ok = not pooled and all(
                    client.get("data", f"fork-{i}") == loaded_value(f"fork-{i}") for i in range(10)
                )
                os.write(write, b"ok" if ok else b"bad")
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        for i in range(10):  # the parent goes on on its own sockets meanwhile
            assert client.get("data", f"fork-{i}") == loaded_value(f"fork-{i}")
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 10) == b"ok"
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_follows_with_a_near_cache_of_its_own(
    two_nodes: tuple[ShoalCluster, LoadLog],
) -> None:
    """A client with a near cache made before fork(): the child starts with an empty,
    disabled near cache, follows the node with a follower of its own, and hits it."""
    cluster, _ = two_nodes
    with SyncClient(cluster.nodes[0].url, near_cache=True) as client:
        near = client.near_cache
        assert near is not None
        for _ in range(500):
            if near.enabled:
                break
            time.sleep(0.01)
        client.get("data", "nf-1")
        assert client.get("data", "nf-1") == loaded_value("nf-1")
        assert (near.hits, len(near)) == (1, 1)
        parent_follower = client._follower
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                fresh = len(near) == 0 and not near.enabled and client._follower is None
                before = near.hits
                client.get("data", "nf-1")  # starts the child's follower
                ok = fresh and client._follower is not parent_follower
                for _ in range(500):
                    if near.enabled:
                        break
                    time.sleep(0.01)
                client.get("data", "nf-1")
                client.get("data", "nf-1")
                ok = ok and near.hits > before
                os.write(write, b"ok" if ok else f"bad {fresh} {near.hits}".encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        assert client.get("data", "nf-1") == loaded_value("nf-1")
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 100) == b"ok"
        os.close(read)
        assert near.enabled  # the parent's follower was left alone
        assert client._follower is parent_follower


def test_seed_urls_are_checked() -> None:
    for bad in ("grpc://127.0.0.1:1", "unix:relative.sock", "ftp://x:1", "http://h:1/path"):
        with pytest.raises(ConfigError):
            SyncClient(bad)
    with pytest.raises(ConfigError):
        SyncClient([])


def test_a_dead_node_has_a_stand_in(tmp_path: Path) -> None:
    """Once a member is gone its keys go to the owner on a ring of the others, which
    loads them; the client never fails a request for it."""
    loads = LoadLog(tmp_path / "calls")
    with (
        shoal_cluster(
            2, "--group", "data=helpers.loadlog:load", "--hot-admission", "never", env=loads.env()
        ) as cluster,
        SyncClient(cluster.nodes[0].url, backoff=5) as client,
    ):
        lost = cluster.keys_owned_by(1, "lost", 5)
        cluster.nodes[1].stop()
        for key in lost:
            assert client.get("data", key) == loaded_value(key)
            assert loads.nodes(key) == [cluster.urls[0]]
