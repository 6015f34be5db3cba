"""What the gRPC server and clients share: the extra's imports, the service names, node URLs.

Rules: grpcio and its companions are imported here and nowhere else in
shoal, so a node without the ``shoal[grpc]`` extra gets
:class:`~shoal.errors.MissingExtra` naming it, whichever gRPC module it asked
for; only names both sides use live here.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from ..errors import ConfigError, MissingExtra
from ..tls import PemFiles

try:
    import grpc
    import grpc.aio
    from google.protobuf.message import DecodeError
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    _PACKAGES = {
        "grpc": "grpcio",
        "grpc_health": "grpcio-health-checking",
        "grpc_reflection": "grpcio-reflection",
    }
    missing = (exc.name or "grpc").split(".")[0]
    raise MissingExtra(_PACKAGES.get(missing, missing), "grpc") from exc

__all__ = [
    "grpc",
    "DecodeError",
    "health",
    "health_pb2",
    "health_pb2_grpc",
    "reflection",
    "CACHE_SERVICE",
    "PEER_SERVICE",
    "GEEK_SERVICE",
    "CODE_METADATA",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CHANNELS",
    "MAX_DETAILS",
    "grpc_target",
    "trimmed",
    "channel_credentials",
]

CACHE_SERVICE: Final = "shoal.v1.Cache"
"""shoal's client service."""
PEER_SERVICE: Final = "shoal.v1.Peer"
"""shoal's node-to-node service; a request on it is never forwarded."""
GEEK_SERVICE: Final = "pb.GroupCache"
"""geek-cache's service."""
CODE_METADATA: Final = "shoal-code"
"""The trailing metadata key that names the exact error of a failed call."""
DEFAULT_CALL_TIMEOUT: Final = 10.0
"""Seconds a client call may take (its gRPC deadline). The read path gives up on
an owner sooner (``GroupConfig.peer_timeout``), which cancels the call."""
DEFAULT_CHANNELS: Final = 1
"""Channels (HTTP/2 connections) a client keeps to one node."""
MAX_DETAILS: Final = 1000
"""Characters of an error's text sent or kept as a status's details."""


def channel_credentials(pem: PemFiles | None) -> grpc.ChannelCredentials:
    """TLS credentials of a channel: trust ``pem.ca`` (the system's roots without it)
    and present ``pem.cert``/``pem.key`` when they are not empty (mutual TLS)."""
    if pem is None:
        return grpc.ssl_channel_credentials()
    return grpc.ssl_channel_credentials(
        root_certificates=pem.ca,
        private_key=pem.key or None,
        certificate_chain=pem.cert or None,
    )


def grpc_target(url: str) -> tuple[str, bool]:
    """The gRPC target (``host:port``) of a node URL, and whether it needs TLS.

    ``http://host:port`` and ``grpc://host:port`` are plaintext; ``https://`` is
    TLS. Without a port, ``http`` means 80 and ``https`` 443.

    Raises:
        ConfigError: not such a URL, or one with a path, query or user.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in {url!r}") from None
    if parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise ConfigError(f"expected http://host:port or grpc://host:port, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"expected nothing after host:port in {url!r}")
    if port is None:
        if parts.scheme == "grpc":
            raise ConfigError(f"a grpc:// URL needs a port: {url!r}")
        port = 443 if parts.scheme == "https" else 80
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}", parts.scheme == "https"


def trimmed(text: str) -> str:
    """``text`` cut to :data:`MAX_DETAILS` characters."""
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS] + "..."
