"""Certificates made at test time, and ``shoal serve`` processes that speak TLS.

:func:`make_pki` writes a CA, node certificates, a client certificate, a certificate of
another CA and an expired one (all with :mod:`shoal.cli.tls`, as ``shoal tls init``
makes them). :func:`tls_cluster` runs ``shoal serve`` processes with mutual TLS
between them, and waits for each over ``https://``.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import READY_TIMEOUT, ShoalServer, clean_env, free_ports, shoal_cmd, stop
from shoal.cli.tls import Issued, issue, make_ca, write_pem
from shoal.tls import client_context

HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Pki:
    """The files of :func:`make_pki`; ``node(i)`` gives node i's (cert, key)."""

    root: Path
    ca: Issued
    """The cluster's CA (to issue more certificates, e.g. for a rotation)."""

    @property
    def ca_pem(self) -> str:
        return str(self.root / "ca.pem")

    def node(self, i: int) -> tuple[str, str]:
        return str(self.root / f"node-{i}.pem"), str(self.root / f"node-{i}-key.pem")

    def pair(self, name: str) -> tuple[str, str]:
        """(cert, key) of ``client``, ``foreign`` (another CA) or ``expired``."""
        return str(self.root / f"{name}.pem"), str(self.root / f"{name}-key.pem")

    def context(self, name: str | None = "client", *, ca: str | None = None) -> ssl.SSLContext:
        """A client context that trusts the CA and presents ``name``'s certificate
        (none when ``name`` is None)."""
        cert, key = self.pair(name) if name is not None else (None, None)
        return client_context(ca=ca or self.ca_pem, cert=cert, key=key)

    def serve_args(self, i: int, *extra: str) -> list[str]:
        """``shoal serve`` flags for node i: its certificate, its key and the CA."""
        cert, key = self.node(i)
        return ["--tls-cert", cert, "--tls-key", key, "--tls-ca", self.ca_pem, *extra]


def make_pki(root: Path, nodes: int = 3) -> Pki:
    """Write ``ca.pem``, ``node-I.pem`` (+ keys), ``client.pem``, ``foreign.pem`` (a
    client certificate of another CA) and ``expired.pem`` (this CA, expired) into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    write_pem(ca, root / "ca.pem")
    for i in range(nodes):
        write_pem(issue(ca, f"node {i}", HOSTS), *Pki(root, ca).node(i))
    write_pem(issue(ca, "client", (), server=False), *Pki(root, ca).pair("client"))
    foreign = make_ca("another CA")
    write_pem(foreign, root / "foreign-ca.pem")
    write_pem(issue(foreign, "intruder", HOSTS), *Pki(root, ca).pair("foreign"))
    now = datetime.datetime.now(datetime.UTC)
    expired = issue(
        ca,
        "expired",
        HOSTS,
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    write_pem(expired, *Pki(root, ca).pair("expired"))
    return Pki(root, ca)


@dataclass
class TlsServer(ShoalServer):
    """A ``shoal serve`` process whose API and peer port speak TLS."""

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    @property
    def peer_url(self) -> str:
        assert self.peer_port is not None, "this server has no peer port"
        return f"https://{self.ip}:{self.peer_port}"


def https_request(
    method: str, url: str, context: ssl.SSLContext, body: bytes | None = None
) -> tuple[int, bytes]:
    """``method`` ``url`` over TLS: the status and body, for error statuses too."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _wait_ready(server: TlsServer, context: ssl.SSLContext, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"shoal serve exited with {server.proc.returncode} before it was ready.\n"
                f"stderr:\n{server.stderr()}"
            )
        with contextlib.suppress(urllib.error.URLError, OSError):
            if https_request("GET", f"{server.url}/healthz", context)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{server.url} not ready in {timeout}s:\n{server.stderr()}")
        time.sleep(0.05)


@contextlib.contextmanager
def tls_cluster(
    pki: Pki,
    size: int,
    *args: str,
    env: Callable[[int, str], Mapping[str, str]] | None = None,
    node_args: Callable[[int], Sequence[str]] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[list[TlsServer]]:
    """Run ``size`` ``shoal serve`` processes with mutual TLS, listing each other as
    ``https://`` peers, until the block ends (stopped and cleaned up whatever happens).

    ``node_args(i)`` replaces node i's TLS flags (default :meth:`Pki.serve_args`).
    """
    ports = free_ports(2 * size)
    api_ports, peer_ports = ports[:size], ports[size:]
    urls = [f"https://127.0.0.1:{p}" for p in peer_ports]
    context = pki.context()
    with contextlib.ExitStack() as stack:
        nodes: list[TlsServer] = []
        for i in range(size):
            workdir = Path(tempfile.mkdtemp(prefix=f"shoal-tls{i}-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            tls = node_args(i) if node_args is not None else pki.serve_args(i)
            command = shoal_cmd(
                "serve",
                "--api-host",
                "127.0.0.1",
                "--api-port",
                str(api_ports[i]),
                "--port",
                str(peer_ports[i]),
                "--peers",
                ",".join(urls),
                *tls,
                *args,
            )
            out, err = workdir / "stdout", workdir / "stderr"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    env=dict(env(i, urls[i])) if env is not None else clean_env(),
                    start_new_session=True,
                )
            stack.callback(stop, proc)
            nodes.append(TlsServer(proc, api_ports[i], out, err, peer_port=peer_ports[i]))
        for server in nodes:
            _wait_ready(server, context, ready_timeout)
        yield nodes
