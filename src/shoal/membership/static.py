"""Static membership: the member list from the configuration, which never changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..config import default_node_id
from . import Member, MemberSet

__all__ = ["StaticMembership"]


class StaticMembership:
    """The members named by ``NodeConfig.peers``, plus this node.

    Args:
        urls: every member's URL, in the configured order (this node's may be
            missing: it is added).
        self_url: this node's URL.
        node_id: this node's id (the others get ids derived from their URLs).
    """

    source = "static"

    def __init__(self, urls: Sequence[str], *, self_url: str, node_id: str) -> None:
        members = [
            Member(
                node_id=node_id if url == self_url else default_node_id(url),
                url=url,
                source=self.source,
            )
            for url in dict.fromkeys(urls)
        ]
        if self_url not in urls:
            members.append(Member(node_id=node_id, url=self_url, source=self.source))
        self.urls: tuple[str, ...] = tuple(m.url for m in members)
        """The members' URLs in configured order (the order settles ring collisions)."""
        self._members: MemberSet = frozenset(members)

    async def start(self) -> MemberSet:
        """The configured members."""
        return self._members

    async def run(self) -> None:
        """Nothing to do: the list never changes."""

    async def snapshots(self) -> AsyncIterator[MemberSet]:
        """The configured members, once; then nothing until cancelled."""
        yield self._members
        await asyncio.Event().wait()

    def statistics(self) -> dict[str, Any]:
        """The number of configured members."""
        return {"source": self.source, "members": len(self._members)}

    async def aclose(self) -> None:
        """Nothing to release."""
