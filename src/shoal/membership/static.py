"""Static membership: the member list from the configuration, which never changes.

The list is configuration, not network input: a URL that
:func:`~shoal.membership.check_member_url` refuses is a :class:`ConfigError`
when the node starts, not a member skipped at run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from ..config import default_node_id
from ..errors import ConfigError
from . import BadInput, Member, MemberSet, check_member_url

__all__ = ["StaticMembership"]


class StaticMembership:
    """The members named by ``NodeConfig.peers``, plus this node.

    Args:
        urls: every member's URL, in the configured order (this node's may be
            missing: it is added).
        self_url: this node's URL.
        node_id: this node's id (the others get ids derived from their URLs).

    Raises:
        ConfigError: a URL that cannot be a member's.
    """

    source = "static"

    def __init__(self, urls: Sequence[str], *, self_url: str, node_id: str) -> None:
        for url in urls:
            try:
                check_member_url(url)
            except BadInput as exc:
                raise ConfigError(f"peers: {exc}") from None
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

    @property
    def has_view(self) -> bool:
        """Always: the list is the view."""
        return True

    async def run(self) -> None:
        """Nothing to do: the list never changes."""

    async def snapshots(self) -> AsyncIterator[MemberSet]:
        """The configured members, once; then nothing until cancelled."""
        yield self._members
        await asyncio.Event().wait()

    def ring_order(self, urls: Iterable[str]) -> list[str]:
        """The configured order, whatever the snapshot holds (every node is given it)."""
        return list(self.urls)

    def statistics(self) -> dict[str, Any]:
        """The number of configured members."""
        return {"source": self.source, "members": len(self._members)}

    async def aclose(self) -> None:
        """Nothing to release."""
