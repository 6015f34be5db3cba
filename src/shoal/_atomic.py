"""Atomic operations at the key's owner: add, incr, touch, ttl, and per-owner write batches.

Each operation reads and writes a key in one step at the member that owns it
(this node, or the owner asked over the peer protocol's ``op`` message), so two
of them on one key never interleave: the owner's step runs on its event loop
with nothing awaited between the read and the write. A partitioned group then
drops the copies every other member holds, as a ``set`` does; a replicated
group's owner makes the result a write of its own, which replication sends to
every member. Every write here fences the key's loads in flight (their result
reaches their waiters but is not cached).

Rules: a counter is a decimal ASCII integer (``b"41"``, ``b"-3"``) in the 64-bit
signed range; ``incr`` keeps the entry's expiry; an expired entry is absent;
the checks on keys, values and TTLs are the group's, made before anything is
sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final

from ._peer_calls import PeerCalls
from ._stores import LocalStores
from .errors import (
    BadRequest,
    GroupFull,
    GroupNotFound,
    InvalidKey,
    InvalidTTL,
    KeyTooLarge,
    NotFound,
    PeerError,
    ShoalError,
    ValueTooLarge,
)
from .store import Clock
from .wire import DEFAULT_MAX_BATCH_KEYS, from_expire_ns, to_expire_ns
from .wire.ops import (
    OP_ADD,
    OP_INCR,
    OP_SET,
    OP_TOUCH,
    OP_TTL,
    OpItem,
    OpRequestBody,
    OpResultBody,
    decode_op_response,
    encode_op_request,
)

if TYPE_CHECKING:
    from .peers import PeerClient
    from .replication import Replica

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "AtomicOps",
    "check_delta",
    "expiry_of",
    "raise_for",
    "result_of",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_COUNTER: Final = re.compile(rb"-?[0-9]{1,19}")

# The errors an owner answers by code, raised again on the asking side.
_ERRORS: Final[dict[str, type[ShoalError]]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        GroupFull,
        GroupNotFound,
        InvalidKey,
        InvalidTTL,
        KeyTooLarge,
        ValueTooLarge,
    )
}


def check_delta(delta: object) -> int:
    """``delta`` if it is an int in the 64-bit signed range, else BadRequest."""
    if type(delta) is not int:
        raise BadRequest(f"delta must be an integer, got {type(delta).__name__}")
    if not INT64_MIN <= delta <= INT64_MAX:
        raise BadRequest(f"delta {delta} is outside the 64-bit signed range")
    return delta


def _counter(key: str, data: bytes) -> int:
    if _COUNTER.fullmatch(data) is None or not INT64_MIN <= (value := int(data)) <= INT64_MAX:
        shown = data[:40].decode("ascii", "replace")
        raise BadRequest(f"the value of {key!r} is not a 64-bit decimal integer: {shown!r}")
    return value


def result_of(exc: ShoalError) -> OpResultBody:
    """An owner's error as the answer that carries it."""
    return OpResultBody(error=exc.code, message=str(exc))


def raise_for(key: str, result: OpResultBody, url: str) -> OpResultBody:
    """``result``, unless it carries an error: then that error, raised here."""
    if not result.error:
        return result
    if result.error == NotFound.code:
        raise NotFound(key)
    cls = _ERRORS.get(result.error)
    if cls is None:
        raise PeerError(f"{url}: {result.error}: {result.message}")
    raise cls(result.message)


class AtomicOps:
    """One group's atomic operations (see the module docstring).

    Args:
        group: the group's name, as the peers are told it.
        calls: how the group reaches its peers.
        stores: this node's stores of the group.
        replica: the group's replicated state, or None for a partitioned group.
        clock: time source for TTLs.
    """

    __slots__ = ("_calls", "_clock", "_group", "_replica", "_stores")

    def __init__(
        self,
        group: str,
        calls: PeerCalls,
        stores: LocalStores,
        replica: Replica | None,
        clock: Clock,
    ) -> None:
        self._group = group
        self._calls = calls
        self._stores = stores
        self._replica = replica
        self._clock = clock

    # -- at the owner ------------------------------------------------------------

    async def here(
        self, kind: int, key: str, data: bytes, expires_at: float | None, delta: int
    ) -> OpResultBody:
        """The owner's step, on this node's stores (checked arguments; never forwarded).

        Raises:
            NotFound: incr or ttl of an absent key.
            BadRequest: incr of a value that is not a 64-bit decimal integer, or a
                result outside that range.
            GroupFull: a replicated group holds its capacity.
        """
        main = self._stores.main
        current = main.peek(key)
        if kind == OP_SET:
            await self._write(key, data, expires_at)
            return OpResultBody(done=True)
        if kind == OP_ADD:
            if current is not None:
                return OpResultBody(done=False)
            await self._write(key, data, expires_at)
            return OpResultBody(done=True)
        if kind == OP_TOUCH:
            if current is None:
                return OpResultBody(done=False)
            await self._write(key, current, expires_at)
            return OpResultBody(done=True)
        if current is None:
            raise NotFound(key)
        expiry = main.expiry(key)
        if kind == OP_TTL:
            if expiry is None:
                return OpResultBody(done=False)
            return OpResultBody(done=True, seconds=max(0.0, expiry - self._clock()))
        if kind != OP_INCR:
            raise BadRequest(f"unknown operation {kind}")
        value = _counter(key, current) + delta
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadRequest(f"incrementing {key!r} by {delta} leaves the 64-bit signed range")
        await self._write(key, str(value).encode("ascii"), expiry)
        return OpResultBody(done=True, number=value)

    async def _write(self, key: str, data: bytes, expires_at: float | None) -> None:
        # Awaited at once: a replica applies the write before its first suspension,
        # so nothing runs between the owner's read and its write.
        if self._replica is not None:
            await self._replica.write(key, data, expires_at)
        else:
            self._stores.store(key, data, expires_at)

    # -- from any member ---------------------------------------------------------------

    async def run(
        self, kind: int, key: str, data: bytes, expires_at: float | None, delta: int = 0
    ) -> OpResultBody:
        """One operation on one key, at its owner; then drop the copies elsewhere.

        Raises:
            The errors of :meth:`here`; PeerUnavailable, PeerTimeout: the owner could
            not be reached (nothing changed).
        """
        calls = self._calls
        owner = calls.owner_client(key)
        if owner is None:
            result = await self.here(kind, key, data, expires_at, delta)
        else:
            item = OpItem(key, data, to_expire_ns(expires_at) or 0)
            request = encode_op_request(OpRequestBody(self._group, kind, (item,), delta))
            results = decode_op_response(await calls.on_peer(owner, owner.op(self._group, request)))
            if len(results) != 1:
                raise PeerError(f"{owner.url}: {len(results)} answers to one operation")
            result = raise_for(key, results[0], owner.url)
        if self._replica is None and result.done and kind != OP_TTL:
            await calls.broadcast_remove([key], skip=owner)
            if owner is not None:
                self._stores.drop([key])
        return result

    async def set_many(self, items: list[tuple[str, bytes, float | None]]) -> None:
        """Store checked, distinct keys, one exchange per owner; then drop the copies
        elsewhere (a replicated group: one write of them all, sent to every member).

        Raises:
            PeerUnavailable, PeerTimeout: an owner could not be reached (the other
                owners' keys are stored).
        """
        if self._replica is not None:
            await self._replica.write_many(items)
            return
        calls = self._calls
        owned: dict[PeerClient | None, list[tuple[str, bytes, float | None]]] = {}
        owners: dict[str, PeerClient | None] = {}
        for item in items:
            owner = calls.owner_client(item[0])
            owned.setdefault(owner, []).append(item)
            owners[item[0]] = owner
        for key, data, expires_at in owned.pop(None, []):
            self._stores.store(key, data, expires_at)
        outcomes = await asyncio.gather(
            *(self._send_batch(peer, batch) for peer, batch in owned.items() if peer is not None),
            return_exceptions=True,
        )
        if calls.peers is not None:
            keys = list(owners)

            def others(peer: PeerClient) -> Awaitable[object]:
                theirs = [k for k in keys if owners[k] is not peer]
                return peer.remove_keys(self._group, theirs) if theirs else _nothing()

            await calls.on_every_peer(f"remove {len(keys)} keys", others)
            self._stores.drop([k for k in keys if owners[k] is not None])
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send_batch(
        self, peer: PeerClient, batch: list[tuple[str, bytes, float | None]]
    ) -> None:
        for start in range(0, len(batch), DEFAULT_MAX_BATCH_KEYS):  # what a peer accepts
            chunk = batch[start : start + DEFAULT_MAX_BATCH_KEYS]
            items = tuple(OpItem(k, d, to_expire_ns(e) or 0) for k, d, e in chunk)
            request = encode_op_request(OpRequestBody(self._group, OP_SET, items))
            answer = await self._calls.on_peer(peer, peer.op(self._group, request))
            for (key, _, _), result in zip(chunk, decode_op_response(answer), strict=False):
                raise_for(key, result, peer.url)


async def _nothing() -> None:
    return None


def expiry_of(item: OpItem) -> float | None:
    """A peer item's absolute expiry in Unix seconds, or None."""
    return from_expire_ns(item.expire)
