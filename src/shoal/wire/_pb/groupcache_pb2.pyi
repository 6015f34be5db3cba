from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetRequest(_message.Message):
    __slots__ = ("group", "key")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("value", "minute_qps", "expire")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MINUTE_QPS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    minute_qps: float
    expire: int
    def __init__(self, value: _Optional[bytes] = ..., minute_qps: _Optional[float] = ..., expire: _Optional[int] = ...) -> None: ...

class SetRequest(_message.Message):
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

class RemoveKeysRequest(_message.Message):
    __slots__ = ("group", "keys")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    group: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...
