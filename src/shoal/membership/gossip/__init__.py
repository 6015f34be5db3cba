"""Gossip membership: SWIM failure detection and dissemination over UDP.

:mod:`.swim` is the protocol as a pure state machine (no sockets, no clock),
:mod:`.messages` its wire format, and :mod:`.udp` the asyncio adapter that
feeds it datagrams and timer ticks. No dependency beyond the standard library.
"""

from __future__ import annotations

from .udp import GossipMembership

__all__ = ["GossipMembership"]
