"""Helpers shared by the tests; one module per concept, none of them a test.

- ``processes``: free ports, ``shoal serve`` nodes and clusters of them (listed or
  discovering peers), commands in their own process group, a SIGKILL under load.
- ``databases``: the MariaDB and PostgreSQL servers and throwaway tables.
- ``netns``: a virtual LAN of network namespaces, ``shoal serve`` on its hosts.
- ``memory_cluster``: in-process nodes on the memory transport, one manual clock.
- ``peer_nodes``: in-process nodes on real sockets and clusters of them over the
  HTTP or the gRPC peer protocol, a connection-counting relay, a scriptable fake peer.
- ``grpc_calls``: raw gRPC calls with exact bytes, health checks.
- ``raw_http``: HTTP/1.1 requests written and read byte for byte.
- ``cluster_views``: what ``/v1/cluster`` of each node says, and waiting on it.
- ``go_captures``: captures of real Go groupcache nodes.
- ``go_node``: a real Go groupcache node, built once per session.
- ``protobuf_strategies``: hypothesis strategies for peer-protocol messages.
- ``policy_contract``: the contract every eviction policy meets.
- ``traces``: the public cache traces.
- ``loadlog``, ``hanging_loader``: loaders for ``shoal serve`` child processes
  (``--group data=helpers.loadlog:load`` with the tests directory on ``PYTHONPATH``).

This module imports nothing: a node process that loads one of the loaders
imports only that loader.
"""
