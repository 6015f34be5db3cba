"""Hot-cache admission: whether a value fetched from its owner is kept here as a copy.

A group keeps copies of keys other members own in its hot cache, so a key
every node asks for is not fetched from its owner each time. Which fetched
values get in is ``GroupConfig.hot_admission``: ``"random"`` (1 in 10, as
golang/groupcache), ``"always"``, ``"never"``, or ``"rate"`` (a key fetched
``hot_rate_count`` times within ``hot_rate_window`` seconds).

Rules: synchronous, called on the group's loop for each value fetched; the
memory of ``"rate"`` is bounded (the stalest keys are forgotten first).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable

from .config import GroupConfig

__all__ = ["HotAdmission", "RATE_MEMORY"]

RATE_MEMORY = 10_000
"""Keys whose recent fetches ``"rate"`` remembers at most."""


class HotAdmission:
    """Decides, per fetched value, whether it enters the hot cache (see the module docstring).

    Args:
        config: the group's settings (``hot_admission`` and the rate's window and count).
        rng: randomness for ``"random"``.
        clock: time source for ``"rate"``.
    """

    __slots__ = ("_clock", "_count", "_fetches", "_mode", "_rng", "_window")

    def __init__(self, config: GroupConfig, rng: random.Random, clock: Callable[[], float]) -> None:
        self._mode = config.hot_admission
        self._window = config.hot_rate_window
        self._count = config.hot_rate_count
        self._rng = rng
        self._clock = clock
        self._fetches: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def admit(self, key: str) -> bool:
        """Whether the value just fetched for ``key`` is kept as a hot copy."""
        mode = self._mode
        if mode == "random":
            return self._rng.randrange(10) == 0  # golang/groupcache's 1 in 10
        if mode == "always":
            return True
        if mode == "never":
            return False
        # "rate": count this node's fetches of the key within the window.
        now = self._clock()
        start, count = self._fetches.pop(key, (now, 0))
        if now - start > self._window:
            start, count = now, 0
        count += 1
        if count >= self._count:
            return True
        self._fetches[key] = (start, count)
        if len(self._fetches) > RATE_MEMORY:  # bounded: forget the stalest keys
            self._fetches.popitem(last=False)
        return False
