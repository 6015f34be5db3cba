"""Messages of the atomic operations (``shoal.v1.OpRequest``/``OpResponse``) as plain data.

Rules: sans I/O, like the rest of :mod:`shoal.wire`; the generated protobuf
classes stay here, imported on first use (``import shoal`` loads no protobuf).
Decoding checks what the bytes can say by themselves (they parse, the kind is
known, an expiry is in range, the batch is not over its bound); what the values
mean is the group's to check. Encoding an object and decoding the bytes gives
back an equal object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import RemoteProtocolError
from .expiry import check_expire_ns

__all__ = [
    "OP_ADD",
    "OP_INCR",
    "OP_TOUCH",
    "OP_TTL",
    "OP_SET",
    "OP_KINDS",
    "OP_SEGMENT",
    "OP_EXTENSION",
    "OpItem",
    "OpRequestBody",
    "OpResultBody",
    "encode_op_request",
    "decode_op_request",
    "encode_op_response",
    "decode_op_response",
]

OP_ADD: Final = 1
"""Store the item only if its key is absent."""
OP_INCR: Final = 2
"""Add ``delta`` to the decimal integer the key holds."""
OP_TOUCH: Final = 3
"""Give the key a new expiry without rewriting its value."""
OP_TTL: Final = 4
"""Seconds the key has left."""
OP_SET: Final = 5
"""Store every item (one owner's share of a ``set_many``)."""
OP_KINDS: Final = {OP_ADD: "add", OP_INCR: "incr", OP_TOUCH: "touch", OP_TTL: "ttl", OP_SET: "set"}
"""Each kind's name."""

OP_SEGMENT: Final = "_op/"
"""What follows ``{base}{group}/`` in the path of an operation over the HTTP peer
protocol (``POST``, an ``OpRequest`` in, an ``OpResponse`` out)."""
OP_EXTENSION: Final = "op"
"""The token a shoal peer lists when it serves the operations."""


@dataclass(frozen=True, slots=True)
class OpItem:
    """One key of an operation."""

    key: str
    value: bytes = b""
    expire: int = 0
    """Absolute expiry in Unix nanoseconds; 0: never (between peers)."""
    ttl: float | None = None
    """Seconds to live, from a client; None: absent."""


@dataclass(frozen=True, slots=True)
class OpRequestBody:
    """An operation on one or more keys of a group."""

    group: str
    kind: int
    items: tuple[OpItem, ...]
    delta: int = 0


@dataclass(frozen=True, slots=True)
class OpResultBody:
    """The outcome of an operation on one key."""

    done: bool = False
    number: int = 0
    seconds: float = 0.0
    error: str = ""
    message: str = ""


def encode_op_request(request: OpRequestBody) -> bytes:
    """The serialized ``OpRequest``."""
    from ._pb import shoal_pb2 as pb

    message = pb.OpRequest(group=request.group, kind=request.kind, delta=request.delta)  # type: ignore[arg-type]
    for item in request.items:
        entry = message.items.add(key=item.key, value=item.value, expire=item.expire)
        if item.ttl is not None:
            entry.ttl = item.ttl
    return message.SerializeToString()


def decode_op_request(raw: bytes, *, max_keys: int) -> OpRequestBody:
    """Parse an ``OpRequest``.

    Raises:
        RemoteProtocolError: undecodable, an unknown kind, no key (or, but for a
            set, more than one), more than ``max_keys`` keys, a bad expiry.
    """
    from google.protobuf.message import DecodeError

    from ._pb import shoal_pb2 as pb

    message = pb.OpRequest()
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise RemoteProtocolError(f"malformed OpRequest: {exc}") from exc
    if message.kind not in OP_KINDS:
        raise RemoteProtocolError(f"malformed OpRequest: unknown kind {message.kind}")
    count = len(message.items)
    if count == 0:
        raise RemoteProtocolError("malformed OpRequest: no key")
    if message.kind != OP_SET and count != 1:
        raise RemoteProtocolError(
            f"malformed OpRequest: {OP_KINDS[message.kind]} takes one key, got {count}"
        )
    if count > max_keys:
        raise RemoteProtocolError(f"OpRequest names {count} keys, over the limit of {max_keys}")
    items = tuple(
        OpItem(
            key=item.key,
            value=item.value,
            expire=check_expire_ns(item.expire, "OpItem") if item.expire > 0 else 0,
            ttl=item.ttl if item.HasField("ttl") else None,
        )
        for item in message.items
    )
    return OpRequestBody(message.group, message.kind, items, message.delta)


def encode_op_response(results: list[OpResultBody]) -> bytes:
    """The serialized ``OpResponse``."""
    from ._pb import shoal_pb2 as pb

    message = pb.OpResponse()
    for result in results:
        message.results.add(
            done=result.done,
            number=result.number,
            seconds=result.seconds,
            error=result.error,
            message=result.message,
        )
    return message.SerializeToString()


def decode_op_response(raw: bytes) -> list[OpResultBody]:
    """Parse an ``OpResponse``.

    Raises:
        RemoteProtocolError: undecodable.
    """
    from google.protobuf.message import DecodeError

    from ._pb import shoal_pb2 as pb

    message = pb.OpResponse()
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise RemoteProtocolError(f"malformed OpResponse: {exc}") from exc
    return [OpResultBody(r.done, r.number, r.seconds, r.error, r.message) for r in message.results]
