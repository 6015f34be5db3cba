"""Value: what a loader may return when a value needs a TTL of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Value", "with_ttl"]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Value(Generic[V]):
    """A loaded value with its own time to live.

    A loader returns a plain value to use the group's default TTL, or
    ``Value(data, ttl=seconds)`` to give this value a TTL of its own::

        async def load(key: str) -> Value[bytes]:
            row = await db.fetch(key)
            return Value(row.payload, ttl=row.max_age)
    """

    data: V
    """The value, of the group's value type."""
    ttl: float | None = None
    """Seconds this value may be served; None uses the group's default."""


def with_ttl(result: V | Value[V], ttl: float | None) -> V | Value[V]:
    """Give ``result`` the TTL ``ttl``, unless it has its own or ``ttl`` is None."""
    if ttl is None or isinstance(result, Value):
        return result
    return Value(result, ttl)
