"""Running several lookups at once and merging what they found.

The batch reads (``Group.get_many``, the peer clients' ``get_many``) split a
request into jobs (one per owner, or per batch) that each return a dict. The
jobs run concurrently and all run to the end, even after one has failed: none
is left running behind the caller's back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["gather_merged"]

K = TypeVar("K")
V = TypeVar("V")


async def gather_merged(jobs: Iterable[Awaitable[dict[K, V]]]) -> dict[K, V]:
    """Run ``jobs`` concurrently and merge their dicts.

    Raises:
        BaseException: the first failure, in job order, once every job has finished.
    """
    found: dict[K, V] = {}
    error: BaseException | None = None
    for outcome in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            error = error or outcome
        else:
            found.update(outcome)
    if error is not None:
        raise error
    return found
