"""Codec of the groupcache peer protocol: messages to bytes, paths and statuses, and back.

Rules (the wire format, with the Go behaviour it follows: ``docs/protocol.md``):
    * Encoders write what a Go node writes, byte for byte: fields in number order,
      each only when set, a GetResponse's ``value`` always.
    * Decoders accept any field order, repeated fields (the last wins) and unknown
      fields, and refuse with :class:`RemoteProtocolError` what Go refuses and what
      upb lets through: truncation, varint overflow, a missing required field,
      text that is not UTF-8, an expiry a node could not send again
      (:func:`check_expire_ns`), input over ``max_size`` (hint 413).
    * Expiries are int64 Unix nanoseconds on the wire and float Unix seconds in the
      stores; zero or negative is never.
    * Paths are split raw and decoded after; ``+`` stays ``+`` (:func:`parse_peer_path`).
    * Pure functions, no I/O; the hit path's GetResponse is read and written inline.
"""

from __future__ import annotations

import enum
import json
import math
import re
import struct
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote

from ..errors import ShoalError
from .messages import (
    REMOVE_KEYS_SEGMENT,
    GetRequest,
    GetResponse,
    PeerPath,
    RemoveKeysRequest,
    SetRequest,
    _make_get_response,
)

__all__ = [
    # errors
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PathOutsideBase",
    # limits and constants
    "DEFAULT_BASE_PATH",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_BATCH_KEYS",
    "PROTOBUF_CONTENT_TYPE",
    "ERROR_CONTENT_TYPE",
    "ERROR_HEADERS",
    "BAD_REQUEST_MESSAGE",
    # protobuf bodies
    "encode_get_request",
    "decode_get_request",
    "encode_get_response",
    "decode_get_response",
    "encode_set_request",
    "decode_set_request",
    "to_expire_ns",
    "from_expire_ns",
    "check_expire_ns",
    "expires_at_from_wire",
    "MAX_EXPIRE_NS",
    "MAX_EXPIRES_AT",
    # JSON body
    "encode_remove_keys",
    "decode_remove_keys",
    # paths
    "parse_peer_path",
    "build_peer_path",
    "build_remove_keys_path",
    # statuses
    "STATUS_OK",
    "STATUS_BAD_REQUEST",
    "STATUS_NOT_FOUND",
    "STATUS_METHOD_NOT_ALLOWED",
    "STATUS_PAYLOAD_TOO_LARGE",
    "STATUS_LOAD_FAILED",
    "PeerReply",
    "classify_get_status",
    "error_body",
    "no_such_group_message",
]

BytesLike = bytes | bytearray | memoryview


# --------------------------------------------------------------------------- errors


class ProtocolError(ShoalError, ValueError):
    """Something broke the rules of the peer protocol (h11's split).

    Abstract: a :class:`LocalProtocolError` means this process tried to send
    something the protocol cannot carry; a :class:`RemoteProtocolError` means a
    peer sent something malformed. ``error_status_hint`` (default 400) is the
    status a server can answer with; it is also the error's ``http_status``.
    """

    code = "protocol_error"

    def __init__(self, message: str, error_status_hint: int = 400) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise a Local or Remote one")
        super().__init__(message)
        self.error_status_hint = error_status_hint
        self.http_status = error_status_hint


class LocalProtocolError(ProtocolError):
    """This process tried to encode something the protocol cannot carry.

    For example a key with a lone surrogate (not UTF-8) or an expiry outside int64.
    """


class RemoteProtocolError(ProtocolError):
    """A peer sent bytes or a path that break the protocol: never crash, answer the hint."""


class PathOutsideBase(RemoteProtocolError):
    """A request path that is not under the peer protocol's base path (hint 404)."""

    def __init__(self, message: str, error_status_hint: int = 404) -> None:
        super().__init__(message, error_status_hint)


# ------------------------------------------------------------------------ constants

DEFAULT_BASE_PATH = "/_groupcache/"
"""Where Go groupcache serves its peers (``defaultBasePath``)."""

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
"""Largest body the decoders accept unless told otherwise (callers pass their own limit)."""

DEFAULT_MAX_BATCH_KEYS = 1000
"""Keys one batch request (a batch get, a remove-keys) may name unless the parties
agree on another limit."""

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
"""Content-Type of a 200 answer to a GET (Go sets exactly this)."""

ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"
"""Content-Type of an error answer (Go's ``http.Error``)."""

ERROR_HEADERS = (("Content-Type", ERROR_CONTENT_TYPE), ("X-Content-Type-Options", "nosniff"))
"""The headers Go's ``http.Error`` sets, besides Date and Content-Length."""

BAD_REQUEST_MESSAGE = "bad request"
"""What Go answers (status 400) to a path without a key segment."""

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1
_MAX_GROUP_DEPTH = 100  # nesting of unknown groups; upb's default limit

# wire types
_VARINT = 0
_I64 = 1
_LEN = 2
_SGROUP = 3
_EGROUP = 4
_I32 = 5

_DOUBLE = struct.Struct("<d")

# A length-delimited field 1 header (0x0a) with a one-byte length, by length.
_FIELD1_HEADERS = tuple(bytes((0x0A, n)) for n in range(128))


# ------------------------------------------------------------------ protobuf: writing


def _varint(n: int) -> bytes:
    """Base-128 varint of ``0 <= n < 2**64``."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int64(n: int, what: str) -> bytes:
    """Varint of an int64 (two's complement: a negative number takes ten bytes)."""
    if not isinstance(n, int):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise LocalProtocolError(f"{what}={n} does not fit in an int64")
    return _varint(n & _UINT64_MASK)


def _len_field(tag: int, data: bytes) -> bytes:
    """A length-delimited field: tag byte, length, data."""
    n = len(data)
    if n < 0x80:
        return bytes((tag, n)) + data
    return bytes((tag,)) + _varint(n) + data


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text: {exc}") from exc
    except AttributeError:
        raise TypeError(f"{what} must be a str, not {type(text).__name__}") from None


def _double(x: float, what: str) -> bytes:
    try:
        return _DOUBLE.pack(x)
    except struct.error:
        raise TypeError(f"{what} must be a float, not {type(x).__name__}") from None


# ------------------------------------------------------------------ protobuf: reading


_SHIFTS = (7, 14, 21, 28, 35, 42, 49, 56)


def _read_varint(data: BytesLike, pos: int) -> tuple[int, int]:
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


def _skip(data: BytesLike, pos: int, end: int, wire_type: int, field: int, depth: int) -> int:
    """Skip the value of an unknown field; return the position after it."""
    if wire_type == _VARINT:
        _, pos = _read_varint(data, pos)
    elif wire_type == _I64:
        pos += 8
    elif wire_type == _LEN:
        length, pos = _read_varint(data, pos)
        pos += length
    elif wire_type == _I32:
        pos += 4
    elif wire_type == _SGROUP:
        if depth >= _MAX_GROUP_DEPTH:
            raise RemoteProtocolError("groups nested too deeply")
        while True:
            tag, pos = _read_varint(data, pos)
            inner, inner_type = tag >> 3, tag & 7
            if inner_type == _EGROUP:
                if inner != field:
                    raise RemoteProtocolError(f"group {field} closed by end-group {inner}")
                return pos
            _check_tag(tag, inner)
            pos = _skip(data, pos, end, inner_type, inner, depth + 1)
    elif wire_type == _EGROUP:
        raise RemoteProtocolError(f"end-group {field} without a start-group")
    else:
        raise RemoteProtocolError(f"invalid wire type {wire_type} (field {field})")
    if pos > end:
        raise RemoteProtocolError(f"truncated field {field}")
    return pos


def _check_tag(tag: int, field: int) -> None:
    if field == 0:
        raise RemoteProtocolError("field number 0")
    if tag > 0xFFFFFFFF:
        raise RemoteProtocolError("field number out of range")


def _parse(data: BytesLike, wire_types: tuple[int, ...], what: str, max_size: int) -> list[Any]:
    """Read a message whose known fields 1..n have ``wire_types[1..n]``.

    Returns the raw value of each known field, by number (None when absent):
    an int for a varint, a slice of ``data`` for the rest. The last occurrence
    of a field wins, as for every proto2 scalar and bytes field.
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
                tag, pos = _read_varint(data, pos - 1)
            field = tag >> 3
            wire_type = tag & 7
            if 0 < field < known:
                if wire_type != wire_types[field]:
                    raise RemoteProtocolError(f"field {field} has wire type {wire_type}")
                if wire_type == _LEN:
                    length = data[pos]
                    pos += 1
                    if length >= 0x80:
                        length, pos = _read_varint(data, pos - 1)
                    stop = pos + length
                elif wire_type == _VARINT:
                    values[field], pos = _read_varint(data, pos)
                    continue
                else:  # _I64
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


def _signed(n: int | None) -> int | None:
    if n is None or n <= _INT64_MAX:
        return n
    return n - (1 << 64)


def _text(raw: BytesLike | None, what: str, message: str) -> str:
    if raw is None:
        raise RemoteProtocolError(f"malformed {message}: required field {what} is missing")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"malformed {message}: {what} is not UTF-8") from None


_GET_REQUEST_TYPES = (-1, _LEN, _LEN)
_GET_RESPONSE_TYPES = (-1, _LEN, _I64, _VARINT)
_SET_REQUEST_TYPES = (-1, _LEN, _LEN, _LEN, _VARINT)


# ------------------------------------------------------------------- protobuf bodies


def encode_get_request(group: str, key: str) -> bytes:
    """Encode ``GetRequest{group, key}`` (both always written: they are required).

    Raises:
        LocalProtocolError: group or key is not encodable as UTF-8.
    """
    return _len_field(0x0A, _utf8(group, "group")) + _len_field(0x12, _utf8(key, "key"))


def decode_get_request(data: BytesLike, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES) -> GetRequest:
    """Decode a GetRequest.

    Raises:
        RemoteProtocolError: malformed protobuf, a missing field, or text that is not UTF-8.
    """
    values = _parse(data, _GET_REQUEST_TYPES, "GetRequest", max_size)
    return GetRequest(
        _text(values[1], "group", "GetRequest"), _text(values[2], "key", "GetRequest")
    )


def encode_get_response(
    value: bytes, *, minute_qps: float | None = None, expire_ns: int | None = None
) -> bytes:
    """Encode the body of a 200 answer to a GET.

    Args:
        value: the value; written even when empty, as Go does.
        minute_qps: written only when not None.
        expire_ns: absolute expiry in Unix nanoseconds, written only when not
            None. 0 means "never" to Go peers (mailgun v2 and groupcache-go v3
            send ``expire=0``; golang/groupcache sends no expire at all).

    Returns:
        The bytes a Go node would send for the same fields.

    Raises:
        LocalProtocolError: expire_ns does not fit in an int64.
    """
    n = len(value)
    head = _FIELD1_HEADERS[n] if n < 0x80 else b"\x0a" + _varint(n)
    if minute_qps is None and expire_ns is None:
        return head + value
    parts = [head, value]
    if minute_qps is not None:
        parts.append(b"\x11" + _double(minute_qps, "minute_qps"))
    if expire_ns == 0:
        parts.append(b"\x18\x00")
    elif expire_ns is not None:
        parts.append(b"\x18" + _int64(expire_ns, "expire_ns"))
    return b"".join(parts)


def decode_get_response(
    data: BytesLike, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES
) -> GetResponse:
    """Decode the body of a 200 answer to a GET.

    An absent value decodes as ``b""``; an absent minute_qps or expire as None.

    Raises:
        RemoteProtocolError: malformed protobuf (see the module rules), or more
            than ``max_size`` bytes (hint 413).
    """
    n = len(data)
    if 2 <= n <= 131 and data[0] == 0x0A and n <= max_size:
        # Fast paths for values under 128 bytes: the value alone (golang/groupcache),
        # or followed by expire=0 (mailgun v2 and groupcache-go v3 with no expiry).
        if data[1] == n - 2:
            return _make_get_response(bytes(data[2:]), None, None)
        if data[1] == n - 4 and data[n - 2] == 0x18 and data[n - 1] == 0:
            return _make_get_response(bytes(data[2 : n - 2]), None, 0)
    values = _parse(data, _GET_RESPONSE_TYPES, "GetResponse", max_size)
    raw_value, raw_qps, raw_expire = values[1], values[2], values[3]
    expire = _signed(raw_expire)
    if expire is not None and expire > MAX_EXPIRE_NS:
        check_expire_ns(expire, "GetResponse")  # raises
    return _make_get_response(
        b"" if raw_value is None else bytes(raw_value),
        None if raw_qps is None else _DOUBLE.unpack(raw_qps)[0],
        expire,
    )


def encode_set_request(
    group: str, key: str, value: bytes, *, expire_ns: int | None = None
) -> bytes:
    """Encode the body of a PUT ``{base}{group}/{key}`` (groupcache-go v3).

    Group, key and value are always written; expire only when not None
    (groupcache-go sends 0 for "never").

    Raises:
        LocalProtocolError: text not encodable as UTF-8, or expire_ns outside int64.
    """
    parts = [
        _len_field(0x0A, _utf8(group, "group")),
        _len_field(0x12, _utf8(key, "key")),
        _len_field(0x1A, value),
    ]
    if expire_ns is not None:
        parts.append(b"\x20" + _int64(expire_ns, "expire_ns"))
    return b"".join(parts)


def decode_set_request(data: BytesLike, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES) -> SetRequest:
    """Decode the body of a PUT.

    Raises:
        RemoteProtocolError: malformed protobuf, a missing group or key (required,
            as Go checks), text that is not UTF-8, an expiry past
            :data:`MAX_EXPIRE_NS`, or more than ``max_size`` bytes (hint 413).
    """
    values = _parse(data, _SET_REQUEST_TYPES, "SetRequest", max_size)
    raw_value = values[3]
    expire = _signed(values[4])
    if expire is not None and expire > MAX_EXPIRE_NS:
        check_expire_ns(expire, "SetRequest")  # raises
    return SetRequest(
        _text(values[1], "group", "SetRequest"),
        _text(values[2], "key", "SetRequest"),
        b"" if raw_value is None else bytes(raw_value),
        expire,
    )


# ----------------------------------------------------------------------- JSON body

# Go's encoding/json escapes these even inside strings (HTML safety); Python does not.
_GO_JSON_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode_remove_keys(group: str, keys: Iterable[str]) -> bytes:
    """Encode the JSON body of ``POST {base}{group}/_remove-keys/`` as Go's ``json.Marshal`` does.

    ``{"group":"G","keys":["a","b"]}`` with no spaces, non-ASCII text as UTF-8,
    ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as ``\\u003c`` and so on, and
    no ``keys`` member when there are no keys (the Go field is ``omitempty``).

    Raises:
        LocalProtocolError: text not encodable as UTF-8.
    """
    key_list = list(keys)
    for key in key_list:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
    if not isinstance(group, str):
        raise TypeError(f"group must be a str, not {type(group).__name__}")
    obj: dict[str, Any] = {"group": group}
    if key_list:
        obj["keys"] = key_list
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _utf8(text.translate(_GO_JSON_ESCAPES), "a group or key")


def decode_remove_keys(
    body: BytesLike,
    *,
    max_keys: int = DEFAULT_MAX_BATCH_KEYS,
    max_size: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> RemoveKeysRequest:
    """Decode the JSON body of a remove-keys POST.

    Follows Go's ``json.Unmarshal`` into ``RemoveKeysRequest`` where it matters:
    member names match ignoring ASCII case and the last one wins, unknown
    members are ignored, a missing or null ``keys`` is no keys, a null key is
    ``""`` and a missing or null ``group`` is ``""`` (servers use the group of
    the path, as Go does).

    Raises:
        RemoteProtocolError: not UTF-8, not JSON, not an object, a member of the
            wrong type, more than ``max_keys`` keys or ``max_size`` bytes (hint 413).
    """
    if len(body) > max_size:
        raise RemoteProtocolError(
            f"remove-keys body of {len(body)} bytes exceeds the limit of {max_size}", 413
        )
    try:
        parsed = json.loads(
            bytes(body).decode("utf-8"),
            object_pairs_hook=_Members,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"malformed remove-keys body: {exc}") from None
    if not isinstance(parsed, _Members):
        raise RemoteProtocolError("malformed remove-keys body: not a JSON object")
    group: Any = ""
    keys: Any = None
    for name, member in parsed:
        lowered = name.lower() if name.isascii() else name
        if lowered == "group":
            group = member
        elif lowered == "keys":
            keys = member
    if group is None:
        group = ""
    if not isinstance(group, str):
        raise RemoteProtocolError("malformed remove-keys body: group is not a string")
    _check_unicode(group)
    if keys is None:
        return RemoveKeysRequest(group, ())
    if not isinstance(keys, list):
        raise RemoteProtocolError("malformed remove-keys body: keys is not an array")
    if len(keys) > max_keys:
        raise RemoteProtocolError(
            f"remove-keys body names {len(keys)} keys; at most {max_keys} in one request", 413
        )
    out = []
    for key in keys:
        if key is None:
            key = ""
        elif not isinstance(key, str):
            raise RemoteProtocolError("malformed remove-keys body: a key is not a string")
        _check_unicode(key)
        out.append(key)
    return RemoveKeysRequest(group, tuple(out))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_unicode(text: str) -> None:
    """Reject a lone surrogate (a ``\\ud800`` escape): it is not text and cannot be a key."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RemoteProtocolError("malformed remove-keys body: a lone surrogate escape") from None


class _Members(list[tuple[str, Any]]):
    """A JSON object as its members in order (so duplicates and case folding follow Go)."""


# --------------------------------------------------------------------------- paths

# Two hex digits -> the byte they spell; anything else after '%' is malformed.
_UNHEX = {
    (a + b).encode(): bytes((int(a + b, 16),))
    for a in "0123456789abcdefABCDEF"
    for b in "0123456789abcdefABCDEF"
}
# Control bytes Go's URL parser refuses anywhere in a request target.
_CTL = bytes(range(0x20)) + b"\x7f"


def _percent_decode(raw: bytes, what: str) -> str:
    """Decode one raw path segment: ``%XX`` escapes, then UTF-8; ``+`` stays ``+``."""
    if raw.translate(None, _CTL) != raw:
        raise RemoteProtocolError(f"control character in the {what} of the path")
    if b"%" in raw:
        pieces = raw.split(b"%")
        out = [pieces[0]]
        for piece in pieces[1:]:
            byte = _UNHEX.get(piece[:2])
            if byte is None:
                raise RemoteProtocolError(f"malformed percent-escape in the {what} of the path")
            out.append(byte)
            out.append(piece[2:])
        raw = b"".join(out)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"the {what} of the path is not UTF-8") from None


_DEFAULT_BASE = DEFAULT_BASE_PATH.encode()


def parse_peer_path(raw_path: bytes, base: bytes = _DEFAULT_BASE) -> PeerPath:
    """Split a raw request path ``{base}{group}/{key}`` into group and key.

    The raw path is split first and decoded after: strip ``base``, split at the
    first ``/`` (so a group cannot contain a raw ``/``, while a key may hold raw
    ones, as Go allows), then percent-decode each part. ``%2F`` is ``/``; ``+``
    stays ``+``, never a space. A query string (``?...``) is dropped, as Go
    keeps it out of ``URL.Path``. An empty key (``{base}{group}/``) is returned
    as ``""``, which Go serves; whether it is acceptable is the group's call.

    Why ``+`` stays ``+``: golang/groupcache clients escape keys with
    ``url.QueryEscape``, so the key ``user 42 #7`` goes out as
    ``user+42+%237``, and golang servers, which read the decoded
    ``URL.Path`` where ``+`` is literal, serve the key ``user+42+#7`` (captured
    from real nodes). Decoding the same way keeps every node of a mixed cluster
    serving one key per path. shoal's own client sends ``%20`` for a space
    (:func:`build_peer_path`), which every server decodes to a space.

    Args:
        raw_path: the request target exactly as received (origin form, not
            decoded), e.g. ``b"/_groupcache/scores/key%3A2"``.
        base: the base path; starts and ends with ``/``.

    Returns:
        ``PeerPath(group, key)``; check :attr:`PeerPath.is_remove_keys` for a POST.

    Raises:
        PathOutsideBase: the path is not under ``base`` (hint 404; Go's mux
            would not route it to groupcache, and shoal never redirects).
        RemoteProtocolError: no ``/`` after the group (Go answers 400 "bad
            request"), a malformed escape, a control character, or text that is
            not UTF-8 (hint 400).
    """
    if not base.endswith(b"/") or not base.startswith(b"/"):
        raise ValueError(f"a base path starts and ends with '/': {base!r}")
    query = raw_path.find(b"?")
    if query >= 0:
        raw_path = raw_path[:query]
    if not raw_path.startswith(base):
        raise PathOutsideBase(f"path is not under {base.decode('latin-1')!r}")
    rest = raw_path[len(base) :]
    slash = rest.find(b"/")
    if slash < 0:
        raise RemoteProtocolError(f"{BAD_REQUEST_MESSAGE}: no key in the path")
    group = _percent_decode(rest[:slash], "group")
    return PeerPath(group, _percent_decode(rest[slash + 1 :], "key"))


_NS: Final = 1_000_000_000

MAX_EXPIRES_AT: Final = float(_INT64_MAX // _NS)
"""The latest expiry a node stores or sends, in Unix seconds (2262-04-11T23:47:16Z):
the last whole second whose Unix nanoseconds fit in an int64. A write whose TTL
ends later is refused (:class:`~shoal.errors.InvalidTTL`)."""

MAX_EXPIRE_NS: Final = _INT64_MAX // _NS * _NS
""":data:`MAX_EXPIRES_AT` in Unix nanoseconds: the latest expiry a decoder accepts.
Anything up to it, read as seconds, converts back to nanoseconds within an int64."""


def check_expire_ns(expire_ns: int, what: str = "message") -> int:
    """Return ``expire_ns`` if a node can store it and send it again, else raise.

    Zero or negative (never) and anything up to :data:`MAX_EXPIRE_NS` pass; the
    decoder of every message with an expiry calls this.

    Raises:
        RemoteProtocolError: the expiry is past :data:`MAX_EXPIRE_NS` (hint 400).
    """
    if expire_ns > MAX_EXPIRE_NS:
        raise RemoteProtocolError(
            f"malformed {what}: expire {expire_ns} is past the latest expiry a node "
            f"can carry ({MAX_EXPIRE_NS} ns, in the year 2262)"
        )
    return expire_ns


def to_expire_ns(expires_at: float | None) -> int | None:
    """Absolute Unix seconds to the Unix nanoseconds of the wire (None: never).

    Whole seconds and the fraction are converted apart: a float holds a Unix time
    in nanoseconds only to about 256 ns, but each part converts exactly (or nearly).
    A finite time past :data:`MAX_EXPIRES_AT` is clamped to it, so the result
    always fits in an int64, and one at or before the epoch is 1 ns (long expired:
    never 0, which means "never", nor negative, which shoal's messages refuse); an
    infinite or NaN one is never.
    """
    if expires_at is None:
        return None
    # One comparison rules out NaN, infinities and out-of-range times alike.
    if not 1e-9 <= expires_at <= MAX_EXPIRES_AT:
        if not math.isfinite(expires_at):
            return None
        return MAX_EXPIRE_NS if expires_at > 0 else 1
    seconds = math.floor(expires_at)
    return seconds * _NS + round((expires_at - seconds) * 1e9)


def expires_at_from_wire(expire_ns: int, what: str = "message") -> float | None:
    """An expiry received in a protobuf-runtime message (gRPC, replication) as Unix
    seconds: :func:`check_expire_ns`, then :func:`from_expire_ns`.

    These messages are shoal's own, whose nodes send 0 for "never" and never a
    negative expiry, so a negative one is refused too (a uint64 past the int64
    range arrives as one: protobuf reads the same varint as a negative int64).

    Raises:
        RemoteProtocolError: the expiry is negative or past :data:`MAX_EXPIRE_NS`
            (hint 400).
    """
    if expire_ns < 0:
        raise RemoteProtocolError(
            f"malformed {what}: expire {expire_ns} is negative (0 means never; an "
            "expiry is Unix nanoseconds up to the year 2262)"
        )
    return from_expire_ns(check_expire_ns(expire_ns, what))


def from_expire_ns(expire_ns: int | None) -> float | None:
    """Unix nanoseconds of the wire to absolute Unix seconds (0, negative or None: never).

    Integer division rounds correctly; ``ns / 1e9`` would not.
    """
    return expire_ns / _NS if expire_ns is not None and expire_ns > 0 else None


# Text made only of RFC 3986 unreserved characters needs no escaping.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _escape(text: str, what: str) -> str:
    if _UNRESERVED.fullmatch(text):
        return text  # what quote() returns for it, without its work
    try:
        return quote(text, safe="")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text: {exc}") from exc


def build_peer_path(base: str, group: str, key: str) -> str:
    """The path to request ``key`` of ``group`` from a peer: ``{base}{group}/{key}``.

    Group and key are escaped as RFC 3986 path segments: every byte of their
    UTF-8 except the unreserved ``A-Za-z0-9-._~`` becomes ``%XX`` (upper-case
    hex), so ``:`` is ``%3A``, ``/`` is ``%2F``, ``+`` is ``%2B`` and a space is
    ``%20``. That is byte for byte what golang/groupcache clients send (Go's
    ``url.QueryEscape``), except for the space, which they send as ``+`` and Go
    servers then read as a literal ``+`` (see :func:`parse_peer_path`).
    :func:`parse_peer_path` reads the path back as the same group and key, and
    so do Go servers, except where Go's own path handling gets in the way: they
    split the decoded path, so a group holding ``/`` breaks, and Go's ServeMux
    redirects a key that is a ``.`` or ``..`` segment.

    The result is already escaped: an HTTP client must send it as is, not
    escape it again.

    Raises:
        LocalProtocolError: group or key is not encodable as UTF-8.
    """
    return base + _escape(group, "group") + "/" + _escape(key, "key")


def build_remove_keys_path(base: str, group: str) -> str:
    """The path of a remove-keys POST: ``{base}{group}/_remove-keys/`` (groupcache-go v3).

    Raises:
        LocalProtocolError: group is not encodable as UTF-8.
    """
    return base + _escape(group, "group") + "/" + REMOVE_KEYS_SEGMENT


# -------------------------------------------------------------------------- statuses

STATUS_OK = 200
STATUS_BAD_REQUEST = 400
"""Malformed path or body (Go: a path without a key, a SetRequest that does not decode)."""
STATUS_NOT_FOUND = 404
"""Unknown group (Go: ``no such group: G``) or a key the loader says does not exist
(groupcache-go v3 ``ErrNotFound``)."""
STATUS_METHOD_NOT_ALLOWED = 405
"""A method other than GET, PUT, DELETE and POST (groupcache-go v3)."""
STATUS_PAYLOAD_TOO_LARGE = 413
"""A body over the server's limit (Go has no limit; a Go client treats it as any failure)."""
STATUS_LOAD_FAILED = 503
"""The owner's loader failed. groupcache-go v3 clients read 503 as ``ErrRemoteCall`` and do
not load the key again locally; golang and mailgun v2 servers send 500 for the same case, and
their clients read any status but 200 as a failed fetch."""


class PeerReply(enum.Enum):
    """What a peer's status answering a GET means, across the Go implementations."""

    OK = "ok"
    """200: the body is a GetResponse."""
    NOT_FOUND = "not_found"
    """404: no such key (groupcache-go v3) or no such group (every Go server)."""
    LOAD_FAILED = "load_failed"
    """503 (groupcache-go v3 ``ErrRemoteCall``) or 500 (golang and mailgun v2 send 500
    when the loader fails): the owner tried and failed."""
    FAILED = "failed"
    """Anything else (400, 405, 413, a proxy's 502 or 504, ...): the exchange failed; the
    key may be loaded locally, as golang/groupcache does for every failed fetch."""


def classify_get_status(status: int) -> PeerReply:
    """Map the status of a peer's answer to a GET to what it means for the read path."""
    if status == 200:
        return PeerReply.OK
    if status == 404:
        return PeerReply.NOT_FOUND
    if status in (500, 503):
        return PeerReply.LOAD_FAILED
    return PeerReply.FAILED


def error_body(message: str) -> bytes:
    """The body of an error answer, as Go's ``http.Error`` writes it: the message and a newline."""
    return (message + "\n").encode("utf-8", "replace")


def no_such_group_message(group: str) -> str:
    """Go's message for an unknown group (status 404): ``no such group: G``."""
    return "no such group: " + group
