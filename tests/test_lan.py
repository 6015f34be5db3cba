"""The virtual LAN harness (``helpers.netns``) itself: hosts reach each other and the test
process over TCP and UDP, a cut host is unreachable both ways while the others are
not, a healed one is back, and nothing is left behind afterwards, even on failure."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from helpers.cluster_views import cluster_view, wait_for
from helpers.netns import (
    API_PORT,
    PEER_PORT,
    PREFIX,
    Host,
    Lan,
    lan,
    require_netns,
    shoal_serve_in,
    sweep,
)
from helpers.processes import ProcessGroup, process_group

ECHO_PORT = 7000
"""Every host has its own ports: each echo server listens on this one, on its own address."""

ECHO_SERVER = """
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((host, port))
def udp_echo():
    while True:
        data, peer = udp.recvfrom(64)
        udp.sendto(b"udp:" + data, peer)
threading.Thread(target=udp_echo, daemon=True).start()
tcp = socket.create_server((host, port))
print("listening", flush=True)
while True:
    conn, _ = tcp.accept()
    with conn:
        conn.sendall(b"tcp:" + conn.recv(64))
"""

ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])) as s:
    s.sendall(b"ping")
    sys.stdout.write(s.recv(64).decode())
"""

SHORT = 0.5
"""Seconds a probe of an unreachable host waits before it counts as failed."""


def echo(ip: str, timeout: float = 1.0) -> bytes | None:
    """The TCP echo server at ``ip`` answers ``ping`` (from the test process), or None."""
    try:
        with socket.create_connection((ip, ECHO_PORT), timeout) as sock:
            sock.sendall(b"ping")
            return sock.recv(64)
    except OSError:
        return None


def echo_udp(ip: str, timeout: float = 1.0) -> bytes | None:
    """The UDP echo server at ``ip`` answers a ``ping`` datagram, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"ping", (ip, ECHO_PORT))
            return sock.recv(64)
        except OSError:
            return None


def echo_from(host: Host, ip: str, timeout: float = 1.0) -> str | None:
    """What the TCP echo server at ``ip`` answers a client running inside ``host``."""
    done = host.run([sys.executable, "-c", ECHO_CLIENT, ip, str(ECHO_PORT), str(timeout)])
    return done.stdout.decode() if done.returncode == 0 else None


def answers(probe: Callable[[str], bytes | None], ip: str, reply: bytes) -> Callable[[], bool]:
    """A condition: ``probe(ip)`` gets ``reply``."""
    return lambda: probe(ip) == reply


@contextlib.contextmanager
def echo_servers(net: Lan) -> Iterator[list[ProcessGroup]]:
    """A TCP and UDP echo server on every host, on ``ECHO_PORT``; killed at the end."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                process_group(h.wrap([sys.executable, "-c", ECHO_SERVER, h.ip, str(ECHO_PORT)]))
            )
            for h in net.hosts
        ]
        for server in servers:
            server.wait_for_output("listening", timeout=10)
        yield servers


def ip(*args: str) -> str:
    """The output of ``ip ARGS`` (which must succeed)."""
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout


def leftovers(tag: str) -> list[str]:
    """Namespaces of this process and root-namespace links of the LAN ``tag`` that exist."""
    mine = f"{PREFIX}-{os.getpid()}-"
    names, links = ip("netns", "list").split(), ip("-o", "link", "show")
    return [n for n in names if n.startswith(mine)] + [
        line for line in links.splitlines() if f"{PREFIX}{tag}" in line
    ]


def test_three_hosts_talk_a_cut_host_is_unreachable_and_heals() -> None:
    """Three hosts: the test process reaches each (TCP and UDP), host 0 reaches host 1
    and the test process. Cut host 1: no one reaches it and it reaches no one, while
    host 2 is still reachable; heal it: back. Afterwards no namespace or link remains,
    and a process the test left running in a host has been killed."""
    with lan(3) as net:
        tag = net.tag
        ips = [h.ip for h in net.hosts]
        prefix = net.root_ip.rsplit(".", 1)[0]
        assert ips == [f"{prefix}.{i}" for i in (2, 3, 4)]
        assert net.subnet == f"{prefix}.0/24"
        names = [net.root_if, net.bridge, *(h.ifname for h in net.hosts)]
        names += [h.port_if for h in net.hosts]
        assert all(len(n) <= 15 and tag in n for n in names)
        assert len(set(net.namespaces)) == 4
        assert net.hosts[0].wrap(["true"]) == ["ip", "netns", "exec", net.hosts[0].name, "true"]
        # Left running on purpose: the LAN must kill it on exit.
        stray = subprocess.Popen(
            net.hosts[2].wrap([sys.executable, "-c", "import time; time.sleep(60)"]),
            stdin=subprocess.DEVNULL,
        )

        with echo_servers(net) as servers:
            for ip in ips:
                wait_for(answers(echo, ip, b"tcp:ping"), f"TCP echo from {ip}", 5)
                wait_for(answers(echo_udp, ip, b"udp:ping"), f"UDP echo from {ip}", 5)
            assert echo_from(net.hosts[0], ips[1]) == "tcp:ping"
            with socket.create_server((net.root_ip, 0)) as here:
                assert net.hosts[0].can_connect(net.root_ip, here.getsockname()[1])
            assert net.reachable(None, 1, ECHO_PORT)
            assert net.reachable(0, 1, ECHO_PORT)
            assert not net.is_cut(1)

            net.cut(1)
            assert net.is_cut(1)
            assert echo(ips[1], SHORT) is None
            assert echo_udp(ips[1], SHORT) is None
            assert echo_from(net.hosts[0], ips[1], SHORT) is None
            assert echo_from(net.hosts[1], ips[0], SHORT) is None
            assert echo(ips[2]) == b"tcp:ping"
            assert echo_from(net.hosts[0], ips[2]) == "tcp:ping"
            assert servers[1].proc.poll() is None  # only the network was cut

            net.heal(1)
            assert not net.is_cut(1)
            wait_for(lambda: echo(ips[1]) == b"tcp:ping", "host 1 back for the test", 5)
            wait_for(lambda: echo_from(net.hosts[0], ips[1]) == "tcp:ping", "host 1 back", 5)
            assert echo_from(net.hosts[1], ips[0]) == "tcp:ping"
            assert echo_udp(ips[1]) == b"udp:ping"

    assert stray.wait(timeout=5) == -9
    assert leftovers(tag) == []


def test_nothing_is_left_when_the_test_fails_inside() -> None:
    """An exception in the block still removes every namespace and link."""
    tags: list[str] = []

    def failing() -> None:
        with lan(2) as net:
            tags.append(net.tag)
            assert leftovers(net.tag) != []
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing()
    assert len(tags) == 1
    assert leftovers(tags[0]) == []


def test_sweep_removes_what_a_dead_run_left_and_only_that() -> None:
    """A namespace and a root link whose owner process is gone are swept, and a sweep
    again finds nothing; a live run's LAN is not touched."""
    require_netns()
    gone = subprocess.Popen(["true"])
    gone.wait()
    suffix = f"{os.getpid() % 10000:04d}"
    ns, link = f"{PREFIX}-{gone.pid}-zz{suffix}-sw", f"{PREFIX}zz{suffix}a"
    try:
        ip("netns", "add", ns)
        ip("link", "add", "name", link, "type", "veth", "peer", "name", f"{PREFIX}zz{suffix}b")
        ip("link", "set", "dev", link, "alias", f"shoal-lan owner={gone.pid}")
        assert sorted(sweep()) == sorted([ns, link])
        assert ns not in ip("netns", "list").split()
        assert f"{PREFIX}zz{suffix}" not in ip("-o", "link", "show")
        assert sweep() == []
        with lan(1) as live:
            assert sweep() == []
            assert set(live.namespaces) <= set(ip("netns", "list").split())
            assert live.root_if in ip("-o", "link", "show")
    finally:
        subprocess.run(["ip", "link", "del", "dev", link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_without_root_it_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: skipped with a reason; with ``CI=true`` the test fails instead."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_netns()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        require_netns()


def test_shoal_serve_in_hosts_listens_on_the_host_address() -> None:
    """Two ``shoal serve`` in two hosts, listed as each other's peers: their URLs are
    the hosts' addresses, the test process reaches both APIs, and both are stopped on
    exit."""
    with lan(2) as net, contextlib.ExitStack() as stack:
        peers = ",".join(f"http://{h.ip}:{PEER_PORT}" for h in net.hosts)
        nodes = [
            stack.enter_context(shoal_serve_in(h, "--group", "data", "--peers", peers))
            for h in net.hosts
        ]
        assert [n.url for n in nodes] == [f"http://{h.ip}:{API_PORT}" for h in net.hosts]
        assert ",".join(n.peer_url for n in nodes) == peers
        for node in nodes:
            assert {m["url"] for m in cluster_view(node)["members"]} == set(peers.split(","))
        stack.close()
        assert all(n.proc.returncode is not None for n in nodes)
