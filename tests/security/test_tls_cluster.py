"""Mutual TLS between real ``shoal serve`` processes (groupcache-go's TestTLS and the
rotation tests): a 3-node cluster loads N distinct keys exactly N times over HTTP and
over gRPC; ``shoal.Client`` and ``shoal get`` speak https with client certificates;
SIGHUP rotates certificates under load without a failed request, and a bad file on
SIGHUP keeps the old one and says why."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import ssl
import time
from collections import Counter
from pathlib import Path

import pytest

import shoal
from helpers.processes import (
    LoadLog,
    clean_env,
    free_port_range,
    http_get,
    process_group,
    run_shoal,
    shoal_cmd,
)
from helpers.tls_nodes import HOSTS, Pki, TlsServer, https_request, make_pki, tls_cluster
from shoal.cli.tls import issue, write_dev_pki, write_pem
from shoal.tls import ClientTls

GROUP = "data"
KEYS = 24


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), nodes=3)


def loaded(key: str) -> bytes:
    return f"value of {key}".encode()


async def check_each_key_loaded_once(
    pki: Pki, nodes: list[TlsServer], loads: LoadLog, prefix: str
) -> None:
    """Ask every node for every key over https (so most requests cross the peer port,
    mutual TLS); the cluster loads each key exactly once in all."""
    context = pki.context(None)
    keys = [f"{prefix}-{n}" for n in range(KEYS)]
    for round_ in range(2):
        for i, key in enumerate(keys):
            node = nodes[(i + round_) % len(nodes)]
            url = f"{node.url}/v1/groups/{GROUP}/keys/{key}"
            status, body = await asyncio.to_thread(https_request, "GET", url, context)
            assert (status, body) == (200, loaded(key)), node.stderr()
    counts = Counter(key for _, key in loads.calls() if key.startswith(prefix))
    assert counts == dict.fromkeys(keys, 1)
    assert len({node for node, key in loads.calls() if key.startswith(prefix)}) == len(nodes)


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_a_mutual_tls_cluster_loads_each_key_once(
    pki: Pki, tmp_path: Path, transport: str
) -> None:
    """Three nodes with mutual TLS on their peer ports: N distinct keys asked of every
    node are loaded N times in all, and shoal.Client (with a client certificate) reads
    them from their owners over the same TLS ports."""
    loads = LoadLog(tmp_path / "calls")
    args = ["--group", f"{GROUP}=helpers.loadlog:load", "--transport", transport]
    with tls_cluster(pki, 3, *args, env=loads.env()) as nodes:
        await check_each_key_loaded_once(pki, nodes, loads, f"{transport}-key")
        cert, key = pki.pair("client")
        tls = ClientTls(ca=pki.ca_pem, cert=cert, key=key)
        async with shoal.Client(nodes[0].url, tls=tls) as client:
            assert client.transport == transport
            assert set(client.members) == {n.peer_url for n in nodes}  # https:// members
            for n in range(KEYS):
                assert await client.get(GROUP, f"{transport}-key-{n}") == loaded(
                    f"{transport}-key-{n}"
                )
        counts = Counter(k for _, k in loads.calls() if k.startswith(f"{transport}-key"))
        assert set(counts.values()) == {1}  # the client's reads were hits at the owners
        # Without a client certificate the peer port refuses the client.
        async with shoal.Client(
            nodes[0].url, tls=ClientTls(ca=pki.ca_pem), timeout=2, backoff=0.1
        ) as anonymous:
            with pytest.raises(shoal.PeerError):
                await anonymous.get(GROUP, f"{transport}-key-0")


def test_shoal_get_over_https_with_a_client_certificate(pki: Pki, tmp_path: Path) -> None:
    """``shoal get --url https://… --tls-ca --tls-cert --tls-key`` against a node whose
    API requires client certificates; without one it fails with a clear message."""
    loads = LoadLog(tmp_path / "calls")
    args = ["--group", f"{GROUP}=helpers.loadlog:load", "--api-client-auth", "required"]
    with tls_cluster(pki, 1, *args, env=loads.env(), ready_timeout=30) as nodes:
        url = nodes[0].url
        cert, key = pki.pair("client")
        flags = ["--url", url, "--group", GROUP, "--tls-ca", pki.ca_pem]
        done = run_shoal("get", "k1", *flags, "--tls-cert", cert, "--tls-key", key)
        assert done.returncode == 0, done.stderr
        assert done.stdout == loaded("k1")
        # The same through the environment variables serve also reads.
        env = clean_env(SHOAL_TLS_CA=pki.ca_pem, SHOAL_TLS_CERT=cert, SHOAL_TLS_KEY=key)
        done = run_shoal("get", "k2", "--url", url, "--group", GROUP, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout == loaded("k2")
        refused = run_shoal("get", "k3", *flags)
        assert refused.returncode == 1
        assert url.removeprefix("https://") in refused.stderr.decode()
        assert b"Traceback" not in refused.stderr
        untrusted = run_shoal("get", "k3", "--url", url, "--group", GROUP)
        assert untrusted.returncode == 1
        assert b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def serial_of(address: tuple[str, int], context: ssl.SSLContext) -> int:
    """The serial number of the certificate the server presents to a new connection."""
    from cryptography import x509

    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=address[0]) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def own_files(pki: Pki, root: Path, i: int) -> list[str]:
    """Node i's TLS flags, with copies of its certificate and key in ``root`` (to rotate)."""
    root.mkdir(parents=True, exist_ok=True)
    cert, key = root / f"node-{i}.pem", root / f"node-{i}-key.pem"
    shutil.copy(pki.node(i)[0], cert)
    shutil.copy(pki.node(i)[1], key)
    return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", pki.ca_pem]


async def test_sighup_rotates_certificates_under_load(pki: Pki, tmp_path: Path) -> None:
    """New certificates of the same CA written over the old files, then SIGHUP: new
    connections (API and peer port) get the new certificates while requests keep
    flowing over fresh connections to both nodes; not one request fails. A broken file
    on the next SIGHUP keeps the current certificate, and the log says why."""
    loads = LoadLog(tmp_path / "calls")
    files = tmp_path / "files"
    args = ["--group", f"{GROUP}=helpers.loadlog:load"]
    with tls_cluster(
        pki, 2, *args, env=loads.env(), node_args=lambda i: own_files(pki, files, i)
    ) as nodes:
        context = pki.context(None)
        peer_context = pki.context("client")
        addresses = [("127.0.0.1", node.port) for node in nodes]
        peers = [("127.0.0.1", node.peer_port or 0) for node in nodes]
        before = [await asyncio.to_thread(serial_of, a, context) for a in addresses]
        stop = asyncio.Event()
        done: list[int] = []
        failed: list[str] = []

        async def client(worker: int) -> None:
            n = 0
            while not stop.is_set():
                node = nodes[(worker + n) % len(nodes)]
                key = f"rot-{worker}-{n % 40}"
                url = f"{node.url}/v1/groups/{GROUP}/keys/{key}"
                try:
                    status, body = await asyncio.to_thread(https_request, "GET", url, context)
                except OSError as exc:
                    failed.append(f"{url}: {exc}")
                else:
                    if (status, body) != (200, loaded(key)):
                        failed.append(f"{url}: {status} {body[:100]!r}")
                done.append(1)
                n += 1

        workers = [asyncio.create_task(client(w)) for w in range(3)]
        try:
            await asyncio.sleep(0.5)
            renewed = [issue(pki.ca, f"node {i} renewed", HOSTS) for i in range(len(nodes))]
            for i, cert in enumerate(renewed):
                write_pem(cert, files / f"node-{i}.pem", files / f"node-{i}-key.pem")
                nodes[i].proc.send_signal(signal.SIGHUP)
            wanted = [cert.cert.serial_number for cert in renewed]  # type: ignore[attr-defined]
            deadline = time.monotonic() + 20
            while [await asyncio.to_thread(serial_of, a, context) for a in addresses] != wanted:
                assert time.monotonic() < deadline, "SIGHUP did not rotate the certificates"
                await asyncio.sleep(0.05)
            served_before = len(done)
            await asyncio.sleep(0.5)
            assert len(done) > served_before  # requests kept flowing after the rotation
        finally:
            stop.set()
            await asyncio.gather(*workers)
        assert failed == []
        assert before != wanted
        for address, serial in zip(peers, wanted, strict=True):
            assert await asyncio.to_thread(serial_of, address, peer_context) == serial
        for node in nodes:
            assert "reloaded TLS certificates" in node.stderr()

        # A bad file: the node keeps serving with the certificate it has.
        (files / "node-0.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
        nodes[0].proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reloading TLS certificates failed" not in nodes[0].stderr():
            assert time.monotonic() < deadline, nodes[0].stderr()
            await asyncio.sleep(0.05)
        assert str(files / "node-0.pem") in nodes[0].stderr()
        assert await asyncio.to_thread(serial_of, addresses[0], context) == wanted[0]
        url = f"{nodes[0].url}/v1/groups/{GROUP}/keys/after-bad-file"
        assert await asyncio.to_thread(https_request, "GET", url, context) == (
            200,
            loaded("after-bad-file"),
        )
        assert nodes[0].proc.poll() is None


def test_shoal_cluster_with_a_tls_dir(tmp_path: Path) -> None:
    """``shoal tls init DIR`` then ``shoal cluster --tls-dir DIR``: each node serves its
    own certificate, members are https://, the banner's curl line carries --cacert and
    works as printed; plain HTTP gets no answer."""
    pki = tmp_path / "pki"
    write_dev_pki(pki, nodes=2)
    peer_port, api_port = free_port_range(2), free_port_range(2) + 1
    command = shoal_cmd(
        "cluster", "--nodes", "2", "--slowdb", "--slowdb-delay", "0", "--tls-dir", str(pki),
        "--port", str(peer_port), "--api-port", str(api_port),
    )  # fmt: skip
    with process_group(command) as group:
        output = group.wait_for_output("Ctrl-C stops the cluster")
        ca = pki / "ca.pem"
        url = f"https://127.0.0.1:{api_port}/api?key=Tom"
        assert f"curl --cacert {ca} '{url}'" in output
        assert f"peers https://127.0.0.1:{peer_port + 1}" in output
        context = ClientTls(ca=str(ca)).context()
        assert https_request("GET", url, context) == (200, b"630")
        status, body = https_request("GET", f"https://127.0.0.1:{api_port - 1}/v1/cluster", context)
        assert status == 200
        assert b'"url":"https://127.0.0.1:' in body.replace(b" ", b"")
        with pytest.raises(ConnectionError):  # RemoteDisconnected: closed, no answer
            http_get(f"http://127.0.0.1:{api_port}/api?key=Tom")
        # Node 1 presents its own certificate (not node 0's).
        from cryptography import x509

        node_1 = x509.load_pem_x509_certificate((pki / "node-1.pem").read_bytes())
        assert serial_of(("127.0.0.1", peer_port + 1), ClientTls(
            ca=str(ca), cert=str(pki / "client.pem"), key=str(pki / "client-key.pem")
        ).context()) == node_1.serial_number  # fmt: skip
        assert "Traceback" not in group.output()
