"""The messages of replicated groups as plain data: every one encodes and decodes back
to itself, absent fields stay absent, and bytes that are not a message are refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.wire import RemoteProtocolError
from shoal.wire._pb import shoal_pb2 as pb
from shoal.wire.replica import (
    ReplicaDigest,
    ReplicaDigestReply,
    ReplicaEntry,
    ReplicaPush,
    ReplicaPushed,
    ReplicaRequestBody,
    ReplicaResponseBody,
    ReplicaSummary,
    ReplicaSync,
    ReplicaSyncReply,
    ReplicaVersion,
    decode_replica_request,
    decode_replica_response,
    encode_replica_request,
    encode_replica_response,
)

TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
UINT64 = st.integers(0, 2**64 - 1)
UINT32 = st.integers(0, 2**32 - 1)
VERSIONS = st.builds(ReplicaVersion, UINT64, TEXT)
ENTRIES = st.builds(
    ReplicaEntry,
    TEXT,
    UINT64,
    TEXT,
    st.none() | st.binary(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
)
SUMMARIES = st.builds(ReplicaSummary, TEXT, UINT64, TEXT)
REQUESTS: st.SearchStrategy[ReplicaRequestBody] = st.one_of(
    st.builds(ReplicaPush, st.lists(ENTRIES, max_size=3), st.none() | VERSIONS),
    st.builds(ReplicaDigest, UINT64, UINT64, UINT32, st.none() | VERSIONS),
    st.builds(ReplicaSync, st.lists(UINT32, max_size=3), st.lists(SUMMARIES, max_size=3)),
)
RESPONSES: st.SearchStrategy[ReplicaResponseBody] = st.one_of(
    st.builds(ReplicaPushed, UINT32),
    st.builds(
        ReplicaDigestReply, st.booleans(), st.lists(UINT64, max_size=3), st.none() | VERSIONS
    ),
    st.builds(
        ReplicaSyncReply, st.lists(ENTRIES, max_size=3), st.lists(TEXT, max_size=3), st.booleans()
    ),
)


@settings(max_examples=200, deadline=None)
@given(TEXT, REQUESTS)
def test_a_request_decodes_to_what_was_encoded(group: str, body: ReplicaRequestBody) -> None:
    assert decode_replica_request(encode_replica_request(group, body)) == (group, body)


@settings(max_examples=200, deadline=None)
@given(RESPONSES)
def test_a_response_decodes_to_what_was_encoded(body: ReplicaResponseBody) -> None:
    assert decode_replica_response(encode_replica_response(body)) == body


def test_a_zero_clear_is_sent_and_an_absent_one_is_not() -> None:
    """A clear of version zero is a field on the wire; None is no field."""
    zero = encode_replica_request("g", ReplicaPush([], ReplicaVersion(0, "")))
    assert pb.ReplicaRequest.FromString(zero).push.HasField("cleared")
    none = encode_replica_request("g", ReplicaPush([]))
    assert not pb.ReplicaRequest.FromString(none).push.HasField("cleared")
    assert pb.ReplicaRequest.FromString(none).WhichOneof("kind") == "push"


def test_a_message_of_no_kind_decodes_as_none() -> None:
    assert decode_replica_request(pb.ReplicaRequest(group="g").SerializeToString()) == ("g", None)
    assert decode_replica_response(b"") is None


@pytest.mark.parametrize("decode", [decode_replica_request, decode_replica_response])
def test_bytes_that_are_no_message_are_refused(decode: Callable[[bytes], object]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(b"\xff")
