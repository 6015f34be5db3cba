"""TLS on a node's ports, in one process: real sockets on 127.0.0.1 and certificates
made at test time (the twins of Redis's tls tests): plaintext is never served, the API's
client-auth modes each behave, the peer port admits only certificates of the cluster's
CA that are valid, a stalled handshake is cut, and a reload rotates or keeps the files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers.tls_nodes import HOSTS, Pki, make_pki
from shoal import GossipConfig, GroupConfig, Node, NodeConfig
from shoal.cli.tls import Issued, issue, make_ca, write_pem
from shoal.config import TlsConfig
from shoal.errors import ConfigError, PeerError
from shoal.tls import ClientTls, NodeTls, client_context
from shoal.transport.http import HttpPeerClient

GROUP = "data"
REQUEST = b"GET /v1/groups/data/keys/k1 HTTP/1.1\r\nHost: x\r\n\r\n"


async def load(key: str) -> bytes:
    return f"value of {key}".encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), nodes=2)


async def started(pki: Pki, api_client_auth: str = "none", **options: object) -> Node:
    cert, key = pki.node(0)
    tls = TlsConfig(cert=cert, key=key, ca=pki.ca_pem, api_client_auth=api_client_auth)
    node = Node(NodeConfig(api_port=0, port=0, tls=tls, **options))  # type: ignore[arg-type]
    node.add_group(GroupConfig(name=GROUP), load)
    await node.start()
    return node


@pytest.fixture
async def node(pki: Pki) -> AsyncIterator[Node]:
    served = await started(pki)
    try:
        yield served
    finally:
        await served.aclose()


async def exchange(
    address: tuple[str, int] | None, context: ssl.SSLContext | None, data: bytes = REQUEST
) -> bytes:
    """Send ``data`` (over TLS with ``context``) and read until the server closes or
    answers; raises what the handshake raises."""
    assert address is not None
    reader, writer = await asyncio.open_connection(*address, ssl=context)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(65536)
    finally:
        writer.close()
        # Closing a connection the server already cut may raise; that is not the test.
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def refused(address: tuple[str, int] | None, context: ssl.SSLContext | None) -> bool:
    """True when the server does not answer: the handshake fails, or the connection is
    closed before any byte of an answer."""
    try:
        return await exchange(address, context) == b""
    except (ssl.SSLError, ConnectionError):
        return True


async def test_plaintext_is_never_served(pki: Pki, node: Node) -> None:
    """Plain HTTP to the TLS API port and to the TLS peer port: the connection is closed,
    no answer byte comes back, and each is counted as a failed handshake."""
    assert await exchange(node.api_address, None) == b""
    peer = b"GET /_groupcache/data/k1 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert await exchange(node.peer_address, None, peer) == b""
    assert node.tls_handshake_failures() == {"api": 1, "peer": 1}
    # The accept loop is unharmed: TLS requests are answered.
    answer = await exchange(node.api_address, pki.context(None))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"value of k1")
    metrics = await exchange(
        node.api_address, pki.context(None), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert b'shoal_tls_handshake_failures_total{server="api"} 1' in metrics
    assert b'shoal_tls_handshake_failures_total{server="peer"} 1' in metrics


async def test_the_node_url_is_https(node: Node) -> None:
    """With TLS the node advertises https:// on the ring (what every membership source
    publishes)."""
    assert node.peer_address is not None
    assert node.self_url == f"https://127.0.0.1:{node.peer_address[1]}"
    assert node.cluster_info()["members"][0]["url"].startswith("https://")


@pytest.mark.parametrize(
    ("mode", "admitted"),
    [
        ("none", {None: True, "client": True, "foreign": True}),
        ("optional", {None: True, "client": True, "foreign": False}),
        ("required", {None: False, "client": True, "foreign": False}),
    ],
)
async def test_api_client_auth(pki: Pki, mode: str, admitted: dict[str | None, bool]) -> None:
    """--api-client-auth: none asks for no certificate; optional verifies one when given;
    required refuses a client without one. A certificate of another CA never passes
    where certificates are checked."""
    served = await started(pki, api_client_auth=mode)
    try:
        for name, ok in admitted.items():
            context = pki.context(name)
            if ok:
                answer = await exchange(served.api_address, context)
                assert answer.endswith(b"value of k1"), (mode, name, answer)
            else:
                assert await refused(served.api_address, context), (mode, name)
        failures = sum(not ok for ok in admitted.values())
        assert served.tls_handshake_failures()["api"] == failures
    finally:
        await served.aclose()


async def test_the_peer_port_requires_a_valid_certificate_of_the_ca(pki: Pki, node: Node) -> None:
    """Mutual TLS on the peer port: no client certificate, one from another CA and an
    expired one are refused; the cluster's certificate is served."""
    peer = b"GET /_groupcache/data/k1 HTTP/1.1\r\nHost: x\r\n\r\n"
    for name in (None, "foreign", "expired"):
        context = pki.context(name)
        try:
            answer = await exchange(node.peer_address, context, peer)
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b"", name
    assert node.tls_handshake_failures()["peer"] == 3
    answer = await exchange(node.peer_address, pki.context("client"), peer)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"value of k1" in answer


async def test_a_client_checks_the_server(pki: Pki, node: Node) -> None:
    """The other way round: a peer whose certificate is not of the trusted CA is refused
    by the client (a node never talks to a stranger)."""
    stranger = client_context(ca=str(pki.root / "foreign-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        await exchange(node.api_address, stranger)


async def test_peers_fetch_over_mutual_tls(pki: Pki, node: Node) -> None:
    """The peer client a node uses (its own certificate, the CA) reads from the TLS peer
    port; the same client without a certificate is refused."""
    assert node.peer_address is not None
    url = f"https://127.0.0.1:{node.peer_address[1]}"
    tls = NodeTls(TlsConfig(cert=pki.node(1)[0], key=pki.node(1)[1], ca=pki.ca_pem))
    client = HttpPeerClient(url, ssl_context=tls.client)
    try:
        fetched = await client.get(GROUP, "k7")
        assert fetched.value == b"value of k7"
    finally:
        await client.aclose()
    anonymous = HttpPeerClient(url, ssl_context=ClientTls(ca=pki.ca_pem).context())
    try:
        with pytest.raises(PeerError):
            await anonymous.get(GROUP, "k8")
    finally:
        await anonymous.aclose()


async def test_a_stalled_handshake_is_cut(pki: Pki) -> None:
    """A client that connects and never says hello is disconnected after the header
    timeout, and counted; it blocks nothing meanwhile."""
    served = await started(pki, header_timeout=0.3)
    try:
        assert served.api_address is not None
        reader, writer = await asyncio.open_connection(*served.api_address)
        # Meanwhile a real client is served.
        answer = await exchange(served.api_address, pki.context(None))
        assert answer.endswith(b"value of k1")
        async with asyncio.timeout(5):
            assert await reader.read(100) == b""
        writer.close()
        assert served.tls_handshake_failures()["api"] == 1
    finally:
        await served.aclose()


def serial_of(context: ssl.SSLContext, address: tuple[str, int] | None) -> int:
    """The serial number of the certificate the server presents now."""
    from cryptography import x509

    assert address is not None
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=address[0]) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_reload_rotates_and_a_bad_file_keeps_the_old_one(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Node.reload (SIGHUP) swaps in a new certificate for new connections; a broken
    file keeps the current one, and the log says which file and why."""
    cert, key = tmp_path / "node.pem", tmp_path / "node-key.pem"
    shutil.copy(pki.node(0)[0], cert)
    shutil.copy(pki.node(0)[1], key)
    tls = TlsConfig(cert=str(cert), key=str(key), ca=pki.ca_pem)
    served = Node(NodeConfig(api_port=0, port=0, tls=tls))
    served.add_group(GroupConfig(name=GROUP), load)
    async with served:
        context = pki.context(None)
        first = await asyncio.to_thread(serial_of, context, served.api_address)
        renewed = issue(pki.ca, "node 0 renewed", HOSTS)
        write_pem(renewed, cert, key)
        assert served.reload() is True
        second = await asyncio.to_thread(serial_of, context, served.api_address)
        assert second != first
        assert second == renewed.cert.serial_number  # type: ignore[attr-defined]
        # A peer port connection made now presents the new certificate as well.
        assert await asyncio.to_thread(serial_of, pki.context(), served.peer_address) == second

        cert.write_text("not a certificate\n")
        with caplog.at_level(logging.ERROR, logger="shoal.node"):
            assert served.reload() is False
        assert "reloading TLS certificates failed" in caplog.text
        assert str(cert) in caplog.text
        assert await asyncio.to_thread(serial_of, context, served.api_address) == second

        # A key that does not match its certificate is refused too.
        write_pem(issue(pki.ca, "other", HOSTS), cert)
        assert served.reload() is False
        assert await asyncio.to_thread(serial_of, context, served.api_address) == second


def test_bad_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    """A missing file, a file that is not PEM and a key of another certificate each
    fail with a message that names the file."""
    cert, key = pki.node(0)
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        NodeTls(TlsConfig(cert=missing, key=key))
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"junk\.pem"):
        NodeTls(TlsConfig(cert=cert, key=key, ca=str(junk)))
    with pytest.raises(ConfigError, match=r"node-1-key\.pem"):
        NodeTls(TlsConfig(cert=cert, key=pki.node(1)[1]))
    with pytest.raises(ConfigError, match="both"):
        ClientTls(cert=cert)


def test_contexts_speak_tls_1_2_or_newer(pki: Pki) -> None:
    """Every context refuses TLS 1.1 and older; the peer port requires a certificate
    with a CA, the API as api_client_auth says."""
    cert, key = pki.node(0)
    tls = NodeTls(TlsConfig(cert=cert, key=key, ca=pki.ca_pem, api_client_auth="optional"))
    for context in (tls.api_server(), tls.peer_server(), tls.client(), ClientTls().context()):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.peer_server().verify_mode == ssl.CERT_REQUIRED
    assert tls.api_server().verify_mode == ssl.CERT_OPTIONAL
    assert tls.client().verify_mode == ssl.CERT_REQUIRED
    assert tls.client().check_hostname
    plain = NodeTls(TlsConfig(cert=cert, key=key))
    assert plain.peer_server().verify_mode == ssl.CERT_NONE
    assert plain.api_server().verify_mode == ssl.CERT_NONE


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_old_tls_versions_are_refused(pki: Pki, node: Node) -> None:
    """A client that offers only TLS 1.1 gets no connection (and one that offers 1.2 does)."""
    context = pki.context(None)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    assert await refused(node.api_address, context)
    context = pki.context(None)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (await exchange(node.api_address, context)).endswith(b"value of k1")


async def test_gossip_members_advertise_https_and_fetch_over_mutual_tls(pki: Pki) -> None:
    """Membership by gossip with TLS: each node joins with its https:// URL, the rings
    hold both, and a key owned by the other node is fetched over the peer port's mutual
    TLS (loaded once, at its owner)."""
    loads: list[str] = []

    async def counted(key: str) -> bytes:
        loads.append(key)
        return await load(key)

    def config(i: int, join: tuple[str, ...] = ()) -> NodeConfig:
        cert, key = pki.node(i)
        return NodeConfig(
            port=0,
            tls=TlsConfig(cert=cert, key=key, ca=pki.ca_pem),
            gossip=GossipConfig.profile("local", join=join),
        )

    first = Node(config(0))
    first.add_group(GroupConfig(name=GROUP), counted)
    async with first:
        second = Node(config(1, (first.cluster_info()["membership"]["address"],)))
        second.add_group(GroupConfig(name=GROUP), counted)
        async with second:
            urls = {first.self_url, second.self_url}
            assert all(url is not None and url.startswith("https://") for url in urls)
            for _ in range(200):
                if {m["url"] for m in first.cluster_info()["members"]} == urls:
                    break
                await asyncio.sleep(0.01)
            assert {m["url"] for m in first.cluster_info()["members"]} == urls
            assert {m["url"] for m in second.cluster_info()["members"]} == urls
            owned = next(
                f"g{n}"
                for n in range(1000)
                if first.cluster_info(f"g{n}").get("owner") == second.self_url
            )
            assert await first.get_group(GROUP).get(owned) == f"value of {owned}".encode()
            assert await second.get_group(GROUP).get(owned) == f"value of {owned}".encode()
            assert loads == [owned]
            assert second.tls_handshake_failures()["peer"] == 0


def second_ca_files(pki: Pki, root: Path) -> tuple[Issued, Path]:
    """A second CA (``second-ca.pem``), a peer certificate of it (``peer.pem``) and a
    bundle of both CAs (``bundle.pem``)."""
    second_ca = make_ca("second CA")
    write_pem(second_ca, root / "second-ca.pem")
    bundle = root / "bundle.pem"
    bundle.write_bytes(Path(pki.ca_pem).read_bytes() + (root / "second-ca.pem").read_bytes())
    write_pem(issue(second_ca, "peer", HOSTS), root / "peer.pem", root / "peer-key.pem")
    return second_ca, bundle


async def test_reload_rotates_the_certificate_a_node_presents_to_its_peers(
    pki: Pki, tmp_path: Path
) -> None:
    """The client side rotates too: a peer that admits only certificates of a second CA
    refuses this node's first certificate; after a reload with one of that CA, the
    node's new connections are admitted and the peer serves its keys."""
    second_ca, bundle = second_ca_files(pki, tmp_path)
    peer_tls = TlsConfig(
        cert=str(tmp_path / "peer.pem"),
        key=str(tmp_path / "peer-key.pem"),
        ca=str(tmp_path / "second-ca.pem"),
    )
    served: list[str] = []

    async def at_peer(key: str) -> bytes:
        served.append(key)
        return await load(key)

    peer = Node(NodeConfig(port=0, tls=peer_tls))
    peer.add_group(GroupConfig(name=GROUP), at_peer)
    async with peer:
        cert, key = tmp_path / "node.pem", tmp_path / "node-key.pem"
        shutil.copy(pki.node(0)[0], cert)  # signed by the first CA
        shutil.copy(pki.node(0)[1], key)
        config = NodeConfig(
            port=0,
            peers=(peer.self_url or "",),
            peer_backoff=0.01,
            tls=TlsConfig(cert=str(cert), key=str(key), ca=str(bundle)),
        )
        node = Node(config)
        node.add_group(GroupConfig(name=GROUP), load)
        async with node:
            owned = [
                k
                for k in (f"p{n}" for n in range(1000))
                if node.cluster_info(k).get("owner") == peer.self_url
            ][:2]
            # Refused at the peer's handshake: the node loads the key itself.
            assert await node.get_group(GROUP).get(owned[0]) == f"value of {owned[0]}".encode()
            assert served == []
            assert peer.tls_handshake_failures()["peer"] >= 1
            write_pem(issue(second_ca, "node 0 renewed", HOSTS), cert, key)
            assert node.reload() is True
            await asyncio.sleep(0.05)  # past the peer's back-off
            assert await node.get_group(GROUP).get(owned[1]) == f"value of {owned[1]}".encode()
            assert served == [owned[1]]


async def test_the_grpc_port_speaks_mutual_tls_and_rotates(pki: Pki, tmp_path: Path) -> None:
    """With the gRPC transport the peer port is gRPC over TLS: plaintext and a client
    without a certificate of the CA get nothing, the cluster's certificate is served, and
    a reload makes new connections see the new server certificate."""
    pytest.importorskip("grpc")
    from shoal.transport.grpc import GrpcNodeClient, channel_credentials

    cert, key = tmp_path / "node.pem", tmp_path / "node-key.pem"
    shutil.copy(pki.node(0)[0], cert)
    shutil.copy(pki.node(0)[1], key)
    tls = TlsConfig(cert=str(cert), key=str(key), ca=pki.ca_pem)
    served = Node(NodeConfig(port=0, transport="grpc", tls=tls))
    served.add_group(GroupConfig(name=GROUP), load)
    async with served:
        assert served.peer_address is not None
        assert served.self_url == f"https://127.0.0.1:{served.peer_address[1]}"
        target = f"grpc://127.0.0.1:{served.peer_address[1]}"

        def presenting(name: str) -> ClientTls:
            cert, key = pki.pair(name)
            return ClientTls(ca=pki.ca_pem, cert=cert, key=key)

        good = presenting("client")
        refused_credentials = [
            None,  # plaintext
            channel_credentials(ClientTls(ca=pki.ca_pem).pem()),  # no client certificate
            channel_credentials(presenting("foreign").pem()),  # another CA's
            channel_credentials(presenting("expired").pem()),
        ]
        for credentials in refused_credentials:
            refused = GrpcNodeClient(target, timeout=2, credentials=credentials)
            try:
                with pytest.raises(PeerError):
                    await refused.get(GROUP, "k1")
            finally:
                await refused.aclose()
        client = GrpcNodeClient(target, credentials=channel_credentials(good.pem()))
        try:
            assert await client.get(GROUP, "k1") == b"value of k1"
        finally:
            await client.aclose()
        context = good.context()
        first = await asyncio.to_thread(serial_of, context, served.peer_address)
        renewed = issue(pki.ca, "node 0 renewed", HOSTS)
        write_pem(renewed, cert, key)
        assert served.reload() is True
        second = await asyncio.to_thread(serial_of, context, served.peer_address)
        assert first != second == renewed.cert.serial_number  # type: ignore[attr-defined]
        client = GrpcNodeClient(target, credentials=channel_credentials(good.pem()))
        try:
            assert await client.get(GROUP, "k2") == b"value of k2"
        finally:
            await client.aclose()
