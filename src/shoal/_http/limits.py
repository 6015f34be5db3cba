"""The limits and timeouts of the HTTP/1.1 server, in one frozen value.

Rules of this module: the server reads its limits only from an :class:`HttpLimits`
and knows nothing of a node's configuration; the adapters that serve a node (the
HTTP API, the peer server) take one from the node's :class:`shoal.config.NodeConfig`
with :meth:`HttpLimits.of` (any object with the six fields will do), whose
defaults these are.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

__all__ = ["HttpLimits", "LimitSource"]


class LimitSource(Protocol):
    """Anything that carries the six limits (a :class:`shoal.config.NodeConfig` does)."""

    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def request_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How much a client may send and how long it may take (see :class:`~shoal._http.HttpServer`).

    Args:
        max_header_bytes: the request line and headers of one request at most (more: 431).
        max_body_bytes: one request body at most (more: 413).
        header_timeout: seconds from a request's first byte to its last header (then 408).
        body_timeout: seconds a request body may take to arrive (then 408).
        keepalive_timeout: seconds an idle keep-alive connection is kept open.
        request_timeout: seconds a handler may take to answer (then 504).
    """

    max_header_bytes: int = 16 << 10
    max_body_bytes: int = 16 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    request_timeout: float = 60.0

    @classmethod
    def of(cls, source: LimitSource) -> HttpLimits:
        """The limits ``source`` carries (e.g. a node's configuration)."""
        return cls(**{field.name: getattr(source, field.name) for field in fields(cls)})
