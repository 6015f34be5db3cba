"""Writes: how soon a write is on every node, how fast a replicated group catches up,
and what anti-entropy costs when nothing differs.

Every cluster is three ``shoal serve`` processes with static ``--peers``, groups
without a loader (the values come from the writes), 100-byte values, and one
client (aiohttp, keep-alive connections) in this script.

1. **Write latency** (127.0.0.1; ``--hot-admission always`` on every node, so a
   value fetched from its owner is kept, and a write has copies to drop): group
   ``data`` partitioned and group ``repl`` replicated (``anti_entropy_interval = 1``)
   on the same nodes. Sequential ``PUT /v1/groups/{g}/keys/{k}`` of new keys to
   node 0 (about a third owned by node 0, the rest by the other two), each followed
   by untimed ``GET`` of the key on all three nodes, which must answer the new
   value; each key is overwritten (and checked) one step later, when every node
   holds a copy of it. Baseline, interleaved with the writes: a ``GET`` on node 0
   of a key owned by node 1 that node 0 does not hold (a peer fetch, one hop). Then writes/s at
   concurrency 1 and 32 with new keys, unchecked while timed; a sample of each
   run's keys is read back from every node afterwards. The nodes' counters must
   show exactly the peer fetches the checks imply (so every overwrite did drop the
   copies) and no peer error.
2. **Catch-up of a replicated group** (``anti_entropy_interval = 1``), 10,000 keys
   written on node 0, 32 at a time:

   * node 2 **cut off** the network, the writes made, node 2 plugged back in:
     seconds from the heal until node 2's ``replication.entries`` equals node 0's
     and a sample of 100 keys read from node 2 is right. Three network namespaces
     on a virtual LAN (``tests/helpers/netns.py``); needs root and ``ip netns``, skipped
     with a message otherwise;
   * node 2 **SIGKILLed**, the writes made, node 2 started again, empty (on
     127.0.0.1): seconds from its start until the same holds.

   With the replication bytes the catch-up took, from the counters of
   ``GET /v1/stats``. Each exchange is counted once, both ways, by the node that
   started it (a push, or an anti-entropy round), so the table gives node 2's own
   counters and the sum over the three nodes.
3. **Anti-entropy when nothing differs**: after the restarted node caught up, over
   10 s, per node: rounds started, rounds that ended at the first digest exchange
   (in sync), bytes sent and received per round and per second. Every round must
   end in sync and repair nothing.

The script exits 1 on a wrong result: a write not answered 204, a node answering
another value, a peer error or a fetch count the checks do not explain, a node
that does not catch up within 60 s, a round that repaired something when nothing
differed. Every process and namespace it starts is removed when it ends, Ctrl-C
and errors included. Needs the ``dev`` extra (aiohttp; pytest, which
tests/helpers/netns.py imports).

Run: ``python bench/writes.py [--quick] [--writes N] [--keys N] [--cycles N] [--no-lan]``
(``--cycles``: catch-ups per scenario, 3 by default, each on a fresh cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import aiohttp

from _common import BenchError, child_process, environment, markdown_table, median, ratio, run
from shoal.cli.common import pick_free_ports
from shoal.ring import Ring

if TYPE_CHECKING:
    # tests/ is on mypy's path only when MYPYPATH names it (`make typecheck` does not).
    from helpers.netns import Host  # type: ignore[import-not-found, unused-ignore]

Popen = subprocess.Popen[bytes]

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
NODES = 3
VALUE_SIZE = 100
PART = "data"
"""The partitioned group of part 1."""
REPL = "repl"
"""The replicated group of part 1."""
GROUP = "data"
"""The replicated group of parts 2 and 3."""
INTERVAL = 1.0
"""``anti_entropy_interval`` of every replicated group, seconds."""
CONCURRENCY = 32
SAMPLE = 100
"""Keys read back from every node after a throughput run or a catch-up."""
CATCH_UP_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
POLL = 0.01
DIGEST_TARGET = 100
"""Bytes each way per anti-entropy round when nothing differs (the expectation)."""

PART_CONFIG = f"""\
[groups.{PART}]

[groups.{REPL}]
mode = "replicated"
anti_entropy_interval = {INTERVAL}
"""

REPL_CONFIG = f"""\
[groups.{GROUP}]
mode = "replicated"
anti_entropy_interval = {INTERVAL}
"""


def value_of(key: str, version: int) -> bytes:
    """The ``VALUE_SIZE``-byte value of ``key`` written ``version``-th."""
    return f"{key}={version};".encode().ljust(VALUE_SIZE, b".")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


# -- the client ----------------------------------------------------------------------


class Client:
    """HTTP API requests over one keep-alive session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def put(self, base: str, group: str, key: str, value: bytes) -> float:
        """``PUT`` ``value`` under ``key``; return the seconds it took.

        Raises:
            BenchError: the answer was not 204.
        """
        url = f"{base}/v1/groups/{group}/keys/{key}"
        start = time.perf_counter()
        async with self.session.put(url, data=value) as response:
            body = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 204:
            raise BenchError(f"PUT {url} answered {response.status} {body[:200]!r}")
        return elapsed

    async def get(self, base: str, group: str, key: str) -> tuple[int, bytes, float]:
        """``GET`` ``key``: status, body and the seconds it took."""
        url = f"{base}/v1/groups/{group}/keys/{key}"
        start = time.perf_counter()
        async with self.session.get(url) as response:
            body = await response.read()
        return response.status, body, time.perf_counter() - start

    async def json(self, url: str) -> dict[str, Any]:
        async with self.session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise BenchError(f"GET {url} answered {response.status} {body[:200]!r}")
        data: dict[str, Any] = json.loads(body)
        return data

    async def group_stats(self, base: str, group: str) -> dict[str, Any]:
        """The group's entry of ``GET /v1/stats``."""
        stats: dict[str, Any] = (await self.json(f"{base}/v1/stats"))["groups"][group]
        return stats

    async def replication(self, base: str, group: str) -> dict[str, int]:
        """The group's ``replication`` counters."""
        counters: dict[str, int] = (await self.group_stats(base, group))["replication"]
        return counters

    async def verify(
        self, bases: Sequence[str], group: str, key: str, value: bytes, what: str, first: int = 0
    ) -> None:
        """Every node in ``bases`` (nodes ``first``, ``first + 1``...) answers ``value``
        for ``key``.

        Raises:
            BenchError: one did not.
        """
        for i, base in enumerate(bases, first):
            status, body, _ = await self.get(base, group, key)
            if status != 200 or body != value:
                raise BenchError(
                    f"{what}: node {i} answered {status} {body[:60]!r} for {group}/{key}, "
                    f"expected {value[:60]!r}"
                )

    async def wait_no_backoff(self, bases: Sequence[str], within: float = 30.0) -> None:
        """Wait until no node skips a peer after failures (start-up's first rounds)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                views = [await self.json(f"{base}/v1/cluster") for base in bases]
                if all(
                    len(v["members"]) == NODES and not any(m["backing_off"] for m in v["members"])
                    for v in views
                ):
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"the nodes still skipped peers after {within:g} s")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def client_session() -> AsyncIterator[Client]:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield Client(session)


async def write_all(
    client: Client, base: str, group: str, items: Sequence[tuple[str, bytes]], concurrency: int
) -> float:
    """``PUT`` every item on ``base``, ``concurrency`` at a time; return the seconds."""
    pending = iter(items)

    async def worker() -> None:
        for key, value in pending:
            await client.put(base, group, key, value)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def check_sample(
    client: Client,
    bases: Sequence[str],
    group: str,
    items: Sequence[tuple[str, bytes]],
    rng: random.Random,
    what: str,
    first: int = 0,
) -> None:
    """Up to ``SAMPLE`` of ``items`` read back from every node in ``bases`` (nodes
    ``first``, ``first + 1``...)."""
    for key, value in rng.sample(list(items), min(SAMPLE, len(items))):
        await client.verify(bases, group, key, value, what, first)


# -- clusters on 127.0.0.1 -------------------------------------------------------------


def healthy(port: int) -> bool:
    """Whether ``GET /healthz`` on 127.0.0.1:``port`` answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except http.client.HTTPException:  # a node still starting (OSErrors: the caller's)
        return False
    finally:
        conn.close()


def serve_process(
    name: str, cmd: Sequence[str], log: Path, port: int
) -> contextlib.AbstractContextManager[Popen]:
    """Run ``cmd`` until the block ends; enter the block once it answers ``/healthz``
    (``_common.child_process`` in a session of its own: a Ctrl-C reaches this script
    alone, which then stops its nodes itself)."""
    return child_process(
        name,
        cmd,
        log,
        lambda: healthy(port),
        ready_timeout=READY_TIMEOUT,
        poll=0.02,
        new_session=True,
    )


@dataclass
class LocalCluster:
    """Three ``shoal serve`` on 127.0.0.1; every process is stopped with ``stack``."""

    name: str
    args: list[str]
    """Flags every node gets (besides its ports and ``--peers``)."""
    workdir: Path
    stack: contextlib.ExitStack
    api_ports: list[int] = field(default_factory=list)
    peer_ports: list[int] = field(default_factory=list)
    procs: list[Popen] = field(default_factory=list)
    starts: int = 0

    @property
    def apis(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def urls(self) -> list[str]:
        """The members' URLs on the ring."""
        return [f"http://127.0.0.1:{port}" for port in self.peer_ports]

    def command(self, i: int) -> list[str]:
        return [
            sys.executable, "-m", "shoal", "serve",
            "--api-host", "127.0.0.1", "--api-port", str(self.api_ports[i]),
            "--host", "127.0.0.1", "--port", str(self.peer_ports[i]),
            "--peers", ",".join(self.urls), "--log-level", "warning", *self.args,
        ]  # fmt: skip

    def start(self, i: int) -> Popen:
        """Start node ``i``; returns once it answers ``/healthz``."""
        self.starts += 1
        log = self.workdir / f"{self.name}-{i}-{self.starts}.log"
        port = self.api_ports[i]
        proc = self.stack.enter_context(
            serve_process(f"{self.name} node {i}", self.command(i), log, port)
        )
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        return proc

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()


def local_cluster(
    name: str, args: list[str], workdir: Path, stack: contextlib.ExitStack
) -> LocalCluster:
    ports = pick_free_ports(2 * NODES)
    cluster = LocalCluster(name, args, workdir, stack, ports[:NODES], ports[NODES:])
    for i in range(NODES):
        cluster.start(i)
    return cluster


# -- part 1: write latency and throughput ----------------------------------------------


@dataclass
class Latencies:
    """Part 1's figures."""

    rows: dict[Row, list[float]] = field(default_factory=dict)
    """Seconds per timed request, by row."""
    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    """Writes/s per throughput run, by (group, concurrency)."""
    run_latencies: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def add(self, row: Row, seconds: float) -> None:
        self.rows.setdefault(row, []).append(seconds)


Row = tuple[str, str, str]
"""A row of the latency table: the request, the group's mode, the key's owner."""

NEW, OVERWRITE = "PUT, new key", "PUT, overwrite (a copy on all 3 nodes)"
BASELINE: Row = ("GET, a peer fetch (baseline)", "partitioned", "node 1")


def row_of(write: str, group: str, owner: int) -> Row:
    if group == REPL:
        return (write, "replicated", "every node")
    return (write, "partitioned", "node 0 (written to)" if owner == 0 else "node 1 or 2")


async def peer_counters(client: Client, bases: Sequence[str], group: str) -> tuple[int, int]:
    """Peer fetches and peer errors of ``group``, summed over the nodes."""
    loads = errors = 0
    for base in bases:
        stats = await client.group_stats(base, group)
        loads += stats["peer_loads"]
        errors += stats["peer_errors"]
    return loads, errors


async def measure_writes(
    cluster: LocalCluster, writes: int, rounds: int, duration: float, rng: random.Random
) -> Latencies:
    """Part 1 on ``cluster`` (groups ``data`` and ``repl``, hot admission always)."""
    result = Latencies()
    bases = cluster.apis
    node0 = bases[0]
    ring = Ring.build(cluster.urls)
    owner_of = {url: i for i, url in enumerate(cluster.urls)}

    def owner(key: str) -> int:
        return owner_of[ring.owner(key)]

    async with client_session() as client:
        await client.wait_no_backoff(bases)
        for i in range(30):  # the script's ring is the cluster's
            key = f"p{i}"
            info = await client.json(f"{node0}/v1/cluster?key={key}")
            if info["owner"] != ring.owner(key):
                raise BenchError(f"{key}: node 0 says owner {info['owner']}, the script's ring "
                                 f"{ring.owner(key)}")  # fmt: skip
        # Baseline keys: owned by node 1, written there, never read before their one GET.
        candidates = (f"b{i}" for i in itertools.count())
        base_keys = list(itertools.islice((k for k in candidates if owner(k) == 1), 2 * writes))
        await write_all(
            client, bases[1], PART, [(k, value_of(k, 1)) for k in base_keys], CONCURRENCY
        )
        # Warm-up, not reported: connections on every path.
        for i in range(20):
            for group in (PART, REPL):
                key = f"warm{i}"
                await client.put(node0, group, key, value_of(key, 1))
                await client.verify(bases, group, key, value_of(key, 1), "warm-up")
        fetches_before, errors_before = await peer_counters(client, bases, PART)
        repl_before = await peer_counters(client, bases, REPL)

        baseline = iter(base_keys)

        async def step(write: str, key: str, version: int) -> None:
            """A write to each group, each checked on every node; a baseline GET."""
            value = value_of(key, version)
            for group in (PART, REPL):
                seconds = await client.put(node0, group, key, value)
                result.add(row_of(write, group, owner(key)), seconds)
                await client.verify(bases, group, key, value, f"after a PUT on node 0 ({write})")
            bkey = next(baseline)
            status, body, seconds = await client.get(node0, PART, bkey)
            if status != 200 or body != value_of(bkey, 1):
                raise BenchError(f"GET {bkey} on node 0 answered {status} {body[:60]!r}")
            result.add(BASELINE, seconds)

        # Interleaved, so a burst of load elsewhere hits every row alike: each new key
        # is overwritten one step later, once the check has left a copy on every node.
        keys = [f"p{i}" for i in range(writes)]
        for i in range(writes + 1):
            if i < writes:
                await step(NEW, keys[i], 1)
            if i > 0:
                await step(OVERWRITE, keys[i - 1], 2)

        fetches, errors = await peer_counters(client, bases, PART)
        # Each check reads the key on its two non-owners, which fetch it from the owner
        # (and keep it): after an overwrite too, if the write dropped their copies.
        expected = 2 * 2 * writes + 2 * writes
        if errors != errors_before or fetches - fetches_before != expected:
            raise BenchError(
                f"group {PART}: {fetches - fetches_before} peer fetches and "
                f"{errors - errors_before} peer errors during the checked writes; expected "
                f"{expected} fetches (two per check, one per baseline GET) and no error"
            )
        if await peer_counters(client, bases, REPL) != repl_before:
            raise BenchError(f"group {REPL}: peer fetches or errors, where every read is local")

        plan = [(g, c) for c in (1, CONCURRENCY) for g in (PART, REPL)]
        serial = itertools.count()
        for r in range(rounds):
            shift = r % len(plan)
            for group, concurrency in plan[shift:] + plan[:shift]:
                prefix = f"t{next(serial)}-"
                rate, latencies, written = await throughput(
                    client, node0, group, prefix, concurrency, duration
                )
                await check_sample(client, bases, group, written, rng, "after a throughput run")
                result.rates.setdefault((group, concurrency), []).append(rate)
                result.run_latencies.setdefault((group, concurrency), []).extend(latencies)
        _, errors_after = await peer_counters(client, bases, PART)
        if errors_after != errors_before:
            raise BenchError(f"group {PART}: {errors_after - errors_before} peer errors")
        entries = [(await client.replication(b, REPL))["entries"] for b in bases]
        if len(set(entries)) != 1:
            raise BenchError(f"group {REPL}: the nodes hold {entries} entries")
    return result


async def throughput(
    client: Client, base: str, group: str, prefix: str, concurrency: int, duration: float
) -> tuple[float, list[float], list[tuple[str, bytes]]]:
    """``PUT`` new keys for ``duration`` s, ``concurrency`` at a time: writes/s, the
    latencies, and what was written."""
    counter = itertools.count()
    latencies: list[float] = []
    written: list[tuple[str, bytes]] = []
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            key = f"{prefix}{next(counter)}"
            value = value_of(key, 1)
            latencies.append(await client.put(base, group, key, value))
            written.append((key, value))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(written) / (time.perf_counter() - start), latencies, written


# -- part 2: catch-up ------------------------------------------------------------------

HEAL = "cut off, then healed (3 network namespaces)"
RESTART = "SIGKILLed, restarted empty (127.0.0.1)"


@dataclass
class CatchUp:
    """One catch-up of node 2."""

    scenario: str
    cycle: int
    keys: int
    write_seconds: float
    seconds: float
    """From the heal (or node 2's start) until node 2 holds every entry."""
    up_seconds: float | None
    """From node 2's start until it first answered (restart only)."""
    deltas: list[dict[str, int]]
    """Each node's replication counters over the catch-up."""

    def traffic(self, i: int | None = None) -> int:
        """Replication bytes sent + received, by node ``i``'s counters or all nodes'."""
        nodes = self.deltas if i is None else [self.deltas[i]]
        return sum(d["bytes_sent"] + d["bytes_received"] for d in nodes)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, int)}


async def wait_caught_up(
    client: Client, base: str, entries: int, start: float
) -> tuple[float, float | None]:
    """Poll node ``base`` until its ``entries`` is ``entries``; return the seconds
    since ``start`` then, and when it first answered."""
    first: float | None = None
    while True:
        now = time.perf_counter()
        if now - start > CATCH_UP_TIMEOUT:
            raise BenchError(f"node 2 had not caught up {CATCH_UP_TIMEOUT:g} s later")
        try:
            counters = await client.replication(base, GROUP)
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(POLL)
            continue
        if first is None:
            first = time.perf_counter() - start
        if counters["entries"] == entries:
            return time.perf_counter() - start, first
        await asyncio.sleep(POLL)


async def settled(client: Client, bases: Sequence[str]) -> list[dict[str, int]]:
    """The nodes' counters once the rounds that repaired node 2 have ended.

    A round counts what it repaired when it ends, which can be a little after node 2
    holds every entry: wait until the sum of ``entries_repaired`` stays the same for
    0.5 s (a few in-sync rounds, some 30 bytes each, may be counted meanwhile).
    """
    last: list[dict[str, int]] = []
    stable_since = time.perf_counter()
    deadline = stable_since + 10.0
    while True:
        counters = [await client.replication(b, GROUP) for b in bases]
        total = sum(c["entries_repaired"] for c in counters)
        now = time.perf_counter()
        if not last or total != sum(c["entries_repaired"] for c in last):
            stable_since = now
        elif now - stable_since >= 0.5 or now > deadline:
            return counters
        last = counters
        await asyncio.sleep(0.05)


async def written_everywhere(
    client: Client, bases: Sequence[str], keys: int
) -> list[dict[str, int]]:
    """The counters of ``bases``, each of which must hold ``keys`` entries."""
    counters = [await client.replication(b, GROUP) for b in bases]
    if any(c["entries"] != keys for c in counters):
        raise BenchError(f"after the writes the live nodes hold {[c['entries'] for c in counters]} "
                         f"entries, not {keys}")  # fmt: skip
    return counters


def items_of(keys: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}", value_of(f"k{i}", 1)) for i in range(keys)]


async def restart_catch_up(
    cluster: LocalCluster, keys: int, cycle: int, rng: random.Random
) -> CatchUp:
    """Node 2 SIGKILLed, ``keys`` written on node 0, node 2 started again empty."""
    bases = cluster.apis
    items = items_of(keys)
    async with client_session() as client:
        await client.wait_no_backoff(bases)
        cluster.kill(2)
        write_seconds = await write_all(client, bases[0], GROUP, items, CONCURRENCY)
        before = await written_everywhere(client, bases[:2], keys)
        start = time.perf_counter()
        # Started in a thread, so the catch-up is timed while start() waits for /healthz.
        starting = asyncio.ensure_future(asyncio.to_thread(cluster.start, 2))
        try:
            seconds, up = await wait_caught_up(client, bases[2], keys, start)
        finally:
            await starting
        after = await settled(client, bases)
        await check_sample(client, bases[2:], GROUP, items, rng, "after the restart", 2)
    zero = dict.fromkeys(after[2], 0)
    deltas = [delta(a, b) for a, b in zip(after, [*before, zero], strict=True)]
    return CatchUp(RESTART, cycle, keys, write_seconds, seconds, up, deltas)


STATS_INSIDE = """\
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    sys.stdout.write(response.read().decode())
"""


def netns_unavailable() -> str | None:
    """Why the virtual LAN cannot be built here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the virtual LAN needs root (network namespaces, veth, bridge)"
    if shutil.which("ip") is None:
        return "the virtual LAN needs `ip` (Debian: iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable here: {probe.stderr.strip()!r}"
    return None


def stats_inside(host: Host, base: str) -> dict[str, int]:
    """Node ``base``'s replication counters, asked from inside ``host`` (it is cut off)."""
    done = host.run([sys.executable, "-c", STATS_INSIDE, f"{base}/v1/stats"], timeout=30)
    if done.returncode != 0:
        raise BenchError(f"reading {base}/v1/stats inside its host: {done.stderr[-500:]!r}")
    counters: dict[str, int] = json.loads(done.stdout)["groups"][GROUP]["replication"]
    return counters


def import_lan_harness() -> None:
    """Import tests/helpers/netns.py, the multi-host test harness.

    It lives in the ``helpers`` package of tests/, which goes on sys.path while it
    is imported (the package's modules import each other as ``helpers.*``).
    """
    saved = sys.path[:]
    sys.path[:] = [str(TESTS), *saved]
    try:
        import helpers.netns  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    finally:
        sys.path[:] = saved


async def lan_catch_up(keys: int, config: Path, cycle: int, rng: random.Random) -> CatchUp | str:
    """Node 2 cut off, ``keys`` written on node 0, node 2 plugged back in; or why the
    virtual LAN could not be built."""
    import pytest

    import_lan_harness()
    from helpers import netns as lan  # type: ignore[import-not-found, unused-ignore]

    items = items_of(keys)
    try:
        # The LAN is entered first: the nodes are stopped before it is torn down.
        with lan.lan(NODES) as net, contextlib.ExitStack() as stack:
            peers = ",".join(f"http://{h.ip}:{lan.PEER_PORT}" for h in net.hosts)
            args = ["--config", str(config), "--peers", peers, "--log-level", "warning"]
            nodes = [stack.enter_context(lan.shoal_serve_in(h, *args)) for h in net.hosts]
            bases: list[str] = [n.url for n in nodes]
            async with client_session() as client:
                await client.wait_no_backoff(bases)
                net.cut(2)
                write_seconds = await write_all(client, bases[0], GROUP, items, CONCURRENCY)
                before = await written_everywhere(client, bases[:2], keys)
                before.append(stats_inside(net.hosts[2], bases[2]))
                if before[2]["entries"]:
                    raise BenchError(f"node 2 holds {before[2]['entries']} entries while cut off")
                start = time.perf_counter()
                net.heal(2)
                seconds, _ = await wait_caught_up(client, bases[2], keys, start)
                after = await settled(client, bases)
                await check_sample(client, bases[2:], GROUP, items, rng, "after the heal", 2)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return f"lan() cannot build a virtual LAN here: {exc}"  # its skip (or CI failure)
    except AssertionError as exc:  # the harness's own failures (a node that did not start)
        raise BenchError(f"the virtual LAN failed: {exc}") from exc
    deltas = [delta(a, b) for a, b in zip(after, before, strict=True)]
    return CatchUp(HEAL, cycle, keys, write_seconds, seconds, None, deltas)


# -- part 3: anti-entropy when nothing differs -----------------------------------------


async def quiet_traffic(cluster: LocalCluster, window: float) -> list[dict[str, int]]:
    """Each node's replication counters over ``window`` s, nothing being written."""
    bases = cluster.apis
    async with client_session() as client:
        await client.wait_no_backoff(bases)
        await asyncio.sleep(1.5 * INTERVAL)  # rounds already under way end first
        before = [await client.replication(b, GROUP) for b in bases]
        await asyncio.sleep(window)
        after = [await client.replication(b, GROUP) for b in bases]
    deltas = [delta(a, b) for a, b in zip(after, before, strict=True)]
    for i, d in enumerate(deltas):
        if not d["sync_rounds"]:
            raise BenchError(f"node {i} started no anti-entropy round in {window:g} s")
        if (
            d["sync_rounds_in_sync"] != d["sync_rounds"]
            or d["entries_repaired"]
            or d["sync_failures"]
            or d["pushes"]
        ):
            raise BenchError(f"node {i}, nothing differing and nothing written: {d}")
    return deltas


# -- the run ---------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, workdir: Path
) -> tuple[Latencies, list[CatchUp], str | None, list[dict[str, int]]]:
    rng = random.Random(42)
    part_config = workdir / "writes.toml"
    part_config.write_text(PART_CONFIG)
    repl_config = workdir / "replicated.toml"
    repl_config.write_text(REPL_CONFIG)

    print("part 1: write latency and throughput", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        flags = ["--config", str(part_config), "--hot-admission", "always"]
        cluster = local_cluster("writes", flags, workdir, stack)
        latencies = await measure_writes(cluster, args.writes, args.rounds, args.duration, rng)

    catch_ups: list[CatchUp] = []
    skipped = None if args.lan else "--no-lan"
    skipped = skipped or netns_unavailable()
    for cycle in range(args.cycles):
        if skipped is not None:
            break
        print(f"part 2: catch-up after a heal, {args.keys:,} keys, cycle {cycle + 1}",
              file=sys.stderr)  # fmt: skip
        outcome = await lan_catch_up(args.keys, repl_config, cycle, rng)
        if isinstance(outcome, str):
            skipped = outcome
        else:
            catch_ups.append(outcome)
    if skipped is not None:
        print(f"part 2: skipping the network-namespace catch-up: {skipped}", file=sys.stderr)

    quiet: list[dict[str, int]] = []
    for cycle in range(args.cycles):
        print(f"part 2: catch-up after a restart, {args.keys:,} keys, cycle {cycle + 1}",
              file=sys.stderr)  # fmt: skip
        with contextlib.ExitStack() as stack:
            flags = ["--config", str(repl_config)]
            cluster = local_cluster(f"restart{cycle}", flags, workdir, stack)
            catch_ups.append(await restart_catch_up(cluster, args.keys, cycle, rng))
            if cycle == args.cycles - 1:
                print(f"part 3: anti-entropy traffic over {args.window:g} s", file=sys.stderr)
                quiet = await quiet_traffic(cluster, args.window)
    return latencies, catch_ups, skipped, quiet


def report(
    args: argparse.Namespace,
    argv: Sequence[str],
    latencies: Latencies,
    catch_ups: list[CatchUp],
    skipped: str | None,
    quiet: list[dict[str, int]],
) -> None:
    baseline = median(latencies.rows[BASELINE])
    order = [
        row_of(w, g, o) for w in (NEW, OVERWRITE) for g, o in ((PART, 0), (PART, 1), (REPL, 0))
    ]
    rows = []
    for row in [*order, BASELINE]:
        values = latencies.rows.get(row, [])
        if values:
            rows.append([*row, f"{len(values)}", ms(median(values)), ms(percentile(values, 99)),
                         ratio(median(values), baseline)])  # fmt: skip
    print(
        f"Write latency: 3 nodes on 127.0.0.1, sequential PUTs of {VALUE_SIZE}-byte values "
        f"to node 0, each then read back from all 3 nodes (untimed); group `{PART}` "
        f"partitioned, `{REPL}` replicated; --hot-admission always\n"
    )
    headers = ["request", "group", "key owned by", "requests", "p50 ms", "p99 ms", "p50 ÷ baseline"]
    print(markdown_table(headers, rows, "lllrrrr"))

    rows = []
    for group in (PART, REPL):
        for concurrency in (1, CONCURRENCY):
            rates = latencies.rates[(group, concurrency)]
            lat = latencies.run_latencies[(group, concurrency)]
            rows.append([
                "partitioned" if group == PART else "replicated", f"{concurrency}",
                f"{median(rates):,.0f}", ms(median(lat)), ms(percentile(lat, 99)),
            ])  # fmt: skip
    print(
        f"\nWrite throughput: new keys PUT on node 0 for {args.duration:g} s per run, "
        f"{args.rounds} run(s) each (median writes/s; latencies over all runs)\n"
    )
    print(markdown_table(["group", "concurrency", "writes/s", "p50 ms", "p99 ms"], rows))

    rows = []
    for c in catch_ups:
        took = f"{c.seconds:.2f}"
        if c.up_seconds is not None:
            took += f" ({c.up_seconds:.2f} until it answered)"
        repairers = ", ".join(
            f"node {i}: {d['entries_repaired']:,}"
            for i, d in enumerate(c.deltas)
            if d["entries_repaired"]
        )
        label = f"{c.scenario}, #{c.cycle + 1}" if args.cycles > 1 else c.scenario
        rows.append([
            label, f"{c.keys:,}", f"{c.write_seconds:.1f} ({c.keys / c.write_seconds:,.0f}/s)",
            took, repairers or "-", f"{c.traffic(2):,}", f"{c.traffic():,}",
            f"{c.traffic() / c.keys:.0f}",
        ])  # fmt: skip
    print(
        f"\nCatch-up of node 2, replicated group, anti_entropy_interval {INTERVAL:g} s: "
        f"keys written on node 0 ({CONCURRENCY} at a time) while node 2 was away\n"
    )
    print(markdown_table(
        ["node 2 was", "keys", "writing them, s", "caught up after, s",
         "entries repaired (by the rounds of)", "replication bytes, node 2's counters",
         "all nodes' counters", "bytes per key"],
        rows, "lrrrlrrr",
    ))  # fmt: skip
    if skipped is not None:
        print(f"\n(the network-namespace row was skipped: {skipped})")

    rows = []
    for i, d in enumerate(quiet):
        rounds = d["sync_rounds"]
        rows.append([
            f"node {i}", f"{rounds}", f"{d['sync_rounds_in_sync']}",
            f"{d['bytes_sent'] / rounds:.0f}", f"{d['bytes_received'] / rounds:.0f}",
            f"{(d['bytes_sent'] + d['bytes_received']) / args.window:.0f}",
        ])  # fmt: skip
    print(f"\nAnti-entropy when nothing differs: {args.keys:,} keys on every node, "
          f"{args.window:g} s window, rounds each node started\n")  # fmt: skip
    print(markdown_table(
        ["node", "rounds", "in sync", "bytes sent/round", "bytes received/round",
         "bytes/s (sent + received)"],
        rows,
    ))  # fmt: skip

    part = latencies.rows
    new_elsewhere = median(part[row_of(NEW, PART, 1)])
    new_repl = median(part[row_of(NEW, REPL, 0)])
    sent = max(d["bytes_sent"] / d["sync_rounds"] for d in quiet)
    received = max(d["bytes_received"] / d["sync_rounds"] for d in quiet)
    met = "met" if max(sent, received) < DIGEST_TARGET else "missed"
    print()
    print(f"- A write visible on every node: partitioned, owned elsewhere, "
          f"{ratio(new_elsewhere, baseline)} a peer fetch (p50); replicated "
          f"{ratio(new_repl, baseline)}.")  # fmt: skip
    for scenario in (HEAL, RESTART):
        cycles = [c for c in catch_ups if c.scenario == scenario]
        if not cycles:
            continue
        times = [c.seconds for c in cycles]
        spread = f" (from {min(times):.2f} to {max(times):.2f} s)" if len(cycles) > 1 else ""
        traffic = median([c.traffic() for c in cycles])
        print(f"- {scenario}: {args.keys:,} keys caught up in {median(times):.2f} s"
              f"{' median' if len(cycles) > 1 else ''}{spread}; {traffic:,.0f} replication "
              f"bytes in all ({traffic / args.keys:.0f} per key"
              f"{', median' if len(cycles) > 1 else ''}).")  # fmt: skip
    print(f"- Nothing differing: at most {sent:.0f} bytes sent and {received:.0f} received per "
          f"round (target under {DIGEST_TARGET} each way: {met}).")  # fmt: skip
    command = " ".join(["python bench/writes.py", *argv])
    print(f"\n{environment()}; command: `{command}`")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="150 checked writes, 1,000 keys, short runs"
    )
    parser.add_argument("--writes", type=int, help="checked writes per group (default 1000)")
    parser.add_argument("--keys", type=int, help="keys written for the catch-up (default 10000)")
    parser.add_argument(
        "--cycles", type=int, help="catch-ups per scenario of part 2 (default 3, --quick 1)"
    )
    parser.add_argument(
        "--no-lan", dest="lan", action="store_false", help="skip the network-namespace part"
    )
    args = parser.parse_args(argv)
    argv = list(argv) if argv is not None else sys.argv[1:]
    args.writes = args.writes or (150 if args.quick else 1000)
    args.keys = args.keys or (1000 if args.quick else 10_000)
    args.cycles = args.cycles or (1 if args.quick else 3)
    args.rounds = 1 if args.quick else 3
    args.duration = 1.0 if args.quick else 2.0
    args.window = 4.0 if args.quick else 10.0

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through every cleanup, as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    workdir = Path(tempfile.mkdtemp(prefix="shoal-bench-writes-"))
    try:
        results = asyncio.run(measure(args, workdir))
    except KeyboardInterrupt:
        print("interrupted (every process and namespace was removed)", file=sys.stderr)
        return 130
    except aiohttp.ClientError as exc:  # a node stopped answering
        raise BenchError(f"a request failed: {exc!r}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, argv, *results)
    return 0


if __name__ == "__main__":
    run(main)
