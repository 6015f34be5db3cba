"""The gRPC transport: peer fetches, shoal's client API and geek-cache's service on grpc.aio.

The names of :mod:`~shoal.transport.grpc_server` (:class:`GrpcServer`) and
:mod:`~shoal.transport.grpc_client` (the clients and :class:`GrpcTransport`),
with what they share, in one place; the rules of the protocol below.

A node started with ``transport="grpc"`` (``shoal serve --transport grpc``)
speaks gRPC on its peer port instead of the groupcache HTTP protocol, and serves
there, on one :class:`GrpcServer`:

======================================  ==================================================
service (``wire/*.proto``)              what it is for
======================================  ==================================================
``shoal.v1.Peer``: Get, GetMany         node to node: the read path's fetches from a key's
                                        owner (this module's :class:`GrpcTransport`)
``shoal.v1.Cache``: Get, GetMany, Set,  clients: reads run the node's read path; writes
Delete, RemoveKeys, Stats, Cluster      change this node's caches (:class:`shoal.Client`
                                        sends each key to its owner)
``pb.GroupCache``: Get, Delete          geek-cache's service, for its clients and grpcurl
``grpc.health.v1.Health``               SERVING while the node runs; NOT_SERVING once it drains
server reflection (v1alpha)             so grpcurl and other tools need no ``.proto`` files
======================================  ==================================================

**The hop rule.** A request on ``shoal.v1.Peer`` is a hop: the node answers it
from its caches or its own loader (``Group.serve_peer``) and never forwards it,
whatever its ring says, so two nodes whose rings disagree during a membership
change cannot send a request round in circles. Every other service runs the
full read path (a miss goes to the key's owner). Only the peer client uses the
Peer service; that is the marker, as the peer path is for the HTTP protocol.

**Errors** are gRPC status codes, and the trailing metadata entry
``shoal-code`` names the exact error (the ``code`` of the HTTP API's JSON
errors): ``NOT_FOUND`` for a key the loader says does not exist (``not_found``)
or an unknown group (``unknown_group``); ``INVALID_ARGUMENT`` for an
undecodable request (``bad_request``), an empty or non-UTF-8 key
(``invalid_key``) or a bad TTL (``invalid_ttl``); ``RESOURCE_EXHAUSTED`` for a
key or value over the group's limits (``key_too_large``, ``value_too_large``),
more than ``max_batch_keys`` keys (``too_many_keys``), and (gRPC's own answer)
a message over the node's ``max_body_bytes``; ``DEADLINE_EXCEEDED`` when the
loader took longer than ``load_timeout`` (``load_timeout``) or the answer
longer than the node's ``request_timeout`` (``timeout``); ``UNAVAILABLE`` when
the loader failed (``load_failed``) or the node is shutting down (``closed``).
Requests are decoded and checked completely before anything changes, so a bad
request never touches the cache, and no input can crash the server. The checks
are those of the HTTP transport, in the same places: an expiry by
:func:`~shoal.wire.expires_at_from_wire` (past 2262: ``INVALID_ARGUMENT``), a
TTL by the group's write path (``invalid_ttl``), a replica message by
:func:`shoal.replication.serve_replica`; a batch is counted, duplicates included,
before anything else is done with it.

**Clients.** :class:`GrpcPeerClient` (made by :class:`GrpcTransport`) and
:class:`GrpcNodeClient` (``shoal.v1.Cache``, for :class:`shoal.Client`) each
keep a small pool of channels to their node, opened on the first call and
reused for every later one (a gRPC channel multiplexes any number of calls
over one HTTP/2 connection; more channels spread the load over more
connections). Every call carries a deadline. A channel to a node that went
away fails calls at once with ``UNAVAILABLE`` (no waiting for a reconnection)
and keeps trying to reconnect in the background, at least every few seconds.
Foreign errors are translated here, with their cause chained: a failed
connection becomes :class:`~shoal.errors.PeerUnavailable`, a passed deadline
:class:`~shoal.errors.PeerTimeout`, the owner's ``load_failed`` or
``load_timeout`` :class:`~shoal.errors.RemoteLoadError` (the key is not loaded
a second time), ``not_found`` :class:`~shoal.errors.NotFound`, anything else
:class:`~shoal.errors.PeerError`.

Peer URLs keep their ``http://host:port`` form whatever the transport (they
are the nodes' identities on the ring): ``http://`` is a plaintext channel to
``host:port``, ``https://`` a TLS one. Needs the ``shoal[grpc]`` extra.
"""

from __future__ import annotations

from ._grpc import (
    CACHE_SERVICE,
    CODE_METADATA,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CHANNELS,
    GEEK_SERVICE,
    PEER_SERVICE,
    channel_credentials,
    grpc_target,
)
from .grpc_client import GrpcNodeClient, GrpcPeerClient, GrpcTransport
from .grpc_server import SHUTDOWN_GRACE, GrpcServer

__all__ = [
    "GrpcServer",
    "GrpcTransport",
    "GrpcPeerClient",
    "GrpcNodeClient",
    "grpc_target",
    "channel_credentials",
    "CACHE_SERVICE",
    "PEER_SERVICE",
    "GEEK_SERVICE",
    "CODE_METADATA",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CHANNELS",
    "SHUTDOWN_GRACE",
]
