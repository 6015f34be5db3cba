"""Sans-I/O wire formats of the peer protocol: messages, bytes, paths and statuses.

Pure and synchronous: no sockets, no asyncio, no clock. The transports move the
bytes; everything they need to agree with Go groupcache nodes byte for byte is
here. The code generated from the ``.proto`` files (``_pb/``) is for the gRPC
adapter (:mod:`shoal.transport.grpc`, the ``geekcache.proto`` and ``shoal.proto``
services) and for tests; the HTTP peer protocol uses the frozen dataclasses of
:mod:`.messages`, encoded by hand.

Modules, each importing only those listed before it: :mod:`.errors` (the
protocol's errors), :mod:`.messages` (the groupcache messages), :mod:`._protobuf`
(the protobuf wire format, shared), :mod:`.expiry` (expiries), :mod:`.paths`
(request paths and the one percent-decoder), :mod:`.groupcache` (the groupcache
bodies and statuses), :mod:`.batch` (shoal's batch extension). Code outside the
package imports from ``shoal.wire`` itself or from :mod:`.batch`.
"""

from __future__ import annotations

from .errors import LocalProtocolError, PathOutsideBase, ProtocolError, RemoteProtocolError
from .expiry import (
    MAX_EXPIRE_NS,
    MAX_EXPIRES_AT,
    check_expire_ns,
    expires_at_from_wire,
    from_expire_ns,
    to_expire_ns,
)
from .groupcache import (
    DEFAULT_MAX_BATCH_KEYS,
    DEFAULT_MAX_MESSAGE_BYTES,
    ERROR_CONTENT_TYPE,
    ERROR_HEADERS,
    PROTOBUF_CONTENT_TYPE,
    STATUS_BAD_REQUEST,
    STATUS_LOAD_FAILED,
    STATUS_METHOD_NOT_ALLOWED,
    STATUS_NOT_FOUND,
    STATUS_OK,
    STATUS_PAYLOAD_TOO_LARGE,
    PeerReply,
    classify_get_status,
    decode_get_request,
    decode_get_response,
    decode_remove_keys,
    decode_set_request,
    encode_get_request,
    encode_get_response,
    encode_remove_keys,
    encode_set_request,
    error_body,
    no_such_group_message,
)
from .messages import (
    REMOVE_KEYS_SEGMENT,
    GetRequest,
    GetResponse,
    PeerPath,
    RemoveKeysRequest,
    SetRequest,
)
from .paths import (
    BAD_REQUEST_MESSAGE,
    DEFAULT_BASE_PATH,
    build_peer_path,
    build_remove_keys_path,
    parse_peer_path,
    percent_decode,
)

__all__ = [
    "REMOVE_KEYS_SEGMENT",
    "GetRequest",
    "GetResponse",
    "SetRequest",
    "RemoveKeysRequest",
    "PeerPath",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PathOutsideBase",
    "DEFAULT_BASE_PATH",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_BATCH_KEYS",
    "PROTOBUF_CONTENT_TYPE",
    "ERROR_CONTENT_TYPE",
    "ERROR_HEADERS",
    "BAD_REQUEST_MESSAGE",
    "encode_get_request",
    "decode_get_request",
    "encode_get_response",
    "decode_get_response",
    "encode_set_request",
    "decode_set_request",
    "encode_remove_keys",
    "decode_remove_keys",
    "MAX_EXPIRE_NS",
    "MAX_EXPIRES_AT",
    "check_expire_ns",
    "to_expire_ns",
    "from_expire_ns",
    "expires_at_from_wire",
    "percent_decode",
    "parse_peer_path",
    "build_peer_path",
    "build_remove_keys_path",
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
