"""A ``shoal serve`` process out of file descriptors (its ``RLIMIT_NOFILE``
lowered): the failed accepts are counted in ``/metrics`` and ``/v1/stats`` and
logged once, not silently dropped, and the node serves again as soon as
connections close."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from helpers.processes import (
    READY_TIMEOUT,
    clean_env,
    free_port,
    http_get,
    shoal_cmd,
    stop,
    wait_http_ok,
)

NOFILE = 64
"""The server's descriptor limit: a few dozen connections exhaust it."""
CONNECTIONS = 120


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@contextlib.contextmanager
def limited_serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            shoal_cmd("serve", "--api-host", "127.0.0.1", "--api-port", str(port), "--group", "g"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=clean_env(),
            preexec_fn=limited,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/healthz", proc, READY_TIMEOUT, stderr)
        yield proc, url, stderr
    finally:
        stop(proc)


def accept_errors(url: str) -> int:
    body = http_get(f"{url}/metrics")[1].decode()
    found = re.search(r'^shoal_accept_errors_total\{server="api"\} (\d+)$', body, re.MULTILINE)
    assert found is not None, body
    return int(found[1])


def test_accept_failures_are_counted_and_the_node_recovers(tmp_path: Path) -> None:
    with limited_serve(tmp_path) as (proc, url, stderr):
        assert accept_errors(url) == 0
        port = int(url.rsplit(":", 1)[1])
        clients: list[socket.socket] = []
        try:
            for _ in range(CONNECTIONS):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.5)  # the server accepts until it runs out, then keeps failing
        finally:
            for client in clients:
                client.close()
        # Accepting resumes (within its longest pause, a second) and the backlog drains.
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _ = http_get(f"{url}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the node did not serve again"
            time.sleep(0.1)
        failed = accept_errors(url)
        assert failed > 0
        stats = json.loads(http_get(f"{url}/v1/stats")[1])
        assert stats["accept_errors"]["api"] >= failed
        log = stderr.read_text()
        assert log.count("cannot accept connections") == 1, log
        assert "Too many open files" in log
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
