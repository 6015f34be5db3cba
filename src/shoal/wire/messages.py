"""Messages of the groupcache peer protocol as frozen dataclasses.

These are what :mod:`shoal.wire.groupcache` decodes bytes into and encodes from; the
classes generated from ``groupcache.proto`` never leave the wire package.
Field names follow the Go schema, except that ``expire`` is spelled
``expire_ns`` to carry its unit (absolute Unix nanoseconds, as in
mailgun/groupcache v2 and groupcache-go v3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "REMOVE_KEYS_SEGMENT",
    "GetRequest",
    "GetResponse",
    "SetRequest",
    "RemoveKeysRequest",
    "PeerPath",
]

REMOVE_KEYS_SEGMENT = "_remove-keys/"
"""What follows ``{base}{group}/`` in the path of a remove-keys POST (groupcache-go v3)."""


@dataclass(frozen=True, slots=True)
class GetRequest:
    """``GetRequest{1: group, 2: key}``: names one key of one group.

    The HTTP protocol carries these two in the URL path instead; the message is
    what gRPC peers send.
    """

    group: str
    key: str


@dataclass(frozen=True, slots=True)
class GetResponse:
    """``GetResponse{1: value, 2: minute_qps, 3: expire}``: the body of a 200 to a GET.

    ``None`` means the field was absent on the wire (or is not to be sent). A
    value that was absent decodes as ``b""``.
    """

    value: bytes
    minute_qps: float | None = None
    """The owner's requests per second for the key over the last minute (no Go peer sends it)."""
    expire_ns: int | None = None
    """Absolute expiry in Unix nanoseconds; Go peers send 0 for "never" (see expires_at_ns)."""

    @property
    def expires_at_ns(self) -> int | None:
        """The expiry in Unix nanoseconds, or None when the value never expires (absent or 0)."""
        return self.expire_ns or None


@dataclass(frozen=True, slots=True)
class SetRequest:
    """``SetRequest{1: group, 2: key, 3: value, 4: expire}``: a PUT's body (groupcache-go v3)."""

    group: str
    key: str
    value: bytes
    expire_ns: int | None = None
    """Absolute expiry in Unix nanoseconds; 0 (what Go sends for "never") or None: no expiry."""

    @property
    def expires_at_ns(self) -> int | None:
        """The expiry in Unix nanoseconds, or None when the value never expires (absent or 0)."""
        return self.expire_ns or None


@dataclass(frozen=True, slots=True)
class RemoveKeysRequest:
    """The JSON body ``{"group": ..., "keys": [...]}`` of a remove-keys POST (groupcache-go v3)."""

    group: str
    keys: tuple[str, ...]


class PeerPath(NamedTuple):
    """A peer request path, parsed: ``{base}{group}/{key}``.

    Unpacks as ``group, key = parse_peer_path(...)``.
    """

    group: str
    key: str

    @property
    def is_remove_keys(self) -> bool:
        """Whether a POST to this path is a remove-keys request.

        groupcache-go tests the decoded key with ``HasPrefix(key, "_remove-keys/")``
        and only for POST; a GET of the same path fetches that key as usual.
        """
        return self.key.startswith(REMOVE_KEYS_SEGMENT)


# Building a frozen dataclass goes through object.__setattr__ once per field, which
# costs more than decoding a small GetResponse. The decoder, on the read path of every
# peer fetch, fills the slots through their descriptors instead: same object, same
# equality and hash, about a third of the cost.
_new = object.__new__
_set_value = GetResponse.__dict__["value"].__set__
_set_minute_qps = GetResponse.__dict__["minute_qps"].__set__
_set_expire_ns = GetResponse.__dict__["expire_ns"].__set__


def make_get_response(value: bytes, minute_qps: float | None, expire_ns: int | None) -> GetResponse:
    """``GetResponse(value, minute_qps, expire_ns)`` without the frozen ``__setattr__``
    (for the decoders, which have checked the fields: about a third of the cost)."""
    response = _new(GetResponse)
    _set_value(response, value)
    _set_minute_qps(response, minute_qps)
    _set_expire_ns(response, expire_ns)
    return response
