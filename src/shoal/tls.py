"""TLS contexts of a node and of its clients, read from PEM files (stdlib ``ssl`` only).

A node with :class:`~shoal.config.TlsConfig` holds one :class:`NodeTls`: the server
contexts of its HTTP API and its peer port, the client context it uses towards its
peers, and the same files as PEM bytes for gRPC. Servers and clients ask it for the
*current* context at every new connection, so :meth:`NodeTls.reload` (``SIGHUP``)
rotates certificates without a restart: it builds every context anew from the files
and swaps them in at once; a file that fails to load raises and leaves the old
contexts in use (``ssl.SSLContext.load_cert_chain`` on a live context could leave
it half-updated, so a live context is never changed).

The rules (docs: Security):

- every context speaks TLS 1.2 or newer;
- the peer port with a ``ca`` requires a client certificate that CA signed
  (mutual TLS); without one it asks for none;
- the HTTP API asks for client certificates as ``api_client_auth`` says:
  ``none``, ``optional`` (verified when given) or ``required``;
- towards peers, a node verifies the server against ``ca`` (or the system's CAs
  without one), checks the host name, and presents its own certificate.

:class:`ClientTls` is the client side alone, for :class:`shoal.Client` and the
command line: a CA to trust and, for mutual TLS, a certificate and key to present.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .config import TlsConfig
from .errors import ConfigError

__all__ = ["MINIMUM_VERSION", "ClientTls", "NodeTls", "PemFiles", "client_context"]

MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
"""The oldest TLS version any shoal context speaks."""

_CLIENT_AUTH: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True, slots=True)
class PemFiles:
    """The PEM bytes a set of contexts was built from (what gRPC takes)."""

    cert: bytes
    """The certificate (and its chain)."""
    key: bytes
    """Its private key."""
    ca: bytes | None
    """The CA bundle, if any."""


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ConfigError(f"the TLS {what} {path} is not a PEM file")
    return data


def _new(purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = MINIMUM_VERSION
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {cert} with the key {key}: {exc}"
        ) from exc


def _load_ca(context: ssl.SSLContext, ca: bytes, path: str) -> None:
    try:
        context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"cannot load the TLS CA {path}: {exc}") from exc


def client_context(
    *, ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client context: verify servers against ``ca`` (the system's CAs without one)
    with host-name checks, and present ``cert``/``key`` when given (mutual TLS).

    Raises:
        ConfigError: a file that cannot be read or loaded, or a cert without its key.
    """
    if (cert is None) != (key is None):
        raise ConfigError("a TLS client certificate needs both a certificate and its key")
    context = _new(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    if ca is not None:
        _load_ca(context, _read(ca, "CA"), ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None and key is not None:
        _load_chain(context, cert, key)
    return context


@dataclass(frozen=True, slots=True)
class ClientTls:
    """TLS for a client of a node (:class:`shoal.Client`, ``shoal get``...).

    Args:
        ca: PEM file of the CA that signed the nodes' certificates; None trusts the
            system's CAs.
        cert: PEM file of a client certificate to present (mutual TLS), with ``key``.
        key: PEM file of its private key.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("a TLS client certificate needs both cert and key")

    def context(self) -> ssl.SSLContext:
        """A fresh client context from the files.

        Raises:
            ConfigError: a file that cannot be read or loaded.
        """
        return client_context(ca=self.ca, cert=self.cert, key=self.key)

    def pem(self) -> PemFiles | None:
        """The files as PEM bytes (for gRPC credentials); ``cert`` and ``key`` are
        empty without a client certificate. None when nothing is set.

        Raises:
            ConfigError: a file that cannot be read.
        """
        if self.ca is None and self.cert is None:
            return None
        return PemFiles(
            cert=_read(self.cert, "certificate") if self.cert is not None else b"",
            key=_read(self.key, "key") if self.key is not None else b"",
            ca=_read(self.ca, "CA") if self.ca is not None else None,
        )


@dataclass(frozen=True, slots=True)
class _Contexts:
    api: ssl.SSLContext
    peer: ssl.SSLContext
    client: ssl.SSLContext
    pem: PemFiles


class NodeTls:
    """The current TLS contexts of a node, reloadable from its files.

    Args:
        config: the node's certificate, key, CA and API client-auth mode.

    Raises:
        ConfigError: a file that cannot be read or loaded (at construction).
    """

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        """The files and modes the contexts are read from."""
        self._lock = threading.Lock()
        self.generation = 0
        """How many times the contexts were (re)built: 1 after construction, one more
        per successful :meth:`reload`."""
        self._current = self._build()
        self.generation = 1

    def _build(self) -> _Contexts:
        config = self.config
        pem = PemFiles(
            cert=_read(config.cert, "certificate"),
            key=_read(config.key, "key"),
            ca=_read(config.ca, "CA") if config.ca is not None else None,
        )
        peer = _new(ssl.PROTOCOL_TLS_SERVER)
        _load_chain(peer, config.cert, config.key)
        api = _new(ssl.PROTOCOL_TLS_SERVER)
        _load_chain(api, config.cert, config.key)
        client = _new(ssl.PROTOCOL_TLS_CLIENT)
        _load_chain(client, config.cert, config.key)  # our certificate, towards peers
        if pem.ca is not None:
            assert config.ca is not None
            _load_ca(peer, pem.ca, config.ca)
            peer.verify_mode = ssl.CERT_REQUIRED  # mutual TLS between members
            _load_ca(client, pem.ca, config.ca)
            if config.api_client_auth != "none":
                _load_ca(api, pem.ca, config.ca)
        else:
            client.load_default_certs(ssl.Purpose.SERVER_AUTH)
        api.verify_mode = _CLIENT_AUTH[config.api_client_auth]
        return _Contexts(api=api, peer=peer, client=client, pem=pem)

    def reload(self) -> None:
        """Read the files again and swap in new contexts for new connections (open
        connections keep theirs).

        Raises:
            ConfigError: a file that cannot be read or loaded; the old contexts stay.
        """
        built = self._build()
        with self._lock:
            self._current = built
            self.generation += 1

    def api_server(self) -> ssl.SSLContext:
        """The HTTP API's server context (client certificates per ``api_client_auth``)."""
        return self._current.api

    def peer_server(self) -> ssl.SSLContext:
        """The peer port's server context (client certificates required with a CA)."""
        return self._current.peer

    def client(self) -> ssl.SSLContext:
        """The context towards peers: verifies them, presents the node's certificate."""
        return self._current.client

    def pem(self) -> PemFiles:
        """The PEM bytes the current contexts were built from (for gRPC)."""
        return self._current.pem
