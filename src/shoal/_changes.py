"""The node's log of changed keys, that near caches follow (``GET /v1/invalidations``).

Every change to a group's copy on this node lands in its
:class:`~shoal._stores.LocalStores` (a write this node owns, a copy dropped by
``_remove-keys`` or a ``DELETE`` from a peer, a replicated write, an
``invalidate_group``): that one place tells the log (``LocalStores.listener``).
Because every write of a partitioned group drops the other members' copies, every
node hears of every write of the cluster, whichever node took it.

Rules: the log is bounded (``size`` recent changes, whatever the number of
followers); a follower that asks for changes older than the oldest kept is told to
flush everything. Changes have a sequence number that grows by one per change; an
``epoch`` (random, per log) tells a follower that a node restarted. Loop thread only.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["DEFAULT_LOG_SIZE", "ChangeLog", "Changes"]

DEFAULT_LOG_SIZE = 65_536
"""Recent changes a node keeps for its followers."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What a follower gets: the changes after its ``since``, or ``flush``."""

    epoch: str
    seq: int
    """The sequence number of the last change included (the next ``since``)."""
    flush: bool
    """True: changes were lost (too old, or another epoch): drop everything."""
    keys: tuple[tuple[str, str | None], ...]
    """(group, key) pairs; a None key: the whole group."""


class ChangeLog:
    """A bounded log of (group, key) changes with a sequence number, and the
    followers waiting for the next one."""

    __slots__ = ("_closed", "_entries", "_seq", "_wakeup", "epoch")

    def __init__(self, size: int = DEFAULT_LOG_SIZE) -> None:
        self.epoch = secrets.token_hex(8)
        self._entries: deque[tuple[int, str, str | None]] = deque(maxlen=size)
        self._seq = 0
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    def close(self) -> None:
        """The node is closing: answer every waiting follower now, and later ones at once
        (a long poll must not hold up the server's shutdown)."""
        self._closed = True
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    @property
    def seq(self) -> int:
        """The sequence number of the last change (0: none yet)."""
        return self._seq

    def publish(self, group: str, key: str | None) -> None:
        """Note that ``key`` (None: every key) of ``group`` changed; wake followers."""
        self._seq += 1
        self._entries.append((self._seq, group, key))
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def since(self, since: int, epoch: str | None, groups: Collection[str] | None) -> Changes:
        """The changes after ``since`` of ``groups`` (None: all), at once."""
        if epoch != self.epoch or since > self._seq:
            return Changes(self.epoch, self._seq, True, ())
        entries = self._entries
        if since < self._seq and (not entries or entries[0][0] > since + 1):
            return Changes(self.epoch, self._seq, True, ())  # some were dropped
        keys: list[tuple[str, str | None]] = []
        count = self._seq - since
        start = len(entries) - count
        for i in range(max(start, 0), len(entries)):
            _, group, key = entries[i]
            if groups is None or group in groups:
                keys.append((group, key))
        return Changes(self.epoch, self._seq, False, tuple(keys))

    async def wait(
        self, since: int, epoch: str | None, groups: Collection[str] | None, wait_for: float
    ) -> Changes:
        """:meth:`since`, waiting up to ``wait_for`` seconds for a change after ``since``
        if there is none yet (then answering none)."""
        if epoch == self.epoch and since == self._seq and not self._closed:
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            wakeup = self._wakeup
            try:
                async with asyncio.timeout(wait_for):
                    await wakeup.wait()
            except TimeoutError:
                pass
        return self.since(since, epoch, groups)
