"""Membership: how fast a crash reaches every ring, what clients see meanwhile, what
moves, and what gossip costs.

Five ``shoal serve`` processes on 127.0.0.1 form a cluster, for each membership
source: etcd (a local etcd server, lease TTL 3 s, the default) and gossip with
the ``local`` and the ``lan`` timer profiles (the ``lan`` one is the default).
Each round starts a fresh cluster, puts it under steady load (8 clients asking
every live node's HTTP API for keys ``k0`` .. ``k1999``, loaded by
``server:load_key``), SIGKILLs one node, and polls every survivor's
``GET /v1/cluster`` every 10 ms:

* **failover**: seconds from the SIGKILL until the last survivor's ring no
  longer holds the dead node (median and worst of the rounds);
* **errors**: client requests to live nodes that failed, from the start of the
  load until 1 s after every ring was updated (the target is 0: a key whose
  owner is dead is loaded locally, groupcache's rule; the script exits 1
  otherwise);
* **keys moved**: the share of 100,000 keys whose owner changed when the node
  left (computed from the two rings), against the ideal 1/N
  (``bench/ring_balance.py`` measures this for 3 to 100 nodes and every flavour);
* **gossip traffic**: bytes and datagrams each node sends per second in a
  quiet 5-node cluster, from the nodes' own counters (``GET /v1/cluster``).

Needs the ``etcd`` binary (Debian package ``etcd-server``; the etcd rows are
skipped without it) and the ``dev`` extra (aiohttp). Every socket is on
127.0.0.1; every process started is stopped when the script ends.

Run: ``python bench/membership.py [--quick] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from _common import BenchError, environment, markdown_table, median, run, spawn, stop
from server import value_of
from shoal.cli.common import pick_free_ports
from shoal.cli.localetcd import LocalEtcd, etcd_binary
from shoal.config import GossipConfig
from shoal.ring import Ring

NODES = 5
KEYS = 2000
MOVED_KEYS = 100_000
CLIENTS = 8
READY_TIMEOUT = 60.0
POLL = 0.01


@dataclass(eq=False)  # hashed by identity: one object per process
class Proc:
    """One ``shoal serve`` process."""

    index: int
    api_port: int
    peer_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class Round:
    """What one failover round measured."""

    failover: float
    requests: int
    failures: list[str] = field(default_factory=list)
    moved: float = 0.0


def serve_args(source: str, peer_port: int, seed: int, etcd: str | None, cluster: str) -> list[str]:
    """The membership flags of one node."""
    if source == "etcd":
        assert etcd is not None
        return ["--etcd", etcd, "--cluster", cluster]
    timers = source.removeprefix("gossip-")
    return [
        "--gossip-port",
        str(peer_port),
        "--join",
        f"127.0.0.1:{seed}",
        "--gossip-timers",
        timers,
    ]


@contextlib.contextmanager
def cluster(source: str, etcd: str | None, workdir: Path, name: str) -> Iterator[list[Proc]]:
    """``NODES`` ``shoal serve`` processes of one cluster, stopped when the block ends."""
    ports = pick_free_ports(2 * NODES)
    procs: list[Proc] = []
    try:
        for i in range(NODES):
            api_port, peer_port = ports[i], ports[NODES + i]
            log = workdir / f"{name}-{i}.log"
            args = [
                sys.executable, "-m", "shoal", "serve",
                "--group", "bench=server:load_key", "--log-level", "warning",
                "--api-port", str(api_port), "--port", str(peer_port),
                *serve_args(source, peer_port, ports[NODES], etcd, name),
            ]  # fmt: skip
            procs.append(Proc(i, api_port, peer_port, spawn(args, log), log))
        yield procs
    finally:
        stop(p.proc for p in procs)


async def view(session: aiohttp.ClientSession, node: Proc) -> dict[str, Any]:
    """``GET /v1/cluster`` of a node."""
    async with session.get(f"{node.api}/v1/cluster") as response:
        data: dict[str, Any] = await response.json()
        return data


async def members(session: aiohttp.ClientSession, node: Proc) -> set[str]:
    """The URLs on a node's ring."""
    return {m["url"] for m in (await view(session, node))["members"]}


async def converge(session: aiohttp.ClientSession, nodes: Sequence[Proc]) -> None:
    """Wait until every node's ring holds every node."""
    expected = {n.url for n in nodes}
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            views = [await members(session, n) for n in nodes]
            if all(v == expected for v in views):
                return
        except (aiohttp.ClientError, OSError):
            pass
        for n in nodes:
            if n.proc.poll() is not None:
                raise BenchError(f"node {n.index} exited:\n{n.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"the cluster did not converge within {READY_TIMEOUT}s")
        await asyncio.sleep(0.05)


async def failover_round(
    session: aiohttp.ClientSession, nodes: list[Proc], rng: random.Random
) -> Round:
    """Load every live node, SIGKILL one, time until every survivor's ring drops it."""
    victim = rng.choice(nodes[1:])  # not the gossip seed
    survivors = [n for n in nodes if n is not victim]
    targets = list(nodes)
    inflight: dict[int, int] = dict.fromkeys(range(NODES), 0)
    drained = asyncio.Event()  # no request to the victim in flight any more
    failures: list[str] = []
    requests = 0
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        nonlocal requests
        local = random.Random(worker)
        while not stop.is_set():
            node = local.choice(targets)
            key = f"k{local.randrange(KEYS)}"
            inflight[node.index] += 1
            try:
                async with session.get(f"{node.api}/api", params={"key": key}) as response:
                    body = await response.read()
                    if response.status != 200 or body != value_of(key):
                        failures.append(f"node {node.index} {key}: {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(f"node {node.index} {key}: {exc!r}")
            finally:
                inflight[node.index] -= 1
                if node is victim and not inflight[node.index] and victim not in targets:
                    drained.set()
            requests += 1

    clients = [asyncio.create_task(client(w)) for w in range(CLIENTS)]
    try:
        await asyncio.sleep(1.0)
        targets.remove(victim)  # clients stop asking it, then it dies
        if inflight[victim.index]:
            await drained.wait()
        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        pending = set(survivors)
        while pending:
            if time.monotonic() - killed > 60:
                raise BenchError("a survivor kept the dead node on its ring for 60 s")
            for node in list(pending):
                if victim.url not in await members(session, node):
                    pending.discard(node)
            await asyncio.sleep(POLL)
        failover = time.monotonic() - killed
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    before = Ring.build(sorted(n.url for n in nodes))
    after = before.with_nodes(sorted(n.url for n in survivors))
    keys = [f"user:{i}" for i in range(MOVED_KEYS)]
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    if any(before.owner(k) != victim.url for k in moved):
        raise BenchError("a key moved that the dead node did not own")
    return Round(failover, requests, failures, len(moved) / len(keys))


async def traffic(
    session: aiohttp.ClientSession, nodes: list[Proc], seconds: float
) -> tuple[float, float]:
    """Mean bytes and datagrams each node sends per second, over ``seconds``."""
    await asyncio.sleep(2.0)  # past the join traffic
    first = [(await view(session, n))["membership"] for n in nodes]
    await asyncio.sleep(seconds)
    last = [(await view(session, n))["membership"] for n in nodes]
    sent = [b["bytes_sent"] - a["bytes_sent"] for a, b in zip(first, last, strict=True)]
    packets = [b["packets_sent"] - a["packets_sent"] for a, b in zip(first, last, strict=True)]
    return sum(sent) / len(nodes) / seconds, sum(packets) / len(nodes) / seconds


async def measure(
    source: str, rounds: int, etcd: str | None, workdir: Path, traffic_seconds: float
) -> tuple[list[Round], tuple[float, float] | None]:
    """Every round of one membership source; the gossip traffic of its first cluster."""
    results: list[Round] = []
    cost = None
    rng = random.Random(42)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for r in range(rounds):
            name = f"{source}-{r}"
            with cluster(source, etcd, workdir, name) as nodes:
                await converge(session, nodes)
                if source.startswith("gossip") and r == 0:
                    cost = await traffic(session, nodes, traffic_seconds)
                results.append(await failover_round(session, nodes, rng))
            print(f"  {source} round {r + 1}: ring updated everywhere in "
                  f"{results[-1].failover:.2f} s, {results[-1].requests} requests, "
                  f"{len(results[-1].failures)} failed", file=sys.stderr)  # fmt: skip
    return results, cost


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 3 s traffic window")
    parser.add_argument("--rounds", type=int, help="failover rounds per source (default 5)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    window = 3.0 if args.quick else 10.0
    sources = ["gossip-local", "gossip-lan"]
    workdir = Path(tempfile.mkdtemp(prefix="shoal-bench-membership-"))
    try:
        with contextlib.ExitStack() as stack:
            etcd_url = None
            if etcd_binary() is not None:
                etcd_url = stack.enter_context(LocalEtcd(log_path=workdir / "etcd.log")).url
                sources.insert(0, "etcd")
            else:
                print("etcd is not installed: skipping the etcd rows", file=sys.stderr)
            measured = {
                s: asyncio.run(measure(s, rounds, etcd_url, workdir, window)) for s in sources
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    failures = [f for s in sources for r in measured[s][0] for f in r.failures]
    lan, local = GossipConfig(), GossipConfig.profile("local")
    bounds = {
        "etcd": "lease TTL 3 s",
        "gossip-local": f"documented bound {local.detection_bound(NODES):.1f} s",
        "gossip-lan": f"documented bound {lan.detection_bound(NODES):.1f} s",
    }
    rows = []
    for source in sources:
        results = measured[source][0]
        times = [r.failover for r in results]
        total = sum(r.requests for r in results)
        failed = sum(len(r.failures) for r in results)
        rows.append([
            source, f"{median(times):.2f}", f"{max(times):.2f}", bounds[source],
            f"{total}", f"{failed} ({100 * failed / total:.2f}%)" if total else "-",
            f"{100 * median([r.moved for r in results]):.1f}% (ideal {100 / NODES:.1f}%)",
        ])  # fmt: skip
    print(f"\nFailover in a {NODES}-node cluster under load, {rounds} rounds per source:\n")
    print(markdown_table(
        ["membership", "SIGKILL to every ring, median s", "worst s", "bound",
         "client requests", "failed", "keys moved (median)"],
        rows, "lrrlrrr",
    ))  # fmt: skip
    cost_rows = []
    for source in sources:
        cost = measured[source][1]
        if cost is not None:
            cost_rows.append([source, f"{cost[0]:.0f}", f"{cost[1]:.1f}"])
    if cost_rows:
        print(f"\nGossip traffic per node, quiet {NODES}-node cluster, {window:g} s window:\n")
        print(markdown_table(["profile", "bytes/s sent", "datagrams/s sent"], cost_rows))
    print(f"\n{environment()}")
    if failures:
        print("\nfailed requests:\n  " + "\n  ".join(failures[:20]), file=sys.stderr)
        raise BenchError(f"{len(failures)} client requests to live nodes failed")
    return 0


if __name__ == "__main__":
    run(main)
