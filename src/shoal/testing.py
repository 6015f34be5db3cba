"""A public test kit: tools for testing code that uses shoal."""

from __future__ import annotations

import asyncio
from collections import Counter

from .errors import NotFound

__all__ = ["ManualClock", "CountingLoader"]


class ManualClock:
    """A clock that moves only when told to; pass it as ``clock=`` to a Store, Group or Node.

    Args:
        start: the initial time in seconds.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current time in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self.now += seconds


class CountingLoader:
    """An async loader over a dict that counts its calls per key.

    Args:
        data: the values; a key not in it raises NotFound.
        gate: if given, every load waits for this event first (to hold loads in flight).
    """

    def __init__(self, data: dict[str, bytes], gate: asyncio.Event | None = None) -> None:
        self.data = data
        self.gate = gate
        self.calls: Counter[str] = Counter()
        self.started = asyncio.Event()

    async def __call__(self, key: str) -> bytes:
        """Load ``key``: count the call, wait for the gate, return the value."""
        self.calls[key] += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        try:
            return self.data[key]
        except KeyError:
            raise NotFound(key) from None

    @property
    def total(self) -> int:
        """Calls over all keys."""
        return sum(self.calls.values())
