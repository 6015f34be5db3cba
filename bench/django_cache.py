"""Django ``cache.get`` of a cached key: ShoalCache against django-redis, in one run.

One ``shoal serve`` node on 127.0.0.1 serving the group ``django`` without a
loader, and the machine's Redis on 127.0.0.1:6379. Both Django caches get the
same keys and 100-character string values first (``cache.set``), then one
thread reads them back with ``cache.get`` in a loop, round after round,
alternating the candidates:

* ShoalCache without a near cache, the node over TCP (``SyncClient`` to its
  peer port, keep-alive);
* ShoalCache without a near cache, the node over its Unix socket
  (``--api-unix``), when the node has one;
* ShoalCache with a near cache (``OPTIONS["near_cache"]``), when the client has one;
* django-redis ``RedisCache`` over TCP (its connection pool, keep-alive).

The table shows the median round in µs per get and the median of the per-round
ratios of django-redis's time to each candidate's (higher is faster). Every
answer is checked. Candidates this build of shoal cannot run are listed as such.

Run: ``python bench/django_cache.py [--rounds N] [--gets N]``.
"""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
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

KEYS = 1000
REDIS = "django-redis get (TCP)"


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


def _value(key: str) -> str:
    return (key * 100)[:100]


def _serve_has(flag: str) -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--help"], capture_output=True, text=True
    ).stdout
    return flag in help_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gets", type=int, default=5000, help="gets per round and candidate")
    args = parser.parse_args()
    try:
        import django
        import django_redis  # noqa: F401
        import redis
        from django.conf import settings
    except ImportError as exc:
        raise BenchError("Django and django-redis are not installed (scripts/venv.sh dev)") from exc
    try:
        redis.Redis(host="127.0.0.1", port=6379).ping()
    except redis.RedisError as exc:
        raise BenchError(f"no Redis on 127.0.0.1:6379: {exc}") from exc
    unix = _serve_has("--api-unix")
    near = "near_cache" in inspect.signature(shoal.SyncClient).parameters
    api, peer = _free_ports(2)
    api_url = f"http://127.0.0.1:{api}"
    with tempfile.TemporaryDirectory() as tmp:
        socket_path = Path(tmp) / "api.sock"
        cmd = [
            sys.executable, "-m", "shoal", "serve", "--api-host", "127.0.0.1",
            "--api-port", str(api), "--port", str(peer),
            "--peers", f"http://127.0.0.1:{peer}", "--group", "django",
            *(["--api-unix", str(socket_path)] if unix else []),
        ]  # fmt: skip

        def ready() -> bool:
            with urllib.request.urlopen(f"{api_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)

        with child_process("shoal serve", cmd, Path(tmp) / "node.log", ready):
            backend = "shoal.contrib.django.ShoalCache"
            caches: dict[str, dict[str, Any]] = {
                "ShoalCache get (TCP)": {"BACKEND": backend, "LOCATION": api_url},
                REDIS: {
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": "redis://127.0.0.1:6379/0",
                    "KEY_PREFIX": "shoal-bench",
                },
            }
            if unix:
                caches["ShoalCache get (Unix socket)"] = {
                    "BACKEND": backend, "LOCATION": f"unix:{socket_path}",
                }  # fmt: skip
            if near:
                caches["ShoalCache get, near cache hit"] = {
                    "BACKEND": backend, "LOCATION": api_url,
                    "OPTIONS": {"near_cache": {"max_entries": 10_000}},
                }  # fmt: skip
            settings.configure(CACHES={"default": caches[REDIS], **caches})
            django.setup()
            from django.core.cache import caches as django_caches

            keys = [f"k{i}" for i in range(KEYS)]
            gets: dict[str, Callable[[str], Any]] = {}
            for name in caches:
                cache = django_caches[name]
                for key in keys:
                    cache.set(key, _value(key), None)
                for key in keys:
                    if cache.get(key) != _value(key):
                        raise BenchError(f"{name}: wrong value for {key}")
                gets[name] = cache.get
            order = [keys[i % KEYS] for i in range(args.gets)]
            times = time_rounds(gets, order, args.rounds)
            ratios = {
                name: [b / t for t, b in zip(times[name], times[REDIS], strict=True)]
                for name in gets
            }
            for name, get in gets.items():
                for key in keys[:50]:
                    if get(key) != _value(key):
                        raise BenchError(f"{name}: wrong value for {key}")
            django_caches[REDIS].delete_many(keys)
    rows = [[name, f"{median(times[name]):.1f}", f"{median(ratios[name]):.2f}x"] for name in gets]
    if not unix:
        rows.append(["ShoalCache get (Unix socket)", "n/a: no `shoal serve --api-unix`", ""])
    if not near:
        rows.append(["ShoalCache get, near cache hit", "n/a: no near cache in SyncClient", ""])
    print(markdown_table(["candidate", "µs per get (median round)", "speed vs django-redis"], rows))
    runs = f"{args.rounds} rounds x {args.gets} gets, {KEYS} keys of 100 characters"
    print(f"\n{runs}; {environment()}")
    return 0


if __name__ == "__main__":
    run(main)
