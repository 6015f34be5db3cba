"""shoal's HTTP/1.1 server engine, shared by the HTTP API and the HTTP peer port.

Rules of this package:

- It knows HTTP only: no group, node or cache concept, no node configuration
  (its limits come as an :class:`HttpLimits`); the front ends above it route.
- :mod:`.messages` holds what handlers see and answer, :mod:`.limits` the
  limits, :mod:`.server` the server and its connections (with the cache-hit
  path, kept whole in one module), :mod:`.tls_transport` the TLS transport of
  the server's connections and of the peer client's.
- Imports point one way: ``server`` → ``messages``, ``limits``, ``tls_transport``;
  nothing here imports from the rest of shoal but the internal leaves
  ``_deadlines`` and ``_native``.
"""

from __future__ import annotations

from .limits import HttpLimits
from .messages import (
    JSON,
    OCTET_STREAM,
    TEXT,
    Deferred,
    FastGet,
    FastGuard,
    Handler,
    Request,
    Response,
    error_response,
    json_response,
)
from .server import MAX_PIPELINE, SHUTDOWN_TIMEOUT, HttpProtocol, HttpServer, ServerFront
from .tls_transport import TlsTransport, accept_tls, connect_tls

__all__ = [
    "ServerFront",
    "HttpLimits",
    "HttpServer",
    "HttpProtocol",
    "Request",
    "Response",
    "Deferred",
    "Handler",
    "FastGet",
    "FastGuard",
    "json_response",
    "error_response",
    "JSON",
    "OCTET_STREAM",
    "TEXT",
    "MAX_PIPELINE",
    "SHUTDOWN_TIMEOUT",
    "TlsTransport",
    "accept_tls",
    "connect_tls",
]
