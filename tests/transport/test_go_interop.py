"""shoal and a real golang/groupcache node, both ways: a shoal client fetching from a Go
node, and a mixed cluster where each side fetches the keys the other owns.

The Go node is ``tests/interop/go/main.go``, built once per session. The tests are
skipped when ``go`` or the golang/groupcache sources are missing, and fail instead
under ``CI=true``, where a missing toolchain is a broken machine (Debian:
``apt-get install golang-go golang-github-golang-groupcache-dev``;
``scripts/system-deps.sh`` installs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.go_node import go_node, go_value
from helpers.peer_nodes import GROUP, ValueLoader, value
from shoal import Node, NodeConfig, PeerError, RemoteLoadError
from shoal.transport.http import HttpTransport

SPECIAL_KEYS = ["key:2", "a/b?c&d=é+%22", "user 42 #7", "ünï cödé", "x%y", "+plus+"]


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
