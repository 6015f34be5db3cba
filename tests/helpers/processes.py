"""Real processes for tests: free ports, ``shoal serve`` nodes and clusters of them,
commands in their own process group, and waiting on all of these.

Everything started here is stopped by the context manager that started it:
first SIGTERM, then SIGKILL if the process does not exit in time. Output goes
to temporary files (a pipe could fill up and block the server), which are
removed afterwards. Ports are picked below 32768 (see :func:`free_ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from shoal.ring import Ring

__all__ = [
    "free_port",
    "free_ports",
    "free_port_range",
    "clean_env",
    "shoal_cmd",
    "run_shoal",
    "ShoalServer",
    "shoal_serve",
    "ShoalCluster",
    "shoal_cluster",
    "shoal_nodes",
    "Request",
    "UnderLoad",
    "sigkill_under_load",
    "LoadLog",
    "CountedCluster",
    "loaded_value",
    "ProcessGroup",
    "process_group",
    "process_gone",
]

T = TypeVar("T")

READY_TIMEOUT = 30.0
"""Seconds a server may take to come up before the test fails."""

STOP_TIMEOUT = 10.0
"""Seconds a stopped process may take to exit before it is killed."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    Picked below 32768, out of the kernel's ephemeral range: a port from that
    range could be taken, between the pick and the server's bind, by the local
    end of one of the many connections the tests open.
    """
    rng = random.Random()
    ports: list[int] = []
    for _ in range(200 * count):
        if len(ports) == count:
            return ports
        port = rng.randrange(10000, 32768)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    raise AssertionError(f"could not find {count} free ports")


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports on 127.0.0.1, below 32768."""
    rng = random.Random()
    for _ in range(500):
        first = rng.randrange(10000, 32768 - count)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise AssertionError(f"could not find {count} consecutive free ports")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (see :func:`free_ports`)."""
    return free_ports(1)[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``SHOAL_*`` variable but ``SHOAL_DRAIN=0``,
    plus ``extra``.

    A developer's own ``SHOAL_URL`` or ``SHOAL_GROUP`` must not leak into a test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    # Nodes a test starts stop at once on SIGTERM, unless the test asks for a drain.
    env["SHOAL_DRAIN"] = "0"
    env.update(extra)
    return env


def shoal_cmd(*args: str) -> list[str]:
    """The command line that runs the ``shoal`` CLI with ``args`` under this interpreter."""
    return [sys.executable, "-m", "shoal", *args]


def run_shoal(
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run one ``shoal`` command to completion and return its exit code and output."""
    return subprocess.run(
        shoal_cmd(*args),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=dict(env) if env is not None else clean_env(),
        timeout=timeout,
        check=False,
    )


@dataclass
class ShoalServer:
    """A running ``shoal serve`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    peer_port: int | None = None
    ip: str = "127.0.0.1"
    """The address it listens on (another one for a server in a network namespace)."""

    @property
    def url(self) -> str:
        """Base URL of the server's HTTP API."""
        return f"http://{self.ip}:{self.port}"

    @property
    def peer_url(self) -> str:
        """The node's URL on the ring (its peer server)."""
        assert self.peer_port is not None, "this server has no peer port"
        return f"http://{self.ip}:{self.peer_port}"

    def stdout(self) -> str:
        """Everything the server printed to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the server printed to stderr so far (its log)."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit code; kill the process if it takes too long.

        Raises:
            AssertionError: the process did not exit within ``timeout`` after ``sig``.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            raise AssertionError(
                f"shoal serve ignored {sig.name} for {timeout}s; killed it.\n"
                f"stderr:\n{self.stderr()}"
            ) from None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill; always reaps the process."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_get(url: str) -> tuple[int, bytes]:
    """GET ``url`` like curl: the status and body, for error statuses too."""
    return http_request("GET", url)


def http_request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """``method`` ``url`` like curl: the status and body, for error statuses too."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def group_stats(node: ShoalServer, group: str) -> dict[str, Any]:
    """The statistics of ``group`` on ``node``, from its ``GET /v1/stats``."""
    status, body = http_get(f"{node.url}/v1/stats")
    assert status == 200, body
    stats: dict[str, Any] = json.loads(body)["groups"][group]
    return stats


async def until(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Poll ``condition`` (cheaply, on the loop) until it holds; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(
                f"shoal serve exited with {proc.returncode} before it was ready.\n"
                f"stderr:\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"shoal serve did not answer {url} within {timeout}s.\n"
                f"stderr:\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.05)


def _spawn_serve(
    args: Sequence[str], port: int, env: Mapping[str, str] | None, workdir: Path
) -> ShoalServer:
    """Start ``shoal serve --api-port PORT *args`` with its output in ``workdir``."""
    stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            shoal_cmd("serve", "--api-host", "127.0.0.1", "--api-port", str(port), *args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else clean_env(),
            # Its own session: a Ctrl-C in the terminal reaches pytest only,
            # which then stops the server through this context manager.
            start_new_session=True,
        )
    return ShoalServer(proc, port, stdout_path, stderr_path)


@contextlib.contextmanager
def shoal_serve(
    *args: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ShoalServer]:
    """Run ``shoal serve --api-port PORT *args`` until the block ends.

    Waits until ``GET /healthz`` answers 200. On exit the process is stopped
    (SIGTERM, then SIGKILL) unless the test already stopped it, and its
    output files are removed.
    """
    port = port if port is not None else free_port()
    workdir = Path(tempfile.mkdtemp(prefix="shoal-serve-"))
    try:
        server = _spawn_serve(args, port, env, workdir)
        try:
            wait_http_ok(f"{server.url}/healthz", server.proc, ready_timeout, server.stderr_path)
            yield server
        finally:
            stop(server.proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class ShoalCluster:
    """Running ``shoal serve`` processes that are members of one cluster."""

    nodes: list[ShoalServer]
    ring: str = "shoal"
    _ring: Ring | None = field(default=None, repr=False)

    @property
    def urls(self) -> list[str]:
        """The members' URLs, in the order every node was given them."""
        return [node.peer_url for node in self.nodes]

    def owner(self, key: str) -> int:
        """The index of the node that owns ``key``."""
        from shoal.ring import Ring

        if self._ring is None:
            self._ring = Ring.build(self.urls, flavour=self.ring)
        return self.urls.index(self._ring.owner(key))

    def keys_owned_by(self, index: int, prefix: str, count: int = 1) -> list[str]:
        """``count`` keys ``PREFIX-N`` owned by node ``index``."""
        keys = (f"{prefix}-{n}" for n in range(100_000))
        owned = list(itertools.islice((k for k in keys if self.owner(k) == index), count))
        assert len(owned) == count
        return owned

    def stderr(self) -> str:
        """Every node's log, one after the other."""
        return "\n".join(node.stderr() for node in self.nodes)


@contextlib.contextmanager
def shoal_cluster(
    size: int,
    *args: str,
    env: Callable[[int, str], Mapping[str, str]] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ShoalCluster]:
    """Run ``size`` ``shoal serve *args`` processes as one cluster until the block ends.

    Each gets a free API port and a free peer port, and every node lists all of
    them (``--peers``). ``env(index, peer_url)`` gives a node's environment.
    The nodes start together; the block starts once every one answers
    ``/healthz``. On exit every process is stopped (SIGTERM, then SIGKILL),
    whatever happened, and the output files are removed.
    """
    ports = free_ports(2 * size)
    api_ports, peer_ports = ports[:size], ports[size:]
    urls = [f"http://127.0.0.1:{p}" for p in peer_ports]
    ring = args[args.index("--ring") + 1] if "--ring" in args else "shoal"
    with contextlib.ExitStack() as stack:
        nodes = []
        for i, (api_port, peer_port) in enumerate(zip(api_ports, peer_ports, strict=True)):
            workdir = Path(tempfile.mkdtemp(prefix=f"shoal-node{i}-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            node_args = [*args, "--port", str(peer_port), "--peers", ",".join(urls)]
            server = _spawn_serve(
                node_args, api_port, env(i, urls[i]) if env is not None else None, workdir
            )
            server.peer_port = peer_port
            stack.callback(stop, server.proc)
            nodes.append(server)
        for server in nodes:
            wait_http_ok(f"{server.url}/healthz", server.proc, ready_timeout, server.stderr_path)
        yield ShoalCluster(nodes, ring)


Request = Callable[[int], Awaitable[tuple[str, str | None]]]
"""One client request, numbered N: the key it asked for, and what went wrong (None when
it got the right answer)."""


@dataclass
class UnderLoad:
    """What the clients of :func:`sigkill_under_load` saw."""

    before: list[str] = field(default_factory=list)
    """Keys of the requests that succeeded and started before the victim was reaped."""
    after: list[str] = field(default_factory=list)
    """Keys of the requests that succeeded and started after it."""
    failures: list[str] = field(default_factory=list)
    """What went wrong with each request that failed."""
    killed: bool = False


async def sigkill_under_load(
    cluster: ShoalCluster,
    victim: int,
    clients: Sequence[Request],
    *,
    before: int,
    after: int,
    victim_after: int,
) -> UnderLoad:
    """SIGKILL node ``victim`` of ``cluster`` while ``clients`` keep making requests.

    One task per entry of ``clients`` makes requests one after the other, numbered
    from one counter they share. Once ``before`` requests succeeded the victim is
    SIGKILLed, with requests in flight, and reaped; the load ends once ``after``
    requests that started after that succeeded, ``victim_after`` of them for keys
    the victim owns. Every task is stopped and awaited before this returns.
    """
    run = UnderLoad()
    stop = asyncio.Event()
    numbers = itertools.count()

    async def client(request: Request) -> None:
        while not stop.is_set():
            started_after_kill = run.killed
            key, failure = await request(next(numbers))
            if failure is not None:
                run.failures.append(failure)
            else:
                (run.after if started_after_kill else run.before).append(key)

    def victim_keys_after() -> int:
        return sum(1 for key in run.after if cluster.owner(key) == victim)

    tasks = [asyncio.create_task(client(request)) for request in clients]
    try:
        await until(lambda: len(run.before) >= before, "requests before the kill")
        process = cluster.nodes[victim].proc
        process.kill()  # SIGKILL, with requests in flight
        await asyncio.to_thread(process.wait)
        run.killed = True
        await until(
            lambda: len(run.after) >= after and victim_keys_after() >= victim_after,
            "requests after the kill",
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return run


@contextlib.contextmanager
def shoal_nodes(
    node_args: Sequence[Sequence[str]],
    *,
    peer_ports: Sequence[int] | None = None,
    env: Callable[[int, str], Mapping[str, str]] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[list[ShoalServer]]:
    """Run one ``shoal serve --port PEER-PORT *ARGS`` per entry of ``node_args``, started
    together, until the block ends.

    For clusters whose members find each other (etcd, gossip) rather than being
    listed: each node gets a free API port and its peer port (``peer_ports``, or
    free ones); ``env(index, peer_url)`` gives a node's environment. The block
    starts once every node answers ``/healthz``; on exit every process is stopped
    (SIGTERM, then SIGKILL), whatever happened, and the output files are removed.
    """
    count = len(node_args)
    ports = free_ports(count if peer_ports is not None else 2 * count)
    api_ports = ports[:count]
    peers = list(peer_ports) if peer_ports is not None else ports[count:]
    with contextlib.ExitStack() as stack:
        nodes = []
        for i, (args, peer_port) in enumerate(zip(node_args, peers, strict=True)):
            workdir = Path(tempfile.mkdtemp(prefix=f"shoal-node{i}-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            url = f"http://127.0.0.1:{peer_port}"
            server = _spawn_serve(
                ["--port", str(peer_port), *args],
                api_ports[i],
                env(i, url) if env is not None else None,
                workdir,
            )
            server.peer_port = peer_port
            stack.callback(stop, server.proc)
            nodes.append(server)
        for server in nodes:
            wait_http_ok(f"{server.url}/healthz", server.proc, ready_timeout, server.stderr_path)
        yield nodes


TESTS_DIR = Path(__file__).resolve().parents[1]
"""The tests directory: on a node's ``PYTHONPATH``, it finds loaders such as
``helpers.loadlog:load`` and ``helpers.hanging_loader:load``."""


@dataclass
class LoadLog:
    """The calls of the ``helpers.loadlog:load`` loader in every node of a cluster."""

    path: Path

    def calls(self) -> list[tuple[str, str]]:
        """Every call so far as (node URL, key), in the order they were made."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [cast(tuple[str, str], tuple(line.split("\t", 1))) for line in text.splitlines()]

    def nodes(self, key: str) -> list[str]:
        """The URL of the node of each call for ``key``."""
        return [node for node, k in self.calls() if k == key]

    def env(self, delay: float = 0.0) -> Callable[[int, str], dict[str, str]]:
        """The environment of a node running the loader (for :func:`shoal_cluster`)."""

        def node_env(index: int, url: str) -> dict[str, str]:
            return clean_env(
                PYTHONPATH=os.pathsep.join(
                    p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p
                ),
                LOADLOG_FILE=str(self.path),
                LOADLOG_NODE=url,
                LOADLOG_DELAY=str(delay),
            )

        return node_env


@dataclass
class CountedCluster:
    """A running cluster whose nodes load through ``helpers.loadlog:load``, and its call log."""

    cluster: ShoalCluster
    loads: LoadLog


def loaded_value(key: str) -> bytes:
    """What ``helpers.loadlog:load`` returns for ``key``."""
    return f"value of {key}".encode()


@dataclass
class ProcessGroup:
    """A command running in its own session (process group), output in a file."""

    proc: subprocess.Popen[bytes]
    output_path: Path

    def output(self) -> str:
        """Its stdout and stderr so far."""
        return self.output_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = READY_TIMEOUT) -> str:
        """Poll the output until it contains ``text``; fail if the command exits first."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.output()
            if text in output:
                return output
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not in the output (exit code {self.proc.returncode}):\n{output}"
                )
            time.sleep(0.02)


@contextlib.contextmanager
def process_group(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator[ProcessGroup]:
    """Run ``args`` in a new session until the block ends; then SIGKILL the whole group.

    For commands that start processes of their own (``shoal cluster``, ``shoal
    demo``, ``make``): the children share the group, so nothing outlives the test.
    Their temporary files go to a directory of the test's (``TMPDIR``), removed at
    the end, so a process killed before it could clean up leaves nothing behind.
    ``env`` adds variables to the command's (clean) environment.
    """
    workdir = Path(tempfile.mkdtemp(prefix="shoal-group-"))
    try:
        output_path = workdir / "output"
        with output_path.open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(TMPDIR=str(workdir), **(env or {})),
                cwd=cwd,
                start_new_session=True,
            )
        try:
            yield ProcessGroup(proc, output_path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status
