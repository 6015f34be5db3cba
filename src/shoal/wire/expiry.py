"""Expiries on the wire: int64 Unix nanoseconds there, float Unix seconds in the stores.

Rules:
    * Zero or a negative expiry means never; :func:`from_expire_ns` reads it so.
    * A node accepts an expiry up to :data:`MAX_EXPIRE_NS` (in the year 2262), so
      whatever it accepted converts back to nanoseconds that fit in an int64: every
      decoder of a message with an expiry applies :func:`check_expire_ns`, and the
      write path refuses a TTL that ends after :data:`MAX_EXPIRES_AT`.
    * :func:`to_expire_ns` clamps what is out of range anyway (a loader's TTL), so a
      stored value can always be sent again, and never sends one at or before 1970
      as 0 or negative.
"""

from __future__ import annotations

import math
from typing import Final

from ._protobuf import INT64_MAX
from .errors import RemoteProtocolError

__all__ = [
    "MAX_EXPIRE_NS",
    "MAX_EXPIRES_AT",
    "check_expire_ns",
    "to_expire_ns",
    "from_expire_ns",
    "expires_at_from_wire",
]

_NS: Final = 1_000_000_000

MAX_EXPIRES_AT: Final = float(INT64_MAX // _NS)
"""The latest expiry a node stores or sends, in Unix seconds (2262-04-11T23:47:16Z):
the last whole second whose Unix nanoseconds fit in an int64. A write whose TTL
ends later is refused (:class:`~shoal.errors.InvalidTTL`)."""

MAX_EXPIRE_NS: Final = INT64_MAX // _NS * _NS
""":data:`MAX_EXPIRES_AT` in Unix nanoseconds: the latest expiry a decoder accepts.
Anything up to it, read as seconds, converts back to nanoseconds within an int64."""


def check_expire_ns(expire_ns: int, what: str = "message") -> int:
    """Return ``expire_ns`` if a node can store it and send it again, else raise.

    Zero or negative (never) and anything up to :data:`MAX_EXPIRE_NS` pass; the
    decoder of every message with an expiry calls this.

    Raises:
        RemoteProtocolError: the expiry is past :data:`MAX_EXPIRE_NS` (hint 400).
    """
    if expire_ns > MAX_EXPIRE_NS:
        raise RemoteProtocolError(
            f"malformed {what}: expire {expire_ns} is past the latest expiry a node "
            f"can carry ({MAX_EXPIRE_NS} ns, in the year 2262)"
        )
    return expire_ns


def to_expire_ns(expires_at: float | None) -> int | None:
    """Absolute Unix seconds to the Unix nanoseconds of the wire (None: never).

    Whole seconds and the fraction are converted apart: a float holds a Unix time
    in nanoseconds only to about 256 ns, but each part converts exactly (or nearly).
    A finite time past :data:`MAX_EXPIRES_AT` is clamped to it, so the result
    always fits in an int64, and one at or before the epoch is 1 ns (long expired:
    never 0, which means "never", nor negative, which shoal's messages refuse); an
    infinite or NaN one is never.
    """
    if expires_at is None:
        return None
    # One comparison rules out NaN, infinities and out-of-range times alike.
    if not 1e-9 <= expires_at <= MAX_EXPIRES_AT:
        if not math.isfinite(expires_at):
            return None
        return MAX_EXPIRE_NS if expires_at > 0 else 1
    seconds = math.floor(expires_at)
    return seconds * _NS + round((expires_at - seconds) * 1e9)


def expires_at_from_wire(expire_ns: int, what: str = "message") -> float | None:
    """An expiry received in a protobuf-runtime message (gRPC, replication) as Unix
    seconds: :func:`check_expire_ns`, then :func:`from_expire_ns`.

    These messages are shoal's own, whose nodes send 0 for "never" and never a
    negative expiry, so a negative one is refused too (a uint64 past the int64
    range arrives as one: protobuf reads the same varint as a negative int64).

    Raises:
        RemoteProtocolError: the expiry is negative or past :data:`MAX_EXPIRE_NS`
            (hint 400).
    """
    if expire_ns < 0:
        raise RemoteProtocolError(
            f"malformed {what}: expire {expire_ns} is negative (0 means never; an "
            "expiry is Unix nanoseconds up to the year 2262)"
        )
    return from_expire_ns(check_expire_ns(expire_ns, what))


def from_expire_ns(expire_ns: int | None) -> float | None:
    """Unix nanoseconds of the wire to absolute Unix seconds (0, negative or None: never).

    Integer division rounds correctly; ``ns / 1e9`` would not.
    """
    return expire_ns / _NS if expire_ns is not None and expire_ns > 0 else None
