"""A blocking get of a cached key: shoal.SyncClient against redis-py, in one run.

One ``shoal serve`` node (API and peer port on 127.0.0.1, the group of
``bench/server.py`` with every key loaded first) and the machine's Redis on
127.0.0.1:6379 (the same keys and 100-byte values, written first). One thread
reads the keys in a loop, round after round, alternating the candidates:

* ``SyncClient.get`` over TCP (the node's peer port, keep-alive);
* redis-py ``Redis.get`` over TCP (its connection pool, keep-alive).

The table shows the median round in µs per get and the median of the per-round
ratios to redis-py. Every answer is checked.

Run: ``python bench/clients.py [--rounds N] [--gets N]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import shoal
from _common import BenchError, child_process, environment, markdown_table, median, run
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
        for key in keys:
            redis_client.set(f"bench:{key}", value_of(key))
            if client.get(GROUP, key) != value_of(key):
                raise BenchError(f"wrong value for {key}")

        def shoal_get(key: str) -> bytes:
            return client.get(GROUP, key)

        def redis_get(key: str) -> bytes | None:
            return redis_client.get(f"bench:{key}")  # type: ignore[return-value]

        candidates = {"SyncClient.get (TCP)": shoal_get, "redis-py get (TCP)": redis_get}
        times: dict[str, list[float]] = {name: [] for name in candidates}
        ratios: list[float] = []
        order = [keys[i % KEYS] for i in range(args.gets)]
        gc.disable()
        try:
            for _ in range(args.rounds):
                for name, get in candidates.items():
                    start = time.perf_counter()
                    for key in order:
                        get(key)
                    times[name].append((time.perf_counter() - start) / len(order) * 1e6)
                ratios.append(times["SyncClient.get (TCP)"][-1] / times["redis-py get (TCP)"][-1])
        finally:
            gc.enable()
        for key in keys[:50]:
            if shoal_get(key) != value_of(key) or redis_get(key) != value_of(key):
                raise BenchError(f"wrong value for {key}")
        client.close()
        redis_client.delete(*(f"bench:{key}" for key in keys))
    rows = [
        [name, f"{median(t):.1f}", f"{median(ratios):.2f}x" if "Sync" in name else "1.00x"]
        for name, t in times.items()
    ]
    print(markdown_table(["candidate", "µs per get (median round)", "vs redis-py"], rows))
    print(f"\n{args.rounds} rounds x {args.gets} gets, {KEYS} keys of 100 bytes; {environment()}")
    return 0


if __name__ == "__main__":
    run(main)
