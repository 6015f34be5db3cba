"""Gossip membership with real ``shoal serve`` processes: convergence from one bootstrap
address, crash detection within the documented bound, rejoin after a restart, and a
node cut off in its own network namespace that is declared dead and comes back.

The nodes use the ``local`` timer profile; the bound a crash must be detected
within is :meth:`GossipConfig.detection_bound` of that profile, as documented.
"""

from __future__ import annotations

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.cluster_views import all_see, cluster_view, missing, none_see, wait_for
from helpers.processes import (
    ShoalServer,
    clean_env,
    free_ports,
    shoal_cmd,
    shoal_nodes,
    shoal_serve,
    wait_http_ok,
)
from shoal.config import GossipConfig

LOCAL = GossipConfig.profile("local")
NODES = 5
DETECTION = LOCAL.detection_bound(NODES)
"""The documented time within which every survivor marks a crashed member dead."""

CONVERGE_WITHIN = 10.0
"""Seconds started (or reconnected) nodes may take to appear everywhere."""


def gossip_args(host: str, port: int, seed: int, seed_host: str | None = None) -> list[str]:
    """``shoal serve`` arguments of a node on ``host`` gossiping on ``port`` and joining
    the node that gossips on ``seed`` (on ``seed_host``, default the same host)."""
    return [
        "--group",
        "data",
        "--host",
        host,
        "--gossip-port",
        str(port),
        "--join",
        f"{seed_host or host}:{seed}",
        "--gossip-timers",
        "local",
    ]


def test_five_nodes_converge_and_a_crash_is_noticed_everywhere_then_rejoins() -> None:
    """Five nodes joining through node 0 all see the five; SIGKILL one: every survivor
    marks it dead within the documented bound; started again, it is back everywhere;
    a node stopped with SIGTERM leaves every view at once."""
    ports = free_ports(NODES)
    args = [gossip_args("127.0.0.1", port, ports[0]) for port in ports]
    with contextlib.ExitStack() as stack:
        nodes = stack.enter_context(shoal_nodes(args, peer_ports=ports))
        urls = [n.peer_url for n in nodes]
        wait_for(all_see(nodes, urls), "5 members on every node", CONVERGE_WITHIN)
        view = cluster_view(nodes[1])
        assert view["membership"]["source"] == "gossip"
        assert view["membership"]["address"] == f"127.0.0.1:{ports[1]}"
        assert {m["source"] for m in view["members"]} == {"gossip"}

        victim = nodes[3]
        survivors = [n for n in nodes if n is not victim]
        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        wait_for(none_see(survivors, victim.peer_url), "the crash noticed everywhere", DETECTION)
        assert time.monotonic() - killed <= DETECTION
        states = cluster_view(survivors[0])["membership"]["states"]
        assert states["dead"] == 1

        # Started again on the same ports: it refutes its death and is back everywhere.
        back = stack.enter_context(shoal_serve(*args[3], "--port", str(ports[3])))
        back.peer_port = ports[3]
        everyone = [*survivors, back]
        wait_for(all_see(everyone, urls), "the restarted node everywhere", CONVERGE_WITHIN)

        # A graceful stop announces the leave: gone from every view at once.
        leaving = nodes[4]
        stopped = time.monotonic()
        assert leaving.stop(signal.SIGTERM) == 0
        rest = [n for n in everyone if n is not leaving]
        wait_for(none_see(rest, leaving.peer_url), "the leave", 1.0)
        assert time.monotonic() - stopped < 1.5
        assert cluster_view(rest[0])["membership"]["states"]["left"] == 1


# --------------------------------------------------------------------------- partition


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Netns:
    """A network namespace joined to this one by a veth pair (``/30`` link)."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def run(self, *command: str) -> list[str]:
        """``command`` as run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def disconnect(self) -> None:
        """Take the namespace's end of the link down: no packet in or out."""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "down")

    def reconnect(self) -> None:
        """Bring the link back up."""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up")


def _unused_subnet() -> int:
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(100):
        n = random.randrange(256)
        if f"10.213.{n}." not in used:
            return n
    raise AssertionError("no free 10.213.N.0/30 subnet")


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh namespace with a veth link to this one; removed afterwards, whatever
    happened (processes inside are killed first)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("the partition test needs root and `ip` (Debian: iproute2)")
    tag = f"{os.getpid() % 10000}{random.randrange(1000)}"
    n = _unused_subnet()
    ns = Netns(f"shoal-{tag}", f"shv{tag}", f"shn{tag}", f"10.213.{n}.1", f"10.213.{n}.2")
    try:
        _ip("netns", "add", ns.name)
    except subprocess.CalledProcessError as exc:
        missing(f"cannot create a network namespace here: {exc.stderr!r}")
    try:
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
        _ip("link", "set", ns.ns_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        _ip("link", "set", ns.host_if, "up")
        _ip("netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if)
        _ip("netns", "exec", ns.name, "ip", "link", "set", ns.ns_if, "up")
        _ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        pids = subprocess.run(
            ["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", ns.host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", ns.name)


@contextlib.contextmanager
def node_in(ns: Netns, args: Sequence[str], peer_port: int, api_port: int) -> Iterator[ShoalServer]:
    """``shoal serve`` inside the namespace, its HTTP API on the namespace's address."""
    workdir = Path(tempfile.mkdtemp(prefix="shoal-netns-"))
    stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
    try:
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                ns.run(
                    *shoal_cmd(
                        "serve",
                        "--api-host",
                        ns.ns_ip,
                        "--api-port",
                        str(api_port),
                        "--port",
                        str(peer_port),
                        *args,
                    )
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=clean_env(),
                start_new_session=True,
            )
        server = ShoalServer(proc, api_port, stdout_path, stderr_path, peer_port)
        try:
            wait_http_ok(f"http://{ns.ns_ip}:{api_port}/healthz", proc, 30.0, stderr_path)
            yield server
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _view_inside(ns: Netns, api_port: int) -> set[str]:
    """The members the isolated node sees, asked from inside its namespace."""
    code = (
        "import json, urllib.request;"
        f"r = urllib.request.urlopen('http://{ns.ns_ip}:{api_port}/v1/cluster', timeout=5);"
        "print(json.dumps([m['url'] for m in json.load(r)['members']]))"
    )
    out = subprocess.run(ns.run(sys.executable, "-c", code), capture_output=True, timeout=20)
    return set(json.loads(out.stdout)) if out.returncode == 0 else set()


def test_a_node_cut_off_in_its_namespace_is_declared_dead_and_rejoins(netns: Netns) -> None:
    """Four nodes here and one in its own network namespace form one cluster. Cut
    the link: the four declare the fifth dead within the documented bound (and it
    finds itself alone). Restore the link: it rejoins and all five see all five."""
    host, inside = netns.host_ip, netns.ns_ip
    ports = free_ports(NODES + 1)
    peer_ports, api_port = ports[:NODES], ports[NODES]
    # The namespaces' network is private to this machine: the nodes on it run
    # unprotected (--insecure); the security tests run gossip with a keyring.
    args = [[*gossip_args(host, port, peer_ports[0]), "--insecure"] for port in peer_ports]
    urls = [f"http://{host}:{p}" for p in peer_ports[:-1]] + [f"http://{inside}:{peer_ports[-1]}"]
    lone_args = [*gossip_args(inside, peer_ports[-1], peer_ports[0], seed_host=host), "--insecure"]
    with contextlib.ExitStack() as stack:
        nodes = stack.enter_context(shoal_nodes(args[:-1], peer_ports=peer_ports[:-1]))
        lone = stack.enter_context(node_in(netns, lone_args, peer_ports[-1], api_port))
        lone_api = f"http://{inside}:{api_port}"
        wait_for(all_see([*nodes, lone_api], urls), "5 members everywhere", CONVERGE_WITHIN)

        netns.disconnect()
        cut = time.monotonic()
        wait_for(none_see(nodes, urls[-1]), "the isolated node declared dead", DETECTION)
        assert time.monotonic() - cut <= DETECTION
        wait_for(
            lambda: _view_inside(netns, api_port) == {urls[-1]},
            "the isolated node to find itself alone",
            DETECTION,
        )
        assert lone.proc.poll() is None  # still running: only the network was cut

        netns.reconnect()
        healed = wait_for(
            all_see([*nodes, lone_api], urls),
            "5 members again after the link is back",
            CONVERGE_WITHIN,
        )
        assert healed < CONVERGE_WITHIN
