"""shoal and a real golang/groupcache node, both ways: a shoal client fetching from a Go
node, and a mixed cluster where each side fetches the keys the other owns.

The Go node is ``tests/interop/go/main.go``, built once per session. The tests are
skipped when ``go`` or the golang/groupcache sources are missing, and fail instead
under ``CI=true``, where a missing toolchain is a broken machine (Debian:
``apt-get install golang-go golang-github-golang-groupcache-dev``;
``scripts/system-deps.sh`` installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest

from helpers.peer_nodes import GROUP, ValueLoader, value
from helpers.raw_http import call
from shoal import Node, NodeConfig, PeerError, RemoteLoadError
from shoal.transport.http import HttpTransport

GO_NODE = Path(__file__).resolve().parents[1] / "interop" / "go" / "main.go"
GROUPCACHE = Path("src") / "github.com" / "golang" / "groupcache"
# Where Debian's golang-*-dev packages put Go sources (a GOPATH of its own).
DEBIAN_GOPATH = "/usr/share/gocode"

SPECIAL_KEYS = ["key:2", "a/b?c&d=é+%22", "user 42 #7", "ünï cödé", "x%y", "+plus+"]


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


@dataclass
class GoNode:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def api(self, key: str) -> tuple[int, bytes]:
        """Read ``key`` through the Go node's group (which may fetch it from a peer)."""
        response = await call(self.port, "GET", "/api?key=" + quote(key, safe=""))
        return response.status, response.body

    async def stats(self) -> dict[str, int]:
        body = (await call(self.port, "GET", "/stats")).body.decode()
        return {k: int(v) for k, v in (item.split("=") for item in body.split())}


@asynccontextmanager
async def go_node(binary: Path, peers: list[str] = ()) -> AsyncIterator[GoNode]:  # type: ignore[assignment]
    """A running Go node; it stops when its standard input closes."""
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "-peers",
        ",".join(peers),
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
        yield GoNode(int(port))
    finally:
        process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_shoal_client_against_a_go_node(go_node_binary: Path) -> None:
    """A shoal client reads values, escapes keys as the Go server decodes them, maps
    Go's 500 to RemoteLoadError and its 404 to PeerError, keeps one connection alive,
    and never sends a batch (or a write) a Go node would misread."""
    async with go_node(go_node_binary) as go:
        transport = HttpTransport()
        try:
            client = transport.client(go.url)
            for key in SPECIAL_KEYS:
                fetched = await client.get(GROUP, key)
                assert (fetched.value, fetched.expires_at) == (go_value(key), None)
            with pytest.raises(RemoteLoadError, match="go loader failed for fail:1"):
                await client.get(GROUP, "fail:1")
            with pytest.raises(PeerError, match="no such group: nope"):
                await client.get("nope", "k")
            assert client.statistics().connections_opened == 1  # Go keeps it alive
            many = ["m1", "m2", "m3"]
            assert {k: f.value for k, f in (await client.get_many(GROUP, many)).items()} == {
                k: go_value(k) for k in many
            }
            with pytest.raises(PeerError, match="does not support writes"):
                await client.set(GROUP, "k", b"v")
            stats = await go.stats()
            # Each distinct key loaded once, the Go loader never saw "_get-many/", and
            # the refused PUT was served as a GET of "k" (golang serves every method so).
            assert stats["loads"] == len(SPECIAL_KEYS) + 1 + len(many) + 1
        finally:
            await transport.aclose()


class PyLoader(ValueLoader):
    """The shoal side's loader: plain value(K); ``pyfail:*`` keys fail here only."""

    async def __call__(self, key: str) -> bytes:
        if key.startswith("pyfail:"):
            self.calls.append(key)
            raise RuntimeError("shoal loader failed")
        return await super().__call__(key)


async def test_mixed_cluster_of_shoal_and_go(go_node_binary: Path) -> None:
    """With the golang ring on both sides, each node fetches the keys the other owns:
    shoal's values (no ``go:`` prefix) come out of the Go node and vice versa."""
    loader = PyLoader()
    async with Node(NodeConfig(port=0, ring="golang")) as node:
        group = node.group(GROUP, loader, hot_admission="never")
        assert node.self_url is not None
        assert node.peers is not None
        async with go_node(go_node_binary, [node.self_url]) as go:
            node.set_peers([node.self_url, go.url])
            picker = node.peers
            candidates = SPECIAL_KEYS + [f"k{i}" for i in range(40)]
            ours = [k for k in candidates if picker.owner(k) == node.self_url]
            theirs = [k for k in candidates if picker.owner(k) == go.url]
            assert ours
            assert theirs

            # Go -> shoal: the Go node's API answers shoal's values for keys shoal owns.
            for key in ours:
                status, body = await go.api(key)
                # golang clients send a space as "+", which every Go server (and shoal)
                # reads as a literal "+": the captured Go behaviour, kept for parity.
                assert (status, body) == (200, value(key.replace(" ", "+"))), key
            assert group.statistics().server_requests == len(ours)
            assert (await go.stats())["peer_loads"] == len(ours)

            # shoal -> Go: shoal's group answers Go's values for keys the Go node owns.
            for key in theirs:
                assert await group.get(key) == go_value(key), key
            assert group.statistics().peer_loads == len(theirs)
            assert not [k for k in loader.calls if k in theirs]

            # A Go loader failure reaches shoal as RemoteLoadError (not loaded again here).
            failing = next(f"fail:{i}" for i in range(1000) if picker.owner(f"fail:{i}") == go.url)
            with pytest.raises(RemoteLoadError, match="go loader failed"):
                await group.get(failing)
            assert failing not in loader.calls

            # A shoal loader failure (503) is, for a golang client, a failed peer: it
            # loads the key itself.
            pyfail = next(
                f"pyfail:{i}" for i in range(1000) if picker.owner(f"pyfail:{i}") == node.self_url
            )
            assert await go.api(pyfail) == (200, go_value(pyfail))
            assert loader.calls[-1] == pyfail
