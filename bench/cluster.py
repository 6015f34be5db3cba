"""The cluster read path: 3-node clusters on one machine, under wrk.

Three scenarios, each with ``wrk -t1 -c64 --latency`` on the HTTP API of the
first node of a 3-node cluster (``GET /api?key=K``, keys at random from a
scenario's set of the 10,000 keys ``k0`` .. ``k9999``, 100-byte values):

* (a) hits: only keys the node asked owns, all loaded there beforehand, so
  every request is a main-cache hit;
* (b) peer fetches: only keys the other two nodes own, loaded at their owners
  beforehand, and the node asked keeps nothing for the group (shoal: hot
  admission ``never``; Go: a cache budget of 0), so every request is a fetch
  over the peer protocol from the owner's cache;
* (c) hot cache: all keys, uniformly, loaded at their owners beforehand, with
  hot admission at golang/groupcache's rule (1 fetch in 10 keeps a copy, the
  only rule a Go node has) on every node. The node asked starts with an
  empty hot cache, so its hit rate climbs during the warm-up and the rounds
  (2/3 of the keys are remote, each needs some ten fetches to be kept): the
  table shows how many requests still needed a peer fetch.

Each scenario compares, in the same run, clusters of:

* shoal: three ``shoal serve`` processes (``--port``/``--api-port``/``--peers``,
  the ``shoal`` ring, the group served by ``server:load_key``);
* Go groupcache: three processes of ``bench/go/groupcache_node/main.go``
  (golang/groupcache, built here with ``go build``; GOPATH mode against the
  golang/groupcache sources), with the peer client's transport tuned to 64
  idle connections per host; in (b) and (c) also a cluster with Go's default
  transport (2 idle connections per host);
* aiohttp: three processes of ``bench/aiohttp_node.py``, shoal's core (Group,
  peer picking, ring) behind aiohttp servers and an aiohttp client session,
  with the garbage-collector settings of ``shoal serve``.

Besides throughput and latency, the table gives the CPU time the cluster's
three processes used per request (user + system, from ``/proc``): a measure
of how much work each implementation does per request that holds up better
than req/s when other processes share the machine. "Of which kernel" is the
system part: the sockets' reads and writes, loopback TCP included, which
every implementation pays alike and none can make cheaper. "wrk CPU" is the
load generator's own CPU time over the run, as a share of the one core it has:
near 100%, wrk and not the cluster sets the pace, and the req/s ratio
understates how much less work the leaner cluster does (CPU per request does
not).

Pinning: every server process runs pinned to one core (``taskset``) and wrk to
the other, so each cluster gets one core for its three nodes: in (b) the node
asked and the owners it asks share it, the same for every implementation. The
Go nodes then run with ``GOMAXPROCS=1``, as each Python node runs one thread.
All clusters of a scenario run side by side; rounds rotate which goes first,
and the ratios are medians of the per-round ratios.

The script exits 1 when something is wrong, never because something is slow:
a wrong value, wrk errors or non-2xx answers, a key loaded during the timed
runs (everything was loaded beforehand), a peer error, a node that does not
load exactly the keys it owns, (a) requests that were not hits or (b) requests
that were not peer fetches. Every process it starts is stopped at the end.

With ``--tls`` every hop runs over TLS (scenarios (a) and (b) unless
``--scenario`` says otherwise): wrk speaks https to the node asked, and the
nodes speak mutual TLS to each other (each presents its node certificate and
verifies its peers' against the CA: ``shoal serve --tls-cert --tls-key
--tls-ca``; the Go node with ``-tls-cert -tls-key -tls-ca``, its peer port
requiring a client certificate, its peer transport presenting its own, its API
on a port of its own without client certificates, as shoal's API by default).
The certificates are made for the run (``shoal.cli.tls.write_dev_pki``: ECDSA
P-256). Both sides speak HTTP/1.1 between
peers, as without TLS (``--go-http2`` lets the Go nodes speak HTTP/2 to each
other instead). The same clusters without TLS run side by side in the same
rounds, so the table gives TLS-on ÷ TLS-off for each implementation, paired by
round; the aiohttp variant is left out.

Needs ``wrk``, ``go`` and golang/groupcache's sources (Debian packages ``wrk``,
``golang-go``, ``golang-github-golang-groupcache-dev``;
``scripts/system-deps.sh`` installs them) and Linux.

Run: ``python bench/cluster.py [--quick] [--rounds N] [--duration S] [--scenario a|b|c]
[--tls [--go-http2]]`` (``--scenario`` repeatable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    BenchError,
    environment,
    markdown_table,
    median,
    process_cpu_seconds,
    run,
    spawn,
    stop,
)
from server import GROUP, KEYS, VALUE_SIZE, WrkRun, connect, fetch, pinning, run_wrk, value_of
from shoal import Ring
from shoal.cli.common import pick_free_ports
from shoal.cli.tls import write_dev_pki

CONNECTIONS = 64
HERE = Path(__file__).resolve().parent
GO_NODE = HERE / "go" / "groupcache_node"
GROUPCACHE_SOURCES = Path("src") / "github.com" / "golang" / "groupcache"
DEBIAN_GOPATH = "/usr/share/gocode"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
GO_IDLE_CONNS = 64
NODES = 3

SHOAL = "shoal"
GO_TUNED = f"Go groupcache ({GO_IDLE_CONNS} idle conns/host)"
GO_DEFAULT = "Go groupcache (Go's default transport)"
AIOHTTP = "aiohttp variant"
OVER_TLS = ", mTLS"
"""What the name of a cluster whose every hop is TLS ends with."""


@dataclass(frozen=True)
class Tls:
    """The run's certificates (``write_dev_pki``), and the client sides the script uses."""

    directory: Path

    @classmethod
    def make(cls, workdir: Path) -> Tls:
        directory = workdir / "pki"
        write_dev_pki(directory, nodes=NODES, hosts=("127.0.0.1",))
        return cls(directory)

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def node(self, i: int) -> tuple[Path, Path]:
        """Node ``i``'s certificate and key."""
        return self.directory / f"node-{i}.pem", self.directory / f"node-{i}-key.pem"

    def api_context(self) -> ssl.SSLContext:
        """What the script's API requests use: verify the node against the CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def peer_context(self) -> ssl.SSLContext:
        """What the script's peer-port probes use: the client certificate as well."""
        context = self.api_context()
        context.load_cert_chain(self.directory / "client.pem", self.directory / "client-key.pem")
        return context


@dataclass(frozen=True)
class Scenario:
    """One of the benchmark's conditions."""

    tag: str
    title: str
    keys: Callable[[Ring, str], list[str]]
    """The keys wrk asks for, given the cluster's ring and the URL of the node asked."""
    cached_at_hit_node: bool
    """Whether the node asked keeps anything (False: no hot cache, no main cache use)."""
    go_default: bool
    """Whether Go's default transport matters here (it carries the peer fetches)."""


def _owned(ring: Ring, url: str) -> list[str]:
    return [f"k{i}" for i in range(KEYS) if ring.owner(f"k{i}") == url]


def _not_owned(ring: Ring, url: str) -> list[str]:
    return [f"k{i}" for i in range(KEYS) if ring.owner(f"k{i}") != url]


def _every(ring: Ring, url: str) -> list[str]:
    return [f"k{i}" for i in range(KEYS)]


SCENARIOS = {
    "a": Scenario("a", "(a) hits on keys the node owns", _owned, True, False),
    "b": Scenario("b", "(b) every request a peer fetch", _not_owned, False, True),
    "c": Scenario("c", "(c) uniform keys, hot cache on", _every, True, True),
}


# -- nodes and clusters --------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """A node's counters for the benchmark group."""

    local_loads: int
    peer_loads: int
    peer_errors: int
    server_requests: int

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.local_loads - other.local_loads,
            self.peer_loads - other.peer_loads,
            self.peer_errors - other.peer_errors,
            self.server_requests - other.server_requests,
        )


@dataclass
class Node:
    """One server process of a cluster."""

    name: str
    url: str
    """Its URL on the ring (the peer protocol's address)."""
    api_port: int
    stats_path: str
    proc: subprocess.Popen[bytes]
    log: Path
    api_tls: ssl.SSLContext | None = None
    """TLS towards the node's API; None: plain HTTP."""

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def counters(self) -> Counters:
        """The node's counters, from its statistics route."""
        status, body = fetch(self.api_port, self.stats_path, self.api_tls)
        if status != 200:
            raise BenchError(f"{self.name}: GET {self.stats_path} answered {status} {body[:200]!r}")
        stats = json.loads(body)
        stats = stats["groups"][GROUP] if "groups" in stats else stats  # shoal's, or Go's
        return Counters(
            stats["local_loads"],
            stats["peer_loads"],
            stats["peer_errors"],
            stats["server_requests"],
        )

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time the process has used so far, all its threads: (user, system)."""
        return process_cpu_seconds(self.proc.pid)


@dataclass
class Cluster:
    """Three nodes; wrk asks the first."""

    name: str
    ring: Ring
    nodes: list[Node]
    keys: list[str] = field(default_factory=list)
    """The keys wrk asks for in the current scenario."""
    script: Path | None = None
    runs: list[WrkRun] = field(default_factory=list)
    fetches_per_request: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)
    """CPU microseconds of the three processes together per request, per run."""
    kernel_per_request: list[float] = field(default_factory=list)
    """The part of ``cpu_per_request`` spent in the kernel (system time), per run."""

    @property
    def scheme(self) -> str:
        """How wrk speaks to the node asked: ``http`` or ``https``."""
        return "http" if self.hit.api_tls is None else "https"

    @property
    def hit(self) -> Node:
        """The node wrk asks."""
        return self.nodes[0]

    def owner(self, key: str) -> Node:
        url = self.ring.owner(key)
        return next(node for node in self.nodes if node.url == url)

    def counters(self) -> list[Counters]:
        return [node.counters() for node in self.nodes]

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the three processes together."""
        times = [node.cpu_seconds() for node in self.nodes]
        return sum(user for user, _ in times), sum(system for _, system in times)

    def check_alive(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is not None:
                raise BenchError(
                    f"{node.name} exited with {node.proc.returncode}:\n{node.output()}"
                )


def _wait_ready(node: Node, peer_port: int, peer_tls: ssl.SSLContext | None) -> None:
    """Wait until the node answers on its API and on its peer port."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if node.proc.poll() is not None:
            raise BenchError(f"{node.name} exited with {node.proc.returncode}:\n{node.output()}")
        try:
            if (
                fetch(node.api_port, node.stats_path, node.api_tls, timeout=2)[0] == 200
                and fetch(peer_port, "/_groupcache/", peer_tls, timeout=2)[0] > 0
            ):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"{node.name} did not answer within {READY_TIMEOUT}s:\n{node.output()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    name: str,
    slug: str,
    flavour: str,
    commands: Sequence[tuple[list[str], int, int, str]],
    workdir: Path,
    *,
    go: bool = False,
    tls: Tls | None = None,
) -> Iterator[Cluster]:
    """Start one cluster's processes; stop them all when the block ends.

    ``commands`` holds, per node: its command line, API port, peer port and stats path.
    With ``tls`` the nodes speak https, their peer ports mutual TLS.
    """
    scheme = "http" if tls is None else "https"
    api_tls = None if tls is None else tls.api_context()
    peer_tls = None if tls is None else tls.peer_context()
    nodes: list[Node] = []
    try:
        for i, (cmd, api_port, peer_port, stats_path) in enumerate(commands):
            log = workdir / f"{slug}-{i}.log"
            # A Go node stops when its stdin closes, and is not to see GO* settings.
            proc = spawn(
                cmd,
                log,
                stdin=subprocess.PIPE if go else subprocess.DEVNULL,
                drop_env=("SHOAL_", "GO"),
            )
            url = f"{scheme}://127.0.0.1:{peer_port}"
            nodes.append(Node(f"{name} node {i}", url, api_port, stats_path, proc, log, api_tls))
        for node, (_, _, peer_port, _) in zip(nodes, commands, strict=True):
            _wait_ready(node, peer_port, peer_tls)
        ring = Ring.build([node.url for node in nodes], flavour=flavour)
        yield Cluster(name, ring, nodes)
    finally:
        stop((node.proc for node in nodes), STOP_TIMEOUT)


def shoal_cluster(
    scenario: Scenario, pin: list[str], workdir: Path, tls: Tls | None = None
) -> contextlib.AbstractContextManager[Cluster]:
    """Three ``shoal serve`` nodes; with ``tls``, over TLS with mutual TLS between them."""
    picked = pick_free_ports(2 * NODES)
    ports = list(zip(picked[:NODES], picked[NODES:], strict=True))
    scheme = "http" if tls is None else "https"
    peers = ",".join(f"{scheme}://127.0.0.1:{port}" for _, port in ports)
    commands = []
    for i, (api_port, port) in enumerate(ports):
        admission = "never" if i == 0 and not scenario.cached_at_hit_node else "random"
        cmd = [
            *pin,
            sys.executable,
            *("-m", "shoal.cli", "serve", "--log-level", "warning"),
            *("--api-host", "127.0.0.1", "--api-port", str(api_port)),
            *("--host", "127.0.0.1", "--port", str(port), "--peers", peers),
            *("--ring", "shoal", "--hot-admission", admission),
            *("--group", f"{GROUP}=server:load_key"),
        ]
        if tls is not None:
            cert, key = tls.node(i)
            cmd += ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(tls.ca)]
        commands.append((cmd, api_port, port, "/v1/stats"))
    name, slug = (SHOAL, "shoal") if tls is None else (SHOAL + OVER_TLS, "shoal-tls")
    return running(name, f"{slug}-{scenario.tag}", "shoal", commands, workdir, tls=tls)


def aiohttp_cluster(
    scenario: Scenario, pin: list[str], workdir: Path
) -> contextlib.AbstractContextManager[Cluster]:
    """Three aiohttp-based nodes (``bench/aiohttp_node.py``)."""
    picked = pick_free_ports(2 * NODES)
    ports = list(zip(picked[:NODES], picked[NODES:], strict=True))
    peers = ",".join(f"http://127.0.0.1:{port}" for _, port in ports)
    commands = []
    for i, (api_port, port) in enumerate(ports):
        admission = "never" if i == 0 and not scenario.cached_at_hit_node else "random"
        cmd = [
            *pin,
            sys.executable,
            str(HERE / "aiohttp_node.py"),
            *("--api-port", str(api_port), "--port", str(port), "--peers", peers),
            *("--hot-admission", admission),
        ]
        commands.append((cmd, api_port, port, "/v1/stats"))
    return running(AIOHTTP, f"aiohttp-{scenario.tag}", "shoal", commands, workdir)


def go_cluster(
    scenario: Scenario,
    binary: Path,
    idle_conns: int,
    pin: list[str],
    workdir: Path,
    tls: Tls | None = None,
    *,
    http2: bool = False,
) -> contextlib.AbstractContextManager[Cluster]:
    """Three golang/groupcache nodes; ``idle_conns`` 0 keeps Go's default transport.

    With ``tls``: mutual TLS on the peer ports, the API on a TLS port of its own;
    ``http2`` lets the peers speak HTTP/2.
    """
    if tls is None:
        ports = pick_free_ports(NODES)
        pairs = list(zip(ports, ports, strict=True))
    else:
        picked = pick_free_ports(2 * NODES)
        pairs = list(zip(picked[:NODES], picked[NODES:], strict=True))
    scheme = "http" if tls is None else "https"
    peers = ",".join(f"{scheme}://127.0.0.1:{port}" for _, port in pairs)
    commands = []
    for i, (api_port, port) in enumerate(pairs):
        cache_bytes = 0 if i == 0 and not scenario.cached_at_hit_node else 64 << 20
        cmd = [
            *pin,
            str(binary),
            *("-port", str(port), "-peers", peers, "-keys", str(KEYS)),
            *("-cache-bytes", str(cache_bytes), "-idle-conns", str(idle_conns)),
        ]
        if tls is not None:
            cert, key = tls.node(i)
            cmd += ["-api-port", str(api_port), "-tls-cert", str(cert), "-tls-key", str(key)]
            cmd += ["-tls-ca", str(tls.ca), *(["-http2"] if http2 else [])]
        commands.append((cmd, api_port, port, "/stats"))
    name = GO_TUNED if idle_conns else GO_DEFAULT
    slug = f"go-{idle_conns}-{scenario.tag}"
    if tls is not None:
        name += OVER_TLS + (" (peers on HTTP/2)" if http2 else "")
        slug += "-tls"
    return running(name, slug, "golang", commands, workdir, go=True, tls=tls)


# -- the Go node ---------------------------------------------------------------------


def _gopath(go: str) -> str | None:
    """A GOPATH holding golang/groupcache's sources, or None."""
    candidates = [p for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [go, "env", "GOPATH"], capture_output=True, text=True, timeout=30, check=False
        )
        candidates += [p for p in out.stdout.strip().split(os.pathsep) if p]
    candidates.append(DEBIAN_GOPATH)
    return next((p for p in candidates if (Path(p) / GROUPCACHE_SOURCES).is_dir()), None)


def build_go_node(workdir: Path) -> Path:
    """Build the Go node into ``workdir`` (GOPATH mode: no module download)."""
    go = shutil.which("go")
    if go is None:
        raise BenchError("go is not installed (Debian: apt-get install golang-go)")
    gopath = _gopath(go)
    if gopath is None:
        raise BenchError(
            "golang/groupcache's sources are not installed "
            "(Debian: apt-get install golang-github-golang-groupcache-dev)"
        )
    env = {
        **os.environ,
        "GOPATH": gopath,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(workdir / "go-cache"),
    }
    binary = workdir / "groupcache_node"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_NODE / "main.go")],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"building the Go node failed:\n{proc.stdout}\n{proc.stderr}")
    return binary


# -- preparing and checking ----------------------------------------------------------


def preload(cluster: Cluster) -> None:
    """Load every key at its owner (one GET through the owner's own API), then check
    that each node loaded exactly the keys the ring gives it: the script's ring and
    the cluster's agree."""
    for node in cluster.nodes:
        owned = [f"k{i}" for i in range(KEYS) if cluster.owner(f"k{i}") is node]
        conn = connect(node.api_port, node.api_tls, timeout=10)
        try:
            for key in owned:
                conn.request("GET", f"/api?key={key}")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or body != value_of(key):
                    raise BenchError(f"{node.name}: loading {key}: {resp.status} {body[:200]!r}")
        finally:
            conn.close()
        counters = node.counters()
        if counters.local_loads != len(owned) or counters.peer_loads:
            raise BenchError(
                f"{node.name} owns {len(owned)} keys by the ring but loaded "
                f"{counters.local_loads} and fetched {counters.peer_loads} from peers"
            )


def check_answers(cluster: Cluster) -> None:
    """The node asked answers keys it owns and keys it does not, and refuses unknown ones."""
    mine = next(f"k{i}" for i in range(KEYS) if cluster.owner(f"k{i}") is cluster.hit)
    theirs = next(f"k{i}" for i in range(KEYS) if cluster.owner(f"k{i}") is not cluster.hit)
    for key in (mine, theirs):
        status, body = fetch(cluster.hit.api_port, f"/api?key={key}", cluster.hit.api_tls)
        if status != 200 or body != value_of(key):
            raise BenchError(f"{cluster.name}: GET {key} answered {status} {body[:200]!r}")
    status, body = fetch(cluster.hit.api_port, f"/api?key=k{KEYS}", cluster.hit.api_tls)
    if status == 200:
        raise BenchError(f"{cluster.name}: GET of an unknown key answered 200 {body[:200]!r}")


LUA = """\
-- GET /api?key=K with K at random from the list; prints a JSON summary.
local keys = {{{keys}}}
local requests = {{}}
init = function(_)
  -- Built here, not at load time: wrk sets the Host header just before init.
  for i, key in ipairs(keys) do
    requests[i] = wrk.format("GET", "/api?key=" .. key)
  end
  math.randomseed({seed})
end
request = function()
  return requests[math.random(#requests)]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def measure(cluster: Cluster, scenario: Scenario, duration: float, pin_wrk: list[str]) -> None:
    """One timed wrk run, checked against the node counters; recorded in ``cluster``."""
    assert cluster.script is not None
    before = cluster.counters()
    user_before, system_before = cluster.cpu_seconds()
    run = run_wrk(cluster.hit.api_port, duration, cluster.script, pin_wrk, scheme=cluster.scheme)
    user_after, system_after = cluster.cpu_seconds()
    system = system_after - system_before
    cpu = user_after - user_before + system
    after = cluster.counters()
    cluster.check_alive()
    delta = [a - b for a, b in zip(after, before, strict=True)]
    requests = run.rps * duration
    for node, d in zip(cluster.nodes, delta, strict=True):
        if d.local_loads or d.peer_errors:
            raise BenchError(
                f"{node.name}: {d.local_loads} loads and {d.peer_errors} peer errors during "
                "a timed run (every key was loaded beforehand)"
            )
    fetches = delta[0].peer_loads
    served = sum(d.server_requests for d in delta[1:])
    if fetches > served:
        raise BenchError(f"{cluster.name}: {fetches} peer fetches but {served} served by owners")
    per_request = fetches / requests if requests else 0.0
    if scenario.tag == "a" and fetches:
        raise BenchError(f"{cluster.name}: {fetches} peer fetches in (a), where all are hits")
    # Singleflight may merge a few concurrent requests for one key into one fetch.
    if scenario.tag == "b" and per_request < 0.9:
        raise BenchError(
            f"{cluster.name}: {per_request:.2f} peer fetches per request in (b), where "
            "every request should be one"
        )
    cluster.runs.append(run)
    cluster.fetches_per_request.append(per_request)
    cluster.cpu_per_request.append(cpu / requests * 1e6 if requests else 0.0)
    cluster.kernel_per_request.append(system / requests * 1e6 if requests else 0.0)


# -- the run -------------------------------------------------------------------------


def run_scenario(
    scenario: Scenario,
    binary: Path,
    rounds: int,
    duration: float,
    pins: tuple[list[str], list[str]],
    workdir: Path,
    tls: Tls | None = None,
    *,
    go_http2: bool = False,
) -> list[Cluster]:
    """Start the scenario's clusters, prepare them, time them; stop them again.

    Without ``tls``: shoal, Go (tuned, and default where it matters), aiohttp. With
    it: shoal and Go over TLS (Go's default transport too where it matters), then
    shoal and Go without TLS, for the TLS-on ÷ TLS-off ratios.
    """
    pin_server, pin_wrk = pins
    with contextlib.ExitStack() as stack:
        clusters = [
            stack.enter_context(shoal_cluster(scenario, pin_server, workdir, tls)),
            stack.enter_context(
                go_cluster(
                    scenario, binary, GO_IDLE_CONNS, pin_server, workdir, tls, http2=go_http2
                )
            ),
        ]
        if scenario.go_default:
            clusters.append(
                stack.enter_context(
                    go_cluster(scenario, binary, 0, pin_server, workdir, tls, http2=go_http2)
                )
            )
        if tls is None:
            clusters.append(stack.enter_context(aiohttp_cluster(scenario, pin_server, workdir)))
        else:
            clusters.append(stack.enter_context(shoal_cluster(scenario, pin_server, workdir)))
            clusters.append(
                stack.enter_context(
                    go_cluster(scenario, binary, GO_IDLE_CONNS, pin_server, workdir)
                )
            )
        for i, cluster in enumerate(clusters):
            preload(cluster)
            check_answers(cluster)
            cluster.keys = scenario.keys(cluster.ring, cluster.hit.url)
            cluster.script = workdir / f"keys-{scenario.tag}-{i}.lua"
            keys = ",".join(f'"{key}"' for key in cluster.keys)
            cluster.script.write_text(LUA.format(keys=keys, seed=42))
            # Warm-up, not reported: connections, and in (c) the hot caches.
            warm_up = 2 if scenario.tag == "c" else 1
            run_wrk(cluster.hit.api_port, warm_up, cluster.script, pin_wrk, scheme=cluster.scheme)
        for r in range(rounds):
            shift = r % len(clusters)
            for cluster in clusters[shift:] + clusters[:shift]:
                measure(cluster, scenario, duration, pin_wrk)
        for cluster in clusters:
            cluster.check_alive()
    return clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per cluster")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable; default all, or a and b with --tls)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="every hop over TLS (mutual TLS between nodes), beside the same clusters without",
    )
    parser.add_argument(
        "--go-http2", action="store_true", help="with --tls, Go peers speak HTTP/2 to each other"
    )
    args = parser.parse_args(argv)
    if args.go_http2 and not args.tls:
        parser.error("--go-http2 needs --tls")
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    tags = args.scenario or (["a", "b"] if args.tls else sorted(SCENARIOS))
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    pin_server, pin_wrk, pin_note = pinning()

    results: list[tuple[Scenario, list[Cluster]]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        workdir = Path(tmp)
        binary = build_go_node(workdir)
        tls = Tls.make(workdir) if args.tls else None
        for tag in tags:
            scenario = SCENARIOS[tag]
            clusters = run_scenario(
                scenario,
                binary,
                rounds,
                duration,
                (pin_server, pin_wrk),
                workdir,
                tls,
                go_http2=args.go_http2,
            )
            results.append((scenario, clusters))

    def paired(a: Cluster, b: Cluster) -> float:
        """Median of the per-round req/s ratios a/b."""
        return median([x.rps / y.rps for x, y in zip(a.runs, b.runs, strict=True)])

    def cpu_ratio(a: Cluster, b: Cluster) -> float:
        """Median of the per-round ratios of CPU per request b/a (how much leaner a is)."""
        pairs = zip(a.cpu_per_request, b.cpu_per_request, strict=True)
        return median([y / x for x, y in pairs if x])

    rows = []
    verdicts = []
    targets = {"a": 1.3, "b": 2.0} if args.tls else {"a": 1.5, "b": 2.0}
    for scenario, clusters in results:
        shoal = clusters[0]
        by_name = {cluster.name: cluster for cluster in clusters}
        for cluster in clusters:
            mid = sorted(cluster.runs, key=lambda run: run.rps)[len(cluster.runs) // 2]
            rows.append(
                [
                    scenario.title if cluster is shoal else "",
                    cluster.name,
                    f"{mid.rps:,.0f}",
                    f"{mid.p50_ms:.2f}",
                    f"{mid.p99_ms:.2f}",
                    f"{median(cluster.fetches_per_request):.2f}",
                    f"{median(cluster.cpu_per_request):.1f}",
                    f"{median(cluster.kernel_per_request):.1f}",
                    f"{median([run.load for run in cluster.runs]):.0%}",
                    f"{paired(shoal, cluster):.2f}x",
                    f"{cpu_ratio(shoal, cluster):.2f}x",
                ]
            )
        go = clusters[1]  # the tuned Go cluster, over TLS with --tls
        line = (
            f"{scenario.title}: shoal/Go {paired(shoal, go):.2f}x req/s "
            f"({cpu_ratio(shoal, go):.2f}x less CPU per request)"
        )
        if AIOHTTP in by_name:
            aio = by_name[AIOHTTP]
            line += f", shoal/aiohttp {paired(shoal, aio):.2f}x ({cpu_ratio(shoal, aio):.2f}x)"
        default = next((c for c in clusters if c.name.startswith(GO_DEFAULT)), None)
        if default is not None:
            line += f", shoal/Go with its default transport {paired(shoal, default):.2f}x"
        if args.tls:
            line = line.replace(": shoal/Go", ": over mutual TLS, shoal/Go", 1)
        target = targets.get(scenario.tag)
        if target is not None:
            ratio = paired(shoal, go)
            line += f"; target ≥ {target:g}x Go: {'met' if ratio >= target else 'missed'}"
        if args.tls:
            plain_shoal, plain_go = by_name[SHOAL], by_name[GO_TUNED]
            line += (
                f"; TLS on ÷ off: shoal {paired(shoal, plain_shoal):.2f}x req/s "
                f"({cpu_ratio(plain_shoal, shoal):.2f}x the CPU per request), "
                f"Go {paired(go, plain_go):.2f}x req/s "
                f"({cpu_ratio(plain_go, go):.2f}x the CPU per request)"
            )
        verdicts.append(line + ".")

    over = ""
    if args.tls:
        over = (
            "; clusters marked mTLS: wrk over https, mutual TLS between the nodes "
            "(ECDSA P-256 certificates), peers on "
            + ("HTTP/2 between Go nodes" if args.go_http2 else "HTTP/1.1")
        )
    print(
        f"Cluster read path: 3 nodes on 127.0.0.1, GET /api?key= on the first node, "
        f"{KEYS:,} keys ({VALUE_SIZE}-byte values), wrk -t1 -c{CONNECTIONS} -d{duration:g}s "
        f"--latency, {rounds} round(s) per cluster, uvloop; {pin_note} "
        f"(each cluster's three nodes share one core){over}\n"
    )
    headers = [
        "scenario",
        "cluster",
        "req/s",
        "p50 ms",
        "p99 ms",
        "peer fetches/req",
        "CPU µs/req",
        "of which kernel",
        "wrk CPU",
        "req/s: shoal ÷ this",
        "CPU/req: this ÷ shoal",
    ]
    print(markdown_table(headers, rows, align="llrrrrrrrrr"))
    print()
    for line in verdicts:
        print(f"- {line}")
    command = " ".join(["python bench/cluster.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
