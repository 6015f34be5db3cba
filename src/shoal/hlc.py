"""Hybrid logical clock: timestamps that follow wall time and still order causally.

A hybrid logical clock (Kulkarni et al., 2014) stamps events with values that
stay close to physical time yet never go backwards and always exceed every
timestamp the node has seen, from itself or from a peer. Replicated groups use
them as write versions, so "last writer wins" means the latest write in a
causally sensible order even when the nodes' clocks disagree a little.

Encoding: a timestamp is one unsigned 64-bit int,
``(milliseconds since the Unix epoch) << 16 | counter``. The high 48 bits are
the physical part (good until the year 10889), the low 16 bits count events
within one millisecond. Comparing two timestamps as ints compares them as HLC
values (physical part first, then counter). When the counter would overflow,
the timestamp simply carries into the physical part: the clock then runs up to
one millisecond ahead of wall time until wall time catches up.

Rules (``pt`` is the physical part of the injected clock, ``last`` the latest
timestamp issued or observed):

* :meth:`HybridClock.now`: ``max(last + 1, pt << 16)``, so timestamps strictly
  increase even when the wall clock steps backwards.
* :meth:`HybridClock.observe`: ``last = max(last, remote)``, so the next
  :meth:`~HybridClock.now` exceeds the remote timestamp (the HLC receive rule;
  the physical time is folded in by that next :meth:`~HybridClock.now`).

The clock reads time only through the function it is given, and holds no lock:
it is not safe for concurrent use from several threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

__all__ = ["HLC_MAX", "HybridClock", "hlc_from_seconds", "hlc_seconds"]

_COUNTER_BITS: Final = 16
_MS_MAX: Final = (1 << (64 - _COUNTER_BITS)) - 1

HLC_MAX: Final = (1 << 64) - 1
"""The largest timestamp: every timestamp fits in an unsigned 64-bit int."""


def _floor_ms(t: float) -> int:
    """The largest whole millisecond ``ms`` with ``ms / 1000 <= t``.

    ``int(t * 1000)`` alone can be one off either way, as ``t * 1000`` is
    rounded; fixing it here makes :func:`hlc_from_seconds` the exact inverse of
    :func:`hlc_seconds` on the physical part.
    """
    ms = math.floor(t * 1000)
    if ms / 1000 > t:
        return ms - 1
    if (ms + 1) / 1000 <= t:
        return ms + 1
    return ms


def hlc_seconds(ts: int) -> float:
    """The physical part of a timestamp, in seconds since the Unix epoch.

    The counter is ignored: every timestamp issued within one millisecond maps
    to the same value.

    Args:
        ts: a timestamp, ``0 <= ts <= HLC_MAX``.

    Returns:
        The millisecond the timestamp was issued in, as Unix seconds.

    Raises:
        ValueError: ``ts`` is negative or does not fit in 64 bits.
    """
    if not 0 <= ts <= HLC_MAX:
        raise ValueError(f"HLC timestamp {ts!r} is outside [0, 2**64)")
    return (ts >> _COUNTER_BITS) / 1000


def hlc_from_seconds(t: float) -> int:
    """The first timestamp of the millisecond holding the Unix time ``t``.

    The result has a zero counter, so it is not greater than any timestamp a
    clock issued at ``t`` or later: ``hlc_from_seconds(hlc_seconds(ts))`` is
    ``ts`` with its counter cleared.

    Args:
        t: Unix seconds, from 0 to the end of the 48-bit millisecond range
            (``2**48`` milliseconds after the epoch, in the year 10889).

    Returns:
        ``floor(t * 1000) << 16``.

    Raises:
        ValueError: ``t`` is negative, not finite, or too large to encode.
    """
    if not 0 <= t < math.inf:
        raise ValueError(f"time {t!r} cannot be an HLC timestamp: it must be finite and >= 0")
    ms = _floor_ms(t)
    if ms > _MS_MAX:
        raise ValueError(f"time {t!r} is past the last HLC millisecond")
    return ms << _COUNTER_BITS


class HybridClock:
    """A hybrid logical clock over an injected wall clock.

    Not safe for concurrent use from several threads; a node drives it from
    its event loop.

    Args:
        clock: returns the current Unix time in seconds (:func:`time.time`
            by default; tests pass a manual clock).
    """

    __slots__ = ("_clock", "_last")

    _clock: Callable[[], float]
    _last: int
    """The latest timestamp issued by :meth:`now` or merged by :meth:`observe`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0

    @property
    def last(self) -> int:
        """The latest timestamp issued or observed (0 before the first)."""
        return self._last

    def now(self) -> int:
        """Issue a timestamp for a local event.

        Returns:
            A timestamp strictly greater than every timestamp this clock has
            issued or observed, and not below the wall clock's
            (``>= hlc_from_seconds(clock())``).

        Raises:
            OverflowError: the timestamp would not fit in 64 bits (a wall clock
                or an observed timestamp near the end of the encodable range).
            ValueError: the wall clock returned NaN.
        """
        t = self._clock()
        # A wall clock before 1970 gives a negative physical part; last + 1 wins.
        physical = _floor_ms(t) << _COUNTER_BITS
        ts = self._last + 1
        if physical > ts:
            ts = physical
        if ts > HLC_MAX:
            raise OverflowError(f"HLC timestamp {ts} does not fit in 64 bits")
        self._last = ts
        return ts

    def observe(self, ts: int) -> None:
        """Merge a timestamp received from another node.

        Afterwards every :meth:`now` is greater than ``ts``. A timestamp not
        above the latest one changes nothing.

        Args:
            ts: the remote timestamp.

        Raises:
            ValueError: ``ts`` is not an int in ``[0, 2**64)``; the clock is
                left unchanged.
        """
        if not isinstance(ts, int) or not 0 <= ts <= HLC_MAX:
            raise ValueError(f"remote HLC timestamp {ts!r} is not an int in [0, 2**64)")
        if ts > self._last:
            self._last = ts

    def __repr__(self) -> str:
        return f"HybridClock(last={self._last})"
