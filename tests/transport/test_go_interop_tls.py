"""shoal and a real golang/groupcache node over mutual TLS: one cluster whose every
peer request is HTTPS with client certificates on both sides, and each side refusing
a client the other side's CA did not vouch for.

The Go node is ``tests/interop/go/main.go`` with ``-tls-cert -tls-key -tls-ca``: an
HTTPS server with ``ClientAuth: RequireAndVerifyClientCert`` (TLS 1.2 or newer) and a
peer transport that presents the node's certificate and verifies its peers' against
the CA. The certificates are made here, per test (``shoal.cli.tls``). Skipped, as the
other Go interop tests are, only when ``go`` or the golang/groupcache sources are
missing (and failed instead under ``CI=true``).
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.go_node import MutualTls, go_node, go_value
from helpers.peer_nodes import GROUP, ValueLoader, value
from shoal import Node, NodeConfig, PeerError
from shoal.cli.tls import Issued, issue, make_ca, write_pem
from shoal.config import TlsConfig
from shoal.transport.http import HttpTransport

# Keys a Go client and a shoal server agree on byte for byte (a space is the one
# golang quirk, kept out: test_go_interop.py covers it).
KEYS = ["key:2", "a/b?c&d=é+%22", "ünï_cödé", "x%y", "+plus+", *(f"k{i}" for i in range(40))]
HOSTS = ("127.0.0.1",)


@dataclass(frozen=True)
class Pki:
    """A CA and two node certificates it signed (node 0: Go, node 1: shoal)."""

    root: Path
    authority: Issued

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    def node(self, i: int) -> MutualTls:
        return MutualTls(self.root / f"node-{i}.pem", self.root / f"node-{i}-key.pem", self.ca)

    def write(self, name: str, issued: Issued) -> tuple[Path, Path]:
        """Write another certificate and its key here."""
        cert, key = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        write_pem(issued, cert, key)
        return cert, key

    def shoal_tls(self) -> TlsConfig:
        node = self.node(1)
        return TlsConfig(cert=str(node.cert), key=str(node.key), ca=str(self.ca))

    def client(self, cert: tuple[Path, Path] | None, ca: Path | None = None) -> ssl.SSLContext:
        """A client context trusting ``ca`` (default the run's CA), presenting ``cert``."""
        context = ssl.create_default_context(cafile=ca or self.ca)
        if cert is not None:
            context.load_cert_chain(*cert)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca()
    pki = Pki(tmp_path, ca)
    write_pem(ca, pki.ca)
    for i in range(2):
        pki.write(f"node-{i}", issue(ca, f"node {i}", HOSTS))
    return pki


async def test_a_go_node_serves_shoal_clients_over_mutual_tls_and_refuses_others(
    go_node_binary: Path, pki: Pki
) -> None:
    """shoal's peer client with a node certificate of the CA reads the Go node's values
    byte for byte (each loaded once); without a client certificate, with one from
    another CA, with an expired one, in plaintext, or trusting another CA than the Go
    node's, it gets PeerError and the Go node serves nothing."""
    foreign_ca = make_ca("another CA")
    foreign = pki.write("foreign", issue(foreign_ca, "intruder", HOSTS))
    foreign_ca_file = pki.root / "foreign-ca.pem"
    write_pem(foreign_ca, foreign_ca_file)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    expired = pki.write(
        "expired",
        issue(pki.authority, "expired", HOSTS, not_before=now - 2 * day, not_after=now - day),
    )
    shoal_cert = (pki.node(1).cert, pki.node(1).key)

    async with go_node(go_node_binary, tls=pki.node(0)) as go:
        assert go.url.startswith("https://")
        good = HttpTransport(ssl_context=pki.client(shoal_cert))
        try:
            client = good.client(go.url)
            for key in KEYS:
                fetched = await client.get(GROUP, key)
                assert (fetched.value, fetched.expires_at) == (go_value(key), None), key
            for key in KEYS[:5]:  # again: served from the Go node's cache
                assert (await client.get(GROUP, key)).value == go_value(key)
            assert client.statistics().connections_opened == 1  # kept alive over TLS
        finally:
            await good.aclose()
        before = await go.stats()
        assert before["loads"] == len(KEYS)
        assert before["server_requests"] == len(KEYS) + 5

        refused = {
            "no client certificate": (pki.client(None), go.url),
            "a certificate of another CA": (pki.client(foreign), go.url),
            "an expired certificate": (pki.client(expired), go.url),
            "a server of another CA": (pki.client(shoal_cert, foreign_ca_file), go.url),
            "plaintext": (None, go.url.replace("https://", "http://")),
        }
        for why, (context, url) in refused.items():
            transport = HttpTransport(ssl_context=context)
            try:
                with pytest.raises(PeerError):
                    await transport.client(url).get(GROUP, "refused")
            finally:
                await transport.aclose()
            assert await go.stats() == before, why


async def test_a_mixed_cluster_of_shoal_and_go_over_mutual_tls(
    go_node_binary: Path, pki: Pki
) -> None:
    """A Go node and a shoal node, each with its node certificate of one CA, form one
    golang-ring cluster on https:// URLs: each serves the other's keys byte for byte,
    every key loaded once, at its owner, and no handshake fails."""
    loader = ValueLoader()  # value(K), each call recorded
    async with Node(NodeConfig(port=0, ring="golang", tls=pki.shoal_tls())) as node:
        group = node.group(GROUP, loader, hot_admission="never")
        assert node.self_url is not None
        assert node.self_url.startswith("https://")
        async with go_node(go_node_binary, [node.self_url], tls=pki.node(0)) as go:
            node.set_peers([node.self_url, go.url])
            picker = node.peers
            assert picker is not None
            ours = [k for k in KEYS if picker.owner(k) == node.self_url]
            theirs = [k for k in KEYS if picker.owner(k) == go.url]
            assert ours
            assert theirs

            # Go -> shoal: the Go node's API answers shoal's values for keys shoal owns.
            for key in ours:
                assert await go.api(key) == (200, value(key)), key
            assert sorted(loader.calls) == sorted(ours)
            assert group.statistics().server_requests == len(ours)
            assert (await go.stats())["peer_loads"] == len(ours)

            # shoal -> Go, twice (shoal keeps no copy): Go's values, loaded once there.
            for _ in range(2):
                for key in theirs:
                    assert await group.get(key) == go_value(key), key
            assert group.statistics().peer_loads == 2 * len(theirs)
            stats = await go.stats()
            # Go's "loads" counts its peer loads too: its own keys were loaded once each.
            assert stats["loads"] - stats["peer_loads"] == len(theirs)
            assert stats["peer_errors"] == 0
            assert sorted(loader.calls) == sorted(ours)  # nothing of theirs loaded here
            assert node.tls_handshake_failures() == {"peer": 0}


async def test_each_side_refuses_the_other_without_a_client_certificate(
    go_node_binary: Path, pki: Pki
) -> None:
    """A Go node whose peer requests present no certificate is refused by the shoal
    node's peer port (the Go node then loads the key itself, a peer error); a shoal
    node whose peer client presents none is refused by the Go node (shoal loads it
    itself). Nothing crosses between them."""
    loader = ValueLoader()  # value(K), each call recorded
    no_cert = HttpTransport(ssl_context=pki.client(None))
    config = NodeConfig(port=0, ring="golang", tls=pki.shoal_tls())
    async with Node(config, transport=no_cert) as node:
        group = node.group(GROUP, loader, hot_admission="never")
        assert node.self_url is not None
        async with go_node(
            go_node_binary, [node.self_url], tls=pki.node(0), no_client_cert=True
        ) as go:
            node.set_peers([node.self_url, go.url])
            picker = node.peers
            assert picker is not None
            ours = next(k for k in KEYS if picker.owner(k) == node.self_url)
            theirs = next(k for k in KEYS if picker.owner(k) == go.url)

            # Go -> shoal without a certificate: refused; the Go node loads it itself.
            assert await go.api(ours) == (200, go_value(ours))
            stats = await go.stats()
            assert (stats["peer_errors"], stats["peer_loads"]) == (1, 0)
            assert group.statistics().server_requests == 0
            assert node.tls_handshake_failures()["peer"] >= 1

            # shoal -> Go without a certificate: refused; shoal loads it itself.
            assert await group.get(theirs) == value(theirs)
            assert group.statistics().peer_errors == 1
            assert loader.calls == [theirs]
            assert (await go.stats())["server_requests"] == 0
