"""Whatever a node accepts off the wire it can encode again.

For every message of the groupcache protocol and the batch extension: decoding
either refuses the bytes with a RemoteProtocolError (a 400 or 413 for the
sender), or gives fields that encode again without error and decode to the
same thing, also after a trip through the stores (Unix seconds as a float) and
back to the wire's nanoseconds. Field values are drawn from the whole range the
wire can hold, far past what a node stores.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.wire import (
    MAX_EXPIRE_NS,
    MAX_EXPIRES_AT,
    RemoteProtocolError,
    check_expire_ns,
    decode_get_response,
    decode_remove_keys,
    decode_set_request,
    encode_get_response,
    encode_remove_keys,
    encode_set_request,
    from_expire_ns,
    to_expire_ns,
)
from shoal.wire.batch import (
    BatchItem,
    decode_batch_entries,
    decode_get_many_request,
    encode_get_many_request,
    encode_get_many_response,
)

INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1

# Any varint the wire can carry, biased towards the edges that matter.
varints = st.one_of(
    st.integers(0, UINT64_MAX),
    st.sampled_from([0, 1, MAX_EXPIRE_NS, MAX_EXPIRE_NS + 1, INT64_MAX, INT64_MAX + 1, UINT64_MAX]),
)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(data)) + data


def _resent(expire_ns: int | None) -> int | None:
    """The expiry a node sends on after storing ``expire_ns`` (as seconds)."""
    return to_expire_ns(from_expire_ns(expire_ns))


# ------------------------------------------------------------------ expiries


@pytest.mark.parametrize("expire_ns", [MAX_EXPIRE_NS + 1, 9223372036854775000, INT64_MAX])
def test_set_request_past_the_range_is_refused(expire_ns: int) -> None:
    """A SetRequest whose expiry could not be sent again is a 400, not a poisoned key."""
    body = _len(0x0A, b"g") + _len(0x12, b"k") + _len(0x1A, b"v") + b"\x20" + _varint(expire_ns)
    with pytest.raises(RemoteProtocolError, match="latest expiry") as info:
        decode_set_request(body)
    assert info.value.error_status_hint == 400


def test_get_response_and_batch_item_past_the_range_are_refused() -> None:
    """A peer's answer with such an expiry fails the fetch; nothing is cached."""
    with pytest.raises(RemoteProtocolError, match="latest expiry"):
        decode_get_response(_len(0x0A, b"v") + b"\x18" + _varint(INT64_MAX))
    item = _len(0x0A, b"k") + _len(0x12, b"v") + b"\x18" + _varint(INT64_MAX)
    with pytest.raises(RemoteProtocolError, match="past"):
        decode_batch_entries(_len(0x0A, item))
    # The general reader (fields in another order) says the same.
    item = _len(0x12, b"v") + _len(0x0A, b"k") + b"\x18" + _varint(INT64_MAX)
    with pytest.raises(RemoteProtocolError, match="past"):
        decode_batch_entries(_len(0x0A, item))


def test_the_latest_expiry_is_accepted_and_sent_again_exactly() -> None:
    assert check_expire_ns(MAX_EXPIRE_NS) == MAX_EXPIRE_NS
    assert from_expire_ns(MAX_EXPIRE_NS) == MAX_EXPIRES_AT
    assert to_expire_ns(MAX_EXPIRES_AT) == MAX_EXPIRE_NS


@given(st.floats())
def test_any_stored_expiry_encodes(expires_at: float) -> None:
    """Whatever a store holds (a loader's TTL far ahead included) encodes in an int64."""
    ns = to_expire_ns(expires_at)
    if not math.isfinite(expires_at):
        assert ns is None
        return
    assert ns is not None
    assert -MAX_EXPIRE_NS <= ns <= MAX_EXPIRE_NS
    encode_get_response(b"v", expire_ns=ns)
    encode_set_request("g", "k", b"v", expire_ns=ns)
    encode_get_many_response([BatchItem("k", b"v", ns)])


# ---------------------------------------------------------- round trips


@given(st.binary(max_size=40), varints)
def test_get_response_decodes_to_what_encodes_again(value: bytes, raw_expire: int) -> None:
    body = _len(0x0A, value) + b"\x18" + _varint(raw_expire)
    try:
        response = decode_get_response(body)
    except RemoteProtocolError:
        assert MAX_EXPIRE_NS < raw_expire <= INT64_MAX
        return
    again = encode_get_response(response.value, expire_ns=response.expire_ns)
    assert decode_get_response(again) == response
    resent = _resent(response.expire_ns)
    assert decode_get_response(encode_get_response(b"", expire_ns=resent)).expire_ns == resent


@given(TEXT, TEXT, st.binary(max_size=40), varints)
def test_set_request_decodes_to_what_encodes_again(
    group: str, key: str, value: bytes, raw_expire: int
) -> None:
    body = (
        _len(0x0A, group.encode())
        + _len(0x12, key.encode())
        + _len(0x1A, value)
        + b"\x20"
        + _varint(raw_expire)
    )
    try:
        request = decode_set_request(body)
    except RemoteProtocolError:
        assert MAX_EXPIRE_NS < raw_expire <= INT64_MAX
        return
    again = encode_set_request(
        request.group, request.key, request.value, expire_ns=request.expire_ns
    )
    assert decode_set_request(again) == request
    encode_set_request("g", "k", b"", expire_ns=_resent(request.expire_ns))


@given(st.lists(st.tuples(TEXT, st.binary(max_size=20), st.none() | varints), max_size=5))
def test_batch_answer_decodes_to_what_encodes_again(
    raw_items: list[tuple[str, bytes, int | None]],
) -> None:
    body = b""
    for key, value, expire in raw_items:
        fields = _len(0x0A, key.encode()) + _len(0x12, value)
        if expire is not None:
            fields += b"\x18" + _varint(expire)
        body += _len(0x0A, fields)
    try:
        items, errors = decode_batch_entries(body)
    except RemoteProtocolError:
        assert any(e is not None and MAX_EXPIRE_NS < e <= INT64_MAX for _, _, e in raw_items)
        return
    again = encode_get_many_response([BatchItem(*item) for item in items])
    assert decode_batch_entries(again) == (items, errors)
    encode_get_many_response([BatchItem(k, v, _resent(e)) for k, v, e in items])


@given(st.lists(TEXT, max_size=20), st.integers(1, 10))
def test_batch_request_within_its_cap_round_trips(keys: list[str], cap: int) -> None:
    body = encode_get_many_request(keys)
    if len(keys) > cap:
        with pytest.raises(RemoteProtocolError) as info:
            decode_get_many_request(body, max_keys=cap)
        assert info.value.error_status_hint == 413
        return
    decoded = decode_get_many_request(body, max_keys=cap)
    assert decoded == keys
    assert encode_get_many_request(decoded) == body


@given(TEXT, st.lists(TEXT, max_size=20), st.integers(1, 10))
def test_remove_keys_within_its_cap_round_trips(group: str, keys: list[str], cap: int) -> None:
    body = encode_remove_keys(group, keys)
    if len(keys) > cap:
        with pytest.raises(RemoteProtocolError) as info:
            decode_remove_keys(body, max_keys=cap)
        assert info.value.error_status_hint == 413
        return
    decoded = decode_remove_keys(body, max_keys=cap)
    assert list(decoded.keys) == keys
    assert encode_remove_keys(decoded.group, decoded.keys) == body


@settings(max_examples=20, deadline=None)
@given(st.integers(1001, 5000))
def test_remove_keys_has_the_batch_cap_by_default(n: int) -> None:
    """A remove-keys body of more keys than a batch get may name is a 413."""
    body = encode_remove_keys("g", [str(i) for i in range(n)])
    with pytest.raises(RemoteProtocolError, match="at most 1000") as info:
        decode_remove_keys(body)
    assert info.value.error_status_hint == 413
