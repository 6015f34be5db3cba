"""Codec of the groupcache peer protocol's bodies: GetRequest, GetResponse, SetRequest
(protobuf), remove-keys (JSON), and the statuses of a peer's answers.

Rules (the wire format, Go captures and interop: ``docs/protocol.md``):
    * Encoders write what a Go node writes, byte for byte: fields in number order,
      each only when set, a GetResponse's ``value`` always.
    * Decoders accept any field order, repeated fields (the last wins) and unknown
      fields, and refuse with :class:`~shoal.wire.errors.RemoteProtocolError` what
      Go refuses and what upb lets through: truncation, varint overflow, a missing
      required field, text that is not UTF-8, an expiry a node could not send
      again (:func:`~shoal.wire.expiry.check_expire_ns`), input over ``max_size``
      (hint 413).
    * A status means the same thing whichever Go implementation sent it (:class:`PeerReply`).
    * Pure functions, no I/O; the hit path's GetResponse is read and written inline.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any

from ._protobuf import (
    DOUBLE,
    I64,
    LEN,
    VARINT,
    BytesLike,
    double,
    int64,
    len_field,
    parse_message,
    signed,
    utf8,
    varint,
)
from .errors import RemoteProtocolError
from .expiry import MAX_EXPIRE_NS, check_expire_ns
from .messages import (
    GetRequest,
    GetResponse,
    RemoveKeysRequest,
    SetRequest,
    make_get_response,
)

__all__ = [
    # limits and constants
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_BATCH_KEYS",
    "PROTOBUF_CONTENT_TYPE",
    "ERROR_CONTENT_TYPE",
    "ERROR_HEADERS",
    # protobuf bodies
    "encode_get_request",
    "decode_get_request",
    "encode_get_response",
    "decode_get_response",
    "encode_set_request",
    "decode_set_request",
    # JSON body
    "encode_remove_keys",
    "decode_remove_keys",
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


# ------------------------------------------------------------------------ constants

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

# A length-delimited field 1 header (0x0a) with a one-byte length, by length.
_FIELD1_HEADERS = tuple(bytes((0x0A, n)) for n in range(128))


# ------------------------------------------------------------------- protobuf bodies


def _text(raw: BytesLike | None, what: str, message: str) -> str:
    if raw is None:
        raise RemoteProtocolError(f"malformed {message}: required field {what} is missing")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"malformed {message}: {what} is not UTF-8") from None


_GET_REQUEST_TYPES = (-1, LEN, LEN)
_GET_RESPONSE_TYPES = (-1, LEN, I64, VARINT)
_SET_REQUEST_TYPES = (-1, LEN, LEN, LEN, VARINT)


# ------------------------------------------------------------------- protobuf bodies


def encode_get_request(group: str, key: str) -> bytes:
    """Encode ``GetRequest{group, key}`` (both always written: they are required).

    Raises:
        LocalProtocolError: group or key is not encodable as UTF-8.
    """
    return len_field(b"\x0a", utf8(group, "group")) + len_field(b"\x12", utf8(key, "key"))


def decode_get_request(data: BytesLike, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES) -> GetRequest:
    """Decode a GetRequest.

    Raises:
        RemoteProtocolError: malformed protobuf, a missing field, or text that is not UTF-8.
    """
    values = parse_message(data, _GET_REQUEST_TYPES, "GetRequest", max_size)
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
    head = _FIELD1_HEADERS[n] if n < 0x80 else b"\x0a" + varint(n)
    if minute_qps is None and expire_ns is None:
        return head + value
    parts = [head, value]
    if minute_qps is not None:
        parts.append(b"\x11" + double(minute_qps, "minute_qps"))
    if expire_ns == 0:
        parts.append(b"\x18\x00")
    elif expire_ns is not None:
        parts.append(b"\x18" + int64(expire_ns, "expire_ns"))
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
            return make_get_response(bytes(data[2:]), None, None)
        if data[1] == n - 4 and data[n - 2] == 0x18 and data[n - 1] == 0:
            return make_get_response(bytes(data[2 : n - 2]), None, 0)
    values = parse_message(data, _GET_RESPONSE_TYPES, "GetResponse", max_size)
    raw_value, raw_qps, raw_expire = values[1], values[2], values[3]
    expire = signed(raw_expire)
    if expire is not None and expire > MAX_EXPIRE_NS:
        check_expire_ns(expire, "GetResponse")  # raises
    return make_get_response(
        b"" if raw_value is None else bytes(raw_value),
        None if raw_qps is None else DOUBLE.unpack(raw_qps)[0],
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
        len_field(b"\x0a", utf8(group, "group")),
        len_field(b"\x12", utf8(key, "key")),
        len_field(b"\x1a", value),
    ]
    if expire_ns is not None:
        parts.append(b"\x20" + int64(expire_ns, "expire_ns"))
    return b"".join(parts)


def decode_set_request(data: BytesLike, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES) -> SetRequest:
    """Decode the body of a PUT.

    Raises:
        RemoteProtocolError: malformed protobuf, a missing group or key (required,
            as Go checks), text that is not UTF-8, an expiry past
            :data:`MAX_EXPIRE_NS`, or more than ``max_size`` bytes (hint 413).
    """
    values = parse_message(data, _SET_REQUEST_TYPES, "SetRequest", max_size)
    raw_value = values[3]
    expire = signed(values[4])
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
    return utf8(text.translate(_GO_JSON_ESCAPES), "a group or key")


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
