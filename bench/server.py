"""HTTP API throughput: ``GET /api?key=`` hits against one node on one core.

Three servers run side by side, each in its own process pinned to the same
core (``taskset``) on uvloop, holding the same 10,000 keys (``k0`` ..
``k9999``, 100-byte values):

* shoal: ``shoal serve --group bench=server:load_key`` (or, with
  ``--server node``, a ``Node(NodeConfig(api_port=...))`` started by this
  script), every key loaded once before timing, so every request is a hit;
* baseline: an aiohttp server answering the same request from a dict;
* reference: the least a Python server can do here, an asyncio ``Protocol``
  with the ``httptools`` parser answering from a dict, with no routing, no
  checks and no statistics (the ceiling for shoal's API on the machine).

``wrk -t1 -c64 --latency`` runs pinned to another core, with a Lua script that
spreads the requests over the 10,000 keys at random. Rounds rotate the order
of the servers; the table shows the median round's requests per second, p50
and p99 latency, the server's CPU time (user + system, from ``/proc``) per
request, wrk's own CPU use (its CPU time over the run, as a share of its core:
near 100% wrk sets the pace, not the server, and the req/s ratio understates
the difference in CPU per request), and the medians of the per-round ratios
of throughput and of CPU per request. The
script exits 1 if a server answers wrongly, if wrk sees errors or non-2xx
answers, or if shoal had to load a key during the timed runs (a request that
was not a hit).

Needs ``wrk`` (Debian package ``wrk``; ``scripts/system-deps.sh`` installs it)
and Linux. Every socket is on 127.0.0.1.

Run: ``python bench/server.py [--quick] [--server cli|node]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from _common import (
    BenchError,
    child_process,
    environment,
    markdown_table,
    median,
    process_cpu_seconds,
    run,
)
from shoal import NotFound
from shoal.cli.common import pick_free_ports

KEYS = 10_000
VALUE_SIZE = 100
GROUP = "bench"
CONNECTIONS = 64
READY_TIMEOUT = 60.0
AIOHTTP = "aiohttp"
MINIMAL = "reference: asyncio Protocol + httptools + dict"


def value_of(key: str) -> bytes:
    """The value of ``key``: ``VALUE_SIZE`` bytes derived from it."""
    return key.encode().ljust(VALUE_SIZE, b".")


KNOWN = frozenset(f"k{i}" for i in range(KEYS))


async def load_key(key: str) -> bytes:
    """The loader of the benchmark group: answers ``k0`` .. ``k9999``, NotFound otherwise."""
    if key not in KNOWN:
        raise NotFound(key)
    return value_of(key)


# -- the server processes -----------------------------------------------------------


async def serve_node(port: int, stop: asyncio.Event) -> None:
    """A shoal node with the benchmark group, every key loaded before it listens."""
    from shoal import Node, NodeConfig

    node = Node(NodeConfig(api_host="127.0.0.1", api_port=port))
    group = node.group(GROUP, load_key)
    await asyncio.gather(*(group.get(f"k{i}") for i in range(KEYS)))
    async with node:
        await stop.wait()


async def serve_aiohttp(port: int, stop: asyncio.Event) -> None:
    """The baseline: an aiohttp server answering ``GET /api?key=`` from a dict."""
    from aiohttp import web

    data = {f"k{i}": value_of(f"k{i}") for i in range(KEYS)}

    async def api(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        value = data.get(key)
        if value is None:
            return web.json_response({"error": f"key not found: {key!r}"}, status=404)
        return web.Response(body=value, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/api", api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


class MinimalProtocol(asyncio.Protocol):
    """The reference server's connection: parse with httptools, answer from a dict."""

    def __init__(self, data: dict[str, bytes]) -> None:
        import httptools

        self.data = data
        self.url = b""
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        assert self.transport is not None
        _, _, query = self.url.partition(b"?")
        value = self.data.get(query[4:].decode()) if query.startswith(b"key=") else None
        if value is None:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        else:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(value), value)
            )
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve_minimal(port: int, stop: asyncio.Event) -> None:
    """The reference: a bare asyncio Protocol + httptools server over a dict."""
    data = {f"k{i}": value_of(f"k{i}") for i in range(KEYS)}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: MinimalProtocol(data), "127.0.0.1", port)
    async with server:
        await stop.wait()


SERVERS = {"node": serve_node, "aiohttp": serve_aiohttp, "minimal": serve_minimal}


def child(kind: str, port: int) -> int:
    """Run one server (``node``, ``aiohttp`` or ``minimal``) on uvloop until SIGTERM."""
    from shoal.node import new_event_loop

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await SERVERS[kind](port, stop)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run())
    return 0


# -- the parent: start, check, load, report ----------------------------------------


def connect(
    port: int, context: ssl.SSLContext | None = None, timeout: float = 5.0
) -> http.client.HTTPConnection:
    """A connection to ``127.0.0.1:port``, over TLS when ``context`` is given."""
    if context is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)


def fetch(
    port: int, path: str, context: ssl.SSLContext | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One GET on a fresh connection (over TLS with ``context``): (status, body)."""
    conn = connect(port, context, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    """A server process under test."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    runs: list[WrkRun] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)
    """CPU microseconds (user + system) of the server process per request, per run."""

    def measure(self, duration: float, script: Path, pin: list[str]) -> None:
        """One timed wrk run, recorded with the server's CPU time per request."""
        before = sum(process_cpu_seconds(self.proc.pid))
        run = run_wrk(self.port, duration, script, pin)
        cpu = sum(process_cpu_seconds(self.proc.pid)) - before
        self.runs.append(run)
        self.cpu_per_request.append(cpu / (run.rps * duration) * 1e6)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def started(name: str, cmd: Sequence[str], port: int, workdir: Path) -> Iterator[Server]:
    """Run ``cmd`` until the block ends; wait until ``GET /api?key=k0`` answers 200."""
    log = workdir / f"{name.split()[0]}.log"

    def ready() -> bool:
        return fetch(port, "/api?key=k0", timeout=2)[0] == 200

    with child_process(name, cmd, log, ready, ready_timeout=READY_TIMEOUT) as proc:
        yield Server(name, port, proc, log)


def warm(port: int, context: ssl.SSLContext | None = None, name: str = "warming") -> None:
    """GET every key once over one keep-alive connection (each is a miss, then cached)."""
    conn = connect(port, context, timeout=10)
    try:
        for i in range(KEYS):
            conn.request("GET", f"/api?key=k{i}")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != value_of(f"k{i}"):
                raise BenchError(f"{name}: k{i} answered {resp.status} {body[:200]!r}")
    finally:
        conn.close()


def check_answers(server: Server) -> None:
    """A few known keys answer their value, an unknown key answers 404."""
    for key in ("k0", "k1", "k4242", f"k{KEYS - 1}"):
        status, body = fetch(server.port, f"/api?key={key}")
        if status != 200 or body != value_of(key):
            raise BenchError(f"{server.name}: GET {key} answered {status} {body[:200]!r}")
    status, body = fetch(server.port, f"/api?key=k{KEYS}")
    if status != 404:
        raise BenchError(f"{server.name}: GET of an unknown key answered {status} {body[:200]!r}")


def shoal_loads(port: int) -> int:
    """Loads the benchmark group has done, from ``GET /v1/stats``."""
    status, body = fetch(port, "/v1/stats")
    if status != 200:
        raise BenchError(f"GET /v1/stats answered {status} {body[:200]!r}")
    loads: int = json.loads(body)["groups"][GROUP]["loads"]
    return loads


LUA = """\
-- Spreads GET /api?key=k<N> over the keys at random; prints a JSON summary.
local keys = {keys}
local requests = {{}}
init = function(_)
  -- Built here, not at load time: wrk sets the Host header just before init.
  for i = 0, keys - 1 do
    requests[i + 1] = wrk.format("GET", "/api?key=k" .. i)
  end
  math.randomseed({seed})
end
request = function()
  return requests[math.random(keys)]
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


@dataclass
class WrkRun:
    """The outcome of one wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    load: float
    """wrk's own CPU time over the run's duration: 1.0 is its whole core (the load
    generator, not the server, then sets the pace)."""


def run_wrk(
    port: int,
    duration: float,
    script: Path,
    pin: list[str],
    *,
    check: bool = True,
    scheme: str = "http",
    connections: int = CONNECTIONS,
) -> WrkRun:
    """Run wrk against ``port`` (``scheme`` ``https`` for TLS) and parse its summary."""
    cmd = [
        *pin,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"{scheme}://127.0.0.1:{port}/",
    ]
    # wrk is the only child that ends during the call: its CPU time is the difference.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    s = json.loads(line.removeprefix("WRK_JSON "))
    errors = {k: s[k] for k in ("connect", "read", "write", "status", "timeout") if s[k]}
    if check and errors:
        raise BenchError(f"wrk saw errors {errors} (status = non-2xx answers):\n{proc.stdout}")
    if not s["requests"]:
        raise BenchError(f"wrk made no requests:\n{proc.stdout}")
    seconds = s["duration_us"] / 1e6
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return WrkRun(
        rps=s["requests"] / seconds,
        p50_ms=s["p50_us"] / 1e3,
        p99_ms=s["p99_us"] / 1e3,
        load=cpu / seconds,
    )


def pinning() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the servers and for wrk, and a note on what was done."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], [], "not pinned (needs taskset and 2 CPUs)"
    server, client = cpus[0], cpus[1]
    note = f"servers pinned to CPU {server}, wrk to CPU {client}"
    return ["taskset", "-c", str(server)], ["taskset", "-c", str(client)], note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per server")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--server",
        choices=("cli", "node"),
        default="cli",
        help="start shoal with `shoal serve` (default) or as a Node in a script",
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]))
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    pin_server, pin_wrk, pin_note = pinning()

    if args.server == "cli":
        shoal_name = "shoal (shoal serve)"
        shoal_cmd = [
            *("-m", "shoal.cli", "serve", "--api-host", "127.0.0.1", "--log-level", "warning"),
            *("--group", f"{GROUP}=server:load_key", "--api-port"),
        ]
    else:
        shoal_name = "shoal (Node)"
        shoal_cmd = [__file__, "--child", "node"]
    plan = [
        (shoal_name, shoal_cmd),
        (AIOHTTP, [__file__, "--child", "aiohttp"]),
        (MINIMAL, [__file__, "--child", "minimal"]),
    ]

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-bench-")))
        script = workdir / "keys.lua"
        script.write_text(LUA.format(keys=KEYS, seed=42))
        servers: list[Server] = []
        for (name, cmd), port in zip(plan, pick_free_ports(len(plan)), strict=True):
            argv_ = [*pin_server, sys.executable, *cmd, str(port)]
            servers.append(stack.enter_context(started(name, argv_, port, workdir)))
        shoal, base = servers[0], servers[1]
        if args.server == "cli":
            warm(shoal.port)
        for server in servers:
            check_answers(server)
            run_wrk(server.port, 1, script, pin_wrk)  # warm-up, not reported
        loads_before = shoal_loads(shoal.port)
        if loads_before < KEYS:
            raise BenchError(f"shoal loaded {loads_before} keys before timing, not {KEYS}")

        for r in range(rounds):
            shift = r % len(servers)
            for server in servers[shift:] + servers[:shift]:
                server.measure(duration, script, pin_wrk)

        loads_after = shoal_loads(shoal.port)
        if loads_after != loads_before:
            raise BenchError(
                f"shoal loaded {loads_after - loads_before} keys during the timed runs "
                "(every request should be a hit)"
            )
        for server in servers:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited during the run:\n{server.output()}")

    def ratio_to_base(server: Server) -> float:
        return median([a.rps / b.rps for a, b in zip(server.runs, base.runs, strict=True)])

    def cpu_ratio_to_base(server: Server) -> float:
        """How much less CPU per request than the baseline (median of the rounds)."""
        pairs = zip(server.cpu_per_request, base.cpu_per_request, strict=True)
        return median([b / a for a, b in pairs if a])

    rows = []
    for server in servers:
        mid = sorted(server.runs, key=lambda run: run.rps)[len(server.runs) // 2]
        rows.append(
            [
                server.name,
                f"{mid.rps:,.0f}",
                f"{mid.p50_ms:.2f}",
                f"{mid.p99_ms:.2f}",
                f"{median(server.cpu_per_request):.1f}",
                f"{median([run.load for run in server.runs]):.0%}",
                f"{ratio_to_base(server):.2f}x",
                f"{cpu_ratio_to_base(server):.2f}x",
            ]
        )
    print(
        f"HTTP API: GET /api?key= hits over {KEYS:,} keys ({VALUE_SIZE}-byte values), "
        f"wrk -t1 -c{CONNECTIONS} -d{duration:g}s --latency, {rounds} round(s) per server, "
        f"one core per server, uvloop; {pin_note}\n"
    )
    headers = ["server", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "wrk CPU"]
    headers += ["req/s: this ÷ aiohttp", "CPU/req: aiohttp ÷ this"]
    print(markdown_table(headers, rows))
    ratio = ratio_to_base(shoal)
    verdict = "met" if ratio >= 3.0 else "missed"
    print(
        f"\nTarget: shoal ≥ 3x aiohttp req/s: {ratio:.2f}x, {verdict} "
        f"({cpu_ratio_to_base(shoal):.2f}x less CPU per request)."
    )
    command = "python bench/server.py" + (" --quick" if args.quick else "")
    if args.server != "cli":
        command += f" --server {args.server}"
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
