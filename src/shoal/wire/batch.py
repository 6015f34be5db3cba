"""Batch get, a shoal-only extension of the peer protocol: many keys in one exchange.

Rules (the messages and their meaning: ``docs/protocol.md``, "Batch get"):
    * ``POST {base}{group}/_get-many/`` with a :func:`encode_get_many_request` body
      answers ``200`` with a :func:`encode_get_many_response` body: the keys the
      owner has, and with ``key_errors`` every other failure as a :class:`BatchError`.
    * A client sends it only to a peer whose :data:`EXTENSIONS_HEADER` lists
      :data:`GET_MANY_EXTENSION`: a Go server would read the path as a GET of the key
      ``_get-many/`` and run its loader on it.
    * Bodies are protobuf wire format, read with the groupcache decoders' rules, but
      groups are refused; more than ``max_keys`` keys or items, or ``max_size`` bytes,
      is hint 413.
    * Pure functions, no I/O; the encoder's own form is read inline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._protobuf import (
    INT64_MAX,
    INT64_MIN,
    LEN,
    UINT64_MASK,
    VARINT,
    iter_fields,
    len_field,
    read_varint_within,
    utf8,
    varint,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .expiry import MAX_EXPIRE_NS
from .groupcache import DEFAULT_MAX_BATCH_KEYS, DEFAULT_MAX_MESSAGE_BYTES
from .paths import build_peer_path

__all__ = [
    "GET_MANY_SEGMENT",
    "GET_MANY_CONTENT_TYPE",
    "GET_MANY_EXTENSION",
    "INVALIDATE_SEGMENT",
    "INVALIDATE_EXTENSION",
    "REPLICA_SEGMENT",
    "REPLICA_EXTENSION",
    "GET_MANY_ERRORS_EXTENSION",
    "EXTENSIONS_HEADER",
    "DEFAULT_MAX_BATCH_KEYS",
    "BatchItem",
    "BatchError",
    "build_get_many_path",
    "build_group_path",
    "encode_get_many_request",
    "decode_get_many_request",
    "encode_get_many_response",
    "encode_batch_entries",
    "decode_get_many_response",
    "decode_batch_request",
    "decode_batch_response",
    "decode_batch_entries",
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

GET_MANY_ERRORS_EXTENSION = "get-many-errors"
"""The token a shoal peer lists when its batch get answers errors key by key on
request (``GetManyRequest.key_errors``)."""

EXTENSIONS_HEADER = "Shoal-Extensions"
"""Response header in which a shoal peer lists the protocol extensions it serves
(comma-separated tokens). Go peers never send it."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One key of a batch get's answer."""

    key: str
    value: bytes
    expire_ns: int | None = None
    """Absolute expiry in Unix nanoseconds; None (or 0 on the wire) means never."""


@dataclass(frozen=True, slots=True)
class BatchError:
    """One key of a batch get that failed: the answer a GET of it would have had."""

    key: str
    status: int
    """The HTTP status of that answer."""
    message: bytes = b""
    """The body of that answer (the error's text)."""


def build_get_many_path(base: str, group: str) -> str:
    """The path of a batch get: ``{base}{group}/_get-many/``, the group escaped as
    :func:`~shoal.wire.paths.build_peer_path` escapes it.

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


def encode_get_many_request(keys: Iterable[str], *, key_errors: bool = False) -> bytes:
    """Encode ``GetManyRequest{keys, key_errors}``, the body of a batch get.

    Raises:
        LocalProtocolError: a key is not encodable as UTF-8.
        TypeError: a key is not a str.
    """
    body = b"".join(len_field(b"\x0a", utf8(key, "key")) for key in keys)
    return body + b"\x10\x01" if key_errors else body


def encode_get_many_response(
    items: Iterable[BatchItem], errors: Iterable[BatchError] = ()
) -> bytes:
    """Encode ``GetManyResponse{items, errors}``, the body of a batch get's ``200`` answer.

    Raises:
        LocalProtocolError: a key is not encodable as UTF-8, or an expiry is outside int64.
    """
    return encode_batch_entries(((i.key, i.value, i.expire_ns) for i in items), errors)


def encode_batch_entries(
    items: Iterable[tuple[str, bytes, int | None]], errors: Iterable[BatchError] = ()
) -> bytes:
    """:func:`encode_get_many_response` from ``(key, value, expire_ns)`` tuples (a
    server answering a batch needs no object per item)."""
    parts = []
    for key, value, expire in items:
        data = utf8(key, "key")
        fields = b"\x0a%s%s\x12%s%s" % (varint(len(data)), data, varint(len(value)), value)
        if expire is not None:
            if not INT64_MIN <= expire <= INT64_MAX:
                raise LocalProtocolError(f"expire_ns={expire} does not fit in an int64")
            fields += b"\x18" + varint(expire & UINT64_MASK)
        parts.append(b"\x0a%s%s" % (varint(len(fields)), fields))
    for error in errors:
        fields = (
            len_field(b"\x0a", utf8(error.key, "key"))
            + b"\x10"
            + varint(error.status)
            + len_field(b"\x1a", error.message)
        )
        parts.append(len_field(b"\x12", fields))
    return b"".join(parts)


# --------------------------------------------------------------------- decoding


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
    return decode_batch_request(data, max_keys=max_keys, max_size=max_size)[0]


def decode_batch_request(
    data: bytes,
    *,
    max_keys: int = DEFAULT_MAX_BATCH_KEYS,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[list[str], bool]:
    """Like :func:`decode_get_many_request`, and whether it asks for ``key_errors``."""
    data = bytes(data)
    _check_size(data, max_size, "GetManyRequest")
    keys: list[str] = []
    key_errors = False
    end = len(data)
    pos = 0
    try:
        # The encoder's form, read inline: short keys (field 1, one length byte), then
        # maybe key_errors (0x10 0x01) at the end. Anything else: the general reader.
        while pos + 1 < end and data[pos] == 0x0A and data[pos + 1] < 0x80:
            stop = pos + 2 + data[pos + 1]
            if stop > end:
                raise RemoteProtocolError("truncated field 1")
            if len(keys) >= max_keys:
                raise RemoteProtocolError(f"more than {max_keys} keys in one batch", 413)
            keys.append(_text(data, pos + 2, stop, "a key"))
            pos = stop
        if data[pos:] == b"\x10\x01":
            return keys, True
        for field, wire_type, start, stop in iter_fields(data, pos, end):
            if field == 2:
                if wire_type != VARINT:
                    raise RemoteProtocolError(f"field 2 has wire type {wire_type}")
                key_errors = stop != 0
                continue
            if field != 1:
                continue  # unknown: skipped
            if wire_type != LEN:
                raise RemoteProtocolError(f"field 1 has wire type {wire_type}")
            if len(keys) >= max_keys:
                raise RemoteProtocolError(f"more than {max_keys} keys in one batch", 413)
            keys.append(_text(data, start, stop, "a key"))
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(
            f"malformed GetManyRequest: {exc}", exc.error_status_hint
        ) from None
    return keys, key_errors


def _submessage(
    data: bytes, start: int, end: int, what: str, wire_types: tuple[int, int, int]
) -> list[Any]:
    """Fields 1 to 3 of an item or a key error, each of the wire type given (a later
    occurrence wins): a varint's value, else the ``(start, stop)`` of the bytes; None
    where absent. Field 1, the key, is required."""
    found: list[Any] = [None, None, None]
    for field, wire_type, v_start, v_stop in iter_fields(data, start, end):
        if 1 <= field <= 3:
            if wire_type != wire_types[field - 1]:
                raise RemoteProtocolError(f"{what} field {field} has wire type {wire_type}")
            found[field - 1] = v_stop if wire_type == VARINT else (v_start, v_stop)
    if found[0] is None:
        raise RemoteProtocolError(f"an {what} has no key")
    return found


def _item(data: bytes, start: int, end: int) -> BatchItem:
    key, value, expire = _submessage(data, start, end, "item", (LEN, LEN, VARINT))
    if expire is not None and expire > INT64_MAX:
        expire -= 1 << 64
    elif expire is not None and expire > MAX_EXPIRE_NS:
        raise RemoteProtocolError(f"expire {expire} of an item is past {MAX_EXPIRE_NS}")
    return BatchItem(
        _text(data, key[0], key[1], "a key"),
        b"" if value is None else data[value[0] : value[1]],
        expire,
    )


def _error(data: bytes, start: int, end: int) -> BatchError:
    key, status, message = _submessage(data, start, end, "error", (LEN, VARINT, LEN))
    return BatchError(
        _text(data, key[0], key[1], "a key"),
        status or 0,
        b"" if message is None else data[message[0] : message[1]],
    )


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
    return decode_batch_response(data, max_items=max_items, max_size=max_size)[0]


def decode_batch_response(
    data: bytes,
    *,
    max_items: int | None = None,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[list[BatchItem], list[BatchError]]:
    """Like :func:`decode_get_many_response`, and the answer's key errors (``max_items``
    bounds items and errors together)."""
    items, errors = decode_batch_entries(data, max_items=max_items, max_size=max_size)
    return [BatchItem(key, value, expire) for key, value, expire in items], errors


def decode_batch_entries(
    data: bytes,
    *,
    max_items: int | None = None,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[list[tuple[str, bytes, int | None]], list[BatchError]]:
    """:func:`decode_batch_response` with each item as a ``(key, value, expire_ns)``
    tuple: what a client handing out a batch's values needs, with no object per item.

    Items in the form the encoder writes (key, value, then maybe expire, each
    length or varint in as many bytes as needed) are read inline; any other form
    goes through the general field reader, so both accept the same inputs.
    """
    data = bytes(data)
    _check_size(data, max_size, "GetManyResponse")
    items: list[tuple[str, bytes, int | None]] = []
    errors: list[BatchError] = []
    limit = max_items if max_items is not None else len(data)
    end = len(data)
    pos = 0
    try:
        while pos < end:
            tag = data[pos]
            if tag == 0x0A or tag == 0x12:
                field = 1 if tag == 0x0A else 2
                size = data[pos + 1] if pos + 1 < end else 0x80
                if size < 0x80:
                    start = pos + 2
                else:
                    size, start = read_varint_within(data, pos + 1, end)
                stop = start + size
                if stop > end:
                    raise RemoteProtocolError(f"truncated field {field}")
            else:  # another field, or a tag in more bytes: the general reader takes it
                field, wire_type, start, stop = next(iter(iter_fields(data, pos, end)))
                if field != 1 and field != 2:
                    pos = start if wire_type == VARINT else stop
                    continue
                if wire_type != LEN:
                    raise RemoteProtocolError(f"field {field} has wire type {wire_type}")
            pos = stop
            if len(items) + len(errors) >= limit:
                raise RemoteProtocolError(f"more than {limit} items", 413)
            if field == 2:
                errors.append(_error(data, start, stop))
                continue
            # Item: 0x0a key, 0x12 value, then maybe 0x18 expire, each length one byte
            # when short (the encoder's form).
            if stop - start >= 4 and data[start] == 0x0A and data[start + 1] < 0x80:
                key_end = start + 2 + data[start + 1]
                if key_end + 2 <= stop and data[key_end] == 0x12:
                    size = data[key_end + 1]
                    if size < 0x80:
                        value_start = key_end + 2
                    else:
                        size, value_start = read_varint_within(data, key_end + 1, stop)
                    value_end = value_start + size
                    expire: int | None = None
                    if value_end < stop and data[value_end] == 0x18:
                        expire, after = read_varint_within(data, value_end + 1, stop)
                        if expire > INT64_MAX:
                            expire -= 1 << 64
                        elif expire > MAX_EXPIRE_NS:
                            raise RemoteProtocolError(
                                f"expire {expire} of an item is past {MAX_EXPIRE_NS}"
                            )
                    else:
                        after = value_end
                    if after == stop:
                        key = _text(data, start + 2, key_end, "a key")
                        items.append((key, data[value_start:value_end], expire))
                        continue
            item = _item(data, start, stop)
            items.append((item.key, item.value, item.expire_ns))
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(
            f"malformed GetManyResponse: {exc}", exc.error_status_hint
        ) from None
    return items, errors
