"""A partitioned group's writes across its members, and the checks every write passes.

A write reaches the key's owner first (or this node's stores, when it owns
the key), then every other member drops its copies: after the owner, so a
copy fetched meanwhile is the new value or is fenced. A replicated group
writes through its replica instead and never comes here.

Rules: every write is checked before anything changes (:func:`check_write`,
:func:`check_expiry`: the key, the value's size, the TTL or absolute expiry,
which must end by :data:`~shoal.wire.MAX_EXPIRES_AT`, the latest every peer
protocol can carry); an owner that cannot be reached fails the write, but the
copies elsewhere are still removed; the owners' counts are what is returned.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from ._peer_calls import PeerCalls
from ._stores import LocalStores
from .config import GroupConfig
from .errors import InvalidTTL, PeerUnavailable, ValueTooLarge
from .wire import MAX_EXPIRES_AT

if TYPE_CHECKING:
    from .peers import PeerClient

__all__ = ["PartitionedWrites", "check_expiry", "check_write"]


def check_write(config: GroupConfig, data: bytes, ttl: float | None) -> None:
    """Refuse a value that is not bytes or over ``max_value_bytes``, or a bad ``ttl``
    (the key is the group's to check)."""
    if type(data) is not bytes:
        raise TypeError(f"values are stored as bytes, got {type(data).__name__}")
    if len(data) > config.max_value_bytes:
        raise ValueTooLarge(
            f"value of {len(data)} bytes exceeds max_value_bytes={config.max_value_bytes}"
        )
    if ttl is not None and not (0 < ttl < float("inf")):
        raise InvalidTTL(f"ttl must be a positive, finite number of seconds, got {ttl!r}")


def check_expiry(expires_at: float, what: str) -> None:
    """Refuse a write whose expiry the peer protocols cannot carry (see
    :data:`~shoal.wire.MAX_EXPIRES_AT`): every member must be able to send it on."""
    if not (math.isfinite(expires_at) and expires_at <= MAX_EXPIRES_AT):
        raise InvalidTTL(
            f"{what} expires after {MAX_EXPIRES_AT:.0f} (Unix seconds, in the year 2262), "
            "the latest expiry a node can store and send (int64 Unix nanoseconds)"
        )


class PartitionedWrites:
    """The writes of one partitioned group across its members (see the module docstring).

    Args:
        group: the group's name, as the peers are told it.
        calls: how the group reaches its peers.
        stores: this node's stores of the group.
    """

    __slots__ = ("_calls", "_group", "_stores")

    def __init__(self, group: str, calls: PeerCalls, stores: LocalStores) -> None:
        self._group = group
        self._calls = calls
        self._stores = stores

    async def set(self, key: str, data: bytes, expires_at: float | None) -> None:
        """Store a checked value at the key's owner; drop every copy elsewhere."""
        calls = self._calls
        owner = calls.owner_client(key)
        if owner is None:
            self._stores.store(key, data, expires_at)
        else:
            await calls.on_peer(owner, owner.set(self._group, key, data, expires_at))
        await calls.broadcast_remove([key], skip=owner)
        if owner is not None:
            self._stores.drop([key])

    async def remove(self, keys: list[str]) -> int:
        """Remove checked, distinct keys everywhere; how many their owners had.

        Raises:
            PeerUnavailable, PeerTimeout: an owner could not be reached (the keys are
                still removed everywhere else).
        """
        calls = self._calls
        if calls.peers is None:
            return self._stores.drop(keys)
        owned: dict[PeerClient | None, list[str]] = {}
        error: BaseException | None = None
        for key in keys:
            try:
                owner = calls.owner_client(key)
            except PeerUnavailable as exc:  # still removed everywhere else
                error = error or exc
                continue
            owned.setdefault(owner, []).append(key)
        mine = owned.pop(None, [])
        removed = self._stores.drop(mine)
        # Owners first, then everyone else's copies (hot copies, and this node's).
        outcomes = await asyncio.gather(
            *(
                calls.on_peer(peer, peer.remove_keys(self._group, ks))
                for peer, ks in owned.items()
                if peer is not None
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                error = error or outcome
            elif outcome is not None:
                removed += outcome
        await calls.broadcast_remove(keys)
        if len(mine) < len(keys):
            # This node's own hot copies, last (see set). The owners counted.
            local = set(mine)
            self._stores.drop([k for k in keys if k not in local])
        if error is not None:
            raise error
        return removed

    async def invalidate(self) -> int:
        """Drop every key on every member; how many keys this node had."""
        removed = self._stores.clear()
        if self._calls.peers is not None:
            # Twice: a member still holding old values during the first round may
            # have handed one to a member already cleared.
            for _ in range(2):
                await self._calls.on_every_peer(
                    "invalidate", lambda peer: peer.invalidate(self._group)
                )
                self._stores.clear()
        return removed
