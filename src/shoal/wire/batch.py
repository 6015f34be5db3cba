"""Batch get, a shoal-only extension of the peer protocol: many keys in one exchange.

``POST {base}{group}/_get-many/`` with a :func:`encode_get_many_request` body
answers ``200`` with a :func:`encode_get_many_response` body that holds the keys
the owner has (keys it lacks are left out). Go peers never see it: a shoal
client uses it only with a peer whose answers carry the
:data:`EXTENSIONS_HEADER` naming :data:`GET_MANY_EXTENSION`, because a Go server
would read the same path as an ordinary GET of the key ``_get-many/`` and run
its loader on it.

Both bodies are protobuf wire format, so any protobuf runtime reads them::

    message GetManyRequest  { repeated string keys = 1; }
    message GetManyResponse { repeated Item items = 1; }
    message Item {
      required string key = 1;
      optional bytes value = 2;
      optional int64 expire = 3;  // absolute Unix nanoseconds; absent or 0: never
    }

Pure functions, no I/O. Encoding writes fields in number order and ``expire``
only when there is one. Decoding accepts any field order and skips unknown
fields of the varint, 64-bit, length-delimited and 32-bit wire types (room for
later fields); it rejects, with :class:`~shoal.wire.codec.RemoteProtocolError`:
truncated input, a varint past 64 bits, field number 0, groups and the
invalid wire types 6 and 7, a known field with the wrong wire type, an item
without a key, text that is not UTF-8, more than ``max_keys`` keys or items
(hint 413) and input over ``max_size`` bytes (hint 413).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    LocalProtocolError,
    RemoteProtocolError,
    build_peer_path,
)

__all__ = [
    "GET_MANY_SEGMENT",
    "GET_MANY_CONTENT_TYPE",
    "GET_MANY_EXTENSION",
    "INVALIDATE_SEGMENT",
    "INVALIDATE_EXTENSION",
    "REPLICA_SEGMENT",
    "REPLICA_EXTENSION",
    "EXTENSIONS_HEADER",
    "DEFAULT_MAX_BATCH_KEYS",
    "BatchItem",
    "build_get_many_path",
    "build_group_path",
    "encode_get_many_request",
    "decode_get_many_request",
    "encode_get_many_response",
    "decode_get_many_response",
    "parse_extensions",
]

GET_MANY_SEGMENT = "_get-many/"
"""What follows ``{base}{group}/`` in the path of a batch get."""

GET_MANY_CONTENT_TYPE = "application/x-shoal-get-many"
"""Content-Type of a batch get's request and answer bodies (protobuf wire format)."""

GET_MANY_EXTENSION = "get-many"
"""The token a shoal peer lists in :data:`EXTENSIONS_HEADER` when it serves batch gets."""

INVALIDATE_SEGMENT = "_invalidate/"
"""What follows ``{base}{group}/`` in the path of a group invalidation (``POST``,
empty body): the peer drops every key of the group."""

INVALIDATE_EXTENSION = "invalidate"
"""The token a shoal peer lists when it serves group invalidation (and answers
deletes with ``{"removed": n}``)."""

REPLICA_SEGMENT = "_replica/"
"""What follows ``{base}{group}/`` in the path of a replicated group's exchange
(``POST``, a ``shoal.v1.ReplicaRequest`` in, a ``ReplicaResponse`` out)."""

REPLICA_EXTENSION = "replica"
"""The token a shoal peer lists when it serves replicated groups."""

EXTENSIONS_HEADER = "Shoal-Extensions"
"""Response header in which a shoal peer lists the protocol extensions it serves
(comma-separated tokens). Go peers never send it."""

DEFAULT_MAX_BATCH_KEYS = 1000
"""Keys one batch get may name unless the parties agree on another limit."""

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One key of a batch get's answer."""

    key: str
    value: bytes
    expire_ns: int | None = None
    """Absolute expiry in Unix nanoseconds; None (or 0 on the wire) means never."""


def build_get_many_path(base: str, group: str) -> str:
    """The path of a batch get: ``{base}{group}/_get-many/``, the group escaped as
    :func:`~shoal.wire.codec.build_peer_path` escapes it.

    Raises:
        LocalProtocolError: group is not encodable as UTF-8.
    """
    return build_peer_path(base, group, "") + GET_MANY_SEGMENT


def build_group_path(base: str, group: str, segment: str) -> str:
    """The path of a shoal-only request about a whole group: ``{base}{group}/{segment}``.

    Raises:
        LocalProtocolError: group is not encodable as UTF-8.
    """
    return build_peer_path(base, group, "") + segment


def parse_extensions(value: bytes | str | None) -> frozenset[str]:
    """The extension tokens of an :data:`EXTENSIONS_HEADER` value (lower-cased)."""
    if not value:
        return frozenset()
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return frozenset(t for t in (p.strip().lower() for p in text.split(",")) if t)


# --------------------------------------------------------------------- encoding


def _varint(n: int) -> bytes:
    """Base-128 varint of ``0 <= n < 2**64``."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _utf8(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text: {exc}") from exc


def _len_field(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def encode_get_many_request(keys: Iterable[str]) -> bytes:
    """Encode ``GetManyRequest{keys}``, the body of a batch get.

    Raises:
        LocalProtocolError: a key is not encodable as UTF-8.
        TypeError: a key is not a str.
    """
    return b"".join(_len_field(b"\x0a", _utf8(key, "key")) for key in keys)


def encode_get_many_response(items: Iterable[BatchItem]) -> bytes:
    """Encode ``GetManyResponse{items}``, the body of a batch get's ``200`` answer.

    Raises:
        LocalProtocolError: a key is not encodable as UTF-8, or an expiry is outside int64.
    """
    parts = []
    for item in items:
        fields = _len_field(b"\x0a", _utf8(item.key, "key")) + _len_field(b"\x12", item.value)
        expire = item.expire_ns
        if expire is not None:
            if not _INT64_MIN <= expire <= _INT64_MAX:
                raise LocalProtocolError(f"expire_ns={expire} does not fit in an int64")
            fields += b"\x18" + _varint(expire & _UINT64_MASK)
        parts.append(_len_field(b"\x0a", fields))
    return b"".join(parts)


# --------------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    for shift in range(0, 64, 7):
        if pos >= end:
            raise RemoteProtocolError("truncated varint")
        b = data[pos]
        pos += 1
        if shift == 63 and b > 1:
            # The tenth byte may only hold bit 63 (Go's rule; the codec's too).
            raise RemoteProtocolError("varint longer than 64 bits")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
    raise RemoteProtocolError("varint longer than 64 bits")


def _fields(data: bytes, start: int, end: int) -> Iterable[tuple[int, int, int, int]]:
    """Yield ``(field, wire_type, value_start, value_end_or_varint)`` for each field.

    For a varint the last element is the value itself; for the other wire types
    it is the end of the value's bytes. Unknown wire types and field 0 raise.
    """
    pos = start
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            raise RemoteProtocolError("field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos, end)
            yield field, wire_type, pos, value
            continue
        if wire_type == _LEN:
            length, pos = _read_varint(data, pos, end)
            stop = pos + length
        elif wire_type == _I64:
            stop = pos + 8
        elif wire_type == _I32:
            stop = pos + 4
        else:
            raise RemoteProtocolError(f"unsupported wire type {wire_type} (field {field})")
        if stop > end:
            raise RemoteProtocolError(f"truncated field {field}")
        yield field, wire_type, pos, stop
        pos = stop


def _text(data: bytes, start: int, stop: int, what: str) -> str:
    try:
        return data[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{what} is not UTF-8") from None


def _check_size(data: bytes, max_size: int, what: str) -> None:
    if len(data) > max_size:
        raise RemoteProtocolError(
            f"{what} of {len(data)} bytes exceeds the limit of {max_size}", 413
        )


def decode_get_many_request(
    data: bytes,
    *,
    max_keys: int = DEFAULT_MAX_BATCH_KEYS,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[str]:
    """Decode a batch get's body into its keys, in order (duplicates kept).

    Raises:
        RemoteProtocolError: malformed body (see the module rules), more than
            ``max_keys`` keys or ``max_size`` bytes (hint 413).
    """
    data = bytes(data)
    _check_size(data, max_size, "GetManyRequest")
    keys: list[str] = []
    try:
        for field, wire_type, start, stop in _fields(data, 0, len(data)):
            if field != 1:
                continue  # unknown: skipped
            if wire_type != _LEN:
                raise RemoteProtocolError(f"field 1 has wire type {wire_type}")
            if len(keys) >= max_keys:
                raise RemoteProtocolError(f"more than {max_keys} keys in one batch", 413)
            keys.append(_text(data, start, stop, "a key"))
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(
            f"malformed GetManyRequest: {exc}", exc.error_status_hint
        ) from None
    return keys


def _item(data: bytes, start: int, end: int) -> BatchItem:
    key: str | None = None
    value = b""
    expire: int | None = None
    for field, wire_type, v_start, v_stop in _fields(data, start, end):
        if field == 1:
            if wire_type != _LEN:
                raise RemoteProtocolError(f"item field 1 has wire type {wire_type}")
            key = _text(data, v_start, v_stop, "a key")
        elif field == 2:
            if wire_type != _LEN:
                raise RemoteProtocolError(f"item field 2 has wire type {wire_type}")
            value = data[v_start:v_stop]
        elif field == 3:
            if wire_type != _VARINT:
                raise RemoteProtocolError(f"item field 3 has wire type {wire_type}")
            expire = v_stop - (1 << 64) if v_stop > _INT64_MAX else v_stop
    if key is None:
        raise RemoteProtocolError("an item has no key")
    return BatchItem(key, value, expire)


def decode_get_many_response(
    data: bytes,
    *,
    max_items: int | None = None,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[BatchItem]:
    """Decode a batch get's answer into its items, in order.

    Args:
        data: the body.
        max_items: reject more items than this (a client passes the number of
            keys it asked for); None: no limit but ``max_size``.
        max_size: reject a longer body (hint 413).

    Raises:
        RemoteProtocolError: malformed body (see the module rules) or over a limit.
    """
    data = bytes(data)
    _check_size(data, max_size, "GetManyResponse")
    items: list[BatchItem] = []
    try:
        for field, wire_type, start, stop in _fields(data, 0, len(data)):
            if field != 1:
                continue
            if wire_type != _LEN:
                raise RemoteProtocolError(f"field 1 has wire type {wire_type}")
            if max_items is not None and len(items) >= max_items:
                raise RemoteProtocolError(f"more than {max_items} items", 413)
            items.append(_item(data, start, stop))
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(
            f"malformed GetManyResponse: {exc}", exc.error_status_hint
        ) from None
    return items
