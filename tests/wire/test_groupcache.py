"""Protobuf and JSON bodies of the peer protocol: one golden table drives encode and decode.

Every row holds a message and its bytes. The rows come from captures of real
Go nodes (the shared vectors) and from hand-made cases; each row is checked
three ways: shoal's encoder writes the bytes, shoal's decoder reads the message
back, and the upb protobuf runtime, built from the same ``groupcache.proto``,
agrees with both.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.go_captures import (
    HTTP_CAPTURES,
    PROTO_VECTORS,
    Missing,
    exchanges,
    missing_vectors,
    params,
    protobuf_rows,
)
from shoal.errors import ShoalError
from shoal.wire import (
    MAX_EXPIRE_NS,
    GetRequest,
    GetResponse,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RemoveKeysRequest,
    SetRequest,
    decode_get_request,
    decode_get_response,
    decode_remove_keys,
    decode_set_request,
    encode_get_request,
    encode_get_response,
    encode_remove_keys,
    encode_set_request,
)
from shoal.wire._pb import groupcache_pb2 as pb

Message = GetRequest | GetResponse | SetRequest

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


# ---------------------------------------------------------------- helpers


def encode(message: Message) -> bytes:
    """shoal's encoder for the message's type."""
    if isinstance(message, GetResponse):
        return encode_get_response(
            message.value, minute_qps=message.minute_qps, expire_ns=message.expire_ns
        )
    if isinstance(message, SetRequest):
        return encode_set_request(
            message.group, message.key, message.value, expire_ns=message.expire_ns
        )
    return encode_get_request(message.group, message.key)


def decode(kind: type[Message], data: bytes | bytearray | memoryview, **kwargs: Any) -> Message:
    """shoal's decoder for ``kind``."""
    if kind is GetResponse:
        return decode_get_response(data, **kwargs)
    if kind is SetRequest:
        return decode_set_request(data, **kwargs)
    return decode_get_request(data, **kwargs)


def upb_encode(message: Message) -> bytes:
    """The upb runtime's bytes for the same fields."""
    if isinstance(message, GetResponse):
        out = pb.GetResponse(value=message.value)
        if message.minute_qps is not None:
            out.minute_qps = message.minute_qps
        if message.expire_ns is not None:
            out.expire = message.expire_ns
        return out.SerializeToString()
    if isinstance(message, SetRequest):
        req = pb.SetRequest(group=message.group, key=message.key, value=message.value)
        if message.expire_ns is not None:
            req.expire = message.expire_ns
        return req.SerializeToString()
    return pb.GetRequest(group=message.group, key=message.key).SerializeToString()


def upb_decode(kind: type[Message], data: bytes) -> Message:
    """The upb runtime's reading of ``data``, as a shoal message."""
    if kind is GetResponse:
        resp = pb.GetResponse.FromString(data)
        return GetResponse(
            resp.value,
            resp.minute_qps if resp.HasField("minute_qps") else None,
            resp.expire if resp.HasField("expire") else None,
        )
    if kind is SetRequest:
        req = pb.SetRequest.FromString(data)
        assert req.HasField("group")
        assert req.HasField("key")
        return SetRequest(
            req.group, req.key, req.value, req.expire if req.HasField("expire") else None
        )
    get = pb.GetRequest.FromString(data)
    assert get.HasField("group")
    assert get.HasField("key")
    return GetRequest(get.group, get.key)


def same(a: Message, b: Message) -> bool:
    """Equality that also holds for a NaN minute_qps with the same bits."""
    if isinstance(a, GetResponse) and isinstance(b, GetResponse):
        qa, qb = a.minute_qps, b.minute_qps
        if qa is not None and qb is not None and math.isnan(qa):
            return (a.value, a.expire_ns, struct.pack("<d", qa)) == (
                b.value,
                b.expire_ns,
                struct.pack("<d", qb),
            )
    return a == b


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


# ------------------------------------------------------------ golden table


@dataclass(frozen=True)
class Row:
    message: Message
    wire: bytes


# Hand-made rows: each also holds for the upb runtime (checked below), so they are
# as authoritative as the Go captures for the field presence and order they show.
GOLDEN: list[tuple[str, Row]] = [
    ("empty value is still sent", Row(GetResponse(b""), h("0a00"))),
    (
        "two-byte length",
        Row(GetResponse(b"x" * 200), h("0ac801") + b"x" * 200),
    ),
    (
        "length 127 and 128",
        Row(GetResponse(b"y" * 128, expire_ns=127), h("0a8001") + b"y" * 128 + h("187f")),
    ),
    (
        "minute_qps",
        Row(GetResponse(b"v", minute_qps=1.5), h("0a0176 11 000000000000f83f")),
    ),
    (
        "all three fields",
        Row(
            GetResponse(b"v", minute_qps=0.0, expire_ns=0),
            h("0a0176 11 0000000000000000 1800"),
        ),
    ),
    (
        "negative expire takes ten bytes",
        Row(GetResponse(b"v", expire_ns=-1), h("0a0176 18 ffffffffffffffffff01")),
    ),
    (
        "the latest expiry a node accepts (2262)",
        Row(GetResponse(b"v", expire_ns=MAX_EXPIRE_NS), h("0a0176 18 80d0b4e8fcffffff7f")),
    ),
    (
        "int64 min",
        Row(GetResponse(b"v", expire_ns=INT64_MIN), h("0a0176 18 80808080808080808001")),
    ),
    ("binary value", Row(GetResponse(b"\x00\xff\n"), h("0a03 00ff0a"))),
    ("get request, empty strings", Row(GetRequest("", ""), h("0a00 1200"))),
    (
        "get request, unicode key",
        Row(GetRequest("g", "ünï"), h("0a0167 1205") + "ünï".encode()),
    ),
    (
        "set request, empty value is still sent",
        Row(SetRequest("g", "k", b""), h("0a0167 12016b 1a00")),
    ),
    (
        "set request, expire 0 (groupcache-go's never)",
        Row(SetRequest("g", "k", b"v", expire_ns=0), h("0a0167 12016b 1a0176 2000")),
    ),
    (
        "set request, long value",
        Row(SetRequest("g", "k", b"z" * 300), h("0a0167 12016b 1aac02") + b"z" * 300),
    ),
]

# Captured 200 bodies (golang/groupcache sends the value alone) and the protobuf
# vectors computed with the Go schema (mailgun v2 and groupcache-go v3 forms).
CAPTURE_ROWS = [
    (f"capture: {ex.what}", Row(GetResponse(ex.decoded_value), ex.body))
    for ex in exchanges()
    if ex.decoded_value is not None
]
PROTO_ROWS = [(f"vector: {d}", Row(message, wire)) for d, message, wire in protobuf_rows()]

ALL_ROWS = [
    *[pytest.param(row, id=row_id) for row_id, row in GOLDEN],
    *params(HTTP_CAPTURES, [row for _, row in CAPTURE_ROWS], [i for i, _ in CAPTURE_ROWS]),
    *params(PROTO_VECTORS, [row for _, row in PROTO_ROWS], [i for i, _ in PROTO_ROWS]),
]


def _row(row: Any) -> Row:
    if isinstance(row, Missing):
        row.skip_or_fail()
    assert isinstance(row, Row)
    return row


@pytest.mark.parametrize("row", ALL_ROWS)
def test_encode(row: Any) -> None:
    """shoal writes exactly the golden bytes."""
    row = _row(row)
    assert encode(row.message) == row.wire


@pytest.mark.parametrize("row", ALL_ROWS)
def test_decode(row: Any) -> None:
    """shoal reads the golden bytes back into the golden message."""
    row = _row(row)
    assert decode(type(row.message), row.wire) == row.message


@pytest.mark.parametrize("row", ALL_ROWS)
def test_upb_runtime_agrees(row: Any) -> None:
    """The protobuf runtime, from the same schema, writes and reads the same."""
    row = _row(row)
    assert upb_encode(row.message) == row.wire
    assert upb_decode(type(row.message), row.wire) == row.message


def test_vectors_cover_every_go_form() -> None:
    """The vectors hold the golang form (value only) and the v2/v3 form (expire always)."""
    rows = protobuf_rows()
    if not rows:
        missing_vectors(PROTO_VECTORS)
    messages = [m for _, m, _ in rows]
    assert GetResponse(b"630") in messages
    assert GetResponse(b"630", expire_ns=0) in messages
    assert any(isinstance(m, SetRequest) for m in messages)
    assert len(CAPTURE_ROWS) == 4


# ------------------------------------------------------- decode-only inputs

# Input that no encoder writes, and how shoal (and the upb runtime) read it.
DECODE_ONLY: list[tuple[str, type[Message], bytes, Message]] = [
    ("empty body", GetResponse, b"", GetResponse(b"")),
    ("fields out of order", GetResponse, h("1800 0a0176"), GetResponse(b"v", expire_ns=0)),
    ("last value wins", GetResponse, h("0a0161 0a0162"), GetResponse(b"b")),
    ("last expire wins", GetResponse, h("1801 1802"), GetResponse(b"", expire_ns=2)),
    (
        "unknown varint, i64, len, i32 fields",
        GetResponse,
        h("2001 29 0102030405060708 3202abcd 3d01020304 0a0176"),
        GetResponse(b"v"),
    ),
    ("unknown nested groups", GetResponse, h("23 2b 0801 2c 24 0a0176"), GetResponse(b"v")),
    ("unknown field 2^29-1", GetResponse, h("f8ffffff0f00 0a0176"), GetResponse(b"v")),
    ("non-minimal tag and length", GetResponse, h("8a00 8100 76"), GetResponse(b"v")),
    (
        "ten-byte varint",
        GetResponse,
        h("18 ffffffffffffffffff01"),
        GetResponse(b"", expire_ns=-1),
    ),
    (
        "mailgun set_value field 3 of GetRequest is skipped",
        GetRequest,
        h("0a0167 12016b 1a0176"),
        GetRequest("g", "k"),
    ),
    ("set request without value", SetRequest, h("0a0167 12016b"), SetRequest("g", "k", b"")),
    (
        "set request field 5 (mailgun hotCache) is skipped",
        SetRequest,
        h("0a0167 12016b 1a0176 2801"),
        SetRequest("g", "k", b"v"),
    ),
]


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [pytest.param(k, d, e, id=i) for i, k, d, e in DECODE_ONLY],
)
def test_decode_only(kind: type[Message], data: bytes, expected: Message) -> None:
    """Order, repetition, unknown fields and non-minimal varints read as protobuf says."""
    assert decode(kind, data) == expected
    assert upb_decode(kind, data) == expected
    assert decode(kind, bytearray(data)) == expected
    assert decode(kind, memoryview(data)) == expected


# ----------------------------------------------------------- malformed input

# (id, message type, bytes, rejected by upb too)
MALFORMED: list[tuple[str, type[Message], bytes, bool]] = [
    ("truncated value", GetResponse, h("0a05 6162"), True),
    ("length missing", GetResponse, h("0a"), True),
    ("truncated tag", GetResponse, h("80"), True),
    ("truncated varint", GetResponse, h("18ff"), True),
    ("truncated double", GetResponse, h("11 0000"), True),
    ("truncated fast path", GetResponse, h("0a03 6364"), True),
    ("length past the end", GetResponse, h("0affffffff0f"), True),
    ("eleven-byte varint", GetResponse, h("18 ffffffffffffffffffff01"), True),
    ("field number 0", GetResponse, h("0000"), True),
    ("tag of 2^32", GetResponse, h("8080808010 00"), True),
    ("wire type 6", GetResponse, h("26"), True),
    ("wire type 7", GetResponse, h("27"), True),
    ("stray end-group", GetResponse, h("24"), True),
    ("mismatched end-group", GetResponse, h("23 2c"), True),
    ("unterminated group", GetResponse, h("23 0801"), True),
    ("groups nested too deeply", GetResponse, h("23" * 101 + "24" * 101), True),
    ("truncated unknown i64", GetResponse, h("29 0102"), True),
    ("truncated unknown len", GetResponse, h("3205 ab"), True),
    ("truncated unknown i32", GetResponse, h("3d 0102"), True),
    ("unknown len past the end", GetResponse, h("32ffffffffffffffff7f"), True),
    ("garbage", GetResponse, b"\xde\xad\xbe\xef", True),
    # Stricter than upb, on purpose: Go rejects the first; no Go peer sends the rest.
    ("varint past 64 bits", GetResponse, h("18 ffffffffffffffffff7f"), False),
    ("value as a varint", GetResponse, h("0805"), False),
    ("minute_qps as a varint", GetResponse, h("1005"), False),
    ("expire as fixed32", GetResponse, h("1d 00000000"), False),
    ("expire as a group", GetResponse, h("1b 1c"), False),
    ("group as a varint", SetRequest, h("0801 12016b"), False),
    ("set request without key (required, Go checks)", SetRequest, h("0a0167"), False),
    ("set request without group", SetRequest, h("12016b 1a0176"), False),
    ("group not UTF-8", SetRequest, h("0a01ff 12016b"), False),
    ("key not UTF-8", GetRequest, h("0a0167 1202c328"), False),
    ("get request without key", GetRequest, h("0a0167"), False),
]


@pytest.mark.parametrize(
    ("kind", "data", "upb_rejects"),
    [pytest.param(k, d, u, id=i) for i, k, d, u in MALFORMED],
)
def test_malformed(kind: type[Message], data: bytes, upb_rejects: bool) -> None:
    """Malformed protobuf is a RemoteProtocolError with hint 400, never another exception."""
    with pytest.raises(RemoteProtocolError, match="malformed") as info:
        decode(kind, data)
    assert info.value.error_status_hint == 400
    if upb_rejects:
        with pytest.raises(Exception, match="parsing"):
            upb_decode(kind, data)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (GetResponse, h("0a0176")),
        (GetResponse, h("0a0176 1801")),
        (SetRequest, h("0a0167 12016b 1a0176")),
        (GetRequest, h("0a0167 12016b")),
    ],
)
def test_oversized(kind: type[Message], data: bytes) -> None:
    """A body over max_size is rejected before it is read (hint 413), fast path included."""
    decode(kind, data, max_size=len(data))
    with pytest.raises(RemoteProtocolError, match="exceeds") as info:
        decode(kind, data, max_size=len(data) - 1)
    assert info.value.error_status_hint == 413


# ----------------------------------------------------------- encoding errors


@pytest.mark.parametrize("expire_ns", [INT64_MAX + 1, INT64_MIN - 1, 1 << 70])
def test_expire_outside_int64(expire_ns: int) -> None:
    """An expiry that does not fit in an int64 is a LocalProtocolError."""
    with pytest.raises(LocalProtocolError, match="int64"):
        encode_get_response(b"v", expire_ns=expire_ns)
    with pytest.raises(LocalProtocolError, match="int64"):
        encode_set_request("g", "k", b"v", expire_ns=expire_ns)


@pytest.mark.parametrize(("group", "key"), [("g", "\ud800"), ("\udcff", "k")])
def test_text_not_utf8(group: str, key: str) -> None:
    """A lone surrogate cannot be sent: LocalProtocolError, not UnicodeEncodeError."""
    with pytest.raises(LocalProtocolError, match="Unicode"):
        encode_get_request(group, key)
    with pytest.raises(LocalProtocolError, match="Unicode"):
        encode_set_request(group, key, b"")
    with pytest.raises(LocalProtocolError, match="Unicode"):
        encode_remove_keys(group, [key])


def test_wrong_types_are_type_errors() -> None:
    """Programming errors stay TypeErrors (mypy catches them first)."""
    with pytest.raises(TypeError):
        encode_get_response(b"v", expire_ns=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_get_response(b"v", minute_qps="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_set_request(b"g", "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_remove_keys("g", [1])  # type: ignore[list-item]


# -------------------------------------------------------------------- errors


def test_protocol_error_hierarchy() -> None:
    """h11's split: an abstract base, Local and Remote subclasses, a status hint."""
    with pytest.raises(TypeError):
        ProtocolError("abstract")
    remote = RemoteProtocolError("bad")
    assert isinstance(remote, ProtocolError)
    assert isinstance(remote, ShoalError)
    assert isinstance(remote, ValueError)
    assert remote.error_status_hint == 400
    assert remote.http_status == 400
    local = LocalProtocolError("too big", 413)
    assert local.error_status_hint == local.http_status == 413
    assert str(local) == "too big"


# ----------------------------------------------------------------- JSON body

# groupcache-go v3 marshals RemoveKeysRequest with Go's encoding/json: no spaces,
# fields in struct order, ``keys`` omitted when empty, HTML characters and
# U+2028/U+2029 escaped, other non-ASCII text raw, \b and \f short (Go 1.22+).
REMOVE_KEYS_GOLDEN = [
    (
        "two keys",
        RemoveKeysRequest("scores", ("a", "b")),
        b'{"group":"scores","keys":["a","b"]}',
    ),
    ("no keys: omitempty", RemoveKeysRequest("scores", ()), b'{"group":"scores"}'),
    (
        "escapes",
        RemoveKeysRequest("g", ("<a&b>", "\u2028\u2029", "\n\r\t\b\f\x01\x1f\x7f", 'q"\\', "é🙂")),
        b'{"group":"g","keys":["\\u003ca\\u0026b\\u003e","\\u2028\\u2029",'
        b'"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f","q\\"\\\\",' + '"é🙂"]}'.encode(),
    ),
]


@pytest.mark.parametrize(
    ("message", "wire"), [pytest.param(m, w, id=i) for i, m, w in REMOVE_KEYS_GOLDEN]
)
def test_remove_keys_golden(message: RemoveKeysRequest, wire: bytes) -> None:
    """The JSON body is byte for byte what Go's json.Marshal writes, and reads back."""
    assert encode_remove_keys(message.group, message.keys) == wire
    assert decode_remove_keys(wire) == message
    assert json.loads(wire) == (
        {"group": message.group, "keys": list(message.keys)}
        if message.keys
        else {"group": message.group}
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"Group":"g","KEYS":["a",null],"x":1}', RemoveKeysRequest("g", ("a", ""))),
        (b'{"group":"g","keys":null}', RemoveKeysRequest("g", ())),
        (b'{"group":"g","keys":["a"],"keys":["b"]}', RemoveKeysRequest("g", ("b",))),
        (b"{}", RemoveKeysRequest("", ())),
        (b'{"group":null,"keys":[]}', RemoveKeysRequest("", ())),
        (b' \n{"keys":["\\u00e9"]} ', RemoveKeysRequest("", ("é",))),
    ],
)
def test_remove_keys_decode_like_go(body: bytes, expected: RemoveKeysRequest) -> None:
    """Case-insensitive names, last one wins, unknown members and nulls as Go reads them."""
    assert decode_remove_keys(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"keys"',
        b'{"keys":"a"}',
        b'{"keys":[1]}',
        b'{"keys":[["a"]]}',
        b'{"group":1}',
        b'{"keys":["a"]',
        b"\xff",
        b'{"keys":["\\ud800"]}',
        b'{"keys":["a"],"n":NaN}',
        b"[" * 100_000,
    ],
)
def test_remove_keys_malformed(body: bytes) -> None:
    """Anything but a JSON object of the right shape is a RemoteProtocolError (400)."""
    with pytest.raises(RemoteProtocolError, match="remove-keys") as info:
        decode_remove_keys(body)
    assert info.value.error_status_hint == 400


def test_remove_keys_oversized() -> None:
    """A body over max_size is rejected with hint 413."""
    body = encode_remove_keys("g", ["a"])
    assert decode_remove_keys(body, max_size=len(body)) == RemoveKeysRequest("g", ("a",))
    with pytest.raises(RemoteProtocolError) as info:
        decode_remove_keys(body, max_size=len(body) - 1)
    assert info.value.error_status_hint == 413


# ---------------------------------------------------------------- properties

int64s = st.integers(INT64_MIN, INT64_MAX)
# What a node accepts: any int64 up to the latest expiry it can send again.
expires = st.integers(INT64_MIN, MAX_EXPIRE_NS)
optional_qps = st.none() | st.floats()
optional_expire = st.none() | expires


@given(st.binary(), optional_qps, optional_expire)
def test_get_response_round_trip(value: bytes, qps: float | None, expire: int | None) -> None:
    """Any value, rate and expiry survive encode then decode, with upb's exact bytes."""
    message = GetResponse(value, qps, expire)
    data = encode(message)
    assert same(decode_get_response(data), message)
    assert data == upb_encode(message)


@given(st.text(), st.text(), st.binary(), optional_expire)
def test_set_request_round_trip(group: str, key: str, value: bytes, expire: int | None) -> None:
    """Any text group and key, any value and expiry survive encode then decode."""
    message = SetRequest(group, key, value, expire)
    data = encode(message)
    assert decode_set_request(data) == message
    assert data == upb_encode(message)


@given(st.text(), st.text())
def test_get_request_round_trip(group: str, key: str) -> None:
    """Any text group and key survive encode then decode."""
    message = GetRequest(group, key)
    assert decode_get_request(encode(message)) == message
    assert encode(message) == upb_encode(message)


@given(st.text(), st.lists(st.text()))
def test_remove_keys_round_trip(group: str, keys: list[str]) -> None:
    """Any group and keys survive the JSON body; it never holds a raw <, > or &."""
    body = encode_remove_keys(group, keys)
    assert decode_remove_keys(body) == RemoveKeysRequest(group, tuple(keys))
    assert not {ord("<"), ord(">"), ord("&")} & set(body)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    tag = (number << 3) | wire_type
    out = bytearray()
    while tag >= 0x80:
        out.append((tag & 0x7F) | 0x80)
        tag >>= 7
    out.append(tag)
    return bytes(out) + payload


def _varint(n: int) -> bytes:
    return encode_get_response(b"", expire_ns=n)[3:] if n else b"\x00"


_unknown = st.one_of(
    st.builds(lambda n, v: _field(n, 0, _varint(v)), st.integers(4, 1000), int64s),
    st.builds(
        lambda n, b: _field(n, 1, b), st.integers(4, 1000), st.binary(min_size=8, max_size=8)
    ),
    st.builds(lambda n, b: _field(n, 2, _varint(len(b)) + b), st.integers(4, 1000), st.binary()),
    st.builds(
        lambda n, b: _field(n, 5, b), st.integers(4, 1000), st.binary(min_size=4, max_size=4)
    ),
)
_known = st.one_of(
    st.builds(lambda b: _field(1, 2, _varint(len(b)) + b), st.binary()),
    st.builds(lambda x: _field(2, 1, struct.pack("<d", x)), st.floats()),
    st.builds(lambda n: _field(3, 0, _varint(n)), expires),
)


@given(st.lists(_known | _unknown, max_size=8))
def test_any_field_soup_reads_as_upb_does(fields: list[bytes]) -> None:
    """Known and unknown fields in any order and number decode as the upb runtime decodes them."""
    data = b"".join(fields)
    assert same(decode_get_response(data), upb_decode(GetResponse, data))


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    """Arbitrary bytes raise nothing but RemoteProtocolError; what is accepted, upb reads alike."""
    for kind in (GetResponse, SetRequest, GetRequest):
        try:
            ours = decode(kind, data)
        except RemoteProtocolError:
            continue
        assert same(ours, upb_decode(kind, data))


def test_nan_bits_survive() -> None:
    """A NaN minute_qps keeps its exact bits, as Go's math.Float64bits would."""
    nan = struct.unpack("<d", h("0100000000f87f00")[:8])[0]
    data = encode_get_response(b"", minute_qps=nan)
    decoded = decode_get_response(data)
    assert decoded.minute_qps is not None
    assert struct.pack("<d", decoded.minute_qps) == struct.pack("<d", nan)


def test_expires_at_ns() -> None:
    """0 and None both mean "never expires"."""
    assert GetResponse(b"").expires_at_ns is None
    assert GetResponse(b"", expire_ns=0).expires_at_ns is None
    assert GetResponse(b"", expire_ns=5).expires_at_ns == 5
    assert SetRequest("g", "k", b"", 0).expires_at_ns is None
    assert SetRequest("g", "k", b"", 7).expires_at_ns == 7


def test_decoded_messages_are_ordinary_dataclasses() -> None:
    """Fast-built responses equal, hash and refuse assignment like constructed ones."""
    for data, built in [
        (h("0a0176"), GetResponse(b"v")),
        (h("0a0176 1800"), GetResponse(b"v", None, 0)),
        (h("0a0176 11 000000000000f83f 1805"), GetResponse(b"v", 1.5, 5)),
    ]:
        decoded = decode_get_response(data)
        assert decoded == built
        assert hash(decoded) == hash(built)
        assert repr(decoded) == repr(built)
        with pytest.raises(AttributeError):
            decoded.value = b"x"  # type: ignore[misc]
