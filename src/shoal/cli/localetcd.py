"""A single-member etcd server on this machine, for ``shoal cluster --membership etcd``.

Runs the ``etcd`` binary (Debian package ``etcd-server``) on free loopback
ports with a temporary data directory, waits until it answers ``/health``, and
stops it (and removes the directory) when done. It can be killed and started
again on the same ports and data, which is how an etcd outage is simulated.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from .common import pick_free_ports
from .http_client import RequestFailed, request

__all__ = ["LocalEtcd", "EtcdUnavailable", "etcd_binary"]

READY_TIMEOUT: Final = 30.0
"""Seconds etcd may take to answer ``/health`` after it is started."""


class EtcdUnavailable(Exception):
    """etcd is not installed, or did not start; the message says which."""


def etcd_binary() -> str | None:
    """The path of the ``etcd`` server binary, or None when it is not installed."""
    return shutil.which("etcd") or next(
        (p for p in ("/usr/bin/etcd", "/usr/local/bin/etcd") if Path(p).is_file()), None
    )


class LocalEtcd:
    """One etcd process on ``host``, client and peer ports free or given.

    Args:
        host: the address it listens on (loopback by default).
        client_port: its client port (default: a free one).
        peer_port: its peer port (default: a free one).
        data_dir: its data directory (default: a temporary one, removed by :meth:`close`).
        log_path: where its output goes (default: discarded).
        die_with_parent: ask Linux to stop it when the thread that started it ends,
            so a supervisor killed with SIGKILL leaves no etcd behind. Only for a
            process started from the main thread: a worker thread that ends would
            take etcd with it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        binary = etcd_binary()
        if binary is None:
            raise EtcdUnavailable(
                "the etcd server is not installed (Debian: apt-get install etcd-server)"
            )
        self.binary = binary
        self.host = host
        if client_port is None or peer_port is None:
            free = pick_free_ports(2, host)
            client_port = client_port or free[0]
            peer_port = peer_port or free[1]
        self.client_port = client_port
        self.peer_port = peer_port
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="shoal-etcd-"))
        self.log_path = log_path
        self._die_with_parent = die_with_parent
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL, what ``shoal serve --etcd`` takes."""
        return f"http://{self.host}:{self.client_port}"

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start etcd (again, on the same ports and data) and wait until it is healthy.

        Raises:
            EtcdUnavailable: it exited or did not become healthy within ``timeout``.
        """
        if self.running:
            return
        peer = f"http://{self.host}:{self.peer_port}"
        if self.log_path is not None and self._log is None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--name=shoal",
                f"--data-dir={self.data_dir / 'data'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=shoal={peer}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the caller does not reach it (the
            # caller stops it last).
            start_new_session=True,
            preexec_fn=_die_with_parent if self._die_with_parent else None,
        )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise EtcdUnavailable(f"etcd exited with code {self.proc.returncode} at start")
            if time.monotonic() > deadline:
                self.kill()
                raise EtcdUnavailable(f"etcd did not become healthy within {timeout:g}s")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """True if it answers ``GET /health`` with ``"health":"true"``."""
        try:
            reply = request("GET", f"{self.url}/health", timeout=1)
        except RequestFailed:
            return False
        return reply.status == 200 and b'"true"' in reply.body

    def kill(self) -> None:
        """SIGKILL it and wait for it to exit (no clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM it, then SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop it and remove its data directory if it made one (idempotent)."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self.close()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the thread that forked it
    ends (``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
