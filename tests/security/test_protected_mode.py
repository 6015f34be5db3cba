"""Protected mode: a port bound to a network address needs its protection, or
``--insecure``; loopback stays zero-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoal.cli.tls import write_dev_pki
from shoal.config import GossipConfig, NodeConfig, TlsConfig, is_loopback
from shoal.errors import ConfigError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only 127/8, ::1 and localhost count as loopback; wildcards and names do not."""
    assert is_loopback(host) is loopback


def test_loopback_needs_nothing() -> None:
    """Every port on loopback: no TLS, no tokens, no keyring, no complaint."""
    config = NodeConfig(api_port=0, port=0, gossip=GossipConfig(port=0, host="127.0.0.2"))
    assert config.unprotected() == []


def test_each_port_names_what_it_lacks() -> None:
    """API: TLS and tokens; peer port: mutual TLS; gossip: a keyring."""
    with pytest.raises(ConfigError) as caught:
        NodeConfig(api_host="0.0.0.0", api_port=0, host="0.0.0.0", port=0, self_url="http://h:1")
    message = str(caught.value)
    assert "HTTP API on 0.0.0.0" in message
    assert "TLS" in message
    assert "--api-tokens" in message
    assert "peer port on 0.0.0.0" in message
    assert "mutual TLS" in message
    assert "--insecure" in message
    tls = TlsConfig(cert="c.pem", key="k.pem")
    with pytest.raises(ConfigError, match="API tokens") as caught:
        NodeConfig(api_host="10.0.0.1", api_port=0, tls=tls)
    assert "without TLS" not in str(caught.value)
    with pytest.raises(ConfigError, match="mutual TLS"):
        NodeConfig(host="10.0.0.1", port=0, tls=tls)  # TLS without a CA is not mutual
    mutual = TlsConfig(cert="c.pem", key="k.pem", ca="ca.pem")
    assert NodeConfig(host="10.0.0.1", port=0, tls=mutual).unprotected() == []
    assert NodeConfig(api_host="::", api_port=0, tls=tls, api_tokens="tokens").unprotected() == []
    with pytest.raises(ConfigError, match="keyring"):
        NodeConfig(host="10.0.0.1", port=0, tls=mutual, gossip=GossipConfig(port=0))
    keyed = GossipConfig(port=0, keyring="keys")
    assert NodeConfig(host="10.0.0.1", port=0, tls=mutual, gossip=keyed).unprotected() == []


def test_insecure_starts_and_still_reports() -> None:
    """``insecure`` lets the config through; what is unprotected is still listed."""
    config = NodeConfig(api_host="0.0.0.0", api_port=0, insecure=True)
    assert len(config.unprotected()) == 1


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--slowdb", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_serve_refuses_an_open_bind_with_exit_2() -> None:
    """``shoal serve --api-host 0.0.0.0`` without protection: exit 2, naming what is
    missing, before it binds anything."""
    result = _serve("--api-host", "0.0.0.0", "--api-port", "0")
    assert result.returncode == 2, result.stderr
    assert "HTTP API on 0.0.0.0" in result.stderr
    assert "--tls-cert" in result.stderr
    assert "--api-tokens" in result.stderr
    assert "--insecure" in result.stderr


def test_tls_flags_need_cert_and_key(tmp_path: Path) -> None:
    """A CA or a key alone is a usage error, as is client auth without a CA."""
    result = _serve("--tls-ca", str(tmp_path / "ca.pem"))
    assert result.returncode == 2
    assert "--tls-cert and --tls-key" in result.stderr
    files = write_dev_pki(tmp_path / "pki", nodes=1)
    cert, key = (str(files[2]), str(files[3]))
    result = _serve("--tls-cert", cert, "--tls-key", key, "--api-client-auth", "required")
    assert result.returncode == 2
    assert "needs a ca" in result.stderr


def test_tls_init_writes_a_verifiable_pki(tmp_path: Path) -> None:
    """``shoal tls init`` writes a CA, node and client certificates that verify
    against it, keys readable by their owner only, and refuses to overwrite."""
    from cryptography import x509

    directory = tmp_path / "pki"
    result = subprocess.run(
        [sys.executable, "-m", "shoal", "tls", "init", str(directory), "--nodes", "2",
         "--hosts", "127.0.0.1,127.0.0.2,node.example"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in directory.iterdir())
    assert names == sorted(
        f"{n}{s}" for n in ("ca", "node-0", "node-1", "client") for s in (".pem", "-key.pem")
    )
    for path in directory.glob("*-key.pem"):
        assert path.stat().st_mode & 0o077 == 0
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    node = x509.load_pem_x509_certificate((directory / "node-1.pem").read_bytes())
    node.verify_directly_issued_by(ca)
    sans = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "127.0.0.2",
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["node.example"]
    again = subprocess.run(
        [sys.executable, "-m", "shoal", "tls", "init", str(directory)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 2
    assert "already exist" in again.stderr
