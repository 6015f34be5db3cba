"""Messages of replicated groups (``shoal.v1.ReplicaRequest``/``ReplicaResponse``) as plain data.

Rules: sans I/O, like the rest of :mod:`shoal.wire`. The generated protobuf
classes stay in this module: :mod:`shoal.replication` builds and reads the
frozen dataclasses below and hands bytes to the transports. Decoding checks
only what protobuf checks (the bytes parse); every field's range and meaning is
checked by the replica that receives it. An optional field that was absent
decodes as None, a ``oneof`` with no member as None. Encoding an object and
decoding the bytes gives back an equal object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from ._pb import shoal_pb2 as pb
from .errors import RemoteProtocolError

__all__ = [
    "ReplicaVersion",
    "ReplicaEntry",
    "ReplicaSummary",
    "ReplicaPush",
    "ReplicaDigest",
    "ReplicaSync",
    "ReplicaRequestBody",
    "ReplicaPushed",
    "ReplicaDigestReply",
    "ReplicaSyncReply",
    "ReplicaResponseBody",
    "encode_replica_request",
    "decode_replica_request",
    "encode_replica_response",
    "decode_replica_response",
]


@dataclass(frozen=True, slots=True)
class ReplicaVersion:
    """A version as sent: a hybrid logical timestamp and a node id (zero: none)."""

    hlc: int
    node: str


@dataclass(frozen=True, slots=True)
class ReplicaEntry:
    """One key's write: a value (None: deleted) and its version."""

    key: str
    hlc: int
    node: str
    value: bytes | None = None
    expire: int = 0
    """Absolute expiry in Unix nanoseconds; 0: never."""


@dataclass(frozen=True, slots=True)
class ReplicaSummary:
    """A key and the version of its last write, without the value."""

    key: str
    hlc: int
    node: str


@dataclass(frozen=True, slots=True)
class ReplicaPush:
    """New writes to merge, and maybe a clear of the whole group."""

    entries: list[ReplicaEntry] = field(default_factory=list)
    cleared: ReplicaVersion | None = None


@dataclass(frozen=True, slots=True)
class ReplicaDigest:
    """Anti-entropy, step 1: the sender's root hash, entry count, clear and bucket count."""

    root: int
    count: int
    buckets: int
    cleared: ReplicaVersion | None = None


@dataclass(frozen=True, slots=True)
class ReplicaSync:
    """Anti-entropy, step 2: for these buckets, what the sender has."""

    buckets: list[int] = field(default_factory=list)
    have: list[ReplicaSummary] = field(default_factory=list)


ReplicaRequestBody = ReplicaPush | ReplicaDigest | ReplicaSync
"""The kind of a ``ReplicaRequest``."""


@dataclass(frozen=True, slots=True)
class ReplicaPushed:
    """The answer to a push: how many entries changed the receiver's state."""

    applied: int


@dataclass(frozen=True, slots=True)
class ReplicaDigestReply:
    """The answer to a digest: in sync, or the receiver's hash of every bucket."""

    in_sync: bool
    hashes: list[int] = field(default_factory=list)
    cleared: ReplicaVersion | None = None


@dataclass(frozen=True, slots=True)
class ReplicaSyncReply:
    """The answer to a sync: the receiver's newer entries and the keys it wants."""

    entries: list[ReplicaEntry] = field(default_factory=list)
    wanted: list[str] = field(default_factory=list)
    truncated: bool = False


ReplicaResponseBody = ReplicaPushed | ReplicaDigestReply | ReplicaSyncReply
"""The kind of a ``ReplicaResponse``."""


def encode_replica_request(group: str, body: ReplicaRequestBody) -> bytes:
    """A serialized ``ReplicaRequest`` for ``group``."""
    if isinstance(body, ReplicaPush):
        push = pb.ReplicaPush(entries=[_entry_pb(e) for e in body.entries], **_cleared(body))
        request = pb.ReplicaRequest(group=group, push=push)
    elif isinstance(body, ReplicaDigest):
        digest = pb.ReplicaDigest(
            root=body.root, count=body.count, buckets=body.buckets, **_cleared(body)
        )
        request = pb.ReplicaRequest(group=group, digest=digest)
    else:
        have = [pb.ReplicaSummary(key=s.key, hlc=s.hlc, node=s.node) for s in body.have]
        request = pb.ReplicaRequest(
            group=group, sync=pb.ReplicaSync(buckets=body.buckets, have=have)
        )
    return request.SerializeToString()


def decode_replica_request(raw: bytes) -> tuple[str, ReplicaRequestBody | None]:
    """The group and the body of a serialized ``ReplicaRequest`` (None: no kind).

    Raises:
        RemoteProtocolError: the bytes are not a ``ReplicaRequest``.
    """
    try:
        request = pb.ReplicaRequest.FromString(raw)
    except DecodeError as exc:
        raise RemoteProtocolError(str(exc)) from exc
    kind = request.WhichOneof("kind")
    body: ReplicaRequestBody | None = None
    if kind == "push":
        push = request.push
        body = ReplicaPush(
            [_entry(item) for item in push.entries],
            _version(push.cleared) if push.HasField("cleared") else None,
        )
    elif kind == "digest":
        digest = request.digest
        body = ReplicaDigest(
            digest.root,
            digest.count,
            digest.buckets,
            _version(digest.cleared) if digest.HasField("cleared") else None,
        )
    elif kind == "sync":
        sync = request.sync
        body = ReplicaSync(
            list(sync.buckets),
            [ReplicaSummary(item.key, item.hlc, item.node) for item in sync.have],
        )
    return request.group, body


def encode_replica_response(body: ReplicaResponseBody) -> bytes:
    """A serialized ``ReplicaResponse``."""
    if isinstance(body, ReplicaPushed):
        response = pb.ReplicaResponse(pushed=pb.ReplicaPushed(applied=body.applied))
    elif isinstance(body, ReplicaDigestReply):
        reply = pb.ReplicaDigestReply(in_sync=body.in_sync, hashes=body.hashes, **_cleared(body))
        response = pb.ReplicaResponse(digest=reply)
    else:
        response = pb.ReplicaResponse(
            sync=pb.ReplicaSyncReply(
                entries=[_entry_pb(e) for e in body.entries],
                wanted=body.wanted,
                truncated=body.truncated,
            )
        )
    return response.SerializeToString()


def decode_replica_response(raw: bytes) -> ReplicaResponseBody | None:
    """The body of a serialized ``ReplicaResponse`` (None: no kind).

    Raises:
        RemoteProtocolError: the bytes are not a ``ReplicaResponse``.
    """
    try:
        response = pb.ReplicaResponse.FromString(raw)
    except DecodeError as exc:
        raise RemoteProtocolError(str(exc)) from exc
    kind = response.WhichOneof("kind")
    if kind == "pushed":
        return ReplicaPushed(response.pushed.applied)
    if kind == "digest":
        digest = response.digest
        return ReplicaDigestReply(
            digest.in_sync,
            list(digest.hashes),
            _version(digest.cleared) if digest.HasField("cleared") else None,
        )
    if kind == "sync":
        sync = response.sync
        return ReplicaSyncReply(
            [_entry(item) for item in sync.entries], list(sync.wanted), sync.truncated
        )
    return None


def _version(message: pb.ReplicaVersion) -> ReplicaVersion:
    return ReplicaVersion(message.hlc, message.node)


def _cleared(
    body: ReplicaPush | ReplicaDigest | ReplicaDigestReply,
) -> dict[str, pb.ReplicaVersion]:
    """The ``cleared`` field of a message, as constructor arguments: present (even a
    zero version) when set, absent when None."""
    cleared = body.cleared
    if cleared is None:
        return {}
    return {"cleared": pb.ReplicaVersion(hlc=cleared.hlc, node=cleared.node)}


def _entry(item: pb.ReplicaEntry) -> ReplicaEntry:
    value = item.value if item.HasField("value") else None
    return ReplicaEntry(item.key, item.hlc, item.node, value, item.expire)


def _entry_pb(entry: ReplicaEntry) -> pb.ReplicaEntry:
    item = pb.ReplicaEntry(key=entry.key, hlc=entry.hlc, node=entry.node, expire=entry.expire)
    if entry.value is not None:
        item.value = entry.value
    return item
