"""incr throughput: three ``shoal serve`` nodes taking increments at once, against Redis.

Three ``shoal serve`` processes on 127.0.0.1 with static ``--peers`` and two groups
without a loader, ``part`` (partitioned) and ``repl`` (replicated). The client
(aiohttp, keep-alive connections, in this script) sends ``POST
/v1/groups/{g}/keys/{k}?op=incr`` to all three nodes at once, ``--concurrency``
requests in flight per node, for ``--duration`` seconds: so two thirds of the
increments enter a node that does not own the key and travel on to its owner.
Two key sets: one counter every request hits (all contention at one owner), and
1,000 counters spread over the ring. At the end every counter is read back and
must equal the number of increments answered (no increment lost).

Baseline in the same run: Redis ``INCR`` through redis-py's asyncio client on
127.0.0.1:6379, the same total concurrency (3 x ``--concurrency``) and the same
key sets (a database of its own is flushed before and after, ``--redis-db``).

Run: ``python bench/incr.py [--quick] [--duration S] [--concurrency N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from _common import BenchError, environment, markdown_table, ratio, run
from writes import local_cluster

CONFIG = """\
[groups.part]

[groups.repl]
mode = "replicated"
"""


async def drive(
    duration: float, workers: int, step: Callable[[int], Awaitable[None]]
) -> tuple[int, float]:
    """Run ``workers`` loops of ``step(worker)`` for ``duration`` s; (steps, seconds)."""
    done = 0
    deadline = time.perf_counter() + duration

    async def worker(i: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await step(i)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return done, time.perf_counter() - start


async def shoal_rate(
    apis: list[str], group: str, keys: list[str], duration: float, concurrency: int
) -> tuple[float, int]:
    counts = dict.fromkeys(keys, 0)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for key in keys:
            async with session.put(f"{apis[0]}/v1/groups/{group}/keys/{key}", data=b"0") as r:
                if r.status != 204:
                    raise BenchError(f"seeding {key}: {r.status}")
        turn = [0]

        async def step(i: int) -> None:
            key = keys[turn[0] % len(keys)]
            turn[0] += 1
            url = f"{apis[i % len(apis)]}/v1/groups/{group}/keys/{key}?op=incr"
            async with session.post(url) as answer:
                if answer.status != 200:
                    raise BenchError(f"incr {key}: {answer.status} {await answer.text()}")
                await answer.read()
            counts[key] += 1

        done, seconds = await drive(duration, concurrency * len(apis), step)
        await asyncio.sleep(0.5)  # a replicated group's last pushes
        for key, expected in counts.items():
            for api in apis:
                async with session.get(f"{api}/v1/groups/{group}/keys/{key}") as answer:
                    got = int(await answer.read())
                if got != expected:
                    raise BenchError(f"{group}/{key} on {api}: {got}, expected {expected}")
    return done / seconds, done


async def redis_rate(db: int, keys: list[str], duration: float, workers: int) -> tuple[float, int]:
    client = aioredis.Redis(host="127.0.0.1", port=6379, db=db, max_connections=workers)
    try:
        await client.flushdb()
        turn = [0]

        async def step(i: int) -> None:
            key = keys[turn[0] % len(keys)]
            turn[0] += 1
            await client.incr(key)

        done, seconds = await drive(duration, workers, step)
        total = sum(int(v) for v in await client.mget(keys) if v is not None)
        if total != done:
            raise BenchError(f"redis counted {total}, expected {done}")
        await client.flushdb()
    finally:
        await client.aclose()
    return done / seconds, done


async def measure(args: argparse.Namespace, workdir: Path) -> int:
    config = workdir / "incr.toml"
    config.write_text(CONFIG)
    sets = {"1 counter": ["hot"], "1,000 counters": [f"c{i}" for i in range(1000)]}
    rows = []
    with contextlib.ExitStack() as stack:
        cluster = local_cluster("incr", ["--config", str(config)], workdir, stack)
        for label, keys in sets.items():
            base, _ = await redis_rate(args.redis_db, keys, args.duration, 3 * args.concurrency)
            for group in ("part", "repl"):
                rate, done = await shoal_rate(
                    cluster.apis, group, keys, args.duration, args.concurrency
                )
                rows.append([label, group, f"{rate:,.0f}", f"{base:,.0f}", ratio(rate, base)])
                print(f"{label} {group}: {done} increments, all counted", file=sys.stderr)
    print(
        markdown_table(
            ["keys", "group", "shoal incr/s (3 nodes)", "Redis INCR/s", "shoal / Redis"], rows
        )
    )
    print(
        f"\n{args.duration:g} s per row, {args.concurrency} in flight per node "
        f"({3 * args.concurrency} for Redis); {environment()}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per row")
    parser.add_argument("--duration", type=float, help="seconds per row (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="in flight per node")
    parser.add_argument("--redis-db", type=int, default=15, help="the Redis database to use")
    args = parser.parse_args()
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    with tempfile.TemporaryDirectory(prefix="shoal-incr-") as tmp:
        return asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    run(main)
