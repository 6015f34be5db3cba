"""Errors of the peer protocol's wire formats (h11's split: local or remote).

Every decoder in :mod:`shoal.wire` refuses bad input with a
:class:`RemoteProtocolError` carrying the status a server answers with
(``error_status_hint``); every encoder refuses what the protocol cannot carry
with a :class:`LocalProtocolError`. Both are :class:`ValueError` and
:class:`~shoal.errors.ShoalError`.
"""

from __future__ import annotations

from ..errors import ShoalError

__all__ = ["ProtocolError", "LocalProtocolError", "RemoteProtocolError", "PathOutsideBase"]


class ProtocolError(ShoalError, ValueError):
    """Something broke the rules of the peer protocol (h11's split).

    Abstract: a :class:`LocalProtocolError` means this process tried to send
    something the protocol cannot carry; a :class:`RemoteProtocolError` means a
    peer sent something malformed. ``error_status_hint`` (default 400) is the
    status a server can answer with; it is also the error's ``http_status``.
    """

    code = "protocol_error"

    def __init__(self, message: str, error_status_hint: int = 400) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise a Local or Remote one")
        super().__init__(message)
        self.error_status_hint = error_status_hint
        self.http_status = error_status_hint


class LocalProtocolError(ProtocolError):
    """This process tried to encode something the protocol cannot carry.

    For example a key with a lone surrogate (not UTF-8) or an expiry outside int64.
    """


class RemoteProtocolError(ProtocolError):
    """A peer sent bytes or a path that break the protocol: never crash, answer the hint."""


class PathOutsideBase(RemoteProtocolError):
    """A request path that is not under the peer protocol's base path (hint 404)."""

    def __init__(self, message: str, error_status_hint: int = 404) -> None:
        super().__init__(message, error_status_hint)
