"""Hypothesis strategies for arbitrary instances of any protobuf message, and for the
bodies of every peer route: what the fuzz tests send to live nodes.

Every scalar is drawn from the whole range of its protobuf type (NaN, infinities
and 1e300 for doubles, every uint64 for timestamps), mixed with values that get
past the first checks (an existing group, a short key, a node id, a timestamp of
about now) so that the deeper checks are reached too. Fields are chosen by name:
``group``, ``key``/``keys``/``wanted``, ``node``, ``hlc``, ``expire`` and ``ttl``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from shoal.hlc import HLC_MAX, hlc_from_seconds
from shoal.wire import MAX_EXPIRE_NS
from shoal.wire.batch import encode_get_many_request

__all__ = [
    "examples",
    "mostly",
    "messages",
    "get_many_bodies",
    "remove_keys_bodies",
    "ttl_texts",
    "KEYS",
]


def examples(default: int) -> int:
    """How many examples a fuzz or round-trip property runs: ``default``, or the
    ``SHOAL_FUZZ_EXAMPLES`` environment variable (``make fuzz`` sets thousands)."""
    return int(os.environ.get("SHOAL_FUZZ_EXAMPLES") or default)


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_T = FieldDescriptor

GROUPS: list[str] = []
"""Group names worth hitting (the fuzz test sets them: its node's groups)."""


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` nine times in ten, else ``rare``: values that pass the first checks
    most of the time, so that the later checks are reached."""
    return st.integers(0, 9).flatmap(lambda n: rare if n == 0 else common)


KEYS = mostly(
    st.sampled_from(["k", "k1", "k2", "missing-1", "user:42", "a b", "é"]),
    st.one_of(st.text(max_size=24), st.just("x" * 2000)),  # 2000: over max_key_bytes
)


def _groups() -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(GROUPS or ["data"]), st.text(max_size=12))


def _near_now_ns() -> st.SearchStrategy[int]:
    now = int(time.time()) * 1_000_000_000
    return st.integers(now - 10**12, now + 10**13)


_EXPIRES = mostly(
    st.one_of(st.just(0), st.deferred(_near_now_ns)),
    st.one_of(
        st.integers(INT64_MIN, INT64_MAX),
        st.sampled_from([-1, MAX_EXPIRE_NS, MAX_EXPIRE_NS + 1, INT64_MAX, INT64_MIN]),
    ),
)


def _hlcs() -> st.SearchStrategy[int]:
    now = time.time()
    return mostly(
        # Within the drift a node accepts (300 s ahead), then past it.
        st.integers(hlc_from_seconds(now - 60), hlc_from_seconds(now + 200)),
        st.one_of(
            st.integers(0, HLC_MAX),
            st.sampled_from([0, 1, HLC_MAX]),
            st.integers(hlc_from_seconds(now + 400), hlc_from_seconds(now + 3600)),
        ),
    )


_TTLS = st.one_of(
    st.floats(),
    st.sampled_from([1e10, 7.5e9, 1e300, math.inf, -1.0, 0.0, 5e-324, 0.5, 60.0]),
)
_NODES = mostly(st.sampled_from(["elsewhere", "10.0.0.1:8001", "n"]), st.text(max_size=8))

_INTS: dict[int, st.SearchStrategy[Any]] = {
    _T.TYPE_INT32: st.integers(-(1 << 31), (1 << 31) - 1),
    _T.TYPE_SINT32: st.integers(-(1 << 31), (1 << 31) - 1),
    _T.TYPE_SFIXED32: st.integers(-(1 << 31), (1 << 31) - 1),
    _T.TYPE_UINT32: st.one_of(st.integers(0, (1 << 32) - 1), st.integers(0, 1100)),
    _T.TYPE_FIXED32: st.integers(0, (1 << 32) - 1),
    _T.TYPE_INT64: st.integers(INT64_MIN, INT64_MAX),
    _T.TYPE_SINT64: st.integers(INT64_MIN, INT64_MAX),
    _T.TYPE_SFIXED64: st.integers(INT64_MIN, INT64_MAX),
    _T.TYPE_UINT64: st.integers(0, HLC_MAX),
    _T.TYPE_FIXED64: st.integers(0, HLC_MAX),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    name, kind = field.name, field.type
    if kind == _T.TYPE_STRING:
        if name == "group":
            return _groups()
        if name in ("key", "keys", "wanted"):
            return KEYS
        if name == "node":
            return _NODES
        return st.text(max_size=16)
    if kind == _T.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == _T.TYPE_BOOL:
        return st.booleans()
    if kind in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        return _TTLS if name == "ttl" else st.floats(width=64 if kind == _T.TYPE_DOUBLE else 32)
    if name == "hlc":
        return st.deferred(_hlcs)
    if name == "expire":
        return _EXPIRES
    if kind == _T.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _INTS[kind]


def messages(descriptor: Any, depth: int = 0) -> st.SearchStrategy[Message]:
    """Arbitrary instances of the message ``descriptor`` describes: any subset of its
    fields set, each to any value of its type (repeated fields up to a few items,
    or many keys, to reach the caps)."""
    cls = GetMessageClass(descriptor)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(
                _scalar(key_field), _value(value_field, depth), max_size=3
            )
            continue
        single = _value(field, depth)
        if field.is_repeated:
            optional[field.name] = st.one_of(
                st.lists(single, max_size=4),
                st.lists(single, min_size=990, max_size=1010)
                if field.name == "keys"
                else st.nothing(),
            )
        else:
            optional[field.name] = single
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: _build(cls, kw))


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is None:
        return _scalar(field)
    if depth >= 3:
        return st.builds(GetMessageClass(field.message_type))
    return messages(field.message_type, depth + 1)


def _build(cls: type[Message], fields: dict[str, Any]) -> Message:
    message = cls()
    for name, value in fields.items():
        target = getattr(message, name)
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif isinstance(value, list):
            target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def get_many_bodies() -> st.SearchStrategy[bytes]:
    """Batch get bodies: well-formed (under and over the 1000-key cap) or any bytes."""
    return st.one_of(
        st.builds(encode_get_many_request, st.lists(KEYS, max_size=6), key_errors=st.booleans()),
        st.builds(
            lambda n, e: encode_get_many_request([f"k{i}" for i in range(n)], key_errors=e),
            st.integers(990, 1010),
            st.booleans(),
        ),
        st.binary(max_size=64),
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def remove_keys_bodies() -> st.SearchStrategy[bytes]:
    """Remove-keys bodies: Go's JSON with any keys (up to past the cap), any JSON, any bytes."""
    import json

    def body(group: Any, keys: Any) -> bytes:
        return json.dumps({"group": group, "keys": keys}).encode()

    return st.one_of(
        st.builds(body, _groups(), st.lists(KEYS | st.none(), max_size=6)),
        st.builds(
            body, _groups(), st.integers(990, 1500).map(lambda n: [f"k{i}" for i in range(n)])
        ),
        st.builds(lambda v: json.dumps(v).encode(), _JSON),
        st.binary(max_size=64),
    )


def ttl_texts() -> st.SearchStrategy[str]:
    """Values of the API's ``?ttl=``: any double as text, and any text."""
    return st.one_of(_TTLS.map(repr), st.sampled_from(["1e10", "1e300", "7.4e9", "1", "0.001"]))
