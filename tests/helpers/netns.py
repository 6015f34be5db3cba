"""A small virtual LAN of Linux network namespaces, for multi-host tests of shoal nodes.

``with lan(3) as net:`` builds::

    test process (root namespace) 10.X.Y.1 --veth--+
    net.hosts[0] (namespace)      10.X.Y.2 --veth--+-- bridge (in a "switch" namespace)
    net.hosts[1] (namespace)      10.X.Y.3 --veth--+
    net.hosts[2] (namespace)      10.X.Y.4 --veth--+

Every host has its own network stack (its own loopback and its own ports, so every
node can listen on the same port numbers), reaches every other host, and is reached
by the test process over TCP and UDP. :meth:`Lan.cut` takes a host's port on the
switch down: the host reaches no one and no one (the test process included) reaches
it, while its processes keep running; :meth:`Lan.heal` plugs it back in.

``X.Y`` and every namespace and interface name are random per LAN (a short tag), so
parallel runs never collide. On exit every process still in one of the namespaces is
killed and the namespaces and links are deleted, whatever happened; entering a LAN
also sweeps what a crashed earlier run left (namespaces whose owner process is gone).

Needs root and ``ip`` (iproute2) with network namespaces; the test is skipped without
them, or fails under ``CI=true``. Run commands inside a host with :meth:`Host.wrap`,
and ``shoal serve`` with :func:`shoal_serve_in`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.cluster_views import missing
from helpers.processes import READY_TIMEOUT, ShoalServer, clean_env, shoal_cmd, stop, wait_http_ok

__all__ = [
    "PREFIX",
    "API_PORT",
    "PEER_PORT",
    "GOSSIP_PORT",
    "Host",
    "Lan",
    "lan",
    "require_netns",
    "sweep",
    "can_connect",
    "HostServer",
    "shoal_serve_in",
]

PREFIX = "slan"
"""Start of every namespace (``slan-PID-TAG-...``) and interface (``slanTAG...``) name."""

API_PORT = 9999
"""Default HTTP API port of a node in a host (every host has its own ports)."""

PEER_PORT = 8000
"""Default peer-server port of a node in a host."""

GOSSIP_PORT = 7946
"""A gossip (UDP) port for nodes in hosts; pass it yourself (``--gossip-port``)."""

MAX_HOSTS = 250

_OWNER_ALIAS = "shoal-lan owner="
_LOCK_PATH = Path("/run/shoal-lan.lock")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


def _in_ns(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``ip -n NS ARGS``: an ``ip`` command acting on namespace ``ns``."""
    return _ip("-n", ns, *args)


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class Host:
    """One machine of the LAN: a network namespace with one interface on the switch."""

    index: int
    name: str
    """The network namespace's name (``ip netns exec NAME ...``)."""
    ip: str
    """Its address on the LAN (``10.X.Y.(index+2)``)."""
    ifname: str
    """Its interface (inside the namespace)."""
    port_if: str
    """Its port on the switch: the bridge-side end of its veth (in the switch namespace)."""

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` as run inside this host: ``ip netns exec NAME *cmd``."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, cmd: Sequence[str], *, timeout: float = 10.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``cmd`` inside this host to completion (output captured, no ``SHOAL_*``)."""
        return subprocess.run(
            self.wrap(cmd),
            input=input if input is not None else b"",
            capture_output=True,
            env=clean_env(),
            timeout=timeout,
            check=False,
        )

    def can_connect(self, ip: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from this host to ``ip:port`` succeeds in ``timeout`` s."""
        code = (
            "import socket, sys\n"
            "try:\n"
            "    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        cmd = [sys.executable, "-c", code, ip, str(port), str(timeout)]
        return self.run(cmd, timeout=timeout + 10).returncode == 0

    def pids(self) -> list[int]:
        """The processes running in this host right now."""
        return _netns_pids(self.name)


def can_connect(ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection from the test process to ``ip:port`` succeeds."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the LAN


@dataclass
class Lan:
    """A bridge, ``len(hosts)`` hosts on it, and the test process on it at :attr:`root_ip`."""

    tag: str
    """The random part of every name of this LAN."""
    subnet: str
    """``10.X.Y.0/24``."""
    root_ip: str
    """The test process's address on the LAN (``10.X.Y.1``)."""
    root_if: str
    """The test process's interface on the LAN (root namespace)."""
    switch: str
    """The namespace holding the bridge."""
    bridge: str
    """The bridge's name (inside :attr:`switch`)."""
    hosts: list[Host] = field(default_factory=list)

    def cut(self, i: int) -> None:
        """Unplug host ``i``: its port on the switch goes down. It reaches no one and no
        one (the test process included) reaches it; its processes keep running."""
        _in_ns(self.switch, "link", "set", "dev", self.hosts[i].port_if, "down")

    def heal(self, i: int, timeout: float = 5.0) -> None:
        """Plug host ``i`` back in; returns once its switch port forwards again."""
        port = self.hosts[i].port_if
        _in_ns(self.switch, "link", "set", "dev", port, "up")
        _wait(lambda: self._forwarding(port), f"{port} forwarding again", timeout)

    def is_cut(self, i: int) -> bool:
        """Whether host ``i`` is unplugged (:meth:`cut` and not :meth:`heal`-ed)."""
        return not self._forwarding(self.hosts[i].port_if)

    def reachable(self, i: int | None, j: int, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from host ``i`` (``None``: the test process) to
        ``port`` on host ``j`` succeeds; something must listen there."""
        ip = self.hosts[j].ip
        if i is None:
            return can_connect(ip, port, timeout)
        return self.hosts[i].can_connect(ip, port, timeout)

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the LAN: the hosts', then the switch's."""
        return [h.name for h in self.hosts] + [self.switch]

    def _forwarding(self, port_if: str) -> bool:
        out = _in_ns(self.switch, "-d", "-o", "link", "show", "dev", port_if).stdout
        return "LOWER_UP" in out and "bridge_slave state forwarding" in out


def _wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


def require_netns() -> None:
    """Skip the test (fail it under ``CI=true``) unless this process can build a LAN:
    root, and ``ip`` with network namespaces."""
    if os.geteuid() != 0:
        missing("the virtual LAN needs root (network namespaces, veth, bridge)")
    if shutil.which("ip") is None:
        missing("the virtual LAN needs `ip` (Debian: iproute2)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        missing(f"`ip netns` is unavailable here: {probe.stderr.strip()!r}")


@contextlib.contextmanager
def lan(count: int) -> Iterator[Lan]:
    """A virtual LAN of ``count`` hosts, the test process on it too, until the block ends.

    Skips the test (fails it under ``CI=true``) when network namespaces cannot be used.
    On exit, whatever happened: every process still in one of its namespaces is killed
    (SIGKILL), and its namespaces and links are deleted.
    """
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"a LAN has 1 to {MAX_HOSTS} hosts, not {count}")
    require_netns()
    sweep()
    tag = uuid.uuid4().hex[:6]
    base = f"{PREFIX}-{os.getpid()}-{tag}"
    net = Lan(
        tag=tag,
        subnet="",
        root_ip="",
        root_if=f"{PREFIX}{tag}r",
        switch=f"{base}-sw",
        bridge=f"{PREFIX}{tag}b",
    )
    created: list[str] = []
    try:
        _build(net, count, base, created)
        yield net
    finally:
        _teardown(created, net.root_if)


def _build(net: Lan, count: int, base: str, created: list[str]) -> None:
    """Create ``net``'s namespaces and links; each namespace name goes to ``created`` as
    soon as it exists (for the teardown)."""
    try:
        _ip("netns", "add", net.switch)
    except subprocess.CalledProcessError as exc:
        missing(f"cannot create a network namespace here: {exc.stderr.strip()!r}")
    created.append(net.switch)
    sw = net.switch
    try:
        _in_ns(sw, "link", "add", "name", net.bridge, "type", "bridge")
    except subprocess.CalledProcessError as exc:
        missing(f"cannot create a Linux bridge here: {exc.stderr.strip()!r}")
    # No spanning tree: a port forwards as soon as it is up (cut/heal take effect at once).
    _in_ns(sw, "link", "set", "dev", net.bridge, "type", "bridge", "stp_state", "0")
    _in_ns(sw, "link", "set", "dev", net.bridge, "type", "bridge", "forward_delay", "0")
    _in_ns(sw, "link", "set", "dev", "lo", "up")
    _in_ns(sw, "link", "set", "dev", net.bridge, "up")

    # The test process's own port, with the subnet picked while holding a lock, so two
    # runs starting together cannot pick the same one.
    uplink = f"{PREFIX}{net.tag}u"
    with _subnet_lock():
        prefix = _unused_subnet()
        net.subnet, net.root_ip = f"{prefix}.0/24", f"{prefix}.1"
        _ip("link", "add", "name", net.root_if, "type", "veth", "peer", "name", uplink, "netns", sw)
        _ip("addr", "add", f"{net.root_ip}/24", "dev", net.root_if)
    _ip("link", "set", "dev", net.root_if, "alias", f"{_OWNER_ALIAS}{os.getpid()}", check=False)
    _in_ns(sw, "link", "set", "dev", uplink, "master", net.bridge)
    _in_ns(sw, "link", "set", "dev", uplink, "up")
    _ip("link", "set", "dev", net.root_if, "up")

    for i in range(count):
        host = Host(
            index=i,
            name=f"{base}-{i}",
            ip=f"{prefix}.{i + 2}",
            ifname=f"{PREFIX}{net.tag}h{i}",
            port_if=f"{PREFIX}{net.tag}p{i}",
        )
        _ip("netns", "add", host.name)
        created.insert(0, host.name)
        _ip(
            "link", "add", "name", host.ifname, "netns", host.name,
            "type", "veth", "peer", "name", host.port_if, "netns", sw,
        )  # fmt: skip
        _in_ns(sw, "link", "set", "dev", host.port_if, "master", net.bridge)
        _in_ns(sw, "link", "set", "dev", host.port_if, "up")
        _in_ns(host.name, "addr", "add", f"{host.ip}/24", "dev", host.ifname)
        _in_ns(host.name, "link", "set", "dev", host.ifname, "up")
        _in_ns(host.name, "link", "set", "dev", "lo", "up")
        net.hosts.append(host)

    _wait(
        lambda: all(net._forwarding(p) for p in [uplink, *(h.port_if for h in net.hosts)]),
        "every port of the switch to forward",
        10.0,
    )


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    path = _LOCK_PATH if os.access(_LOCK_PATH.parent, os.W_OK) else None
    path = path or Path(tempfile.gettempdir()) / "shoal-lan.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _unused_subnet() -> str:
    """``10.X.Y``: a /24 that overlaps no address or route of this namespace."""
    used: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            used.append(ipaddress.IPv4Network(words[words.index("inet") + 1], strict=False))
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] in ("broadcast", "local", "unicast", "multicast"):
            words = words[1:]
        if words and words[0] != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(words[0], strict=False))
    rng = random.Random()
    for _ in range(1000):
        x, y = rng.randrange(64, 255), rng.randrange(256)
        candidate = ipaddress.IPv4Network(f"10.{x}.{y}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return f"10.{x}.{y}"
    raise AssertionError("no free 10.X.Y.0/24 subnet for the virtual LAN")


# --------------------------------------------------------------------------- cleanup


def _netns_pids(ns: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_all_in(ns: str, timeout: float = 5.0) -> None:
    """SIGKILL every process in namespace ``ns``; wait (a little) until they are gone."""
    deadline = time.monotonic() + timeout
    while pids := _netns_pids(ns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _teardown(namespaces: Sequence[str], root_if: str) -> None:
    """Kill the processes in ``namespaces``, delete ``root_if`` and the namespaces (which
    deletes their veth ends). Every step is attempted whatever the others did."""
    for ns in namespaces:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _kill_all_in(ns)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if _ip("link", "show", "dev", root_if, check=False).returncode == 0:
            _ip("link", "del", "dev", root_if, check=False)
    for ns in namespaces:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("netns", "del", ns, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Delete what earlier runs left: namespaces ``slan-PID-...`` and links ``slan...``
    (marked with their owner) whose owner process ``PID`` is gone. Best effort and
    idempotent; a live run's LAN is never touched. Returns the names deleted."""
    removed: list[str] = []
    listing = _ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if _alive(int(parts[1])):
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _kill_all_in(name)
            if _ip("netns", "del", name, check=False).returncode == 0:
                removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        words = line.split()
        if len(words) < 2 or not words[1].startswith(PREFIX):
            continue
        link = words[1].rstrip(":").split("@")[0]
        if _OWNER_ALIAS not in line:
            continue
        owner = line.split(_OWNER_ALIAS, 1)[1].split()[0].rstrip("\\")
        if (
            owner.isdigit()
            and not _alive(int(owner))
            and _ip("link", "del", "dev", link, check=False).returncode == 0
        ):
            removed.append(link)
    return removed


# --------------------------------------------------------------------------- shoal nodes


@dataclass
class HostServer(ShoalServer):
    """A ``shoal serve`` running in a :class:`Host` (``ip`` is the host's address)."""

    host: Host | None = None


@contextlib.contextmanager
def shoal_serve_in(
    host: Host,
    *args: str,
    api_port: int = API_PORT,
    peer_port: int = PEER_PORT,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[HostServer]:
    """Run ``shoal serve`` inside ``host`` until the block ends.

    Its HTTP API listens on ``host.ip:api_port`` and its peer server on
    ``host.ip:peer_port`` (so its URL is ``http://HOST-IP:PEER-PORT``); ``args`` come
    after those flags and can override them. Waits until ``GET /healthz`` answers 200
    (asked from the test process: the host must not be cut). On exit the process is
    stopped (SIGTERM, then SIGKILL) unless the test already stopped it, and its output
    files are removed.
    """
    workdir = Path(tempfile.mkdtemp(prefix="shoal-lan-"))
    stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
    try:
        flags = ["--api-host", host.ip, "--api-port", str(api_port)]
        flags += ["--host", host.ip, "--port", str(peer_port)]
        # The test hosts' network is private to this machine: they run unprotected
        # unless the test passes TLS, tokens and a keyring itself.
        flags += ["--insecure"]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                host.wrap(shoal_cmd("serve", *flags, *args)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else clean_env(),
                start_new_session=True,
            )
        server = HostServer(proc, api_port, stdout_path, stderr_path, peer_port, host.ip, host)
        try:
            wait_http_ok(f"{server.url}/healthz", proc, ready_timeout, stderr_path)
            yield server
        finally:
            stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
