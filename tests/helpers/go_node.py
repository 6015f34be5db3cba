"""A real golang/groupcache node for interop tests: ``tests/interop/go/main.go``, built
once per session (the ``go_node_binary`` fixture), run with :func:`go_node`.

Tests that need it are skipped when ``go`` or the golang/groupcache sources are
missing, and fail instead under ``CI=true``, where a missing toolchain is a broken
machine. A Go node stops when its standard input closes; :func:`go_node` closes it
and waits, killing the process if it lingers.

With ``tls`` (:class:`MutualTls`) the Go node serves HTTPS and requires a client
certificate signed by the CA on its one port, peer protocol and API alike; its peer
requests present its certificate (or none, ``no_client_cert``) and verify the peers'.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest

from helpers.peer_nodes import value
from helpers.raw_http import RawResponse, build_request, call, read_response

GO_NODE = Path(__file__).resolve().parents[1] / "interop" / "go" / "main.go"
GROUPCACHE = Path("src") / "github.com" / "golang" / "groupcache"
# Where Debian's golang-*-dev packages put Go sources (a GOPATH of its own).
DEBIAN_GOPATH = "/usr/share/gocode"


def go_value(key: str) -> bytes:
    """What the Go node's loader returns."""
    return b"go:" + value(key)


def _missing(reason: str) -> NoReturn:
    """Skip the calling test, or fail it under ``CI=true`` (CI must not pass quietly)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _gopath(go: str) -> str | None:
    """A GOPATH holding the golang/groupcache sources, or None."""
    candidates = [p for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True, timeout=30)
        candidates += [p for p in out.stdout.strip().split(os.pathsep) if p]
    candidates.append(DEBIAN_GOPATH)
    return next((p for p in candidates if (Path(p) / GROUPCACHE).is_dir()), None)


@pytest.fixture(scope="session")
def go_node_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go node, built into a temporary folder (with its own build cache)."""
    go = shutil.which("go")
    if go is None:
        _missing("go is not installed")
    gopath = _gopath(go)
    if gopath is None:
        _missing("the golang/groupcache sources are not installed")
    out = tmp_path_factory.mktemp("go-node")
    env = {
        **os.environ,
        "GOPATH": gopath,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out / "cache"),
    }
    binary = out / "node"
    subprocess.run(
        [go, "build", "-o", str(binary), str(GO_NODE)],
        check=True,
        env=env,
        cwd=out,
        timeout=300,
    )
    return binary


@dataclass(frozen=True)
class MutualTls:
    """A Go node's certificate and key, and the CA of every member's certificate."""

    cert: Path
    key: Path
    ca: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts the CA and presents this certificate."""
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass
class GoNode:
    port: int
    tls: ssl.SSLContext | None = None
    """How the test speaks to the node's API (None: plain HTTP)."""

    @property
    def url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://127.0.0.1:{self.port}"

    async def _get(self, target: str) -> RawResponse:
        if self.tls is None:
            return await call(self.port, "GET", target)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls)
        try:
            writer.write(build_request("GET", target))
            return await read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                await writer.wait_closed()

    async def api(self, key: str) -> tuple[int, bytes]:
        """Read ``key`` through the Go node's group (which may fetch it from a peer)."""
        response = await self._get("/api?key=" + quote(key, safe=""))
        return response.status, response.body

    async def stats(self) -> dict[str, int]:
        body = (await self._get("/stats")).body.decode()
        return {k: int(v) for k, v in (item.split("=") for item in body.split())}


@asynccontextmanager
async def go_node(
    binary: Path,
    peers: list[str] = (),  # type: ignore[assignment]
    *,
    tls: MutualTls | None = None,
    no_client_cert: bool = False,
) -> AsyncIterator[GoNode]:
    """A running Go node; it stops when its standard input closes.

    With ``tls`` it speaks mutual TLS (see the module); the test's own API calls
    present ``tls``'s certificate.
    """
    args = ["-peers", ",".join(peers)]
    if tls is not None:
        args += ["-tls-cert", str(tls.cert), "-tls-key", str(tls.key), "-tls-ca", str(tls.ca)]
    if no_client_cert:
        args.append("-no-client-cert")
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        word, _, port = line.decode().partition(" ")
        assert word == "READY", line
        yield GoNode(int(port), None if tls is None else tls.context())
    finally:
        process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
