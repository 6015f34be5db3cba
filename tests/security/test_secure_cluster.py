"""``shoal cluster --secure`` (what ``make run SECURE=1`` runs), with real processes.

The supervisor's part is tested here on any build: the files it writes (a real PKI,
tokens, a keyring; every file 0600 in a 0700 directory), the flags each node gets,
the banner, and the directory gone when the cluster stops. The end-to-end test (an
https GET with the CA and a read token answers, one without a token is refused)
needs the nodes to serve TLS and check tokens, which ``shoal.tls`` brings: it is
skipped only while that module does not exist.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import signal
import ssl
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.processes import (
    ProcessGroup,
    free_port_range,
    process_gone,
    process_group,
    shoal_cmd,
)
from shoal.cli.cluster import banner_lines, plan_members
from shoal.cli.plan import build_serve_plan, serve_parser
from shoal.cli.secure import ROLES, write_secure_files

HAS_TLS = importlib.util.find_spec("shoal.tls") is not None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_files_are_a_real_pki_random_tokens_and_a_keyring_all_private(
    tmp_path: Path,
) -> None:
    """Node certificates verify against the CA for 127.0.0.1 and the extra host;
    one token per role, each random; a 32-byte key; every file 0600, the directory
    0700."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    first = write_secure_files(tmp_path / "a", nodes=2, hosts=["10.1.2.3", "0.0.0.0"])
    second = write_secure_files(tmp_path / "b", nodes=1)
    assert _mode(first.directory) == 0o700
    files = sorted(first.directory.iterdir())
    assert len(files) == 2 * 4 + 2  # CA, 2 nodes, client (+ keys); tokens, keyring
    assert all(_mode(path) == 0o600 for path in files), [(p, oct(_mode(p))) for p in files]

    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for cert_path, key_path in first.certs:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        assert {"127.0.0.1", "10.1.2.3"} <= ips
        assert "0.0.0.0" not in ips
        assert key_path.exists()

    lines = first.tokens_file.read_text().splitlines()
    assert [line.split(" ")[0] for line in lines] == list(ROLES)
    assert {line.split(" ")[1] for line in lines} == set(first.tokens.values())
    assert len(set(first.tokens.values())) == 3
    assert not set(first.tokens.values()) & set(second.tokens.values())
    assert all(len(token) >= 40 for token in first.tokens.values())
    key = base64.b64decode(first.keyring.read_text().strip(), validate=True)
    assert len(key) == 32
    assert first.keyring.read_text() != second.keyring.read_text()


def test_the_banner_gives_the_curl_line_with_the_ca_and_a_read_token(tmp_path: Path) -> None:
    """The banner's curl line speaks https with ``--cacert`` and the read token, and
    says where the files are."""
    files = write_secure_files(tmp_path / "s", nodes=2)
    cert, key = files.certs[0]
    node = ["--slowdb", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(files.ca)]
    plan = build_serve_plan(
        serve_parser().parse_args([*node, "--api-tokens", str(files.tokens_file)]), {}
    )
    members = plan_members(
        2, host="127.0.0.1", port=8001, api_host="127.0.0.1", api_port=9999, tls=True
    )
    text = "\n".join(banner_lines(plan, members, files))
    read = files.tokens["read"]
    assert (
        f"curl --cacert {files.ca} -H 'Authorization: Bearer {read}' "
        "'https://127.0.0.1:9999/api?key=Tom'" in text
    )
    assert f"are in {files.directory} (removed when the cluster stops)" in text
    assert files.tokens["admin"] not in text
    plain_plan = build_serve_plan(serve_parser().parse_args(["--slowdb"]), {})
    plain_members = plan_members(
        2, host="127.0.0.1", port=8001, api_host="127.0.0.1", api_port=9999
    )
    plain = "\n".join(banner_lines(plain_plan, plain_members))
    assert "curl 'http://127.0.0.1:9999/api?key=Tom'" in plain
    assert "Bearer" not in plain


def _node_argv(group: ProcessGroup, count: int) -> list[list[str]]:
    """The command lines of the cluster's ``count`` nodes, from the pids it logs."""
    started = r"started node \d+ \(pid (\d+)\)"
    deadline = time.monotonic() + 20
    while len(pids := re.findall(started, group.output())) < count:
        assert group.proc.poll() is None, group.output()
        assert time.monotonic() < deadline, group.output()
        time.sleep(0.02)
    argvs = []
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        while b"serve" not in cmdline:  # not yet exec'd (or gone: then say why)
            assert not process_gone(int(pid)), f"node {pid} exited:\n{group.output()}"
            assert time.monotonic() < deadline, group.output()
            time.sleep(0.02)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        argvs.append(cmdline.decode().split("\0")[:-1])
    return argvs


def _flag(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.mark.parametrize("membership", ["static", "gossip"])
def test_every_node_gets_its_files_and_they_are_gone_when_the_cluster_stops(
    membership: str,
) -> None:
    """Each node gets its own certificate and key, the shared CA and tokens, and (with
    gossip) the keyring, all in one private directory, and ``https://`` URLs; SIGTERM
    to the supervisor stops the cluster and removes the directory."""
    port = free_port_range(4)
    args = ["cluster", "--slowdb", "--secure", "--nodes", "2", "--membership", membership]
    args += ["--port", str(port), "--api-port", str(port + 3)]
    if membership == "gossip":
        args += ["--gossip-timers", "local"]
    with process_group(shoal_cmd(*args)) as group:
        argvs = _node_argv(group, 2)
        secrets = {Path(_flag(argv, "--tls-ca") or "").parent for argv in argvs}
        assert len(secrets) == 1, (argvs, group.output())
        directory = secrets.pop()
        assert directory.parent == group.output_path.parent  # in TMPDIR
        assert _mode(directory) == 0o700
        for i, argv in enumerate(argvs):
            assert _flag(argv, "--tls-cert") == str(directory / f"node-{i}.pem")
            assert _flag(argv, "--tls-key") == str(directory / f"node-{i}-key.pem")
            assert _flag(argv, "--tls-ca") == str(directory / "ca.pem")
            assert _flag(argv, "--api-tokens") == str(directory / "tokens")
            assert _flag(argv, "--self") == f"https://127.0.0.1:{port + i}"
            if membership == "gossip":
                assert _flag(argv, "--gossip-keyring") == str(directory / "gossip-keyring")
            else:
                assert "--gossip-keyring" not in argv
                assert _flag(argv, "--peers") == (
                    f"https://127.0.0.1:{port},https://127.0.0.1:{port + 1}"
                )
        for path in directory.iterdir():
            assert _mode(path) == 0o600, path
        os.kill(group.proc.pid, signal.SIGTERM)
        group.proc.wait(20)
        assert not directory.exists(), group.output()


def test_secure_refuses_files_of_its_own() -> None:
    """``--secure`` with a ``--tls-cert`` (or tokens, CA, key, keyring) of the user's
    is a usage error naming the flag, before anything starts."""
    from helpers.processes import run_shoal

    done = run_shoal("cluster", "--slowdb", "--secure", "--tls-ca", "mine.pem", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "--secure makes its own files: drop --tls-ca" in done.stderr.decode()


@pytest.mark.skipif(
    not HAS_TLS, reason="the nodes serve TLS and check tokens once shoal.tls exists"
)
def test_secure_cluster_answers_https_with_a_read_token_and_refuses_without_one() -> None:
    """``shoal cluster --secure --nodes 3``: an https GET that trusts the banner's CA
    and sends the read token returns the value from every node; without the token,
    401; the files are gone after the cluster stops."""
    port = free_port_range(6)
    args = ["cluster", "--slowdb", "--secure", "--nodes", "3"]
    args += ["--port", str(port), "--api-port", str(port + 5)]
    with process_group(shoal_cmd(*args)) as group:
        output = group.wait_for_output("Ctrl-C stops the cluster", timeout=60)
        found = re.search(r"curl --cacert (\S+) -H 'Authorization: Bearer (\S+)' '(\S+)'", output)
        assert found, output
        ca, token, url = found.groups()
        assert url.startswith(f"https://127.0.0.1:{port + 5}/")
        context = ssl.create_default_context(cafile=ca)
        # Every node answers the same: the two that do not own Tom fetch it from its
        # owner over mutual TLS.
        for api_port in (port + 5, port + 4, port + 3):
            request = urllib.request.Request(
                url.replace(str(port + 5), str(api_port)),
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                assert (response.status, response.read()) == (200, b"630")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30, context=context)
        assert refused.value.code == 401
        refused.value.close()
        os.kill(group.proc.pid, signal.SIGTERM)
        assert group.proc.wait(20) == 0, group.output()
        assert not Path(ca).parent.exists()
