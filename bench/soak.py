"""Soak: a 3-node cluster under mixed load for minutes; does memory stay flat?

Three ``shoal serve`` processes on 127.0.0.1 form a gossip cluster (``local``
timers) with one group, ``soak``, capped at ``--capacity`` (512 KiB: the
misses fill it within the warm-up, then churn it) and loaded by
:func:`load_key`. Clients (``--clients``, paced to ``--rate`` requests per
second in all) spread over the three HTTP APIs this mix:

* 60% **hits**: ``GET`` one of 500 hot keys (loaded once, then cached);
* 20% **misses**: ``GET`` a key never asked before (loaded, then evicted in
  time: the cache keeps churning at its cap);
* 5% **not found**: ``GET`` a new key the loader refuses (404);
* 10% **writes**: ``PUT`` one of 1,000 written keys;
* 5% **deletes**: ``DELETE`` one of those.

Every ``--restart-every`` seconds (60) the third node is restarted: clients
stop asking it, it gets SIGTERM (it leaves the gossip cluster at once), it is
started again on the same ports, and clients ask it again once every node's
ring holds all three. Every ``--sample`` seconds (30) the script reads each
node's resident set (``VmRSS``) and open file descriptors from ``/proc``.

The report: requests by kind and the failed ones (a wrong status or body, or
no answer; the target is 0), and per node the RSS and fds at the first sample
after ``--warmup`` and at the end, and the **memory slope** after warm-up
(MiB per minute, least squares over the samples). The first two nodes run the
whole soak; the restarted one starts a fresh process each minute, so its slope
is that of the RSS each life ended with. The script exits 1 if a request failed or a node logged a
traceback.

Needs Linux (``/proc``) and the ``dev`` extra (aiohttp). Every socket is on
127.0.0.1; every process started is stopped when the script ends.

Run: ``python bench/soak.py --minutes 10`` (``--json FILE`` also writes the
figures and samples as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal import NotFound

GROUP = "soak"
VALUE_SIZE = 200
HOT_KEYS = 500
WRITTEN_KEYS = 1000
NODES = 3
READY_TIMEOUT = 60.0
MIX = (("hit", 60), ("miss", 20), ("notfound", 5), ("write", 10), ("delete", 5))
KINDS = tuple(kind for kind, _ in MIX)


def value_of(key: str) -> bytes:
    """The value the loader gives ``key``: ``VALUE_SIZE`` bytes derived from it."""
    return key.encode().ljust(VALUE_SIZE, b".")


async def load_key(key: str) -> bytes:
    """The loader of the soak group: keys starting with ``x`` do not exist."""
    if key.startswith("x"):
        raise NotFound(key)
    return value_of(key)


# -- measuring a process -----------------------------------------------------------


def rss_mib(pid: int) -> float:
    """The resident set of process ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` points (0 for fewer than two x values)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx


def pick_kind(rng: random.Random) -> str:
    """One request kind, drawn by the weights of :data:`MIX`."""
    return rng.choices(KINDS, weights=[w for _, w in MIX])[0]


# -- the cluster -------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """One ``shoal serve`` process (and its successors, after a restart)."""

    index: int
    api_port: int
    peer_port: int
    gossip_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    lives: int = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class Sample:
    """One reading of one node."""

    minute: float
    node: int
    pid: int
    rss_mib: float
    fds: int


@dataclass
class Report:
    """What a soak measured."""

    minutes: float
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failure_examples: list[str] = field(default_factory=list)
    restarts: int = 0
    samples: list[Sample] = field(default_factory=list)
    tracebacks: int = 0

    def node_summary(self, node: int, warmup: float) -> dict[str, float]:
        """RSS and fds of ``node`` after warm-up: first, last, and the RSS slope."""
        mine = [s for s in self.samples if s.node == node]
        after = [s for s in mine if s.minute >= warmup] or mine[-1:]
        return {
            "rss_first_mib": after[0].rss_mib,
            "rss_last_mib": after[-1].rss_mib,
            "rss_max_mib": max(s.rss_mib for s in after),
            "fds_first": after[0].fds,
            "fds_last": after[-1].fds,
            "fds_max": max(s.fds for s in after),
            "slope_mib_per_min": slope(_points(after)),
            "samples": len(after),
        }


def _points(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """The (minute, RSS) points of a node's slope: every sample of a node that ran
    throughout; for one restarted, the last sample of each life (how much one
    life grew compared with the one before)."""
    if len({s.pid for s in samples}) == 1:
        return [(s.minute, s.rss_mib) for s in samples]
    last: dict[int, Sample] = {}
    for s in samples:
        last[s.pid] = s
    return [(s.minute, s.rss_mib) for s in last.values()]


def serve_command(node: Node, seeds: Sequence[Node], capacity: str) -> list[str]:
    """The ``shoal serve`` command line of ``node``."""
    join = ",".join(f"127.0.0.1:{n.gossip_port}" for n in seeds if n is not node)
    return [
        sys.executable, "-m", "shoal", "serve",
        "--group", f"{GROUP}=soak:load_key", "--capacity", f"{GROUP}={capacity}",
        "--log-level", "warning", "--node-id", f"soak-{node.index}",
        "--api-port", str(node.api_port), "--port", str(node.peer_port),
        "--gossip-port", str(node.gossip_port), "--join", join, "--gossip-timers", "local",
    ]  # fmt: skip


def start(node: Node, nodes: Sequence[Node], capacity: str, drain: float) -> None:
    """Start a new process for ``node`` (its log is appended to)."""
    here = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    with node.log.open("ab") as out:
        node.proc = subprocess.Popen(
            [*serve_command(node, nodes, capacity), "--drain", str(drain)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
        )
    node.lives += 1


def stop(node: Node, timeout: float = 15.0) -> None:
    """SIGTERM the node's process; SIGKILL it if it has not exited ``timeout`` later."""
    proc = node.proc
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def cluster(workdir: Path, capacity: str, drain: float) -> Iterator[list[Node]]:
    """Three nodes, started together; every process is stopped when the block ends."""
    from shoal.cli.common import pick_free_ports

    ports = pick_free_ports(3 * NODES)
    nodes = [
        Node(i, ports[i], ports[NODES + i], ports[2 * NODES + i], workdir / f"node-{i}.log")
        for i in range(NODES)
    ]
    try:
        for node in nodes:
            start(node, nodes, capacity, drain)
        yield nodes
    finally:
        for node in nodes:
            stop(node)


# -- the load ----------------------------------------------------------------------


class Soak:
    """The clients, the sampler and the restarts of one run."""

    def __init__(self, nodes: list[Node], args: argparse.Namespace) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.nodes = nodes
        self.args = args
        self.report = Report(args.minutes)
        self.targets = list(nodes)
        self.inflight = dict.fromkeys(range(NODES), 0)
        self.fresh = itertools.count()
        self.started = time.monotonic()
        self.done = asyncio.Event()
        self.drained = asyncio.Event()
        """Set when no request to the node being restarted is in flight any more."""

    def minute(self) -> float:
        return (time.monotonic() - self.started) / 60

    async def members(self, session: Any, node: Node) -> set[str]:
        async with session.get(f"{node.api}/v1/cluster") as response:
            data = await response.json()
            return {m["url"] for m in data["members"]}

    async def converge(self, session: Any) -> None:
        """Wait until every node's ring holds all three."""
        expected = {n.url for n in self.nodes}
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with contextlib.suppress(self.aiohttp.ClientError, OSError, ValueError):
                if all([await self.members(session, n) == expected for n in self.nodes]):
                    return
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"node {n.index} exited:\n{n.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not converge within {READY_TIMEOUT}s")
            await asyncio.sleep(0.05)

    async def request(self, session: Any, rng: random.Random) -> None:
        kind = pick_kind(rng)
        node = rng.choice(self.targets)
        base = f"{node.api}/v1/groups/{GROUP}/keys/"
        body = b""
        if kind == "hit":
            key = f"h{rng.randrange(HOT_KEYS)}"
        elif kind == "miss":
            key = f"m{next(self.fresh)}"
        elif kind == "notfound":
            key = f"x{next(self.fresh)}"
        else:
            key = f"w{rng.randrange(WRITTEN_KEYS)}"
            body = key.encode() * 10
        method = {"write": "PUT", "delete": "DELETE"}.get(kind, "GET")
        self.report.requests[kind] += 1
        self.inflight[node.index] += 1
        try:
            async with session.request(method, base + key, data=body or None) as response:
                got = await response.read()
                expected = {"notfound": 404, "write": 204}.get(kind, 200)
                ok = response.status == expected
                if kind in ("hit", "miss"):
                    ok = ok and got == value_of(key)
                if not ok:
                    self.fail(kind, f"{method} {key} at node {node.index}: {response.status}")
        except (self.aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.fail(kind, f"{method} {key} at node {node.index}: {exc!r}")
        finally:
            self.inflight[node.index] -= 1
            if node not in self.targets and not self.inflight[node.index]:
                self.drained.set()

    def fail(self, kind: str, what: str) -> None:
        self.report.failures[kind] += 1
        if len(self.report.failure_examples) < 20:
            self.report.failure_examples.append(f"{self.minute():.2f} min: {what}")

    async def client(self, session: Any, worker: int) -> None:
        rng = random.Random(worker)
        period = self.args.clients / self.args.rate
        next_at = time.monotonic()
        while not self.done.is_set():
            await self.request(session, rng)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()  # behind: no burst to catch up

    def sample(self) -> None:
        minute = self.minute()
        for node in sorted(self.targets, key=lambda n: n.index):  # not one restarting
            proc = node.proc
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(OSError):
                self.report.samples.append(
                    Sample(minute, node.index, proc.pid, rss_mib(proc.pid), open_fds(proc.pid))
                )

    async def sampler(self) -> None:
        while not self.done.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), self.args.sample)
        self.sample()

    async def restarter(self, session: Any) -> None:
        node = self.nodes[-1]
        for k in itertools.count(1):  # at a steady cadence, however long a restart takes
            wait = self.started + k * self.args.restart_every - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), max(0.0, wait))
            if self.done.is_set():
                return
            self.drained.clear()
            self.targets.remove(node)  # clients stop asking it, then it stops
            if self.inflight[node.index]:
                await self.drained.wait()
            await asyncio.to_thread(stop, node)
            start(node, self.nodes, self.args.capacity, self.args.drain)
            await self.converge(session)
            self.targets.append(node)
            self.report.restarts += 1

    async def run(self) -> Report:
        aiohttp = self.aiohttp
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self.converge(session)
            self.started = time.monotonic()
            tasks = [asyncio.create_task(self.client(session, w)) for w in range(self.args.clients)]
            tasks += [
                asyncio.create_task(self.sampler()),
                asyncio.create_task(self.restarter(session)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, timeout=self.args.minutes * 60)
                for task in done:  # a task that ended early failed: say why
                    task.result()
            finally:
                self.done.set()
                await asyncio.gather(*tasks, return_exceptions=True)
        for node in self.nodes:
            with contextlib.suppress(OSError):
                self.report.tracebacks += node.log.read_text(errors="replace").count("Traceback")
        return self.report


# -- the report --------------------------------------------------------------------


def render(report: Report, warmup: float) -> str:
    from _common import environment, markdown_table

    kinds = [(kind, report.requests[kind], report.failures[kind]) for kind in KINDS] + [
        ("all", sum(report.requests.values()), sum(report.failures.values()))
    ]
    rows = []
    for i in range(NODES):
        s = report.node_summary(i, warmup)
        rows.append(
            (
                f"node {i + 1}" + (" (restarted)" if i == NODES - 1 else ""),
                f"{s['rss_first_mib']:.1f}",
                f"{s['rss_last_mib']:.1f}",
                f"{s['rss_max_mib']:.1f}",
                f"{s['slope_mib_per_min']:+.3f}",
                f"{s['fds_first']:.0f}",
                f"{s['fds_last']:.0f}",
                f"{s['fds_max']:.0f}",
            )
        )
    lines = [
        f"Soak: {report.minutes:g} min, {report.restarts} restarts of node 3, "
        f"warm-up {warmup:g} min excluded from the node figures",
        "",
        markdown_table(("requests", "sent", "failed"), kinds),
        "",
        markdown_table(
            (
                "node",
                "RSS first (MiB)",
                "RSS last",
                "RSS max",
                "slope (MiB/min)",
                "fds first",
                "fds last",
                "fds max",
            ),
            rows,
        ),
        "",
        f"tracebacks in the node logs: {report.tracebacks}",
        environment(),
    ]
    if report.failure_examples:
        lines += ["", "failed requests (first ones):", *report.failure_examples]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to soak (10)")
    p.add_argument("--sample", type=float, default=30.0, help="seconds between samples (30)")
    p.add_argument(
        "--restart-every", type=float, default=60.0, help="seconds between restarts (60)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="minutes left out of the node figures (default: 2, or a fifth of a shorter run)",
    )
    p.add_argument("--rate", type=float, default=300.0, help="requests per second in all (300)")
    p.add_argument("--clients", type=int, default=6, help="concurrent clients (6)")
    p.add_argument("--capacity", default="512KiB", help="the group's cache cap (512KiB)")
    p.add_argument(
        "--drain", type=float, default=5.0, help="the nodes' --drain, seconds (5, the default)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(2.0, args.minutes / 5)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with (
        tempfile.TemporaryDirectory(prefix="shoal-soak-") as tmp,
        cluster(Path(tmp), args.capacity, args.drain) as nodes,
    ):
        try:
            report = asyncio.run(Soak(nodes, args).run())
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if report.tracebacks:
            for node in nodes:
                print(f"--- node {node.index + 1} log ---", node.log.read_text()[-3000:])
    print(render(report, args.warmup))
    if args.json is not None:
        data: dict[str, Any] = asdict(report)
        data["warmup"] = args.warmup
        data["nodes"] = [report.node_summary(i, args.warmup) for i in range(NODES)]
        args.json.write_text(json.dumps(data, indent=2))
    failed = sum(report.failures.values())
    return 1 if failed or report.tracebacks else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
