"""A real etcd with client TLS, client-certificate checks and auth enabled.

:class:`SecureEtcd` runs the ``etcd`` binary on free loopback ports with
``--cert-file --key-file --trusted-ca-file --client-cert-auth``, certificates made
at test time with :mod:`shoal.cli.tls`, and a plain metrics port that answers
``/health`` (so waiting for it needs no certificate). :func:`enable_auth` then
creates, over TLS and with etcd's own gRPC API (what ``etcdctl user add``, ``role
grant-permission`` and ``auth enable`` call), a ``root`` user and a ``shoal`` user
whose role may read and write the ``/shoal/`` prefix only, and turns auth on.
The server can be killed and started again on the same ports, data and files.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import aetcd
import grpc
from aetcd import rpc

from shoal.cli.localetcd import etcd_binary
from shoal.cli.tls import Issued, issue, make_ca, write_pem

from .processes import free_ports

ROOT_PASSWORD = "root-secret-Zq81"
"""The ``root`` user's password (the tests never give it to a node)."""


@dataclass(frozen=True)
class Pki:
    """The files of one test CA: etcd's server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, name: str = "etcd test CA") -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca: Issued = make_ca(name)
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "etcd.pem",
        server_key=directory / "etcd-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    write_pem(ca, pki.ca)
    write_pem(issue(ca, "etcd", ("127.0.0.1", "localhost")), pki.server_cert, pki.server_key)
    write_pem(issue(ca, "shoal", (), server=False), pki.client_cert, pki.client_key)
    return pki


class SecureEtcd:
    """One etcd process serving TLS (with client certificates required) on loopback.

    Args:
        directory: its data directory and log file go here.
        pki: its certificates (:func:`make_pki`).
        extra: more etcd flags (``--auth-token-ttl=2``, ...).
    """

    def __init__(self, directory: Path, pki: Pki, *extra: str) -> None:
        binary = etcd_binary()
        assert binary is not None, "etcd is not installed"
        self.binary = binary
        self.pki = pki
        self.directory = directory
        self.client_port, self.peer_port, self.metrics_port = free_ports(3)
        self.extra = extra
        self.log_path = directory / "etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL, what ``shoal serve --etcd`` takes."""
        return f"https://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start it (again, on the same ports and data) and wait until it is healthy."""
        if self.proc is not None and self.proc.poll() is None:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--name=secure",
                    f"--data-dir={self.directory / 'data'}",
                    f"--listen-client-urls={self.url}",
                    f"--advertise-client-urls={self.url}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=secure={peer}",
                    f"--listen-metrics-urls=http://127.0.0.1:{self.metrics_port}",
                    f"--cert-file={self.pki.server_cert}",
                    f"--key-file={self.pki.server_key}",
                    f"--trusted-ca-file={self.pki.ca}",
                    "--client-cert-auth",
                    "--logger=zap",
                    "--log-level=warn",
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"etcd was not healthy within {timeout:g}s: {self.log()}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """True if its plain metrics port answers ``/health`` with ``"health":"true"``."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return b'"true"' in response.read()
        except (OSError, urllib.error.URLError):
            return False

    def log(self) -> str:
        """What etcd printed so far (its last 2,000 characters)."""
        return self.log_path.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL it and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # -- talking to it as an administrator ------------------------------------

    def credentials(self) -> grpc.ChannelCredentials:
        """The test client certificate, trusting the test CA."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.read_bytes(),
            private_key=self.pki.client_key.read_bytes(),
            certificate_chain=self.pki.client_cert.read_bytes(),
        )

    async def enable_auth(self, user: str, password: str, prefix: str = "/shoal/") -> None:
        """Create ``root`` and ``user`` (a role that may read and write ``prefix``
        only), then turn auth on."""
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.client_port}", self.credentials()
        ) as channel:
            auth = rpc.AuthStub(channel)
            await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=ROOT_PASSWORD))
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name=user))
            await auth.RoleGrantPermission(
                rpc.AuthRoleGrantPermissionRequest(
                    name=user,
                    perm=rpc.Permission(
                        permType=rpc.Permission.READWRITE,
                        key=prefix.encode(),
                        range_end=aetcd.utils.prefix_range_end(prefix.encode()),
                    ),
                )
            )
            await auth.UserAdd(rpc.AuthUserAddRequest(name=user, password=password))
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user, role=user))
            await auth.AuthEnable(rpc.AuthEnableRequest())

    async def root_get_prefix(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)`` under ``prefix``, read as ``root``."""
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.client_port}", self.credentials()
        ) as channel:
            token = await rpc.AuthStub(channel).Authenticate(
                rpc.AuthenticateRequest(name="root", password=ROOT_PASSWORD)
            )
            reply = await rpc.KVStub(channel).Range(
                rpc.RangeRequest(key=prefix, range_end=aetcd.utils.prefix_range_end(prefix)),
                metadata=(("token", token.token),),
            )
            return [(kv.key, kv.value) for kv in reply.kvs]

    async def root_revoke_lease(self, lease: int) -> None:
        """Revoke ``lease`` as ``root`` (its keys are deleted at once)."""
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.client_port}", self.credentials()
        ) as channel:
            token = await rpc.AuthStub(channel).Authenticate(
                rpc.AuthenticateRequest(name="root", password=ROOT_PASSWORD)
            )
            await rpc.LeaseStub(channel).LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease), metadata=(("token", token.token),)
            )
