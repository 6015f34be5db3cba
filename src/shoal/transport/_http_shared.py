"""What the HTTP peer server and the HTTP peer client agree on beyond the wire codecs.

Rules of this module: constants only; the statuses come from the one table of
:mod:`shoal.statuses`.
"""

from __future__ import annotations

from typing import Final

from ..statuses import PEER_NODE_UNAVAILABLE

__all__ = ["MAX_ERROR_TEXT", "STATUS_NODE_UNAVAILABLE", "WRITE_HEADER"]

MAX_ERROR_TEXT: Final = 1000
"""Error texts travel in bodies and exception messages: longer ones are cut."""

STATUS_NODE_UNAVAILABLE: Final = PEER_NODE_UNAVAILABLE
"""What the server answers when it cannot serve for a reason of its own (closing): 502.
Not 500 or 503: those say the loader failed, and the asking node would not load the
key itself."""

WRITE_HEADER: Final = "Shoal-Write"
"""Request header of a ``PUT`` or ``DELETE`` sent by a client (``shoal.Client``) rather
than a peer: ``Shoal-Write: client`` runs the node's whole write path (the owner
stores, the other members drop their copies; a replicated group's write reaches
every member). Without it the write changes the receiving node only, as between peers."""
