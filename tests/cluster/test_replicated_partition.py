"""Replicated groups across a real network partition: three ``shoal serve`` processes,
each in its own network namespace, linked by veth pairs to one bridge (``helpers.netns``).

Every node runs group ``data`` with ``mode = "replicated"``,
``anti_entropy_interval = 0.5`` and ``peer_timeout = 1`` (a TOML file given with
``--config``; the shorter timeout only shortens the waits for a cut-off peer), and
lists the three peer URLs (``--peers``). Each scenario starts once no node skips a
peer after a failure (a node started before the others skips them for a second, and
its writes would not be pushed to them meanwhile). The scenarios:

* **A partitioned replica converges after heal.** 200 keys are written on node 0 and
  reach every node. Node 2 is cut off; then, in this order (each step a little later
  than the last, so the hybrid-logical-clock versions follow it): node 1 deletes
  some keys; node 2 (its writes are made from inside its namespace) overwrites some
  keys, writes one of the keys node 1 deleted and deletes others; node 0 overwrites
  keys node 2 wrote or deleted, and node 1 deletes keys node 2 wrote. Before the
  heal each side still answers its own version. After the heal, within a deadline,
  every node answers every key as the last write decided (a delete stays deleted
  unless the other side wrote the key later), and every node reports the same
  ``entries`` and ``live_bytes``. The time it took is printed (``pytest -s``).
* **A killed node restarted empty catches up.** 500 keys everywhere; node 1 is
  SIGKILLed; 300 new keys are written and 50 old ones deleted on nodes 0 and 2; node
  1 is started again in its namespace with the same arguments, empty. Before any key
  is read from it, its anti-entropy alone brings it to the others' state (its
  statistics show the repair); then it answers every key as the others do.
* **Nothing differs, so digests are small.** Once writes have settled, every
  anti-entropy round a node starts during about 3 s ends in sync at the first digest
  exchange, repairs nothing and sends under 200 bytes per round on average.

The LAN (namespaces, links) is removed whatever happens, and every ``shoal serve``
is stopped (the restarted one included). Without network namespaces the tests skip,
or fail under ``CI=true`` (the harness decides).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.netns import PEER_PORT, HostServer, Lan, lan, shoal_serve_in
from helpers.processes import group_stats, http_get, http_request

GROUP = "data"
INTERVAL = 0.5
"""Seconds between two anti-entropy rounds of a node (jittered by ±20%)."""

PEER_TIMEOUT = 1.0
"""Seconds a push or an anti-entropy exchange waits for a peer (default 2): what a
write on either side of the partition waits for the cut-off peer, at most once per
back-off period (1 s)."""

CONFIG = f"""\
[groups.{GROUP}]
mode = "replicated"
anti_entropy_interval = {INTERVAL}
peer_timeout = {PEER_TIMEOUT}
"""

CONVERGENCE_DEADLINE = 30.0
"""Seconds the nodes have to agree after a heal or a restart."""

HLC_STEP = 0.05
"""Seconds between two steps of a scenario, so a later step's writes carry later
physical times (and so later versions) than an earlier step's, on any node."""

WORKERS = 16
"""Requests in flight at once when a scenario writes many keys."""

Expected = dict[str, bytes | None]
"""What every node must answer for each key: the value, or None for a 404."""

Op = tuple[str, str, bytes | None]
"""An HTTP request: method, URL, body."""


# --------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """Three replicated nodes on a virtual LAN, and the means to restart one."""

    net: Lan
    nodes: list[HostServer]
    args: list[str]
    stack: contextlib.ExitStack

    def restart(self, i: int) -> HostServer:
        """Start node ``i`` again in its host, with the arguments it had (stopped with
        the others at the end)."""
        assert self.nodes[i].proc.poll() is not None, "stop the node before restarting it"
        server = self.stack.enter_context(shoal_serve_in(self.net.hosts[i], *self.args))
        self.nodes[i] = server
        return server

    def logs(self) -> str:
        """Every node's log, for a failure message."""
        return "\n".join(f"--- node {i}:\n{n.stderr()[-3000:]}" for i, n in enumerate(self.nodes))


@contextlib.contextmanager
def replicated_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes in three hosts serving the replicated group ``data``."""
    config = tmp_path / "shoal.toml"
    config.write_text(CONFIG)
    # The LAN is entered first: the nodes are stopped before it is torn down.
    with lan(3) as net, contextlib.ExitStack() as stack:
        peers = ",".join(f"http://{h.ip}:{PEER_PORT}" for h in net.hosts)
        args = ["--config", str(config), "--peers", peers]
        nodes = [stack.enter_context(shoal_serve_in(h, *args)) for h in net.hosts]
        for node in nodes:
            assert group_stats(node, GROUP)["mode"] == "replicated"
        # A node started before the others found them down in its first anti-entropy
        # round and skips them for the back-off (1 s): its writes would not be pushed
        # to them meanwhile. Start the scenarios once nobody skips anybody.
        wait_for(lambda: not any(map(backing_off, nodes)), "no peer in back-off", 10.0)
        yield Cluster(net, nodes, args, stack)


def backing_off(node: HostServer) -> list[str]:
    """The members ``node`` skips after failures (``GET /v1/cluster``)."""
    status, body = http_get(f"{node.url}/v1/cluster")
    assert status == 200, body
    return [m["url"] for m in json.loads(body)["members"] if m["backing_off"]]


def key_url(node: HostServer, key: str) -> str:
    """The API URL of ``key`` of the group on ``node``."""
    return f"{node.url}/v1/groups/{GROUP}/keys/{urllib.parse.quote(key, safe='')}"


def puts(node: HostServer, values: Mapping[str, bytes]) -> list[Op]:
    """Requests writing ``values`` on ``node``."""
    return [("PUT", key_url(node, k), v) for k, v in values.items()]


def deletes(node: HostServer, keys: Iterable[str]) -> list[Op]:
    """Requests deleting ``keys`` on ``node``."""
    return [("DELETE", key_url(node, k), None) for k in keys]


def replication(node: HostServer) -> dict[str, int]:
    """The replication counters of the group on ``node``."""
    stats: dict[str, int] = group_stats(node, GROUP)["replication"]
    return stats


# --------------------------------------------------------------------------- requests


def send(ops: Sequence[Op]) -> None:
    """Make ``ops`` from the test process, concurrently; each must succeed."""
    with ThreadPoolExecutor(WORKERS) as pool:
        answers = list(pool.map(lambda op: http_request(*op), ops))
    check_answers(ops, answers)


NS_CLIENT = """
import json, sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

def call(op):
    method, url, body = op
    data = None if body is None else body.encode("latin-1")
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return [response.status, response.read().decode("latin-1")]
    except urllib.error.HTTPError as exc:
        with exc:
            return [exc.code, exc.read().decode("latin-1")]

ops = json.load(sys.stdin)
with ThreadPoolExecutor(int(sys.argv[1])) as pool:
    print(json.dumps(list(pool.map(call, ops))))
"""
"""Makes the requests of a JSON list of [method, url, body] from inside a host (a cut
host is reachable from nowhere else); prints [[status, body], ...]."""


def send_inside(cluster: Cluster, i: int, ops: Sequence[Op]) -> list[tuple[int, bytes]]:
    """Make ``ops`` from inside host ``i``, concurrently; return the answers."""
    payload = json.dumps([[m, u, None if b is None else b.decode("latin-1")] for m, u, b in ops])
    done = cluster.net.hosts[i].run(
        [sys.executable, "-c", NS_CLIENT, str(WORKERS)], input=payload.encode(), timeout=60
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    raw: list[list[Any]] = json.loads(done.stdout)
    return [(int(status), str(body).encode("latin-1")) for status, body in raw]


def check_answers(ops: Sequence[Op], answers: Sequence[tuple[int, bytes]]) -> None:
    """Every write answered as the API promises (PUT 204, DELETE 200 with JSON)."""
    for (method, url, _), (status, body) in zip(ops, answers, strict=True):
        if method == "PUT":
            assert status == 204, (url, status, body)
        else:
            assert status == 200, (url, status, body)
            assert "deleted" in json.loads(body), (url, status, body)


class Reader:
    """Reads keys from one node over a single keep-alive connection."""

    def __init__(self, node: HostServer) -> None:
        self._node = node
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, key: str) -> bytes | str | None:
        """The value of ``key``, None for a 404 not_found, or a string describing any
        other answer (an error)."""
        path = urllib.parse.urlsplit(key_url(self._node, key)).path
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._node.ip, self._node.port, timeout=10)
            try:
                self._conn.request("GET", path)
                response = self._conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a stale keep-alive connection: retry once on a new one
                if attempt == 1:
                    return f"error: {exc!r}"
                continue
            if response.status == 200:
                return body
            if response.status == 404 and json.loads(body).get("code") == "not_found":
                return None
            return f"HTTP {response.status}: {body[:200]!r}"
        raise AssertionError("unreachable")

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | str | None]:
        """What the node answers for each of ``keys``."""
        return {key: self.get(key) for key in keys}


@contextlib.contextmanager
def reading(nodes: Sequence[HostServer]) -> Iterator[list[Reader]]:
    """A :class:`Reader` per node, closed at the end."""
    readers = [Reader(node) for node in nodes]
    try:
        yield readers
    finally:
        for reader in readers:
            reader.close()


def differences(
    readers: Sequence[Reader], expected: Expected
) -> list[tuple[int, str, bytes | str | None, bytes | None]]:
    """Every (node, key, answered, expected) where a node's answer is not the expected
    one; the nodes are read concurrently."""
    with ThreadPoolExecutor(len(readers)) as pool:
        snapshots = list(pool.map(lambda r: r.snapshot(expected), readers))
    return [
        (i, key, got, expected[key])
        for i, snapshot in enumerate(snapshots)
        for key, got in snapshot.items()
        if got != expected[key]
    ]


def wait_until_converged(
    cluster: Cluster, expected: Expected, *, since: float, what: str
) -> tuple[float, int]:
    """Poll every node until each answers every key of ``expected`` as expected.

    Returns the seconds from ``since`` (a ``time.monotonic()``) until that held, and
    how many full read rounds it took.
    """
    with reading(cluster.nodes) as readers:
        rounds = 0
        while True:
            rounds += 1
            wrong = differences(readers, expected)
            if not wrong:
                return time.monotonic() - since, rounds
            if time.monotonic() - since > CONVERGENCE_DEADLINE:
                stats = [replication(n) for n in cluster.nodes]
                raise AssertionError(
                    f"{what}: not converged {CONVERGENCE_DEADLINE}s later; {len(wrong)} "
                    f"wrong answers, e.g. {wrong[:10]}\nstats: {stats}\n{cluster.logs()}"
                )
            time.sleep(0.05)


def wait_for(condition: Callable[[], bool], what: str, within: float) -> float:
    """Poll ``condition`` until it holds; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def same_state(nodes: Sequence[HostServer]) -> bool:
    """Whether every node reports the same replicated ``entries`` and ``live_bytes``."""
    stats = [replication(n) for n in nodes]
    return len({(s["entries"], s["live_bytes"]) for s in stats}) == 1


def keys(numbers: Iterable[int]) -> list[str]:
    return [f"k{n:03d}" for n in numbers]


def live_bytes(expected: Expected) -> int:
    """The ``live_bytes`` every node must report for ``expected``."""
    return sum(len(k.encode()) + len(v) for k, v in expected.items() if v is not None)


# --------------------------------------------------------------------------- tests


def test_a_partitioned_replica_converges_after_heal(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path) as cluster:
        n0, n1, n2 = cluster.nodes
        everything = keys(range(200))
        expected: Expected = {k: f"before-{k}".encode() for k in everything}
        send(puts(n0, {k: v for k, v in expected.items() if v is not None}))
        # A write returns once it is pushed to every live peer: everyone has it now.
        with reading(cluster.nodes) as readers:
            assert not differences(readers, expected)

        cluster.net.cut(2)
        assert not cluster.net.reachable(None, 2, n2.port, timeout=0.3)

        # 1. The majority side deletes k170..k179 first.
        d0 = keys(range(170, 180))
        send(deletes(n1, d0))
        expected.update(dict.fromkeys(d0))
        time.sleep(HLC_STEP)

        # 2. The cut node, later: writes K1 (k000..k059) and k170..k174 (deleted on
        # the other side before), deletes K3 (k060..k089).
        k1 = keys([*range(60), *range(170, 175)])
        k3 = keys(range(60, 90))
        cut_values = {k: f"cut-{k}".encode() for k in k1}
        ops = puts(n2, cut_values) + deletes(n2, k3)
        check_answers(ops, send_inside(cluster, 2, ops))
        expected.update(cut_values)
        expected.update(dict.fromkeys(k3))
        # Node 2 answers its own writes and has not seen node 1's deletes (its reads
        # are made from inside its host too).
        probe = [("GET", key_url(n2, k), None) for k in ("k000", "k060", "k170", "k175")]
        answers = send_inside(cluster, 2, probe)
        assert [s for s, _ in answers] == [200, 404, 200, 200], answers
        assert [answers[i][1] for i in (0, 2, 3)] == [b"cut-k000", b"cut-k170", b"before-k175"]
        time.sleep(HLC_STEP)

        # 3. The majority side, later still: node 0 writes K2 (k040..k079: half of it
        # written by node 2, half deleted there); node 1 deletes k020..k029 (written
        # by node 2) and k150..k169 (untouched).
        k2 = keys(range(40, 80))
        late_values = {k: f"late-{k}".encode() for k in k2}
        d1 = keys([*range(20, 30), *range(150, 170)])
        send(puts(n0, late_values) + deletes(n1, d1))
        expected.update(late_values)
        expected.update(dict.fromkeys(d1))

        # The majority has not seen node 2's writes.
        with reading([n0, n1]) as majority:
            assert all(r.get("k000") == b"before-k000" for r in majority)
            assert all(r.get("k085") == b"before-k085" for r in majority)
            assert all(r.get("k170") is None for r in majority)

        # What the heal must give: 200 entries (tombstones count) on every node.
        assert expected["k045"] == b"late-k045"  # written on both sides: node 0 later
        assert expected["k065"] == b"late-k065"  # deleted on node 2, written later on node 0
        assert expected["k085"] is None  # deleted on node 2 only
        assert expected["k025"] is None  # written on node 2, deleted later on node 1
        assert expected["k172"] == b"cut-k172"  # deleted on node 1, written later on node 2
        assert expected["k177"] is None  # deleted on node 1 only

        cluster.net.heal(2)
        healed = time.monotonic()
        took, rounds = wait_until_converged(cluster, expected, since=healed, what="after heal")
        print(
            f"\n[replicated partition] every node answers all {len(expected)} keys as "
            f"expected {took:.2f}s after the heal ({rounds} rounds of reading every key "
            f"on every node, {took / rounds:.2f}s each)"
        )
        wait_for(lambda: same_state(cluster.nodes), "the same entries on every node", 5.0)
        stats = [replication(n) for n in cluster.nodes]
        assert [s["entries"] for s in stats] == [len(expected)] * 3, stats
        assert [s["live_bytes"] for s in stats] == [live_bytes(expected)] * 3, stats
        # The repair was anti-entropy's: exchanges with node 2 failed while it was cut.
        assert sum(s["push_failures"] + s["sync_failures"] for s in stats) > 0, stats
        assert sum(s["entries_repaired"] for s in stats) > 0, stats


def test_a_killed_node_restarted_empty_catches_up(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path) as cluster:
        n0, n1, n2 = cluster.nodes
        first = keys(range(500))
        expected: Expected = {k: f"one-{k}".encode() for k in first}
        send(puts(n0, {k: v for k, v in expected.items() if v is not None}))
        wait_for(lambda: same_state(cluster.nodes), "500 keys everywhere", 5.0)
        assert replication(n1)["entries"] == len(expected)

        n1.proc.send_signal(signal.SIGKILL)  # no goodbye, nothing saved
        n1.proc.wait(10)
        assert cluster.net.hosts[1].pids() == [], "something still runs in host 1"

        more = {k: f"two-{k}".encode() for k in keys(range(500, 800))}
        gone = first[:50]
        ops: list[Op] = []
        for j, (k, v) in enumerate(more.items()):
            ops += puts((n0, n2)[j % 2], {k: v})
        for j, k in enumerate(gone):
            ops += deletes((n0, n2)[j % 2], [k])
        send(ops)
        expected.update(more)
        expected.update(dict.fromkeys(gone))
        wait_for(lambda: same_state([n0, n2]), "nodes 0 and 2 to agree", 5.0)
        target = replication(n0)
        assert target["entries"] == len(expected), target

        restarted = cluster.restart(1)
        started = time.monotonic()

        def caught_up() -> bool:
            now = replication(restarted)
            return (now["entries"], now["live_bytes"]) == (
                target["entries"],
                target["live_bytes"],
            )

        took = wait_for(caught_up, "the restarted node to catch up", CONVERGENCE_DEADLINE)
        stats = replication(restarted)
        # It started empty and nothing was written since: every entry it holds came
        # by anti-entropy (its own rounds count entries_repaired; a peer's round
        # pushes what it lacks, counted in writes_received).
        assert stats["entries_repaired"] + stats["writes_received"] >= len(expected), stats
        assert stats["entries_repaired"] > 0 or stats["writes_received"] > 0, stats

        # Only now is it read: its answers are its own state, not its peers'.
        answered, _ = wait_until_converged(cluster, expected, since=started, what="restart")
        assert same_state(cluster.nodes)
        assert replication(restarted)["live_bytes"] == live_bytes(expected)
        print(
            f"\n[replicated restart] the restarted node held all {stats['entries']} entries "
            f"{took:.2f}s after it answered /healthz (entries_repaired="
            f"{stats['entries_repaired']}, writes_received={stats['writes_received']}); "
            f"every node answered every key as expected {answered:.2f}s after it"
        )


def test_nothing_differs_means_small_digests(tmp_path: Path) -> None:
    with replicated_cluster(tmp_path) as cluster:
        n0, n1, n2 = cluster.nodes
        values = {k: f"value-{k}".encode() for k in keys(range(300))}
        send(puts(n0, dict(list(values.items())[:100])))
        send(puts(n1, dict(list(values.items())[100:200])))
        send(puts(n2, dict(list(values.items())[200:])) + deletes(n0, keys(range(30))))
        wait_for(lambda: same_state(cluster.nodes), "the writes to settle", 5.0)
        time.sleep(2 * INTERVAL)  # let any repair round in progress finish

        before = [replication(n) for n in cluster.nodes]
        time.sleep(3.0)
        after = [replication(n) for n in cluster.nodes]
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            delta = {name: b[name] - a[name] for name in a}
            rounds = delta["sync_rounds"]
            # About 6 rounds in 3 s at 0.5 s (±20% jitter); a round is in flight for
            # about a millisecond, so one may straddle either sample.
            assert rounds >= 3, (i, delta)
            assert abs(delta["sync_rounds_in_sync"] - rounds) <= 1, (i, delta)
            assert delta["sync_rounds_in_sync"] >= 3, (i, delta)
            nothing = ("sync_failures", "entries_repaired", "pushes", "push_failures")
            assert all(delta[name] == 0 for name in (*nothing, "writes_received")), (i, delta)
            assert delta["bytes_sent"] / rounds < 200, (i, delta)
            assert delta["bytes_received"] / rounds < 200, (i, delta)
            assert b["entries"] == a["entries"] == len(values), (i, a, b)
