"""Peer transports: how a node fetches keys from the nodes that own them.

A transport makes :class:`PeerClient` objects, one per peer URL. The protocols
they implement are declared where they are used, in the async core
(:mod:`shoal.peers`), and re-exported here; the core never imports this
package. The adapters (``http.py``: the groupcache-compatible HTTP protocol,
``grpc.py``, ``memory.py``) are the only modules that touch sockets; they
translate every foreign error into the :mod:`shoal.errors` hierarchy at their
boundary, and they see the node they serve only through
:mod:`shoal.serving`.
"""

from __future__ import annotations

from ..peers import FetchDone, Fetched, PeerClient, Transport

__all__ = ["Fetched", "FetchDone", "PeerClient", "Transport"]
