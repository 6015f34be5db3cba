"""What TLS costs on the HTTP API: the same node plaintext and with TLS, in one run.

Two ``shoal serve`` processes hold the same 10,000 keys (``bench/server.py``'s group
and values, every request a hit), one plaintext and one with ``--tls-cert/--tls-key``
(an ECDSA P-256 certificate made for the run by :func:`shoal.cli.tls.write_dev_pki`),
each pinned to the same core on uvloop. ``wrk -t1 --latency``, pinned to another
core, runs two loads against each:

* keep-alive: 64 connections, each carrying request after request (the handshake
  is paid once per connection; what remains is encryption);
* a connection per request: 16 connections sending ``Connection: close``, so every
  request pays a TCP connect and (with TLS) a full handshake.

Rounds rotate the order of the servers; the table shows the median round's requests
per second, p50 and p99, the server's CPU time per request, and the medians of the
per-round ratios TLS ÷ plaintext. The script exits 1 on a wrong answer, a wrk error
or a load during the timed runs.

``--compare SRC`` adds a third server, TLS again but running the shoal of another
source tree (``SRC`` is its ``src`` directory, e.g. of a ``git worktree`` of an
older commit), so that a change to the TLS path is measured against its baseline in
the same run.

Run: ``python bench/tls.py [--quick] [--compare SRC]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import BenchError, child_process, environment, markdown_table, median, run
from _common import process_cpu_seconds as cpu_seconds
from server import (
    GROUP,
    KEYS,
    LUA,
    READY_TIMEOUT,
    VALUE_SIZE,
    WrkRun,
    fetch,
    pinning,
    run_wrk,
    warm,
)
from shoal.cli.common import pick_free_ports
from shoal.cli.tls import write_dev_pki
from shoal.tls import client_context

LOADS = {
    "keep-alive": (64, LUA),
    "a connection per request": (
        16,
        LUA.replace(
            'wrk.format("GET", "/api?key=k" .. i)',
            'wrk.format("GET", "/api?key=k" .. i, {{["Connection"] = "close"}})',
        ),
    ),
}


@dataclass
class Server:
    """One ``shoal serve`` process under test."""

    name: str
    port: int
    pid: int
    context: ssl.SSLContext | None
    runs: dict[str, list[WrkRun]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    """CPU microseconds (user + system) of the server per request, per run."""

    @property
    def scheme(self) -> str:
        return "https" if self.context is not None else "http"

    def get(self, path: str) -> tuple[int, bytes]:
        return fetch(self.port, path, self.context, timeout=10)

    def warm(self) -> None:
        """GET every key once over one keep-alive connection (each a miss, then cached)."""
        warm(self.port, self.context, name=self.name)

    def loads(self) -> int:
        status, body = self.get("/v1/stats")
        if status != 200:
            raise BenchError(f"{self.name}: GET /v1/stats answered {status}")
        loads: int = json.loads(body)["groups"][GROUP]["loads"]
        return loads

    def measure(self, load: str, duration: float, script: Path, pin: list[str]) -> None:
        before = sum(cpu_seconds(self.pid))
        connections = LOADS[load][0]
        result = run_wrk(
            self.port, duration, script, pin, scheme=self.scheme, connections=connections
        )
        used = sum(cpu_seconds(self.pid)) - before
        self.runs.setdefault(load, []).append(result)
        self.cpu.setdefault(load, []).append(used / (result.rps * duration) * 1e6)


@contextlib.contextmanager
def started(
    name: str, port: int, tls: list[str], context: ssl.SSLContext | None, pin: list[str], log: Path
) -> Iterator[Server]:
    cmd = [
        *pin,
        sys.executable,
        *("-m", "shoal.cli", "serve", "--api-host", "127.0.0.1", "--api-port", str(port)),
        *("--log-level", "warning", "--group", f"{GROUP}=server:load_key", *tls),
    ]
    server = Server(name, port, 0, context)

    def ready() -> bool:
        return server.get("/healthz")[0] == 200

    with child_process(name, cmd, log, ready, ready_timeout=READY_TIMEOUT) as proc:
        server.pid = proc.pid
        yield server


@contextlib.contextmanager
def python_path(src: str | None) -> Iterator[None]:
    """Let the processes started meanwhile import shoal from ``src`` (None: as usual)."""
    if src is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, old]))
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per load")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also run a TLS server on the shoal of this src directory (a baseline)",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    pin_server, pin_wrk, pin_note = pinning()

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-bench-")))
        pki = workdir / "pki"
        write_dev_pki(pki, nodes=1)
        scripts = {}
        for load, (_, lua) in LOADS.items():
            scripts[load] = workdir / f"{load.replace(' ', '-')}.lua"
            scripts[load].write_text(lua.format(keys=KEYS, seed=42))
        tls_flags = [
            "--tls-cert",
            str(pki / "node-0.pem"),
            "--tls-key",
            str(pki / "node-0-key.pem"),
        ]
        plain_port, tls_port = pick_free_ports(2)
        servers = [
            stack.enter_context(
                started("plaintext", plain_port, [], None, pin_server, workdir / "plain.log")
            ),
            stack.enter_context(
                started(
                    "TLS",
                    tls_port,
                    tls_flags,
                    client_context(ca=str(pki / "ca.pem")),
                    pin_server,
                    workdir / "tls.log",
                )
            ),
        ]
        if args.compare:
            (compare_port,) = pick_free_ports(1)
            with python_path(str(Path(args.compare).resolve())):
                servers.append(
                    stack.enter_context(
                        started(
                            f"TLS ({args.compare})",
                            compare_port,
                            tls_flags,
                            client_context(ca=str(pki / "ca.pem")),
                            pin_server,
                            workdir / "compare.log",
                        )
                    )
                )
        for server in servers:
            server.warm()
            for load in LOADS:
                run_wrk(  # warm-up, not reported
                    server.port, 1, scripts[load], pin_wrk, scheme=server.scheme
                )
        before = [server.loads() for server in servers]
        if any(n < KEYS for n in before):
            raise BenchError(f"loads before timing {before}, not {KEYS} each")
        for r in range(rounds):
            for load in LOADS:
                shift = r % len(servers)
                order = servers[shift:] + servers[:shift]
                for server in order:
                    server.measure(load, duration, scripts[load], pin_wrk)
        after = [server.loads() for server in servers]
        if after != before:
            raise BenchError(f"loads during the timed runs: {before} -> {after}")

    plain = servers[0]
    rows = []
    for load in LOADS:
        for server in servers:
            ratio = median(
                [t.rps / p.rps for t, p in zip(server.runs[load], plain.runs[load], strict=True)]
            )
            cpu = median(
                [t / p for t, p in zip(server.cpu[load], plain.cpu[load], strict=True) if p]
            )
            runs = server.runs[load]
            mid = sorted(runs, key=lambda run: run.rps)[len(runs) // 2]
            rows.append(
                [
                    load,
                    server.name,
                    f"{mid.rps:,.0f}",
                    f"{mid.p50_ms:.2f}",
                    f"{mid.p99_ms:.2f}",
                    f"{median(server.cpu[load]):.1f}",
                    f"{ratio:.2f}x",
                    f"{cpu:.2f}x",
                ]
            )
    print(
        f"HTTP API: GET /api?key= hits over {KEYS:,} keys ({VALUE_SIZE}-byte values), "
        f"wrk -t1 -d{duration:g}s --latency, {rounds} round(s) per load and server, "
        f"one core per server, uvloop; {pin_note}\n"
    )
    headers = ["load", "server", "req/s", "p50 ms", "p99 ms", "CPU µs/req"]
    headers += ["req/s: this ÷ plaintext", "CPU/req: this ÷ plaintext"]
    print(markdown_table(headers, rows))
    command = "python bench/tls.py" + (" --quick" if args.quick else "")
    command += f" --compare {args.compare}" if args.compare else ""
    print(f"\n{environment()}; command: `{command}`")
    return 0


if __name__ == "__main__":
    run(main)
