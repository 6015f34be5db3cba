"""Readiness and drain on real ``shoal serve`` processes (gossip and DNS membership).

``GET /readyz`` answers 503 until a node has its first member view, 200 after, and 503
again from the first SIGTERM; the node leaves its membership at once, keeps answering
for ``--drain`` seconds, then exits 0. A rolling restart of a 3-node cluster under
continuous load, through a client that routes by readiness and retries a request
whose connection failed on another node (what a load balancer does), fails nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.cluster_views import all_see, member_urls, wait_for
from helpers.dns_server import dns_server
from helpers.processes import (
    LoadLog,
    ShoalServer,
    free_ports,
    http_get,
    loaded_value,
    shoal_serve,
)

DRAIN = 1.5
"""The nodes' ``--drain`` (seconds)."""

SRV = "_peer._tcp.shoal.test"
"""The SRV name of the DNS cluster (a headless Service's named port, in Kubernetes)."""

CONVERGE_WITHIN = 15.0
"""Seconds a (re)started node may take to be ready and seen by every member."""


def readyz(base: str) -> tuple[int, bytes]:
    """The status and body of ``GET /readyz`` at ``base`` (0 if nothing answers)."""
    try:
        return http_get(f"{base}/readyz")
    except OSError:
        return 0, b""


@dataclass
class Slot:
    """One member's ports and its current ``shoal serve`` process."""

    api_port: int
    peer_port: int
    membership: list[str]
    """How it finds the others: ``shoal serve`` flags."""
    loads: LoadLog
    server: ShoalServer | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self) -> ShoalServer:
        args = [
            "--group",
            "data=helpers.loadlog:load",
            "--port",
            str(self.peer_port),
            *self.membership,
            "--drain",
            str(DRAIN),
        ]
        env = self.loads.env()(0, self.url)
        self.server = self.stack.enter_context(shoal_serve(*args, port=self.api_port, env=env))
        return self.server

    def close(self) -> None:
        self.stack.close()
        self.server = None


def gossip(port: int, join: list[int]) -> list[str]:
    """The flags of a member gossiping on UDP ``port`` and joining through ``join``."""
    flags = ["--gossip-port", str(port), "--gossip-timers", "local"]
    if join:
        flags += ["--join", ",".join(f"127.0.0.1:{p}" for p in join)]
    return flags


@contextlib.contextmanager
def cluster(tmp_path: Path, size: int, source: str) -> Iterator[list[Slot]]:
    """``size`` nodes finding each other by ``source``: ``gossip`` (each joins through
    all the others) or ``dns`` (the SRV records of a DNS server on loopback, which
    keep every member, as a headless Service with ``publishNotReadyAddresses`` does);
    stopped on exit."""
    ports = free_ports(2 * size)
    loads = LoadLog(tmp_path / "calls")
    peer_ports = ports[size:]
    dns = None
    if source == "dns":
        dns = dns_server()
        zone = dns.__enter__()
        zone.zone.set_srv(SRV, [("n.shoal.test", p) for p in peer_ports])
        zone.zone.set_addresses("n.shoal.test", ["127.0.0.1"])
        flags = ["--dns-srv", SRV, "--dns-server", zone.address, "--dns-interval", "200ms"]
        slots = [Slot(ports[i], peer_ports[i], flags, loads) for i in range(size)]
    else:
        slots = [
            Slot(ports[i], p, gossip(p, [q for q in peer_ports if q != p]), loads)
            for i, p in enumerate(peer_ports)
        ]
    try:
        for slot in slots:
            slot.start()
        yield slots
    finally:
        for slot in slots:  # every drain at once, then each exit
            if slot.server is not None and slot.server.proc.poll() is None:
                slot.server.proc.send_signal(signal.SIGTERM)
        for slot in slots:
            slot.close()
        if dns is not None:
            dns.__exit__(None, None, None)


def wait_ready(slots: list[Slot]) -> None:
    urls = [s.url for s in slots]
    wait_for(
        lambda: all(readyz(s.base)[0] == 200 for s in slots), "every node ready", CONVERGE_WITHIN
    )
    wait_for(all_see([s.base for s in slots], urls), "every node sees all", CONVERGE_WITHIN)


class ReadinessRouter:
    """A client in front of the nodes as a load balancer is: it polls each node's
    ``/readyz`` and sends each GET to a random ready node; a request whose connection
    failed (refused, reset, closed before the answer) is sent again to another ready
    node. Any answer other than 200 with the loader's value is a failure."""

    def __init__(self, bases: list[str], keys: list[str], probe_every: float = 0.1) -> None:
        self._bases = bases
        self._keys = keys
        self._probe_every = probe_every
        self._ready = set(bases)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._probe, daemon=True)] + [
            threading.Thread(target=self._send, args=(seed,), daemon=True) for seed in range(2)
        ]

    def __enter__(self) -> ReadinessRouter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _probe(self) -> None:
        while not self._stop.is_set():
            ready = {b for b in self._bases if readyz(b)[0] == 200}
            with self._lock:
                self._ready = ready
            self._stop.wait(self._probe_every)

    def _pick(self, rng: random.Random, avoid: set[str]) -> str | None:
        with self._lock:
            ready = sorted(self._ready - avoid)
        return rng.choice(ready) if ready else None

    def _send(self, seed: int) -> None:
        rng = random.Random(seed)
        connections: dict[str, http.client.HTTPConnection] = {}
        while not self._stop.is_set():
            key = rng.choice(self._keys)
            tried: set[str] = set()
            for _attempt in range(3):
                base = self._pick(rng, tried)
                if base is None:
                    time.sleep(0.02)  # no node ready at this moment: wait, as a balancer queues
                    continue
                tried.add(base)
                conn = connections.get(base)
                if conn is None:
                    host, port = base.removeprefix("http://").split(":")
                    conn = connections[base] = http.client.HTTPConnection(
                        host, int(port), timeout=10
                    )
                try:
                    conn.request("GET", f"/api?key={key}")
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    del connections[base]
                    with self._lock:
                        self.retries += 1
                    continue
                with self._lock:
                    self.requests += 1
                    if response.status != 200 or body != loaded_value(key):
                        self.failures.append(f"{base} {key}: {response.status} {body[:80]!r}")
                break
            else:
                with self._lock:
                    self.requests += 1
                    self.failures.append(f"{key}: no node answered in 3 attempts")
        for conn in connections.values():
            conn.close()


def test_readyz_waits_for_the_first_view_then_a_sigterm_drains_and_exits_0(
    tmp_path: Path,
) -> None:
    """A gossip node whose bootstrap member is not up yet is alive (``/healthz``) but not
    ready (``starting``); once the other node is up and answered the join it is ready.
    A SIGTERM: ``/readyz`` is 503 ``draining`` at once, the other member drops it
    while it still answers requests, and it exits 0 after the drain."""
    ports = free_ports(4)
    loads = LoadLog(tmp_path / "calls")
    a = Slot(ports[0], ports[2], gossip(ports[2], [ports[3]]), loads)
    b = Slot(ports[1], ports[3], gossip(ports[3], [ports[2]]), loads)
    try:
        a.start()
        status, body = readyz(a.base)
        assert status == 503
        assert json.loads(body)["code"] == "starting"
        assert http_get(f"{a.base}/healthz")[0] == 200
        b.start()
        wait_ready([a, b])
        assert a.server is not None
        a.server.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        wait_for(lambda: readyz(a.base)[0] == 503, "node a draining", 2.0)
        assert json.loads(readyz(a.base)[1])["code"] == "draining"
        # Left at once: b stops routing to a while a still answers.
        wait_for(lambda: a.url not in member_urls(b.base), "b drops a", DRAIN)
        assert a.server.proc.poll() is None
        assert http_get(f"{a.base}/api?key=during-drain") == (200, loaded_value("during-drain"))
        assert a.server.proc.wait(DRAIN + 10) == 0
        assert time.monotonic() - began >= DRAIN - 0.1
        assert "draining" in a.server.stderr()
    finally:
        a.close()
        b.close()


def test_a_second_signal_during_the_drain_exits_at_once(tmp_path: Path) -> None:
    ports = free_ports(2)
    slot = Slot(ports[0], ports[1], gossip(ports[1], []), LoadLog(tmp_path / "calls"))
    try:
        server = slot.start()
        # A long drain, cut short by a second SIGTERM (a second after the first, so it is
        # not the same request delivered twice).
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: readyz(slot.base)[0] == 503, "draining", 2.0)
        time.sleep(1.1)
        began = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(5)
        assert time.monotonic() - began < DRAIN
        assert "exiting without waiting" in server.stderr()
    finally:
        slot.close()


@pytest.mark.parametrize(("source", "restarted"), [("gossip", 3), ("dns", 1)])
def test_rolling_restart_under_load_fails_no_request(
    tmp_path: Path, source: str, restarted: int
) -> None:
    """Nodes of a 3-node cluster SIGTERMed and started again in turn while two clients
    read through a readiness-routing balancer: 0 failed requests. With gossip every
    node is restarted (the others drop a leaving node at once); with DNS one is (its
    record stays, so its peers keep asking it while it drains, then fail over)."""
    keys = [f"k{n}" for n in range(300)]
    with cluster(tmp_path, 3, source) as slots:
        wait_ready(slots)
        with ReadinessRouter([s.base for s in slots], keys) as router:
            time.sleep(0.5)
            for slot in slots[:restarted]:
                assert slot.server is not None
                before = router.requests
                assert slot.server.stop(signal.SIGTERM, timeout=DRAIN + 10) == 0
                slot.close()
                slot.start()
                wait_ready(slots)
                time.sleep(0.3)
                assert router.requests > before  # the load went on meanwhile
        assert router.failures == [], router.failures[:10]
        assert router.requests > 100
