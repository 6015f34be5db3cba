"""A blocking get of a cached key: shoal.SyncClient against redis-py, in one run.

One ``shoal serve`` node (API and peer port on 127.0.0.1, the group of
``bench/server.py`` with every key loaded first) and the machine's Redis on
127.0.0.1:6379 (the same keys and 100-byte values, written first). One thread
reads the keys in a loop, round after round, alternating the candidates:

* ``SyncClient.get`` over TCP (the node's peer port, keep-alive);
* ``SyncClient.get`` with a near cache (a hit never leaves the process);
* redis-py ``Redis.get`` over TCP (its connection pool, keep-alive).

The table shows the median round in µs per get and the median of the per-round
ratios to redis-py. Every answer is checked.

Then the near cache's staleness: a second node joins, three worker processes
each follow the first node with a near cache holding a key, and the key is
written through the HTTP API of either node in turn (``PUT``); the time from the
write's return to the key's drop in the last of the three near caches, over
``--writes`` writes, is reported as p50/p99/max.

Run: ``python bench/clients.py [--rounds N] [--gets N] [--writes N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import shoal
from _common import (
    BenchError,
    child_process,
    environment,
    markdown_table,
    median,
    run,
    time_rounds,
)
from server import GROUP, value_of

KEYS = 1000


def _free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gets", type=int, default=5000, help="gets per round and candidate")
    parser.add_argument("--writes", type=int, default=200, help="writes of the staleness run")
    args = parser.parse_args()
    try:
        import redis
    except ImportError as exc:
        raise BenchError("redis-py is not installed (scripts/venv.sh dev)") from exc
    redis_client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        redis_client.ping()
    except redis.RedisError as exc:
        raise BenchError(f"no Redis on 127.0.0.1:6379: {exc}") from exc
    keys = [f"k{i}" for i in range(KEYS)]
    api, peer = _free_ports(2)
    api_url = f"http://127.0.0.1:{api}"
    cmd = [
        sys.executable, "-m", "shoal", "serve", "--api-host", "127.0.0.1",
        "--api-port", str(api), "--port", str(peer),
        "--peers", f"http://127.0.0.1:{peer}", "--group", f"{GROUP}=server:load_key",
    ]  # fmt: skip

    def ready() -> bool:
        with urllib.request.urlopen(f"{api_url}/healthz", timeout=1) as response:
            return bool(response.status == 200)

    with (
        tempfile.TemporaryDirectory() as tmp,
        child_process("shoal serve", cmd, Path(tmp) / "node.log", ready),
    ):
        client = shoal.SyncClient(api_url).start()
        near = shoal.SyncClient(api_url, near_cache=shoal.NearCache()).start()
        for key in keys:
            redis_client.set(f"bench:{key}", value_of(key))
            if client.get(GROUP, key) != value_of(key):
                raise BenchError(f"wrong value for {key}")
        deadline = time.monotonic() + 10
        while not (near.near_cache and near.near_cache.enabled) and time.monotonic() < deadline:
            time.sleep(0.01)
        for key in keys:
            if near.get(GROUP, key) != value_of(key):
                raise BenchError(f"wrong value for {key}")

        def shoal_get(key: str) -> bytes:
            return client.get(GROUP, key)

        def near_get(key: str) -> bytes:
            return near.get(GROUP, key)

        def redis_get(key: str) -> bytes | None:
            return redis_client.get(f"bench:{key}")  # type: ignore[return-value]

        candidates = {
            "SyncClient.get (TCP)": shoal_get,
            "SyncClient.get, near cache": near_get,
            "redis-py get (TCP)": redis_get,
        }
        order = [keys[i % KEYS] for i in range(args.gets)]
        times = time_rounds(candidates, order, args.rounds)
        ratios = {
            name: [t / b for t, b in zip(times[name], times["redis-py get (TCP)"], strict=True)]
            for name in candidates
        }
        for key in keys[:50]:
            if shoal_get(key) != value_of(key) or redis_get(key) != value_of(key):
                raise BenchError(f"wrong value for {key}")
        if near.near_cache is None or near.near_cache.hits < args.rounds * args.gets:
            raise BenchError("the near-cache candidate did not hit its near cache")
        client.close()
        near.close()
        redis_client.delete(*(f"bench:{key}" for key in keys))
    rows = [[name, f"{median(t):.2f}", f"{median(ratios[name]):.3f}x"] for name, t in times.items()]
    print(markdown_table(["candidate", "µs per get (median round)", "vs redis-py"], rows))
    print(f"\n{args.rounds} rounds x {args.gets} gets, {KEYS} keys of 100 bytes; {environment()}")
    lags = _staleness(args.writes)
    lags.sort()
    p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"\nnear-cache staleness, write's return to its drop in the last of 3 workers, "
        f"{len(lags)} writes: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
        f"max {lags[-1] * 1e3:.2f} ms"
    )
    return 0


def _worker(seed: str, conn: Any) -> None:
    """A worker process: hold each key it is sent in its near cache; report its drop."""
    client = shoal.SyncClient(seed, near_cache=shoal.NearCache()).start()
    store = client.near_cache
    assert store is not None
    deadline = time.monotonic() + 10
    while not store.enabled and time.monotonic() < deadline:
        time.sleep(0.01)
    while True:
        key = conn.recv()
        if key is None:
            break
        client.get(GROUP, key)
        if store.get(GROUP, key) is None:
            conn.send(None)
            continue
        conn.send("held")
        end = time.monotonic() + 5
        while store.get(GROUP, key) is not None and time.monotonic() < end:
            pass
        conn.send(time.time() if time.monotonic() < end else None)
    client.close()


def _staleness(writes: int) -> list[float]:
    """Seconds from each write's return to its key's drop in the last of 3 workers."""
    import multiprocessing

    api1, api2, peer1, peer2 = _free_ports(4)
    peers = f"http://127.0.0.1:{peer1},http://127.0.0.1:{peer2}"
    nodes = [(api1, peer1), (api2, peer2)]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for i, (api, peer) in enumerate(nodes):
            cmd = [
                sys.executable, "-m", "shoal", "serve", "--api-host", "127.0.0.1",
                "--api-port", str(api), "--port", str(peer), "--peers", peers,
                "--group", f"{GROUP}=server:load_key",
            ]  # fmt: skip

            def ready(api: int = api) -> bool:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=1) as r:
                    return bool(r.status == 200)

            stack.enter_context(child_process(f"node {i}", cmd, Path(tmp) / f"{i}.log", ready))
        pipes = []
        for _ in range(3):
            here, there = context.Pipe()
            proc = context.Process(target=_worker, args=(f"http://127.0.0.1:{api1}", there))
            proc.start()
            stack.callback(proc.join, 10)
            stack.callback(here.send, None)
            pipes.append(here)
        lags: list[float] = []
        for n in range(writes):
            key = f"k{n % KEYS}"
            for pipe in pipes:
                pipe.send(key)
            if any(pipe.recv() != "held" for pipe in pipes):
                raise BenchError(f"a worker did not hold {key}")
            api = nodes[n % 2][0]
            url = f"http://127.0.0.1:{api}/v1/groups/{GROUP}/keys/{key}"
            request = urllib.request.Request(url, f"w{n}".encode(), method="PUT")
            with urllib.request.urlopen(request, timeout=5):
                pass
            written = time.time()
            dropped = [pipe.recv() for pipe in pipes]
            if any(when is None for when in dropped):
                raise BenchError(f"a worker kept {key} for 5 s after its write")
            lags.append(max(dropped) - written)
    return lags


if __name__ == "__main__":
    run(main)
