"""Cache stampede: 10,000 concurrent gets of one cold key with a slow loader.

Each candidate starts cold, then ``asyncio.gather`` runs 10,000 gets of the same
key at once; the loader sleeps 50 ms (a slow database query) and counts its
calls. Candidates:

* ``shoal Group.get``: the read-through group; singleflight runs one load and
  every waiter shares its result;
* ``shoal @group.cached``: shoal's decorator on the same slow function;
* naive read-through over ``cachetools.LRUCache`` (check the cache; on a miss
  await the loader and store the value), the usual hand-written pattern;
* an aiocache-style ``@cached`` decorator (async in-memory backend, key from the
  function and its arguments, get then call then set), written out here so the
  benchmark needs no aiocache.

Rounds alternate the candidates; each round uses fresh caches and a fresh
loader, after a full garbage collection (the collector stays on while timing:
10,000 waiting tasks make it run several times, as in a real server). The wall
time is from the first get to the last answer. The script exits 1 if shoal's
loader ran anything but exactly once per round, or if any get returned a wrong
value.

Run: ``python bench/stampede.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cachetools

from _common import BenchError, environment, loop_factories, markdown_table, median, run
from shoal import Group, GroupConfig

CONCURRENCY = 10_000
DELAY = 0.05
KEY = "user:42"
VALUE = b"x" * 100

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Get = Callable[[str], Awaitable[bytes]]


class SlowLoader:
    """An async loader that takes ``delay`` seconds and counts its calls."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    async def __call__(self, key: str) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return VALUE


# -- the candidates: each builds a fresh get function around a fresh loader -----------


def shoal_group(loader: SlowLoader) -> Get:
    group: Group[bytes] = Group(GroupConfig(name="stampede"), loader)
    return group.get


def shoal_decorator(loader: SlowLoader) -> Get:
    group: Group[bytes] = Group(GroupConfig(name="stampede"))

    @group.cached(key=lambda key: key)
    async def fetch(key: str) -> bytes:
        return await loader(key)

    return fetch


def naive_read_through(loader: SlowLoader) -> Get:
    cache = cachetools.LRUCache[str, bytes](maxsize=1024)

    async def get(key: str) -> bytes:
        value = cache.get(key)
        if value is None:
            value = await loader(key)
            cache[key] = value
        return value

    return get


class MemoryBackend:
    """An aiocache-style in-memory backend: a dict behind async get and set."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    async def get(self, key: str) -> Any:
        return self._data.get(key)

    async def set(self, key: str, value: Any) -> None:
        self._data[key] = value


def aiocache_style_cached(cache: MemoryBackend) -> Callable[[F], F]:
    """What aiocache's ``@cached`` does: look up, on a miss call and store; no locking."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = f"{fn.__module__}{fn.__name__}{args}{kwargs}"
            value = await cache.get(key)
            if value is not None:
                return value
            result = await fn(*args, **kwargs)
            await cache.set(key, result)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def aiocache_style(loader: SlowLoader) -> Get:
    @aiocache_style_cached(MemoryBackend())
    async def fetch(key: str) -> bytes:
        return await loader(key)

    return fetch


CANDIDATES: dict[str, Callable[[SlowLoader], Get]] = {
    "shoal Group.get": shoal_group,
    "shoal @group.cached": shoal_decorator,
    "naive read-through (cachetools.LRUCache)": naive_read_through,
    "aiocache-style @cached": aiocache_style,
}
SHOAL = ("shoal Group.get", "shoal @group.cached")


@dataclass
class Result:
    """Loader calls and wall times of one candidate on one event loop, per round."""

    calls: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)


async def stampede(make: Callable[[SlowLoader], Get], delay: float) -> tuple[int, float]:
    """Run the concurrent gets once; return (loader calls, wall seconds)."""
    loader = SlowLoader(delay)
    get = make(loader)
    start = time.perf_counter()
    values = await asyncio.gather(*(get(KEY) for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - start
    if len(values) != CONCURRENCY or any(v != VALUE for v in values):
        raise BenchError("a get returned a wrong value")
    return loader.calls, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (3 rounds)")
    parser.add_argument("--rounds", type=int, help="rounds (default 10, or 3 with --quick)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 10)

    results: dict[tuple[str, str], Result] = {}
    for loop_name, factory in loop_factories().items():
        loop = factory()
        try:
            names = list(CANDIDATES)
            for r in range(rounds):
                shift = r % len(names)
                for name in names[shift:] + names[:shift]:
                    gc.collect()  # each round starts without the previous round's garbage
                    calls, wall = loop.run_until_complete(stampede(CANDIDATES[name], DELAY))
                    result = results.setdefault((name, loop_name), Result())
                    result.calls.append(calls)
                    result.walls.append(wall)
        finally:
            loop.close()

    rows = []
    for (name, loop_name), result in results.items():
        shoal_wall = median(results[SHOAL[0], loop_name].walls)
        lo, hi = min(result.calls), max(result.calls)
        rows.append(
            [
                name,
                loop_name,
                f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}",
                f"{median(result.walls) * 1e3:.0f}",
                f"{min(result.walls) * 1e3:.0f}",
                f"{median(result.walls) / shoal_wall:.2f}x",
            ]
        )
    print(
        f"Stampede: {CONCURRENCY:,} concurrent gets of one cold key, loader takes "
        f"{DELAY * 1e3:.0f} ms, {rounds} rounds per event loop (wall: median and best)\n"
    )
    print(
        markdown_table(
            [
                "implementation",
                "event loop",
                "loader calls",
                "wall ms (median)",
                "wall ms (best)",
                "wall x shoal Group.get",
            ],
            rows,
            "llrrrr",
        )
    )
    command = "python bench/stampede.py" + (" --quick" if args.quick else "")
    print(f"\n{environment()}; command: `{command}`")

    for (name, loop_name), result in results.items():
        if name in SHOAL and set(result.calls) != {1}:
            raise BenchError(
                f"{name} on {loop_name} called the loader {result.calls} times per round, not once"
            )
    return 0


if __name__ == "__main__":
    run(main)
