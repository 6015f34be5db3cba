"""The HTTP peer transport: groupcache's wire protocol over keep-alive HTTP/1.1.

The names the node and clients import, from their homes: the server in
:mod:`.http_server`, the client in :mod:`.http_client`. The protocol is
described in docs/protocol.md.
"""

from __future__ import annotations

from ._http_shared import STATUS_NODE_UNAVAILABLE, WRITE_HEADER
from .http_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PIPELINE,
    HttpPeerClient,
    HttpTransport,
    PeerClientStats,
)
from .http_server import PeerServer

__all__ = [
    "PeerServer",
    "HttpTransport",
    "HttpPeerClient",
    "PeerClientStats",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PIPELINE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "STATUS_NODE_UNAVAILABLE",
    "WRITE_HEADER",
]
