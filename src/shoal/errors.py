"""The exception hierarchy of shoal: one root, builtin bases where one fits.

Every error shoal raises derives from :class:`ShoalError`. Where a builtin
exception describes the same failure, the shoal error inherits it too, so
``except KeyError`` still catches :class:`NotFound` and ``except TimeoutError``
still catches :class:`LoadTimeout`. Adapters translate foreign errors (database
drivers, HTTP clients) into these at their boundary.

Each error that can reach a client over HTTP carries ``http_status`` and a short
machine-readable ``code``; the HTTP API answers with both. What the peer port and
gRPC answer for each is in the one table of :mod:`shoal.statuses`.
"""

from __future__ import annotations

__all__ = [
    "ShoalError",
    "ConfigError",
    "MissingExtra",
    "NotFound",
    "GroupNotFound",
    "InvalidKey",
    "KeyTooLarge",
    "ValueTooLarge",
    "InvalidTTL",
    "GroupFull",
    "BadRequest",
    "LoadError",
    "LoadTimeout",
    "LoadedValueTooLarge",
    "PeerError",
    "PeerUnavailable",
    "PeerTimeout",
    "RemoteLoadError",
    "Closed",
    "MembershipError",
    "Unauthorized",
    "Forbidden",
]


class ShoalError(Exception):
    """Root of every error shoal raises."""

    http_status: int = 500
    code: str = "internal"


class ConfigError(ShoalError, ValueError):
    """A configuration value is missing, malformed or out of range."""

    http_status = 400
    code = "config"


class MissingExtra(ShoalError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module!r} is not installed; install it with: pip install 'shoal[{extra}]'"
        )
        self.module = module
        self.extra = extra


class NotFound(ShoalError, KeyError):
    """The key does not exist: the loader said so, or a negative entry is cached."""

    http_status = 404
    code = "not_found"

    def __init__(self, key: str = "", message: str | None = None) -> None:
        super().__init__(message or f"key not found: {key!r}")
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "key not found"


class GroupNotFound(ShoalError, LookupError):
    """No group of that name exists on this node."""

    http_status = 404
    code = "unknown_group"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown group: {name!r}")
        self.name = name


class InvalidKey(ShoalError, ValueError):
    """A key is empty or not a string."""

    http_status = 400
    code = "invalid_key"


class KeyTooLarge(InvalidKey):
    """A key is longer than the group's ``max_key_bytes``."""

    http_status = 414
    code = "key_too_large"


class ValueTooLarge(ShoalError, ValueError):
    """A value is longer than the group's ``max_value_bytes``."""

    http_status = 413
    code = "value_too_large"


class InvalidTTL(ShoalError, ValueError):
    """A time to live is not a positive, finite number of seconds."""

    http_status = 400
    code = "invalid_ttl"


class BadRequest(ShoalError, ValueError):
    """A peer's or client's message cannot be decoded or makes no sense."""

    http_status = 400
    code = "bad_request"


class GroupFull(ShoalError):
    """A replicated group holds its capacity: it takes no new keys until some are deleted."""

    http_status = 507
    code = "group_full"


class LoadError(ShoalError):
    """A loader failed in a way that is not an ordinary exception of its own.

    Raised for a loader that returned an unusable result (None, a wrong type) or
    raised a ``BaseException`` that is not an ``Exception``. An ordinary exception
    raised by a loader reaches every waiter unchanged.
    """

    http_status = 502
    code = "load_failed"


class LoadTimeout(LoadError, TimeoutError):
    """A loader did not finish within the group's ``load_timeout``."""

    http_status = 504
    code = "load_timeout"


class LoadedValueTooLarge(LoadError):
    """A loaded or fetched value is longer than the group's ``max_value_bytes``.

    Raised for a loader (or filler) result over the bound and for an owner's
    answer over it: the value is neither cached nor served, and it is counted in
    the group's ``oversized_values``.
    """

    code = "loaded_value_too_large"


class PeerError(ShoalError):
    """A peer could not answer a request: the failure is the transport's, not the key's.

    The read path counts it as a peer error and loads the key locally instead;
    when that cannot give a value, a get raises :class:`PeerUnavailable`.
    """

    http_status = 502
    code = "peer_error"


class PeerUnavailable(PeerError, ConnectionError):
    """A peer refused or dropped the connection, or is in its failure back-off.

    A get raises it for a key whose owner cannot be reached and that this node
    cannot load (no loader, or a loader that does not know the key): the key may
    exist at its owner, so this is "try again later" (HTTP 503), not NotFound.
    """

    http_status = 503
    code = "peer_unavailable"


class PeerTimeout(PeerError, TimeoutError):
    """A peer did not answer within the group's ``peer_timeout``."""

    http_status = 504
    code = "peer_timeout"


class RemoteLoadError(LoadError):
    """The owner of a key answered that its loader failed.

    Not a :class:`PeerError`: the peer worked, so the key is not loaded again
    here (one failing load per key in the whole cluster, not two).
    """

    code = "remote_load_failed"


class Closed(ShoalError, RuntimeError):
    """The node or group is closed (or not started) and cannot serve the call."""

    http_status = 503
    code = "closed"


class MembershipError(ShoalError, ConnectionError):
    """The membership backend cannot be used: etcd refused a request, or the gossip
    socket cannot be opened. A node that loses etcd later keeps serving with its
    last view instead of raising this."""

    http_status = 503
    code = "membership"


class Unauthorized(ShoalError, PermissionError):
    """The node has API tokens and the request had none, an unknown one, or one that
    is not ``Bearer TOKEN`` (HTTP 401, gRPC ``UNAUTHENTICATED``)."""

    http_status = 401
    code = "unauthorized"


class Forbidden(ShoalError, PermissionError):
    """The request's API token has a role that does not allow it (HTTP 403, gRPC
    ``PERMISSION_DENIED``): a ``read`` token that sets, a ``write`` token that
    invalidates."""

    http_status = 403
    code = "forbidden"
