"""gRPC against HTTP, in the same run: peer fetches, and client reads of a cluster.

Two measurements, each of hits only (every key is loaded before timing; the
script checks through ``/v1/stats`` that no key was loaded during the timed
runs):

* **Peer fetches.** Two owner nodes, one speaking gRPC on its peer port and
  one the groupcache HTTP protocol, each in its own process pinned to the same
  core, hold the same 10,000 keys (100-byte values). This process, pinned to
  another core, fetches random keys from each with the transport's own peer
  client (``GrpcPeerClient``, ``HttpPeerClient``), ``--concurrency``
  fetches in flight: what one node's read path gets from an owner.
* **Client reads.** Two 3-node clusters of ``shoal serve`` processes (one per
  transport, ``--hot-admission never``, so a node that does not own a key
  must ask its owner every time) hold the same keys. Reads of random keys go
  to (1) the HTTP API, as a plain client would send them: aiohttp, the nodes
  in turn, so two reads in three are forwarded to the owner; (2)
  ``shoal.Client`` on the HTTP cluster (the peer protocol, straight to the
  owner); (3) ``shoal.Client`` on the gRPC cluster (``shoal.v1.Cache``,
  straight to the owner).

Rounds rotate the order of the candidates; tables show the median round's
throughput and latency, and ratios are medians of per-round ratios. The
script exits 1 if an answer is wrong, a request fails, or a key was loaded
during the timed runs; never because something is slow.

Linux; every socket is on 127.0.0.1. Needs the ``dev`` extra (aiohttp, grpcio).

Run: ``python bench/grpc_transport.py [--quick] [--rounds N] [--duration S]
[--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import BenchError, child_process, environment, markdown_table, median, run
from shoal import NotFound
from shoal.cli.common import pick_free_ports

KEYS = 10_000
VALUE_SIZE = 100
GROUP = "bench"
READY_TIMEOUT = 60.0


def value_of(key: str) -> bytes:
    """The value of ``key``: ``VALUE_SIZE`` bytes derived from it."""
    return key.encode().ljust(VALUE_SIZE, b".")


KNOWN = frozenset(f"k{i}" for i in range(KEYS))


async def load_key(key: str) -> bytes:
    """The loader of the benchmark group: answers ``k0`` .. ``k9999``, NotFound otherwise."""
    if key not in KNOWN:
        raise NotFound(key)
    return value_of(key)


# -- processes ------------------------------------------------------------------------


def child_owner(transport: str, port: int, api_port: int) -> int:
    """An owner node: every key loaded, then its peer port (``transport``) and its HTTP
    API open; runs until SIGTERM."""
    from shoal import Node, NodeConfig
    from shoal.node import new_event_loop

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        config = NodeConfig(port=port, api_port=api_port, transport=transport)
        node = Node(config)
        group = node.group(GROUP, load_key)
        await asyncio.gather(*(group.get(f"k{i}") for i in range(KEYS)))
        async with node:
            await stop.wait()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run())
    return 0


def http_json(url: str, timeout: float = 5.0) -> object:
    """GET ``url`` and decode its JSON."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Proc:
    """A server process of the benchmark."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    api_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def started(name: str, cmd: Sequence[str], api_port: int, workdir: Path) -> Iterator[Proc]:
    """Run ``cmd`` until the block ends, once its HTTP API answers ``/healthz``."""
    log = workdir / f"{name}.log"

    def ready() -> bool:
        urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=2).close()
        return True

    with child_process(name, cmd, log, ready, ready_timeout=READY_TIMEOUT) as proc:
        yield Proc(name, proc, log, api_port)


def loader_calls(servers: Sequence[Proc]) -> int:
    """Loader calls of the benchmark group over ``servers`` (``local_loads`` and
    ``local_load_errors`` of ``GET /v1/stats``)."""
    total = 0
    for server in servers:
        document = http_json(f"http://127.0.0.1:{server.api_port}/v1/stats")
        assert isinstance(document, dict)
        stats = document["groups"][GROUP]
        total += int(stats["local_loads"]) + int(stats["local_load_errors"])
    return total


def pinning() -> tuple[list[str], str]:
    """A taskset prefix for the servers (this process moves to another CPU), and a note."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], "not pinned (needs taskset and 2 CPUs)"
    os.sched_setaffinity(0, {cpus[1]})
    return (
        ["taskset", "-c", str(cpus[0])],
        f"servers pinned to CPU {cpus[0]}, the clients (this process) to CPU {cpus[1]}",
    )


# -- measuring ------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of one candidate."""

    rate: float
    p50_ms: float
    p99_ms: float


@dataclass
class Candidate:
    """Something that reads a key, and its runs."""

    name: str
    fetch: Callable[[str], Awaitable[bytes]]
    runs: list[Run] = field(default_factory=list)

    def middle(self) -> Run:
        return sorted(self.runs, key=lambda run: run.rate)[len(self.runs) // 2]


async def measure(candidate: Candidate, duration: float, concurrency: int, seed: int) -> Run:
    """``concurrency`` workers read random keys for ``duration`` seconds; every answer
    is checked."""
    latencies: list[float] = []
    wrong: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    fetch = candidate.fetch

    async def worker(rng: random.Random) -> None:
        clock = time.perf_counter
        while loop.time() < end:
            key = f"k{rng.randrange(KEYS)}"
            start = clock()
            try:
                value = await fetch(key)
            except Exception as exc:
                wrong.append(f"{key}: {exc!r}")
                return
            latencies.append(clock() - start)
            if value != value_of(key):
                wrong.append(f"{key}: {value[:40]!r}")
                return

    began = time.perf_counter()
    await asyncio.gather(*(worker(random.Random(seed + i)) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    if wrong:
        raise BenchError(f"{candidate.name}: {len(wrong)} wrong answers, e.g. {wrong[:3]}")
    if not latencies:
        raise BenchError(f"{candidate.name} answered nothing")
    latencies.sort()
    return Run(
        rate=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1e3,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    )


async def rounds_of(
    candidates: Sequence[Candidate], rounds: int, duration: float, concurrency: int
) -> None:
    """A short warm-up of each candidate, then ``rounds`` rounds in rotating order."""
    for i, candidate in enumerate(candidates):
        await measure(candidate, min(1.0, duration), concurrency, seed=1000 + i)
    for r in range(rounds):
        shift = r % len(candidates)
        for candidate in [*candidates[shift:], *candidates[:shift]]:
            candidate.runs.append(await measure(candidate, duration, concurrency, seed=r))


def ratio_to(candidate: Candidate, base: Candidate) -> float:
    """The median of the per-round throughput ratios."""
    return median([a.rate / b.rate for a, b in zip(candidate.runs, base.runs, strict=True)])


def table(candidates: Sequence[Candidate], base: Candidate, unit: str) -> str:
    rows = []
    for candidate in candidates:
        mid = candidate.middle()
        rows.append(
            [
                candidate.name,
                f"{mid.rate:,.0f}",
                f"{mid.p50_ms:.2f}",
                f"{mid.p99_ms:.2f}",
                f"{ratio_to(candidate, base):.2f}x",
            ]
        )
    headers = [
        "candidate",
        f"{unit}/s",
        "p50 ms",
        "p99 ms",
        f"x {base.name.split(' (')[0]}",
    ]
    return markdown_table(headers, rows)


# -- the two measurements -------------------------------------------------------------


async def peer_fetches(
    owners: dict[str, Proc], ports: dict[str, int], args: argparse.Namespace
) -> list[Candidate]:
    """The transports' peer clients against the owner nodes."""
    from shoal.transport.grpc import GrpcTransport
    from shoal.transport.http import HttpTransport

    http = HttpTransport().client(f"http://127.0.0.1:{ports['http']}")
    grpc_ = GrpcTransport().client(f"http://127.0.0.1:{ports['grpc']}")
    try:

        async def over_http(key: str) -> bytes:
            return (await http.get(GROUP, key)).value

        async def over_grpc(key: str) -> bytes:
            return (await grpc_.get(GROUP, key)).value

        candidates = [
            Candidate("HTTP (groupcache protocol, HttpPeerClient)", over_http),
            Candidate("gRPC (shoal.v1.Peer, GrpcPeerClient)", over_grpc),
        ]
        await rounds_of(candidates, args.rounds, args.duration, args.concurrency)
        if grpc_.channels_open != 1:
            raise BenchError(f"the gRPC client opened {grpc_.channels_open} channels, not 1")
        return candidates
    finally:
        await http.aclose()
        await grpc_.aclose()


async def client_reads(
    http_nodes: Sequence[Proc], grpc_nodes: Sequence[Proc], args: argparse.Namespace
) -> list[Candidate]:
    """A plain HTTP API client against the smart client over each transport."""
    import aiohttp

    import shoal

    api = [f"http://127.0.0.1:{node.api_port}/api?key=" for node in http_nodes]
    turn = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        shoal.Client(f"http://127.0.0.1:{http_nodes[0].api_port}") as over_http,
        shoal.Client(f"http://127.0.0.1:{grpc_nodes[0].api_port}") as over_grpc,
    ):
        if (over_http.transport, over_grpc.transport) != ("http", "grpc"):
            raise BenchError(f"clients speak {over_http.transport}, {over_grpc.transport}")
        # Every key loaded by its owner before timing.
        keys = [f"k{i}" for i in range(KEYS)]
        for client in (over_http, over_grpc):
            for i in range(0, KEYS, 1000):
                found = await client.get_many(GROUP, keys[i : i + 1000])
                if len(found) != 1000:
                    raise BenchError(f"warming: {1000 - len(found)} keys missing")

        async def plain(key: str) -> bytes:
            nonlocal turn
            turn += 1
            async with session.get(api[turn % 3] + key) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise BenchError(f"GET /api?key={key}: {resp.status} {body[:200]!r}")
                return body

        async def smart_http(key: str) -> bytes:
            return await over_http.get(GROUP, key)

        async def smart_grpc(key: str) -> bytes:
            return await over_grpc.get(GROUP, key)

        candidates = [
            Candidate("HTTP API (aiohttp client, nodes in turn)", plain),
            Candidate("shoal.Client over HTTP (peer protocol to the owner)", smart_http),
            Candidate("shoal.Client over gRPC (shoal.v1.Cache on the owner)", smart_grpc),
        ]
        await rounds_of(candidates, args.rounds, args.duration, args.concurrency)
        return candidates


# -- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per candidate")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 5)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight (default 64)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _, transport, port, api_port = args.child
        return child_owner(transport, int(port), int(api_port))
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    pin, pin_note = pinning()
    from shoal.node import new_event_loop

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-bench-")))
        python = [*pin, sys.executable]

        # Peer fetches: one owner per transport.
        p_http, p_grpc, a_http, a_grpc = pick_free_ports(4)
        owners = {
            "http": stack.enter_context(
                started(
                    "owner-http",
                    [*python, __file__, "--child", "owner", "http", str(p_http), str(a_http)],
                    a_http,
                    workdir,
                )
            ),
            "grpc": stack.enter_context(
                started(
                    "owner-grpc",
                    [*python, __file__, "--child", "owner", "grpc", str(p_grpc), str(a_grpc)],
                    a_grpc,
                    workdir,
                )
            ),
        }
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            fetches = runner.run(peer_fetches(owners, {"http": p_http, "grpc": p_grpc}, args))
        calls = loader_calls(list(owners.values()))
        if calls != 2 * KEYS:
            raise BenchError(f"the owners called their loader {calls} times, not {2 * KEYS}")

        # Client reads: one 3-node cluster per transport.
        clusters: dict[str, list[Proc]] = {}
        for transport in ("http", "grpc"):
            ports = pick_free_ports(6)
            peers = ",".join(f"http://127.0.0.1:{p}" for p in ports[:3])
            clusters[transport] = [
                stack.enter_context(
                    started(
                        f"{transport}-node{i}",
                        [
                            *python,
                            *("-m", "shoal.cli", "serve", "--log-level", "warning"),
                            *("--transport", transport, "--hot-admission", "never"),
                            *("--group", f"{GROUP}=grpc_transport:load_key"),
                            *("--port", str(ports[i]), "--peers", peers),
                            *("--api-port", str(ports[3 + i])),
                        ],
                        ports[3 + i],
                        workdir,
                    )
                )
                for i in range(3)
            ]
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            reads = runner.run(client_reads(clusters["http"], clusters["grpc"], args))
        all_nodes = clusters["http"] + clusters["grpc"]
        # Each cluster's owners loaded each key once (while warming), never again.
        calls = loader_calls(all_nodes)
        if calls != 2 * KEYS:
            raise BenchError(f"the clusters called their loader {calls} times, not {2 * KEYS}")
        for proc in [*owners.values(), *all_nodes]:
            if proc.proc.poll() is not None:
                raise BenchError(f"{proc.name} exited during the run:\n{proc.output()}")

    print(
        f"gRPC vs HTTP, hits over {KEYS:,} keys ({VALUE_SIZE}-byte values), "
        f"{args.concurrency} requests in flight, {args.rounds} round(s) of "
        f"{args.duration:g} s per candidate, uvloop; {pin_note}\n"
    )
    print("Peer fetches from one owner node (what a node's read path gets from a peer):\n")
    print(table(fetches, fetches[0], "fetches"))
    print(
        "\nClient reads of a 3-node cluster (--hot-admission never: a node that does not "
        "own a key asks its owner):\n"
    )
    print(table(reads, reads[0], "reads"))
    peer_ratio = ratio_to(fetches[1], fetches[0])
    print(
        f"\ngRPC peer fetches: {peer_ratio:.2f}x the HTTP transport's; smart client over gRPC: "
        f"{ratio_to(reads[2], reads[0]):.2f}x, over HTTP: {ratio_to(reads[1], reads[0]):.2f}x "
        "the HTTP API's reads."
    )
    command = "python bench/grpc_transport.py" + (" --quick" if args.quick else "")
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
