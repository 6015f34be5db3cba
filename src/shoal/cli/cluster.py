"""``shoal cluster``: several ``shoal serve`` processes on one machine, supervised.

Node ``i`` (from 0) listens for peers on ``PORT+i`` and serves its HTTP API on
``API-PORT-i`` (8001-8003 and 9999, 9998, 9997 by default, as in the
groupcache demos); every node gets the full member list, so they form one
cluster. With ``--slowdb`` all nodes read one demo database file, so the
cluster behaves like several cache servers in front of one database.

Supervision:

- The nodes run with ``--supervised``, each in a session of its own: they
  ignore SIGINT and stop when their stdin (a pipe from this process) closes. A
  Ctrl-C in the terminal, or a SIGTERM to the process group (``timeout``, an
  init system), reaches only this process, which sends each node one SIGTERM.
  If this process dies, even by SIGKILL, the kernel closes the
  pipes and the nodes stop on their own: no orphans.
- A node that exits on its own (crash, ``kill -9``) is reported on stderr;
  the others keep serving (that is the point of a cluster). The exit code is
  then 1, as it is when a node does not stop cleanly.
- A second Ctrl-C while stopping (a second or more after the first: a copy of
  one signal, to the group and again by a parent, counts once) kills the nodes at once.

:class:`Supervisor` is also what ``shoal demo`` uses to run its nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from ..errors import ConfigError
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    StopSignals,
    configure_logging,
    report_error,
)
from .http_client import RequestFailed, request_async
from .tracing import NodeLabel, node_label

if TYPE_CHECKING:
    from .plan import ServePlan
    from .secure import SecureFiles

__all__ = [
    "Member",
    "Supervisor",
    "ClusterError",
    "run_cluster",
    "plan_members",
    "child_arguments",
    "describe_exit",
    "banner_lines",
]

log = logging.getLogger("shoal.cluster")

READY_TIMEOUT: Final = 30.0
"""Seconds the nodes may take to answer ``/healthz`` after they are started."""

STOP_TIMEOUT: Final = 10.0
"""Seconds a node may take to exit after SIGTERM, beyond its ``--drain``, before it is
killed."""

MAX_NODES: Final = 64
"""More nodes than this on one machine is a typo, not a cluster."""

# Flags of the cluster command that the supervisor sets per node instead of passing on.
_PER_NODE: Final = frozenset(
    {"nodes", "host", "port", "api_host", "api_port", "slowdb_file", "help", "membership"}
)


class ClusterError(CommandError):
    """The cluster could not start or run; the message is printed as is."""


@dataclass(eq=False)  # compared and hashed by identity: one object per process
class Member:
    """One node of a local cluster and its process."""

    index: int
    """Position in the member list, from 0."""
    host: str
    """Address of its peer server (and, in URLs, of its HTTP API)."""
    peer_port: int
    """Port of its peer server."""
    api_port: int
    """Port of its HTTP API."""
    api_host: str = "127.0.0.1"
    """Address its HTTP API listens on."""
    log_path: Path | None = None
    """Where its stdout and stderr go; None: this process's own."""
    scheme: str = "http"
    """``https`` when its ports speak TLS."""
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    """The running process, once started."""
    returncode: int | None = None
    """Its exit code, once it exited (negative: killed by that signal)."""

    @property
    def url(self) -> str:
        """Its URL on the ring."""
        return f"{self.scheme}://{_url_host(self.host)}:{self.peer_port}"

    @property
    def api_url(self) -> str:
        """Base URL of its HTTP API."""
        return f"{self.scheme}://{_url_host(self.api_host)}:{self.api_port}"

    @property
    def name(self) -> str:
        """How logs name it: ``node 8001``."""
        return node_label(self.url)

    @property
    def alive(self) -> bool:
        """Started and not yet exited."""
        return self.proc is not None and self.returncode is None

    def log_text(self) -> str:
        """What it logged so far (only with ``log_path``)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts, watches and stops the processes of a local cluster.

    Args:
        members: the nodes, with their ports.
        argv: for each member, the ``shoal`` arguments of its process
            (``serve ... --supervised``).
        context: the TLS client context of the readiness checks, when the nodes'
            APIs speak TLS.
    """

    def __init__(
        self,
        members: Sequence[Member],
        argv: Sequence[Sequence[str]],
        *,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.members = list(members)
        self._context = context
        self._argv = [list(a) for a in argv]
        self._files: list[IO[bytes]] = []
        self._exits: dict[asyncio.Task[int], Member] = {}

    async def start(self) -> None:
        """Start every node (not waiting for it to be ready).

        Each node runs in a session of its own, so a signal sent to this process's
        group (a Ctrl-C in the terminal, ``timeout``, an init system) reaches this
        process only, never a node directly: each node gets one SIGTERM, from here.
        """
        for member, args in zip(self.members, self._argv, strict=True):
            out: IO[bytes] | None = None
            if member.log_path is not None:
                out = member.log_path.open("ab")
                self._files.append(out)
            member.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shoal",
                *args,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
            )
            member.returncode = None
            task = asyncio.create_task(member.proc.wait(), name=f"wait-{member.name}")
            self._exits[task] = member

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Wait until every node's HTTP API answers ``/healthz``.

        Raises:
            ClusterError: a node exited first, or ``within`` seconds passed.
        """
        deadline = time.monotonic() + within
        for member in self.members:
            while True:
                if member.proc is not None and member.proc.returncode is not None:
                    member.returncode = member.proc.returncode
                    raise ClusterError(
                        f"{member.name} {describe_exit(member.returncode)} before it was ready"
                    )
                with contextlib.suppress(RequestFailed):
                    reply = await request_async(
                        "GET", f"{member.api_url}/healthz", timeout=2, context=self._context
                    )
                    if reply.status == 200:
                        break
                if time.monotonic() > deadline:
                    raise ClusterError(f"{member.name} did not become ready within {within:g}s")
                await asyncio.sleep(0.05)

    async def next_exit(self) -> Member:
        """Wait until a running node exits; return it (its ``returncode`` is set)."""
        pending = [t for t in self._exits if not t.done() or self._exits[t].returncode is None]
        if not pending:
            raise ClusterError("no node is running")
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        task = next(iter(done))
        member = self._exits[task]
        member.returncode = task.result()
        return member

    def kill(self, member: Member, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to ``member``'s process, if it still runs."""
        if member.proc is not None and member.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                member.proc.send_signal(sig)

    async def wait(self, member: Member) -> int:
        """Wait for ``member`` to exit; return its exit code."""
        assert member.proc is not None
        member.returncode = await member.proc.wait()
        return member.returncode

    async def stop(self, grace: float = STOP_TIMEOUT) -> dict[str, int]:
        """Stop every node still running: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns:
            The exit code of each node that was running, by name.
        """
        running = [m for m in self.members if m.proc is not None and m.proc.returncode is None]
        for member in running:
            self.kill(member, signal.SIGTERM)
        codes: dict[str, int] = {}
        for member in running:
            assert member.proc is not None
            try:
                async with asyncio.timeout(grace):
                    code = await member.proc.wait()
            except TimeoutError:
                log.warning("%s did not stop within %gs; killing it", member.name, grace)
                self.kill(member)
                code = await member.proc.wait()
            member.returncode = code
            codes[member.name] = code
        await self.aclose()
        return codes

    async def aclose(self) -> None:
        """Kill whatever still runs and release pipes, files and tasks (idempotent)."""
        for member in self.members:
            if member.proc is not None:
                if member.proc.returncode is None:
                    self.kill(member)
                    member.returncode = await member.proc.wait()
                if member.proc.stdin is not None:
                    member.proc.stdin.close()
        for task in self._exits:
            task.cancel()
        await asyncio.gather(*self._exits, return_exceptions=True)
        for file in self._files:
            file.close()
        self._files.clear()


# --------------------------------------------------------------------------- shoal cluster


def plan_members(
    nodes: int, *, host: str, port: int, api_host: str, api_port: int, tls: bool = False
) -> list[Member]:
    """The members of a local cluster: peer ports count up, API ports count down
    (``https://`` URLs with ``tls``).

    Raises:
        ConfigError: too few or too many nodes, or ports out of range or overlapping.
    """
    if not 1 <= nodes <= MAX_NODES:
        raise ConfigError(f"--nodes must be 1-{MAX_NODES}, got {nodes}")
    peer_ports = [port + i for i in range(nodes)]
    api_ports = [api_port - i for i in range(nodes)]
    if port < 1 or peer_ports[-1] > 65535:
        raise ConfigError(f"--port {port}: the peer ports {port}-{peer_ports[-1]} must be 1-65535")
    if api_port > 65535 or api_ports[-1] < 1:
        raise ConfigError(
            f"--api-port {api_port}: the API ports {api_ports[-1]}-{api_port} must be 1-65535"
        )
    if host == api_host and set(peer_ports) & set(api_ports):
        raise ConfigError(
            f"the peer ports {port}-{peer_ports[-1]} overlap the API ports "
            f"{api_ports[-1]}-{api_port}; choose another --port or --api-port"
        )
    return [
        Member(
            index=i,
            host=host,
            peer_port=p,
            api_port=a,
            api_host=api_host,
            scheme="https" if tls else "http",
        )
        for i, (p, a) in enumerate(zip(peer_ports, api_ports, strict=True))
    ]


def child_arguments(
    args: argparse.Namespace, member: Member, members: Sequence[Member], slowdb_file: str | None
) -> list[str]:
    """The ``shoal`` arguments of one node: ``serve``, the cluster's own flags passed on
    as given, and this node's ports, URL and how it finds the others: the member list
    (``--membership static``), etcd (``--etcd``, passed on) or gossip on UDP port
    PORT+i, joining node 0."""
    argv = ["serve"]
    actions: Sequence[argparse.Action] = args.serve_actions
    for action in actions:
        if action.dest in _PER_NODE or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == []:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:  # store_true
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    argv += [
        "--api-host",
        member.api_host,
        "--api-port",
        str(member.api_port),
        "--host",
        member.host,
        "--port",
        str(member.peer_port),
        "--self",
        member.url,
        "--supervised",
    ]
    if getattr(args, "drain", None) is None and "SHOAL_DRAIN" not in os.environ:
        # The whole cluster stops together: no member is left to take over, so a
        # node drains only when asked (--drain) to, e.g. to be stopped on its own.
        argv += ["--drain", "0"]
    membership = getattr(args, "membership", "static")
    if membership == "gossip":
        # UDP and TCP ports are separate: each node gossips on its peer port number.
        first = members[0]
        join = f"{first.host}:{first.peer_port}"
        argv += ["--gossip-port", str(member.peer_port), "--join", join]
    elif membership == "static":
        argv += ["--peers", ",".join(m.url for m in members)]
    tls_dir = getattr(args, "tls_dir", None)
    if tls_dir is not None:
        # Each node its own certificate, from `shoal tls init DIR --nodes N`.
        root = Path(tls_dir)
        argv += [
            "--tls-cert",
            str(root / f"node-{member.index}.pem"),
            "--tls-key",
            str(root / f"node-{member.index}-key.pem"),
        ]
        if getattr(args, "tls_ca", None) is None:
            argv += ["--tls-ca", str(root / "ca.pem")]
    if slowdb_file is not None:
        argv += ["--slowdb-file", slowdb_file]
    return argv


_SECURE_FLAGS: Final = (
    ("tls_cert", "--tls-cert"),
    ("tls_key", "--tls-key"),
    ("tls_ca", "--tls-ca"),
    ("api_tokens", "--api-tokens"),
    ("gossip_keyring", "--gossip-keyring"),
)


def _make_secure(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> SecureFiles:
    """``--secure``: write a PKI, tokens and a keyring into a temporary directory
    (removed when ``cleanup`` closes) and have every node use them.

    Raises:
        ConfigError: a flag names a file of its own that ``--secure`` would replace.
    """
    from .secure import write_secure_files

    given = [flag for dest, flag in _SECURE_FLAGS if getattr(args, dest, None)]
    if getattr(args, "tls_dir", None):
        given.append("--tls-dir")
    if given:
        raise ConfigError(f"--secure makes its own files: drop {', '.join(given)}")
    directory = Path(tempfile.mkdtemp(prefix="shoal-secure-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
    hosts = [args.host or os.environ.get("SHOAL_HOST") or "", args.api_host or ""]
    files = write_secure_files(directory, nodes=args.nodes, hosts=hosts)
    args.tls_dir = str(directory)  # each node its certificate, and the CA
    args.api_tokens = str(files.tokens_file)
    if args.membership == "gossip":
        args.gossip_keyring = str(files.keyring)
    args.secure_files = files
    return files


def run_cluster(args: argparse.Namespace) -> int:
    """Run ``shoal cluster``; return the exit code."""
    from .localetcd import EtcdUnavailable, LocalEtcd

    with contextlib.ExitStack() as cleanup:
        if args.membership == "etcd" and not (args.etcd or os.environ.get("SHOAL_ETCD")):
            # No etcd given: run one for the cluster, gone when the cluster stops.
            try:
                etcd = cleanup.enter_context(LocalEtcd(die_with_parent=True))
            except EtcdUnavailable as exc:
                return report_error(
                    "cluster", f"--membership etcd without --etcd: {exc}", EXIT_FAILURE
                )
            args.etcd = etcd.url
            print(f"shoal: etcd for the cluster at {etcd.url}", flush=True)
        elif args.membership != "etcd" and args.etcd:
            return report_error("cluster", "--etcd needs --membership etcd", EXIT_USAGE)
        try:
            secure = _make_secure(args, cleanup) if getattr(args, "secure", False) else None
            plan, members, argv, db_dir = _prepare(args)
            context = _readiness_context(args, plan)
        except ConfigError as exc:
            return report_error("cluster", exc, EXIT_USAGE)
        client = _client_pair(args, plan) if plan.node.tls is not None else None
        configure_logging(plan.log_level, NodeLabel("cluster"))
        try:
            return asyncio.run(
                _supervise(plan, members, argv, secure, context=context, client=client)
            )
        except ClusterError as exc:
            return report_error("cluster", exc, EXIT_FAILURE)
        finally:
            if db_dir is not None:
                shutil.rmtree(db_dir, ignore_errors=True)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow


def _check_tls_dir(args: argparse.Namespace, tls_dir: str) -> None:
    """``--tls-dir`` gives every node its own certificate: refuse it with ``--tls-cert``
    or ``--tls-key`` (one certificate for all), and a directory without the files."""
    if getattr(args, "tls_cert", None) is not None or getattr(args, "tls_key", None) is not None:
        raise ConfigError("--tls-dir gives each node its certificate: drop --tls-cert/--tls-key")
    root = Path(tls_dir)
    wanted = [root / "ca.pem", root / "client.pem", root / "client-key.pem"]
    for i in range(args.nodes):
        wanted += [root / f"node-{i}.pem", root / f"node-{i}-key.pem"]
    missing = [str(path) for path in wanted if not path.is_file()]
    if missing:
        raise ConfigError(
            f"--tls-dir {tls_dir}: missing {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}; make them with "
            f"shoal tls init {tls_dir} --nodes {args.nodes}"
        )


def _readiness_context(args: argparse.Namespace, plan: ServePlan) -> ssl.SSLContext | None:
    """How the supervisor reaches the nodes' APIs: their CA, and a client certificate
    when they ask for one (the directory's client certificate, else node 0's)."""
    tls = plan.node.tls
    if tls is None:
        return None
    from ..tls import client_context

    cert, key = _client_pair(args, plan)
    if tls.api_client_auth == "none":
        return client_context(ca=tls.ca)
    return client_context(ca=tls.ca, cert=cert, key=key)


def _client_pair(args: argparse.Namespace, plan: ServePlan) -> tuple[str, str]:
    """The client certificate and key the banner and readiness checks present."""
    tls_dir = getattr(args, "tls_dir", None)
    if tls_dir is not None:
        return str(Path(tls_dir) / "client.pem"), str(Path(tls_dir) / "client-key.pem")
    assert plan.node.tls is not None
    return plan.node.tls.cert, plan.node.tls.key


def _prepare(
    args: argparse.Namespace,
) -> tuple[ServePlan, list[Member], list[list[str]], Path | None]:
    from .plan import build_serve_plan, serve_parser

    host = args.host or os.environ.get("SHOAL_HOST") or "127.0.0.1"
    api_host = args.api_host or os.environ.get("SHOAL_API_HOST") or "127.0.0.1"
    tls_dir = getattr(args, "tls_dir", None)
    if tls_dir is not None:
        _check_tls_dir(args, tls_dir)
    tls = tls_dir is not None
    while True:
        members = plan_members(
            args.nodes,
            host=host,
            port=args.port,
            api_host=api_host,
            api_port=args.api_port,
            tls=tls,
        )
        # Check the nodes' configuration here, once, before starting anything: one clear
        # error instead of N processes failing the same way.
        probe = child_arguments(args, members[0], members, args.slowdb_file)
        plan = build_serve_plan(serve_parser().parse_args(probe[1:]), os.environ)
        if tls or plan.node.tls is None:
            break
        tls = True  # TLS from a flag, a variable or the config file: https:// URLs
    db_dir: Path | None = None
    slowdb_file = args.slowdb_file
    if args.slowdb and slowdb_file is None:
        from .slowdb import create_scores_db

        # One database for the whole cluster, as in the groupcache demo.
        db_dir = Path(tempfile.mkdtemp(prefix="shoal-cluster-"))
        slowdb_file = str(create_scores_db(db_dir / "scores.db"))
    argv = [child_arguments(args, m, members, slowdb_file) for m in members]
    return plan, members, argv, db_dir


async def _supervise(
    plan: ServePlan,
    members: list[Member],
    argv: list[list[str]],
    secure: SecureFiles | None = None,
    *,
    context: ssl.SSLContext | None = None,
    client: tuple[str, str] | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    supervisor = Supervisor(members, argv, context=context)

    signals = StopSignals()

    def on_signal(sig: signal.Signals) -> None:
        seen = signals.received()
        if seen == "first":
            log.info("received %s, stopping the nodes", sig.name)
            stop.set()
        elif seen == "again":
            log.warning("received %s again, killing the nodes", sig.name)
            for member in members:
                supervisor.kill(member)

    failed = False
    try:
        await supervisor.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        for member in members:
            assert member.proc is not None
            log.info("started %s (pid %d): %s", member.name, member.proc.pid, member.url)
        ready = asyncio.create_task(supervisor.wait_ready())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([ready, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not ready.done():
                ready.cancel()
        if ready.done() and not ready.cancelled():
            ready.result()  # a ClusterError ends the run here
            _print_banner(plan, members, secure, client)
        while not stop.is_set():
            exited = asyncio.create_task(supervisor.next_exit())
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                exited.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exited
                break
            member = exited.result()
            failed = True
            log.error(
                "%s (%s) %s; the other nodes keep serving",
                member.name,
                member.url,
                describe_exit(member.returncode or 0),
            )
            if not any(m.alive for m in members):
                log.error("every node has stopped")
                break
        stopping.cancel()
    finally:
        codes = await supervisor.stop(STOP_TIMEOUT + plan.node.drain)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for name, code in codes.items():
        if code != 0:
            failed = True
            log.error("%s %s while stopping", name, describe_exit(code))
    log.info("stopped")
    return EXIT_FAILURE if failed else EXIT_OK


def _print_banner(
    plan: ServePlan,
    members: list[Member],
    secure: SecureFiles | None = None,
    client: tuple[str, str] | None = None,
) -> None:
    for line in banner_lines(plan, members, secure, client):
        print(line, flush=True)


def banner_lines(
    plan: ServePlan,
    members: Sequence[Member],
    secure: SecureFiles | None = None,
    client: tuple[str, str] | None = None,
) -> list[str]:
    """What ``shoal cluster`` prints once every node is ready: the nodes, a curl line
    per group (with the CA, a client certificate when the API asks for one, and a
    read token under ``--secure``) and where the files of ``--secure`` are."""
    from .serve import curl_tls_flags, curl_urls

    first = members[0]
    how = {"static": "a static member list", "etcd": "etcd", "gossip": "gossip", "dns": "DNS"}
    membership = plan.node.membership
    lines = [f"shoal: a cluster of {len(members)} nodes is ready (members by {how[membership]})"]
    for m in members:
        pid = m.proc.pid if m.proc is not None else 0
        lines.append(f"  {m.name}: peers {m.url}, HTTP API {m.api_url} (pid {pid})")
    # The CA (and a client certificate when the API asks for one), and --secure's token.
    curl = ("curl " + curl_tls_flags(plan.node.tls, client)).rstrip()
    if secure is not None:
        curl += f" -H 'Authorization: Bearer {secure.tokens['read']}'"
    for group, url in curl_urls(plan, first.api_url):
        lines.append(f"shoal: group {group.config.name!r} ({group.describe()}): {curl} '{url}'")
    if secure is not None:
        lines.append(
            f"shoal: TLS, mutual TLS between the nodes and API tokens: the CA, certificates, "
            f"tokens (read, write, admin){' and gossip keyring' if plan.node.gossip else ''} "
            f"are in {secure.directory} (removed when the cluster stops); "
            f"tokens in {secure.tokens_file}"
        )
    if len(members) > 1:
        others = ", ".join(str(m.api_port) for m in members[1:])
        lines.append(f"shoal: every node answers the same: try ports {others} too")
    lines.append("shoal: Ctrl-C stops the cluster")
    return lines
