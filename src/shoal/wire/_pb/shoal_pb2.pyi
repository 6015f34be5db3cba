from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OpKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[OpKind]
    OP_ADD: _ClassVar[OpKind]
    OP_INCR: _ClassVar[OpKind]
    OP_TOUCH: _ClassVar[OpKind]
    OP_TTL: _ClassVar[OpKind]
    OP_SET: _ClassVar[OpKind]
OP_UNSPECIFIED: OpKind
OP_ADD: OpKind
OP_INCR: OpKind
OP_TOUCH: OpKind
OP_TTL: OpKind
OP_SET: OpKind

class GetRequest(_message.Message):
    __slots__ = ("group", "key")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class GetManyRequest(_message.Message):
    __slots__ = ("group", "keys")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    group: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class GetManyResponse(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, bytes]
    def __init__(self, values: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("group", "key", "value", "ttl")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    value: bytes
    ttl: float
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., ttl: _Optional[float] = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("group", "key")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class RemoveKeysRequest(_message.Message):
    __slots__ = ("group", "keys")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    group: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveKeysResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("groups",)
    class GroupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: GroupStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[GroupStats, _Mapping]] = ...) -> None: ...
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.MessageMap[str, GroupStats]
    def __init__(self, groups: _Optional[_Mapping[str, GroupStats]] = ...) -> None: ...

class GroupStats(_message.Message):
    __slots__ = ("name", "gets", "hits", "loads", "loads_deduped", "local_loads", "local_load_errors", "peer_loads", "peer_errors", "server_requests", "main", "hot", "mode", "replication", "duplicate_loads", "oversized_values")
    class ReplicationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    GETS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    LOADS_DEDUPED_FIELD_NUMBER: _ClassVar[int]
    LOCAL_LOADS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_LOAD_ERRORS_FIELD_NUMBER: _ClassVar[int]
    PEER_LOADS_FIELD_NUMBER: _ClassVar[int]
    PEER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SERVER_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAIN_FIELD_NUMBER: _ClassVar[int]
    HOT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_LOADS_FIELD_NUMBER: _ClassVar[int]
    OVERSIZED_VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    gets: int
    hits: int
    loads: int
    loads_deduped: int
    local_loads: int
    local_load_errors: int
    peer_loads: int
    peer_errors: int
    server_requests: int
    main: StoreStats
    hot: StoreStats
    mode: str
    replication: _containers.ScalarMap[str, int]
    duplicate_loads: int
    oversized_values: int
    def __init__(self, name: _Optional[str] = ..., gets: _Optional[int] = ..., hits: _Optional[int] = ..., loads: _Optional[int] = ..., loads_deduped: _Optional[int] = ..., local_loads: _Optional[int] = ..., local_load_errors: _Optional[int] = ..., peer_loads: _Optional[int] = ..., peer_errors: _Optional[int] = ..., server_requests: _Optional[int] = ..., main: _Optional[_Union[StoreStats, _Mapping]] = ..., hot: _Optional[_Union[StoreStats, _Mapping]] = ..., mode: _Optional[str] = ..., replication: _Optional[_Mapping[str, int]] = ..., duplicate_loads: _Optional[int] = ..., oversized_values: _Optional[int] = ...) -> None: ...

class StoreStats(_message.Message):
    __slots__ = ("bytes", "items", "gets", "hits", "evictions", "expirations", "capacity_bytes", "capacity_entries")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    GETS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    items: int
    gets: int
    hits: int
    evictions: int
    expirations: int
    capacity_bytes: int
    capacity_entries: int
    def __init__(self, bytes: _Optional[int] = ..., items: _Optional[int] = ..., gets: _Optional[int] = ..., hits: _Optional[int] = ..., evictions: _Optional[int] = ..., expirations: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., capacity_entries: _Optional[int] = ...) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ClusterResponse(_message.Message):
    __slots__ = ("self", "peer_address", "base_path", "ring", "members", "owner", "transport")
    SELF_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BASE_PATH_FIELD_NUMBER: _ClassVar[int]
    RING_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    self: str
    peer_address: str
    base_path: str
    ring: Ring
    members: _containers.RepeatedCompositeFieldContainer[Member]
    owner: str
    transport: str
    def __init__(self_, self: _Optional[str] = ..., peer_address: _Optional[str] = ..., base_path: _Optional[str] = ..., ring: _Optional[_Union[Ring, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., owner: _Optional[str] = ..., transport: _Optional[str] = ...) -> None: ...

class Ring(_message.Message):
    __slots__ = ("flavour", "replicas", "probes")
    FLAVOUR_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    flavour: str
    replicas: int
    probes: int
    def __init__(self, flavour: _Optional[str] = ..., replicas: _Optional[int] = ..., probes: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("url", "self", "share", "backing_off")
    URL_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    BACKING_OFF_FIELD_NUMBER: _ClassVar[int]
    url: str
    self: bool
    share: float
    backing_off: bool
    def __init__(self_, url: _Optional[str] = ..., self: _Optional[bool] = ..., share: _Optional[float] = ..., backing_off: _Optional[bool] = ...) -> None: ...

class PeerValue(_message.Message):
    __slots__ = ("value", "expire", "minute_qps")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    MINUTE_QPS_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    expire: int
    minute_qps: float
    def __init__(self, value: _Optional[bytes] = ..., expire: _Optional[int] = ..., minute_qps: _Optional[float] = ...) -> None: ...

class PeerValues(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PeerValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PeerValue, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, PeerValue]
    def __init__(self, values: _Optional[_Mapping[str, PeerValue]] = ...) -> None: ...

class PeerSetRequest(_message.Message):
    __slots__ = ("group", "key", "value", "expire")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    value: bytes
    expire: int
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., expire: _Optional[int] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class ReplicaEntry(_message.Message):
    __slots__ = ("key", "hlc", "node", "value", "expire")
    KEY_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    key: str
    hlc: int
    node: str
    value: bytes
    expire: int
    def __init__(self, key: _Optional[str] = ..., hlc: _Optional[int] = ..., node: _Optional[str] = ..., value: _Optional[bytes] = ..., expire: _Optional[int] = ...) -> None: ...

class ReplicaVersion(_message.Message):
    __slots__ = ("hlc", "node")
    HLC_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    hlc: int
    node: str
    def __init__(self, hlc: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class ReplicaSummary(_message.Message):
    __slots__ = ("key", "hlc", "node")
    KEY_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    key: str
    hlc: int
    node: str
    def __init__(self, key: _Optional[str] = ..., hlc: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class ReplicaRequest(_message.Message):
    __slots__ = ("group", "push", "digest", "sync")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    group: str
    push: ReplicaPush
    digest: ReplicaDigest
    sync: ReplicaSync
    def __init__(self, group: _Optional[str] = ..., push: _Optional[_Union[ReplicaPush, _Mapping]] = ..., digest: _Optional[_Union[ReplicaDigest, _Mapping]] = ..., sync: _Optional[_Union[ReplicaSync, _Mapping]] = ...) -> None: ...

class ReplicaPush(_message.Message):
    __slots__ = ("entries", "cleared")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ReplicaEntry]
    cleared: ReplicaVersion
    def __init__(self, entries: _Optional[_Iterable[_Union[ReplicaEntry, _Mapping]]] = ..., cleared: _Optional[_Union[ReplicaVersion, _Mapping]] = ...) -> None: ...

class ReplicaDigest(_message.Message):
    __slots__ = ("root", "count", "cleared", "buckets")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    root: int
    count: int
    cleared: ReplicaVersion
    buckets: int
    def __init__(self, root: _Optional[int] = ..., count: _Optional[int] = ..., cleared: _Optional[_Union[ReplicaVersion, _Mapping]] = ..., buckets: _Optional[int] = ...) -> None: ...

class ReplicaSync(_message.Message):
    __slots__ = ("buckets", "have")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    HAVE_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedScalarFieldContainer[int]
    have: _containers.RepeatedCompositeFieldContainer[ReplicaSummary]
    def __init__(self, buckets: _Optional[_Iterable[int]] = ..., have: _Optional[_Iterable[_Union[ReplicaSummary, _Mapping]]] = ...) -> None: ...

class ReplicaResponse(_message.Message):
    __slots__ = ("pushed", "digest", "sync")
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    pushed: ReplicaPushed
    digest: ReplicaDigestReply
    sync: ReplicaSyncReply
    def __init__(self, pushed: _Optional[_Union[ReplicaPushed, _Mapping]] = ..., digest: _Optional[_Union[ReplicaDigestReply, _Mapping]] = ..., sync: _Optional[_Union[ReplicaSyncReply, _Mapping]] = ...) -> None: ...

class ReplicaPushed(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    def __init__(self, applied: _Optional[int] = ...) -> None: ...

class ReplicaDigestReply(_message.Message):
    __slots__ = ("in_sync", "hashes", "cleared")
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    in_sync: bool
    hashes: _containers.RepeatedScalarFieldContainer[int]
    cleared: ReplicaVersion
    def __init__(self, in_sync: _Optional[bool] = ..., hashes: _Optional[_Iterable[int]] = ..., cleared: _Optional[_Union[ReplicaVersion, _Mapping]] = ...) -> None: ...

class ReplicaSyncReply(_message.Message):
    __slots__ = ("entries", "wanted", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    WANTED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ReplicaEntry]
    wanted: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[ReplicaEntry, _Mapping]]] = ..., wanted: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class OpItem(_message.Message):
    __slots__ = ("key", "value", "expire", "ttl")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    expire: int
    ttl: float
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., expire: _Optional[int] = ..., ttl: _Optional[float] = ...) -> None: ...

class OpRequest(_message.Message):
    __slots__ = ("group", "kind", "items", "delta")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: OpKind
    items: _containers.RepeatedCompositeFieldContainer[OpItem]
    delta: int
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[_Union[OpKind, str]] = ..., items: _Optional[_Iterable[_Union[OpItem, _Mapping]]] = ..., delta: _Optional[int] = ...) -> None: ...

class OpResult(_message.Message):
    __slots__ = ("done", "number", "seconds", "error", "message")
    DONE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    done: bool
    number: int
    seconds: float
    error: str
    message: str
    def __init__(self, done: _Optional[bool] = ..., number: _Optional[int] = ..., seconds: _Optional[float] = ..., error: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class OpResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    def __init__(self, results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ...) -> None: ...
