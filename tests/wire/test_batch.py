"""Batch get bodies: golden bytes, agreement with the protobuf runtime, hostile input."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from shoal.wire import MAX_EXPIRE_NS, LocalProtocolError, RemoteProtocolError
from shoal.wire.batch import (
    DEFAULT_MAX_BATCH_KEYS,
    GET_MANY_EXTENSION,
    BatchError,
    BatchItem,
    build_get_many_path,
    decode_batch_entries,
    decode_batch_request,
    decode_batch_response,
    decode_get_many_request,
    decode_get_many_response,
    encode_batch_entries,
    encode_get_many_request,
    encode_get_many_response,
    parse_extensions,
)

# ----------------------------------------------------------------- the schema, for upb


def _runtime_classes() -> tuple[Any, Any]:
    """GetManyRequest and GetManyResponse classes of the protobuf runtime, built from
    the schema in the module docstring of shoal.wire.batch."""
    file = descriptor_pb2.FileDescriptorProto(
        name="shoal_batch_test.proto", package="shoaltest", syntax="proto2"
    )
    f = descriptor_pb2.FieldDescriptorProto
    request = file.message_type.add(name="GetManyRequest")
    request.field.add(name="keys", number=1, type=f.TYPE_STRING, label=f.LABEL_REPEATED)
    request.field.add(name="key_errors", number=2, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
    item = file.message_type.add(name="Item")
    item.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_REQUIRED)
    item.field.add(name="value", number=2, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL)
    item.field.add(name="expire", number=3, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    error = file.message_type.add(name="KeyError")
    error.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_REQUIRED)
    error.field.add(name="status", number=2, type=f.TYPE_UINT32, label=f.LABEL_OPTIONAL)
    error.field.add(name="message", number=3, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL)
    response = file.message_type.add(name="GetManyResponse")
    for number, (name, kind) in enumerate((("items", "Item"), ("errors", "KeyError")), 1):
        response.field.add(
            name=name,
            number=number,
            type=f.TYPE_MESSAGE,
            label=f.LABEL_REPEATED,
            type_name=f".shoaltest.{kind}",
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("shoaltest.GetManyRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("shoaltest.GetManyResponse")),
    )


RuntimeRequest, RuntimeResponse = _runtime_classes()

# Text without lone surrogates (which are not Unicode text and cannot be encoded).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
KEYS = st.lists(TEXT, max_size=8)
ITEMS = st.lists(
    st.builds(
        BatchItem,
        TEXT,
        st.binary(max_size=300),
        st.one_of(st.none(), st.integers(-(1 << 63), MAX_EXPIRE_NS)),
    ),
    max_size=6,
)


ERRORS = st.lists(
    st.builds(BatchError, TEXT, st.integers(0, 999), st.binary(max_size=50)), max_size=4
)


# ----------------------------------------------------------------- golden bytes


def test_golden_request() -> None:
    """Each key is field 1, length-delimited, UTF-8."""
    assert encode_get_many_request(["a", "é"]) == b"\x0a\x01a\x0a\x02\xc3\xa9"
    assert encode_get_many_request([]) == b""
    assert decode_get_many_request(b"\x0a\x01a\x0a\x02\xc3\xa9") == ["a", "é"]


def test_golden_response() -> None:
    """Items are field 1 holding key (1), value (2) and, only when set, expire (3)."""
    items = [BatchItem("k", b"v", 5), BatchItem("x", b"")]
    data = b"\x0a\x08\x0a\x01k\x12\x01v\x18\x05" + b"\x0a\x05\x0a\x01x\x12\x00"
    assert encode_get_many_response(items) == data
    assert decode_get_many_response(data) == items


@given(KEYS)
def test_request_agrees_with_the_runtime(keys: list[str]) -> None:
    """Our bytes are the runtime's bytes, and each side reads the other's."""
    ours = encode_get_many_request(keys)
    theirs = RuntimeRequest(keys=keys).SerializeToString()
    assert ours == theirs
    assert decode_get_many_request(theirs, max_keys=len(keys) + 1) == keys
    assert list(RuntimeRequest.FromString(ours).keys) == keys


@given(ITEMS)
def test_response_agrees_with_the_runtime(items: list[BatchItem]) -> None:
    """Responses round-trip, byte-identical to the runtime's encoding."""
    ours = encode_get_many_response(items)
    message = RuntimeResponse()
    for item in items:
        added = message.items.add(key=item.key, value=item.value)
        if item.expire_ns is not None:
            added.expire = item.expire_ns
    assert ours == message.SerializeToString()
    assert decode_get_many_response(ours) == items
    parsed = RuntimeResponse.FromString(ours)
    assert [(i.key, i.value) for i in parsed.items] == [(i.key, i.value) for i in items]


def test_unknown_fields_are_skipped() -> None:
    """Fields a later version may add (any wire type but groups) are ignored."""
    # fields 5 (varint), 6 (64-bit), 7 (length-delimited) and 8 (32-bit)
    extra = b"\x28\x07" + b"\x31" + bytes(8) + b"\x3a\x02hi" + b"\x45" + bytes(4)
    assert decode_get_many_request(extra + b"\x0a\x01a" + extra) == ["a"]
    item = b"\x0a\x01k" + extra + b"\x12\x01v"
    assert decode_get_many_response(b"\x0a" + bytes([len(item)]) + item + extra) == [
        BatchItem("k", b"v")
    ]


def test_last_scalar_wins_and_zero_expire_is_kept() -> None:
    """Repeated item fields: the last wins (proto2); expire 0 decodes as 0 (never)."""
    item = b"\x0a\x01a\x0a\x01b\x12\x01x\x12\x01y\x18\x00"
    assert decode_get_many_response(b"\x0a" + bytes([len(item)]) + item) == [
        BatchItem("b", b"y", 0)
    ]


# ----------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a", "truncated"),
        (b"\x0a\x05ab", "truncated field 1"),
        (b"\x0a" + b"\xff" * 10 + b"\x01", "varint"),
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", "longer than 64 bits"),
        (b"\x02\x01a", "field number 0"),
        (b"\x0e", "wire type 6"),
        (b"\x0f", "wire type 7"),
        (b"\x0b\x0c", "wire type 3"),
        (b"\x08\x01", "field 1 has wire type 0"),
        (b"\x0a\x01\xff", "not UTF-8"),
        (b"\x12", "truncated"),
    ],
)
def test_malformed_requests(data: bytes, message: str) -> None:
    """Malformed bodies raise RemoteProtocolError (status hint 400) naming the fault."""
    with pytest.raises(RemoteProtocolError, match=message) as raised:
        decode_get_many_request(data)
    assert raised.value.error_status_hint == 400


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x02\x12\x00", "no key"),
        (b"\x0a\x03\x0a\x01\xff", "not UTF-8"),
        (b"\x0a\x03\x08\x01\x00", "item field 1 has wire type 0"),
        (b"\x0a\x02\x10\x01", "item field 2 has wire type 0"),
        (b"\x0a\x03\x1a\x01x", "item field 3 has wire type 2"),
        (b"\x0a\x04\x0a\x01k", "truncated"),
        (b"\x0a\x03\x0a\x05k", "truncated"),
        (b"\x08\x01", "field 1 has wire type 0"),
    ],
)
def test_malformed_responses(data: bytes, message: str) -> None:
    """Malformed answers raise RemoteProtocolError naming the fault."""
    with pytest.raises(RemoteProtocolError, match=message):
        decode_get_many_response(data)


def test_limits() -> None:
    """Too many keys or items, or too many bytes: RemoteProtocolError with hint 413."""
    keys = [str(i) for i in range(DEFAULT_MAX_BATCH_KEYS + 1)]
    with pytest.raises(RemoteProtocolError, match="more than 1000 keys") as raised:
        decode_get_many_request(encode_get_many_request(keys))
    assert raised.value.error_status_hint == 413
    assert decode_get_many_request(encode_get_many_request(keys[:3]), max_keys=3) == keys[:3]
    with pytest.raises(RemoteProtocolError, match="exceeds") as raised:
        decode_get_many_request(b"\x0a\x01a" * 10, max_size=29)
    assert raised.value.error_status_hint == 413
    items = encode_get_many_response([BatchItem("a", b""), BatchItem("b", b"")])
    with pytest.raises(RemoteProtocolError, match="more than 1 items"):
        decode_get_many_response(items, max_items=1)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_get_many_response(items, max_size=len(items) - 1)


def test_encode_errors() -> None:
    """Text that is not Unicode and expiries outside int64 cannot be sent."""
    with pytest.raises(LocalProtocolError):
        encode_get_many_request(["\ud800"])
    with pytest.raises(LocalProtocolError):
        encode_get_many_response([BatchItem("\udfff", b"")])
    with pytest.raises(LocalProtocolError, match="int64"):
        encode_get_many_response([BatchItem("k", b"", 1 << 63)])
    with pytest.raises(TypeError):
        encode_get_many_request([b"bytes"])  # type: ignore[list-item]


def test_path_and_extensions() -> None:
    """The path escapes the group like every peer path; the header is a token list."""
    assert build_get_many_path("/_groupcache/", "a b/c") == "/_groupcache/a%20b%2Fc/_get-many/"
    assert parse_extensions(b" Get-Many , other,,") == {GET_MANY_EXTENSION, "other"}
    assert parse_extensions(None) == frozenset()
    assert parse_extensions("") == frozenset()


# ----------------------------------------------------------------- errors key by key


def test_golden_key_errors() -> None:
    """``key_errors`` is field 2 of the request (true: 0x10 0x01); a key error is field 2
    of the answer holding key (1), status (2) and message (3)."""
    assert encode_get_many_request(["a"], key_errors=True) == b"\x0a\x01a\x10\x01"
    assert decode_batch_request(b"\x0a\x01a\x10\x01") == (["a"], True)
    assert decode_batch_request(b"\x10\x01\x0a\x01a") == (["a"], True)
    assert decode_batch_request(b"\x0a\x01a\x10\x01\x10\x00") == (["a"], False)
    assert decode_batch_request(b"\x0a\x01a") == (["a"], False)
    # A server that does not know the field reads the same keys.
    assert decode_get_many_request(b"\x0a\x01a\x10\x01") == ["a"]
    data = encode_get_many_response([BatchItem("k", b"v")], [BatchError("x", 503, b"down\n")])
    assert data == b"\x0a\x06\x0a\x01k\x12\x01v" + b"\x12\x0d\x0a\x01x\x10\xf7\x03\x1a\x05down\n"
    assert decode_batch_response(data) == (
        [BatchItem("k", b"v")],
        [BatchError("x", 503, b"down\n")],
    )
    # A client that does not know the field reads the same items.
    assert decode_get_many_response(data) == [BatchItem("k", b"v")]
    with pytest.raises(RemoteProtocolError, match="field 2 has wire type 2"):
        decode_batch_request(b"\x12\x00")
    with pytest.raises(RemoteProtocolError, match="an error has no key"):
        decode_batch_response(b"\x12\x02\x10\x01")
    with pytest.raises(RemoteProtocolError, match="more than 1 items"):
        decode_batch_response(data, max_items=1)


@given(KEYS, st.booleans())
def test_key_errors_request_agrees_with_the_runtime(keys: list[str], key_errors: bool) -> None:
    """The request with the flag is the runtime's message, read back the same."""
    ours = encode_get_many_request(keys, key_errors=key_errors)
    runtime = RuntimeRequest(keys=keys)
    if key_errors:
        runtime.key_errors = True
    assert ours == runtime.SerializeToString()
    assert decode_batch_request(ours, max_keys=len(keys) + 1) == (keys, key_errors)


@given(ITEMS, ERRORS)
def test_key_errors_response_agrees_with_the_runtime(
    items: list[BatchItem], errors: list[BatchError]
) -> None:
    """Items and errors round-trip, byte-identical to the runtime's encoding, also
    from tuples (:func:`encode_batch_entries`, :func:`decode_batch_entries`)."""
    ours = encode_get_many_response(items, errors)
    message = RuntimeResponse()
    for item in items:
        added = message.items.add(key=item.key, value=item.value)
        if item.expire_ns is not None:
            added.expire = item.expire_ns
    for error in errors:
        message.errors.add(key=error.key, status=error.status, message=error.message)
    assert ours == message.SerializeToString()
    tuples = [(i.key, i.value, i.expire_ns) for i in items]
    assert encode_batch_entries(tuples, errors) == ours
    assert decode_batch_response(ours) == (items, errors)
    assert decode_batch_entries(ours) == (tuples, errors)


def _general_reading(data: bytes, max_items: int | None) -> object:
    """What the general field reader makes of an answer: the reference for the inline
    reading of :func:`decode_batch_entries`."""
    from shoal.wire import _protobuf, batch

    items: list[tuple[str, bytes, int | None]] = []
    errors: list[BatchError] = []
    try:
        for field, wire_type, start, stop in _protobuf.iter_fields(data, 0, len(data)):
            if field not in (1, 2):
                continue
            if wire_type != 2:
                return "error"
            if max_items is not None and len(items) + len(errors) >= max_items:
                return "error"
            if field == 1:
                item = batch._item(data, start, stop)
                items.append((item.key, item.value, item.expire_ns))
            else:
                errors.append(batch._error(data, start, stop))
    except RemoteProtocolError:
        return "error"
    return items, errors


@given(
    ITEMS,
    ERRORS,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("sdi"))),
    st.one_of(st.none(), st.integers(1, 4)),
)
def test_inline_reading_agrees_with_the_general_reader(
    items: list[BatchItem],
    errors: list[BatchError],
    edits: list[tuple[int, int, str]],
    max_items: int | None,
) -> None:
    """On valid answers and on answers damaged anywhere (a byte set, cut, inserted),
    the inline reading accepts exactly what the general reader accepts, the same way."""
    data = bytearray(encode_get_many_response(items, errors))
    for position, byte, edit in edits:
        at = position % (len(data) + 1)
        if edit == "s" and at < len(data):
            data[at] = byte
        elif edit == "d":
            del data[at:]
        elif edit == "i":
            data.insert(at, byte)
    expected = _general_reading(bytes(data), max_items)
    try:
        got: object = decode_batch_entries(bytes(data), max_items=max_items)
    except RemoteProtocolError:
        got = "error"
    assert got == expected
