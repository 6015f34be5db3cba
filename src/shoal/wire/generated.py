"""The protobuf classes generated from shoal's schemas (``make proto`` writes them).

For the gRPC transport and :mod:`shoal.wire.replica` only: importing this loads
the protobuf runtime, which the rest of :mod:`shoal.wire` never needs.
"""

from ._pb import geekcache_pb2, groupcache_pb2, shoal_pb2

__all__ = ["geekcache_pb2", "groupcache_pb2", "shoal_pb2"]
