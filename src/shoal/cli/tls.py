"""``shoal tls init``: a development certificate authority and certificates for a cluster.

``shoal tls init DIR --nodes 3`` writes, into ``DIR`` (created if missing):

===================================  =======================================================
``ca.pem``, ``ca-key.pem``           the CA: give ``ca.pem`` to every node (``--tls-ca``)
                                     and client; keep ``ca-key.pem`` away from the nodes
``node-I.pem``, ``node-I-key.pem``   node I's certificate and key (``--tls-cert``,
                                     ``--tls-key``), for server and client use: a node
                                     presents it to its peers too (mutual TLS)
``client.pem``, ``client-key.pem``   a client certificate, for ``--api-client-auth``
===================================  =======================================================

Every node certificate names each of ``--hosts`` (default ``127.0.0.1``, ``::1`` and
``localhost``), so any node may run on any of them. Keys are ECDSA P-256, written with
mode 0600. The files are for development and tests: a production cluster takes its
certificates from its own CA (docs: Security).

The functions here (:func:`make_ca`, :func:`issue`, :func:`write_pem`) are also what
shoal's tests use to make certificates at test time, expired and foreign ones included.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError
from .common import EXIT_OK, CommandError

__all__ = [
    "DEFAULT_HOSTS",
    "Issued",
    "add_tls_parser",
    "issue",
    "make_ca",
    "run_tls_init",
    "write_pem",
    "write_dev_pki",
]

DEFAULT_HOSTS: Final = ("127.0.0.1", "::1", "localhost")
"""The names every node certificate carries unless ``--hosts`` says otherwise."""

DEFAULT_DAYS: Final = 365
"""How long ``shoal tls init``'s certificates are valid."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (``cryptography`` objects)."""

    cert: object
    """The ``cryptography.x509.Certificate``."""
    key: object
    """The ``cryptography`` private key (ECDSA P-256)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(name: str = "shoal development CA", *, days: int = DEFAULT_DAYS) -> Issued:
    """A self-signed CA certificate valid for ``days`` days (from an hour ago)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now() - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    name: str,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    server: bool = True,
    client: bool = True,
) -> Issued:
    """A certificate for ``name`` signed by ``ca``, naming ``hosts`` (IP addresses and
    DNS names) as subject alternative names.

    Args:
        ca: the signing CA (:func:`make_ca`).
        name: the certificate's common name.
        hosts: its subject alternative names; empty for a client-only certificate.
        days: validity from an hour ago, unless ``not_before``/``not_after`` say.
        not_before: start of validity (tests make expired certificates with these).
        not_after: end of validity.
        server: usable as a TLS server certificate.
        client: usable as a TLS client certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = ca.cert
    assert isinstance(ca_cert, x509.Certificate)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(hours=1)
    end = not_after or start + datetime.timedelta(days=days)
    usages = [
        *([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
        *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    ca_key = ca.key
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    return Issued(builder.sign(ca_key, hashes.SHA256()), key)


def write_pem(
    issued: Issued,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``issued``'s certificate to ``cert_path`` and, if given, its key to
    ``key_path`` (unencrypted PKCS#8, mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = issued.cert
    assert isinstance(cert, x509.Certificate)
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key_path is not None:
        key = issued.key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)


def write_dev_pki(
    directory: str | os.PathLike[str],
    *,
    nodes: int = 3,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> list[Path]:
    """Write a CA, ``nodes`` node certificates and a client certificate into
    ``directory`` (see the module's table); return the files written.

    Raises:
        ConfigError: ``nodes`` < 1, no hosts, or files there already (without ``force``).
    """
    if nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, got {nodes}")
    if not hosts:
        raise ConfigError("--hosts needs at least one address or name")
    root = Path(directory)
    names = ["ca", *(f"node-{i}" for i in range(nodes)), "client"]
    files = [root / f"{name}{suffix}" for name in names for suffix in (".pem", "-key.pem")]
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise ConfigError(
            f"{', '.join(existing)} already exist: remove them or pass --force to replace them"
        )
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca(days=days)
    write_pem(ca, root / "ca.pem", root / "ca-key.pem")
    for i in range(nodes):
        write_pem(
            issue(ca, f"shoal node {i}", hosts, days=days),
            root / f"node-{i}.pem",
            root / f"node-{i}-key.pem",
        )
    write_pem(
        issue(ca, "shoal client", (), days=days, server=False),
        root / "client.pem",
        root / "client-key.pem",
    )
    return files


def add_tls_parser(commands: Any) -> None:
    """Add ``shoal tls init`` to the command parser."""
    tls = commands.add_parser(
        "tls",
        help="make development certificates (shoal tls init DIR)",
        description="Certificates for TLS and mutual TLS between shoal nodes.",
    )
    sub = tls.add_subparsers(dest="tls_command", metavar="COMMAND", parser_class=type(tls))
    sub.required = True
    init = sub.add_parser(
        "init",
        help="write a development CA, node certificates and a client certificate",
        description="Write ca.pem, node-I.pem (+ -key.pem) for each node and client.pem "
        "into DIR. Then: shoal serve --tls-cert DIR/node-0.pem --tls-key "
        "DIR/node-0-key.pem --tls-ca DIR/ca.pem ...",
    )
    init.add_argument("directory", metavar="DIR", help="where to write (created if missing)")
    init.add_argument(
        "--nodes", type=int, default=3, metavar="N", help="node certificates (default 3)"
    )
    init.add_argument(
        "--hosts",
        metavar="HOST[,HOST...]",
        default=",".join(DEFAULT_HOSTS),
        help="addresses and DNS names every node certificate names "
        f"(default {','.join(DEFAULT_HOSTS)})",
    )
    init.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, metavar="N", help="validity (default 365)"
    )
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(handler=run_tls_init)


def run_tls_init(args: argparse.Namespace) -> int:
    """``shoal tls init``: write the files and say what to do with them."""
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    if args.days < 1:
        raise ConfigError(f"--days must be at least 1, got {args.days}")
    try:
        files = write_dev_pki(
            args.directory, nodes=args.nodes, hosts=hosts, days=args.days, force=args.force
        )
    except OSError as exc:
        raise CommandError(f"cannot write into {args.directory}: {exc.strerror or exc}") from exc
    root = args.directory.rstrip("/")
    print(f"wrote {len(files)} files into {root}/ (CA, {args.nodes} nodes, 1 client)")
    print(
        f"run node 0 with: shoal serve --tls-cert {root}/node-0.pem "
        f"--tls-key {root}/node-0-key.pem --tls-ca {root}/ca.pem ..."
    )
    return EXIT_OK
