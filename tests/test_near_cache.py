"""The near cache of SyncClient: three worker processes on one node, a second node; a
write through either node or any worker drops the key from every worker's near
cache within the bound of docs/workers.md; a lost stream empties them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.processes import (
    TESTS_DIR,
    LoadLog,
    ShoalCluster,
    clean_env,
    loaded_value,
    shoal_cluster,
)
from shoal import ConfigError, NearCache, SyncClient

BOUND = 1.0
"""Seconds from a write's return to its drop in every near cache (docs/workers.md
measures the p99 on a quiet machine; this is the bound on a loaded CI machine)."""


class Worker:
    def __init__(self, seed: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.near_worker", seed, "data"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=clean_env(PYTHONPATH=str(TESTS_DIR)),
            cwd=TESTS_DIR,
            text=True,
        )
        assert self.read() == "ready"

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def workers_on_two_nodes(tmp_path: Path) -> Iterator[tuple[list[Worker], ShoalCluster]]:
    loads = LoadLog(tmp_path / "calls")
    with shoal_cluster(
        2, "--group", "data=helpers.loadlog:load", "--hot-admission", "never", env=loads.env()
    ) as cluster:
        workers: list[Worker] = []
        try:
            for _ in range(3):
                workers.append(Worker(cluster.nodes[0].url))
            yield workers, cluster
        finally:
            for worker in workers:
                worker.close()


def put(api: str, key: str, value: bytes) -> float:
    request = urllib.request.Request(f"{api}/v1/groups/data/keys/{key}", value, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status in (200, 201, 204)
    return time.time()


def test_near_caches_follow_every_write_and_empty_without_their_node(
    workers_on_two_nodes: tuple[list[Worker], ShoalCluster],
) -> None:
    workers, cluster = workers_on_two_nodes
    apis = [node.url for node in cluster.nodes]
    for round_, api in enumerate([apis[1], apis[0], apis[1]]):  # the 2nd node, then their own
        key = f"near-{round_}"
        for worker in workers:
            value, hits = worker.ask(f"get {key}").rsplit(" ", 1)
            assert value == loaded_value(key).decode()
            assert int(hits) >= 1  # the second get was a near-cache hit
        for worker in workers:
            assert worker.ask(f"watch {key}") == "watching"
        written = put(api, key, f"new-{round_}".encode())
        for worker in workers:
            answer = worker.read()
            assert answer.startswith("dropped"), answer
            assert float(answer.split()[1]) - written < BOUND
        for worker in workers:
            assert worker.ask(f"get {key}").rsplit(" ", 1)[0] == f"new-{round_}"
    # A write through one worker's client: every other worker drops it too.
    key = "near-worker"
    for worker in workers:
        worker.ask(f"get {key}")
    for worker in workers[1:]:
        assert worker.ask(f"watch {key}") == "watching"
    client = SyncClient(apis[0])
    with client:
        client.set("data", key, b"from a worker")
        written = time.time()
    for worker in workers[1:]:
        answer = worker.read()
        assert answer.startswith("dropped"), answer
        assert float(answer.split()[1]) - written < BOUND
    # The node the workers follow goes away: each near cache empties and turns off.
    for worker in workers:
        worker.ask("get lost-1")
        assert worker.ask("state").split()[1] == "1"
    cluster.nodes[0].stop()
    deadline = time.monotonic() + 5
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [worker.ask("state") for worker in workers]
        if all(state == "0 0" for state in states):
            break
        time.sleep(0.05)
    assert states == ["0 0"] * 3


def test_near_cache_options_are_checked() -> None:
    for bad in ({"max_entries": 0}, {"max_bytes": -1}, {"ttl": 0}, {"wait": True}):
        with pytest.raises(ConfigError):
            NearCache(**bad)
    with pytest.raises(ConfigError):
        SyncClient("http://127.0.0.1:1", near_cache="yes")  # type: ignore[arg-type]


async def test_the_async_client_keeps_a_near_cache_too() -> None:
    """Client(near_cache=True): a second get is a near-cache hit; a write through the
    other node drops it; the client's own write drops it at once."""
    from shoal import Client
    from test_client import api_seed, cluster

    async with (
        cluster("http", 2) as nodes,
        Client(api_seed(nodes[0]), near_cache=True) as near_client,
    ):
        store = near_client.near_cache
        assert store is not None
        for _ in range(200):
            if store.enabled:
                break
            await asyncio.sleep(0.01)
        assert await near_client.get("g", "a1") == b"v:a1"
        assert await near_client.get("g", "a1") == b"v:a1"
        assert store.hits == 1
        async with Client(api_seed(nodes[1])) as other:
            await other.set("g", "a1", b"changed")
        for _ in range(100):
            if store.get("g", "a1") is None:
                break
            await asyncio.sleep(0.01)
        assert await near_client.get("g", "a1") == b"changed"
        await near_client.set("g", "a1", b"mine")
        assert store.get("g", "a1") is None
        assert await near_client.get("g", "a1") == b"mine"
