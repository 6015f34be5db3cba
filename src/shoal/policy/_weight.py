"""Weights: one unit in which a policy measures both of a store's bounds.

A store may bound its entries by count, by total cost (bytes), or by both. A
policy that sizes regions of its own (ARC's target for T1, W-TinyLFU's window
and protected segment) needs a single scale, so each entry gets a *weight*:

* count bound only: every entry weighs 1, the capacity is the entry bound;
* byte bound only: an entry weighs its cost (at least 1), the capacity is the byte bound;
* both: an entry weighs ``max(cost * E, B)`` against a capacity of ``E * B``
  (E entries, B bytes), that is, the larger of its shares of the two bounds,
  scaled to integers. Weights then never add up to less than either bound's use.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError

__all__ = ["Weigher", "check_bounds"]


def _one(cost: int) -> int:
    return 1


def _cost(cost: int) -> int:
    return cost if cost > 0 else 1


def check_bounds(capacity_entries: int | None, capacity_bytes: int | None, held: int) -> None:
    """Validate the bounds given to ``set_capacity`` of a policy holding ``held`` entries.

    Raises:
        ConfigError: for a bound that is not a positive number, or if ``held`` is not 0.
    """
    for name, bound in (
        ("capacity_entries", capacity_entries),
        ("capacity_bytes", capacity_bytes),
    ):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int | float) or not bound > 0
        ):
            raise ConfigError(f"{name} must be a positive number, got {bound!r}")
    if held:
        raise ConfigError("set_capacity() needs an empty policy")


class Weigher:
    """Maps an entry's cost to its weight, and the store's bounds to a capacity in weight.

    Args:
        capacity_entries: the store's bound on the number of entries, or None.
        capacity_bytes: the store's bound on the total cost, or None.

    The bounds are assumed valid (see :func:`check_bounds`); fractional ones are
    rounded down (to at least 1).
    """

    __slots__ = ("capacity", "weight")

    def __init__(self, capacity_entries: int | None, capacity_bytes: int | None) -> None:
        if capacity_entries is not None:
            capacity_entries = max(1, int(capacity_entries))
        if capacity_bytes is not None:
            capacity_bytes = max(1, int(capacity_bytes))
        self.capacity: int | None
        """The capacity in weight units, or None when the store has no bound."""
        self.weight: Callable[[int], int]
        """``weight(cost)``: the weight of an entry of that cost (always at least 1)."""
        if capacity_bytes is None:
            self.capacity = capacity_entries
            self.weight = _one
        elif capacity_entries is None:
            self.capacity = capacity_bytes
            self.weight = _cost
        else:
            entries, nbytes = capacity_entries, capacity_bytes
            self.capacity = entries * nbytes

            def both(cost: int) -> int:
                return max(cost * entries, nbytes)

            self.weight = both
