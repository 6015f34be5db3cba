"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder of inbound messages.

``make fuzz`` runs it after the hypothesis properties: ``python tests/fuzz_decoders.py
-runs=N`` (any libFuzzer flag works, e.g. ``-max_total_time=60``). Each input is
read as every message a node accepts: the groupcache GetRequest, GetResponse and
SetRequest, a batch get's request and answer, a remove-keys body, and a
``shoal.v1.ReplicaRequest`` served by a replicated group. Each decoder must
either refuse the bytes with its protocol error (RemoteProtocolError,
BadRequest, DecodeError), or give a result that encodes again without error
and decodes to the same thing; a refused replica message must change nothing.
Anything else (another exception, a failed check) is a finding: libFuzzer
stops and writes the input to ``crash-*``.
"""

from __future__ import annotations

import asyncio
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError

    from shoal import Node, NodeConfig
    from shoal.errors import BadRequest
    from shoal.lww import Entry
    from shoal.replication import _item as replica_item
    from shoal.replication import serve_replica
    from shoal.wire import (
        MAX_EXPIRE_NS,
        RemoteProtocolError,
        decode_get_request,
        decode_get_response,
        decode_remove_keys,
        decode_set_request,
        encode_get_request,
        encode_get_response,
        encode_remove_keys,
        encode_set_request,
        from_expire_ns,
        to_expire_ns,
    )
    from shoal.wire._pb import shoal_pb2 as pb
    from shoal.wire.batch import (
        BatchItem,
        decode_batch_entries,
        decode_batch_request,
        encode_get_many_request,
        encode_get_many_response,
    )
    from shoal.wire.replica import ReplicaPush, encode_replica_request

MIRROR = "mirror"


def _resendable(expire_ns: int | None) -> None:
    ns = to_expire_ns(from_expire_ns(expire_ns))
    assert ns is None or abs(ns) <= MAX_EXPIRE_NS, ns


def groupcache(data: bytes) -> None:
    try:
        response = decode_get_response(data)
    except RemoteProtocolError:
        pass
    else:
        again = encode_get_response(
            response.value, minute_qps=response.minute_qps, expire_ns=response.expire_ns
        )
        decoded = decode_get_response(again)
        assert (decoded.value, decoded.expire_ns) == (response.value, response.expire_ns)
        _resendable(response.expire_ns)
    try:
        request = decode_set_request(data)
    except RemoteProtocolError:
        pass
    else:
        again = encode_set_request(
            request.group, request.key, request.value, expire_ns=request.expire_ns
        )
        assert decode_set_request(again) == request
        _resendable(request.expire_ns)
    try:
        get = decode_get_request(data)
    except RemoteProtocolError:
        pass
    else:
        assert decode_get_request(encode_get_request(get.group, get.key)) == get


def batches(data: bytes) -> None:
    try:
        keys, key_errors = decode_batch_request(data)
    except RemoteProtocolError:
        pass
    else:
        again = encode_get_many_request(keys, key_errors=key_errors)
        assert decode_batch_request(again) == (keys, key_errors)
    try:
        items, errors = decode_batch_entries(data)
    except RemoteProtocolError:
        pass
    else:
        again = encode_get_many_response([BatchItem(*i) for i in items], errors)
        assert decode_batch_entries(again) == (items, errors)
        for _, _, expire in items:
            _resendable(expire)
    try:
        removal = decode_remove_keys(data)
    except RemoteProtocolError:
        pass
    else:
        again = encode_remove_keys(removal.group, removal.keys)
        assert decode_remove_keys(again).keys == removal.keys


def _item(entry: Entry) -> pb.ReplicaEntry:
    """``entry`` as the protobuf message a replica sends it in."""
    raw = encode_replica_request(MIRROR, ReplicaPush([replica_item(entry)]))
    return pb.ReplicaRequest.FromString(raw).push.entries[0]


def replica(data: bytes) -> None:
    try:
        request = pb.ReplicaRequest.FromString(data)
    except DecodeError:
        return
    group = Node(NodeConfig()).group(MIRROR, None, mode="replicated")
    state = group.replica.state  # type: ignore[union-attr]
    before = (state.root(), len(state), state.cleared)
    request.group = MIRROR
    try:
        asyncio.run(serve_replica({MIRROR: group}, request.SerializeToString()))
    except BadRequest:
        assert (state.root(), len(state), state.cleared) == before
        return
    for entry in state.entries():
        item = pb.ReplicaEntry.FromString(_item(entry).SerializeToString())
        assert (item.key, item.hlc, item.node) == (
            entry.key,
            entry.version.hlc,
            entry.version.node,
        )


def one_input(data: bytes) -> None:
    """The libFuzzer entry point: ``data`` as every inbound message."""
    groupcache(data)
    batches(data)
    replica(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
