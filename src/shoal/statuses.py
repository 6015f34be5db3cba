"""How each shoal error travels: one table for the HTTP API, the HTTP peer port and gRPC.

Rules of this module:

- :data:`STATUSES` is the only place that says which status an error gets on
  which front end; the servers read it to answer, the clients read the same
  rows backwards to raise. A new error is one row here.
- The HTTP API's status and error code are the exception class's own
  ``http_status`` and ``code`` (:mod:`shoal.errors`); the row adds the peer
  port's status and gRPC's code next to them.
- The peer port differs from the API on purpose, for Go's clients: 404 for a
  missing key or group, 503 for a failed load (groupcache-go v3 reads 503 as
  "the owner tried and failed"; golang/groupcache sends 500), 502 for a node
  that cannot serve (closing), 4xx only for the caller's own mistakes.
- gRPC codes are ``grpc.StatusCode`` member names, so this leaf imports no grpc.
- An exception that is in no row (a loader's own) is a failed load: :data:`LOAD_FAILED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .errors import (
    BadRequest,
    Closed,
    ConfigError,
    Forbidden,
    GroupFull,
    GroupNotFound,
    InvalidKey,
    InvalidTTL,
    KeyTooLarge,
    LoadedValueTooLarge,
    LoadError,
    LoadTimeout,
    MembershipError,
    MissingExtra,
    NotFound,
    PeerError,
    PeerTimeout,
    PeerUnavailable,
    RemoteLoadError,
    ShoalError,
    Unauthorized,
    ValueTooLarge,
)

__all__ = [
    "Statuses",
    "STATUSES",
    "LOAD_FAILED",
    "GO_LOAD_FAILED",
    "PEER_NOT_FOUND",
    "PEER_LOAD_FAILED",
    "PEER_NODE_UNAVAILABLE",
    "GRPC_LOAD_FAILED_CODES",
    "statuses_of",
    "raised_for_code",
]


@dataclass(frozen=True, slots=True)
class Statuses:
    """How one kind of error is answered on each front end, and read back by clients.

    Attributes:
        code: the machine-readable error code (the HTTP API's JSON ``code``).
        api: the HTTP API's status.
        peer: the HTTP peer port's status (Go's conventions, see the module docstring).
        grpc: the gRPC status, a ``grpc.StatusCode`` member name.
        grpc_code: the ``shoal-code`` gRPC sends with it (``load_failed`` for every
            failed load: gRPC does not tell them apart).
        raised: what a client raises when a gRPC call fails with ``grpc_code``;
            None when the failure is the transport's (a :class:`PeerError`).
    """

    code: str
    api: int
    peer: int
    grpc: str
    grpc_code: str
    raised: type[ShoalError] | None


LOAD_FAILED: Final = Statuses(
    "load_failed", 502, 503, "UNAVAILABLE", "load_failed", raised=RemoteLoadError
)
"""A failed load: a loader's own exception, or an error the table has no better row for."""

GO_LOAD_FAILED: Final = 500
"""What golang/groupcache answers for a failed load (shoal and groupcache-go answer 503)."""


def _row(
    cls: type[ShoalError], peer: int, grpc: str, *, raised: type[ShoalError] | None = None
) -> tuple[type[ShoalError], Statuses]:
    """A row whose API status and code are the class's own."""
    return cls, Statuses(cls.code, cls.http_status, peer, grpc, cls.code, raised)


def _load_failed(cls: type[ShoalError]) -> tuple[type[ShoalError], Statuses]:
    """A row for an error the peer port and gRPC answer as a failed load."""
    peer, grpc, grpc_code = LOAD_FAILED.peer, LOAD_FAILED.grpc, LOAD_FAILED.grpc_code
    return cls, Statuses(cls.code, cls.http_status, peer, grpc, grpc_code, LOAD_FAILED.raised)


STATUSES: Final[Mapping[type[ShoalError], Statuses]] = MappingProxyType(
    dict(
        (
            _row(NotFound, 404, "NOT_FOUND", raised=NotFound),
            _row(GroupNotFound, 404, "NOT_FOUND", raised=GroupNotFound),
            _row(InvalidKey, InvalidKey.http_status, "INVALID_ARGUMENT", raised=InvalidKey),
            _row(KeyTooLarge, KeyTooLarge.http_status, "RESOURCE_EXHAUSTED", raised=KeyTooLarge),
            _row(
                ValueTooLarge, ValueTooLarge.http_status, "RESOURCE_EXHAUSTED", raised=ValueTooLarge
            ),
            _row(InvalidTTL, InvalidTTL.http_status, "INVALID_ARGUMENT", raised=InvalidTTL),
            _row(BadRequest, BadRequest.http_status, "INVALID_ARGUMENT"),
            _row(GroupFull, GroupFull.http_status, "RESOURCE_EXHAUSTED", raised=GroupFull),
            _row(ConfigError, LOAD_FAILED.peer, "INVALID_ARGUMENT"),
            _row(Unauthorized, 401, "UNAUTHENTICATED", raised=Unauthorized),
            _row(Forbidden, 403, "PERMISSION_DENIED", raised=Forbidden),
            _row(Closed, 502, "UNAVAILABLE"),
            _row(PeerError, LOAD_FAILED.peer, "UNAVAILABLE"),
            _row(PeerUnavailable, LOAD_FAILED.peer, "UNAVAILABLE"),
            _row(PeerTimeout, LOAD_FAILED.peer, "UNAVAILABLE"),
            _row(LoadTimeout, LOAD_FAILED.peer, "DEADLINE_EXCEEDED", raised=LoadTimeout),
            _load_failed(LoadError),
            _load_failed(LoadedValueTooLarge),
            _load_failed(RemoteLoadError),
            _load_failed(MissingExtra),
            _load_failed(MembershipError),
            _load_failed(ShoalError),
        )
    )
)
"""Every shoal error class a front end answers, with its :class:`Statuses`."""

PEER_NOT_FOUND: Final = STATUSES[NotFound].peer
"""The peer port's status for a missing key (and, with Go's body, a missing group)."""
PEER_LOAD_FAILED: Final = frozenset({LOAD_FAILED.peer, GO_LOAD_FAILED})
"""Peer-port statuses that say "the owner tried to load the key and failed"."""
PEER_NODE_UNAVAILABLE: Final = STATUSES[Closed].peer
"""The peer port's status for a node that cannot serve for a reason of its own."""
GRPC_LOAD_FAILED_CODES: Final = frozenset(
    code
    for cls, row in STATUSES.items()
    if issubclass(cls, LoadError)
    for code in (row.code, row.grpc_code)
)
"""gRPC ``shoal-code`` values that say the owner tried to load the key and failed."""

_RAISED: Final[Mapping[str, type[ShoalError]]] = MappingProxyType(
    {row.grpc_code: row.raised for row in (*STATUSES.values(), LOAD_FAILED) if row.raised}
)


def statuses_of(exc: BaseException) -> Statuses:
    """The row of ``exc``: its nearest class's in :data:`STATUSES`, else :data:`LOAD_FAILED`."""
    for cls in type(exc).__mro__:
        row = STATUSES.get(cls)
        if row is not None:
            return row
    return LOAD_FAILED


def raised_for_code(grpc_code: str) -> type[ShoalError] | None:
    """What a client raises for a gRPC failure with ``grpc_code``; None for the transport's."""
    return _RAISED.get(grpc_code)
