"""The protobuf wire format, by hand: varints, tags and fields, shared by every message.

Rules (those of Go's protobuf runtime where the upb runtime is laxer):
    * A varint is at most ten bytes and 64 bits; the tenth byte may only hold bit 63.
    * Field number 0 and a tag past 32 bits are refused; so are wire types 6 and 7.
    * Encoders refuse text that is not UTF-8 and an int64 out of range
      (:class:`LocalProtocolError`); readers refuse malformed input with
      :class:`RemoteProtocolError` (only :func:`read_varint`, for speed, lets an
      ``IndexError`` out where the input ends: its callers turn it into one).
    * Two readers: :func:`parse_message` for a flat message of known fields (unknown
      ones skipped, groups included, as Go does), :func:`iter_fields` for one of
      repeated submessages (groups refused: shoal's own messages have none).
Pure functions on bytes; the message codecs (:mod:`.groupcache`, :mod:`.batch`) call them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "VARINT",
    "I64",
    "LEN",
    "SGROUP",
    "EGROUP",
    "I32",
    "INT64_MIN",
    "INT64_MAX",
    "UINT64_MASK",
    "DOUBLE",
    "BytesLike",
    "varint",
    "int64",
    "len_field",
    "utf8",
    "double",
    "signed",
    "read_varint",
    "read_varint_within",
    "parse_message",
    "iter_fields",
]

BytesLike = bytes | bytearray | memoryview

# wire types
VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
SGROUP: Final = 3
EGROUP: Final = 4
I32: Final = 5

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
UINT64_MASK: Final = (1 << 64) - 1
_MAX_GROUP_DEPTH: Final = 100  # nesting of unknown groups; upb's default limit

DOUBLE: Final = struct.Struct("<d")

_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(0x80))
"""The varint of each n < 128: its one byte."""


# ---------------------------------------------------------------------- writing


def varint(n: int) -> bytes:
    """Base-128 varint of ``0 <= n < 2**64``."""
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def int64(n: int, what: str) -> bytes:
    """Varint of an int64 (two's complement: a negative number takes ten bytes).

    Raises:
        LocalProtocolError: ``n`` does not fit in an int64.
        TypeError: ``n`` is not an int.
    """
    if not isinstance(n, int):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if not INT64_MIN <= n <= INT64_MAX:
        raise LocalProtocolError(f"{what}={n} does not fit in an int64")
    return varint(n & UINT64_MASK)


def len_field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its tag (one byte for fields 1 to 15), length, data."""
    n = len(data)
    return tag + (_SMALL_VARINTS[n] if n < 0x80 else varint(n)) + data


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8.

    Raises:
        LocalProtocolError: a lone surrogate, which UTF-8 cannot carry.
        TypeError: ``text`` is not a str.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text: {exc}") from exc
    except AttributeError:
        raise TypeError(f"{what} must be a str, not {type(text).__name__}") from None


def double(x: float, what: str) -> bytes:
    """The eight little-endian bytes of a double.

    Raises:
        TypeError: ``x`` is not a number.
    """
    try:
        return DOUBLE.pack(x)
    except struct.error:
        raise TypeError(f"{what} must be a float, not {type(x).__name__}") from None


# ---------------------------------------------------------------------- reading


def signed(n: int | None) -> int | None:
    """A uint64 read off the wire as the int64 it encodes (None stays None)."""
    if n is None or n <= INT64_MAX:
        return n
    return n - (1 << 64)


_SHIFTS: Final = (7, 14, 21, 28, 35, 42, 49, 56)


def read_varint(data: BytesLike, pos: int) -> tuple[int, int]:
    """Read the varint at ``pos``; return it and the position after it.

    Raises IndexError when the input ends inside the varint (the caller reports
    it as truncated) and RemoteProtocolError past 64 bits.
    """
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    for shift in _SHIFTS:
        pos += 1
        b = data[pos]
        if b < 0x80:
            return result | (b << shift), pos + 1
        result |= (b & 0x7F) << shift
    pos += 1
    b = data[pos]
    if b > 1:
        # The tenth byte may only hold bit 63: Go rejects the rest, and so do we.
        raise RemoteProtocolError("varint longer than 64 bits")
    return result | (b << 63), pos + 1


def read_varint_within(data: BytesLike, pos: int, end: int) -> tuple[int, int]:
    """:func:`read_varint` of a varint that must end by ``end`` (a submessage's end).

    Raises:
        RemoteProtocolError: the varint runs past ``end`` or past 64 bits.
    """
    try:
        value, after = read_varint(data, pos)
    except IndexError:
        raise RemoteProtocolError("truncated varint") from None
    if after > end:
        raise RemoteProtocolError("truncated varint")
    return value, after


def _check_tag(tag: int, field: int) -> None:
    if field == 0:
        raise RemoteProtocolError("field number 0")
    if tag > 0xFFFFFFFF:
        raise RemoteProtocolError("field number out of range")


def _skip(data: BytesLike, pos: int, end: int, wire_type: int, field: int, depth: int) -> int:
    """Skip the value of an unknown field; return the position after it."""
    if wire_type == VARINT:
        _, pos = read_varint(data, pos)
    elif wire_type == I64:
        pos += 8
    elif wire_type == LEN:
        length, pos = read_varint(data, pos)
        pos += length
    elif wire_type == I32:
        pos += 4
    elif wire_type == SGROUP:
        if depth >= _MAX_GROUP_DEPTH:
            raise RemoteProtocolError("groups nested too deeply")
        while True:
            tag, pos = read_varint(data, pos)
            inner, inner_type = tag >> 3, tag & 7
            if inner_type == EGROUP:
                if inner != field:
                    raise RemoteProtocolError(f"group {field} closed by end-group {inner}")
                return pos
            _check_tag(tag, inner)
            pos = _skip(data, pos, end, inner_type, inner, depth + 1)
    elif wire_type == EGROUP:
        raise RemoteProtocolError(f"end-group {field} without a start-group")
    else:
        raise RemoteProtocolError(f"invalid wire type {wire_type} (field {field})")
    if pos > end:
        raise RemoteProtocolError(f"truncated field {field}")
    return pos


def parse_message(
    data: BytesLike, wire_types: tuple[int, ...], what: str, max_size: int
) -> list[Any]:
    """Read a flat message whose known fields 1..n have ``wire_types[1..n]``.

    Returns the raw value of each known field, by number (None when absent):
    an int for a varint, a slice of ``data`` for the rest. The last occurrence
    of a field wins, as for every proto2 scalar and bytes field. Unknown fields
    are skipped, groups included.

    Raises:
        RemoteProtocolError: ``malformed {what}: ...``, or over ``max_size`` (hint 413).
    """
    end = len(data)
    if end > max_size:
        raise RemoteProtocolError(f"{what} of {end} bytes exceeds the limit of {max_size}", 413)
    known = len(wire_types)
    values: list[Any] = [None] * known
    pos = 0
    try:
        while pos < end:
            # Tags and lengths under 128 take one byte: read those inline.
            tag = data[pos]
            pos += 1
            if tag >= 0x80:
                tag, pos = read_varint(data, pos - 1)
            field = tag >> 3
            wire_type = tag & 7
            if 0 < field < known:
                if wire_type != wire_types[field]:
                    raise RemoteProtocolError(f"field {field} has wire type {wire_type}")
                if wire_type == LEN:
                    length = data[pos]
                    pos += 1
                    if length >= 0x80:
                        length, pos = read_varint(data, pos - 1)
                    stop = pos + length
                elif wire_type == VARINT:
                    values[field], pos = read_varint(data, pos)
                    continue
                else:  # I64
                    stop = pos + 8
                if stop > end:
                    raise RemoteProtocolError(f"truncated field {field}")
                values[field] = data[pos:stop]
                pos = stop
            else:
                _check_tag(tag, field)
                pos = _skip(data, pos, end, wire_type, field, 0)
    except IndexError:
        raise RemoteProtocolError(f"malformed {what}: truncated") from None
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"malformed {what}: {exc}", exc.error_status_hint) from None
    return values


def iter_fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field, wire_type, value_start, value_end_or_varint)`` for each field
    of ``data[start:end]`` (a message holding repeated submessages).

    For a varint the last element is the value itself; for the other wire types
    it is the end of the value's bytes. Field 0, groups and wire types 6 and 7
    raise :class:`RemoteProtocolError`, as does input that ends early.
    """
    pos = start
    while pos < end:
        tag, pos = read_varint_within(data, pos, end)
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            raise RemoteProtocolError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint_within(data, pos, end)
            yield field, wire_type, pos, value
            continue
        if wire_type == LEN:
            length, pos = read_varint_within(data, pos, end)
            stop = pos + length
        elif wire_type == I64:
            stop = pos + 8
        elif wire_type == I32:
            stop = pos + 4
        else:
            raise RemoteProtocolError(f"unsupported wire type {wire_type} (field {field})")
        if stop > end:
            raise RemoteProtocolError(f"truncated field {field}")
        yield field, wire_type, pos, stop
        pos = stop
