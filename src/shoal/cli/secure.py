"""``shoal cluster --secure``: the files a local cluster needs to run protected.

:func:`write_secure_files` writes, into a directory of the supervisor's (a
temporary one, removed when the cluster stops):

=================================  =========================================================
``ca.pem``, ``ca-key.pem``         a development CA (``--tls-ca`` of every node)
``node-I.pem``, ``node-I-key.pem``  node I's certificate (``--tls-cert``, ``--tls-key``),
                                   its client certificate towards its peers too
``client.pem``, ``client-key.pem``  a client certificate (``--api-client-auth``)
``tokens``                         one random token per role: ``read``, ``write``, ``admin``
                                   (``--api-tokens``)
``gossip-keyring``                 one random 32-byte AES key, base64 (``--gossip-keyring``)
=================================  =========================================================

Every file is mode 0600 and the directory 0700: the keys and tokens are secrets.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .tls import DEFAULT_HOSTS, write_dev_pki

__all__ = ["ROLES", "SecureFiles", "write_secure_files"]

ROLES: Final = ("read", "write", "admin")
"""The API roles, each with a token of its own."""


@dataclass(frozen=True)
class SecureFiles:
    """What :func:`write_secure_files` wrote."""

    directory: Path
    """Where every file is."""
    ca: Path
    """The CA every node and client trusts."""
    certs: list[tuple[Path, Path]]
    """Node I's certificate and key, at index I."""
    tokens_file: Path
    """``ROLE TOKEN`` lines."""
    tokens: dict[str, str]
    """The token of each role."""
    keyring: Path
    """The gossip keyring."""


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def write_secure_files(directory: Path, *, nodes: int, hosts: Sequence[str] = ()) -> SecureFiles:
    """Write a development PKI for ``nodes`` nodes, API tokens and a gossip keyring
    into ``directory`` (made 0700; every file 0600).

    Args:
        directory: where to write (created if missing).
        nodes: how many node certificates.
        hosts: addresses the node certificates name besides loopback's.

    Raises:
        ConfigError: ``nodes`` < 1 (from :func:`~shoal.cli.tls.write_dev_pki`).
    """
    names = list(DEFAULT_HOSTS)
    for host in hosts:
        if host and host not in ("0.0.0.0", "::") and host not in names:
            names.append(host)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    written = write_dev_pki(directory, nodes=nodes, hosts=names)
    tokens = {role: secrets.token_urlsafe(32) for role in ROLES}
    tokens_file = directory / "tokens"
    _write_secret(tokens_file, "".join(f"{role} {token}\n" for role, token in tokens.items()))
    keyring = directory / "gossip-keyring"
    _write_secret(keyring, base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    for path in written:
        path.chmod(0o600)
    return SecureFiles(
        directory=directory,
        ca=directory / "ca.pem",
        certs=[
            (directory / f"node-{i}.pem", directory / f"node-{i}-key.pem") for i in range(nodes)
        ],
        tokens_file=tokens_file,
        tokens=tokens,
        keyring=keyring,
    )
