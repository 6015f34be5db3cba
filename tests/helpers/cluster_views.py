"""Helpers for the membership tests: read a node's view of the cluster, wait for one."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import pytest

from helpers.processes import ShoalServer

__all__ = ["missing", "cluster_view", "member_urls", "wait_for", "all_see", "none_see"]


def missing(reason: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true`` (where a missing tool is a broken machine)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def cluster_view(node: ShoalServer | str) -> dict[str, Any]:
    """``GET /v1/cluster`` of a node (or of the HTTP API at a base URL)."""
    base = node if isinstance(node, str) else node.url
    with urllib.request.urlopen(f"{base}/v1/cluster", timeout=5) as response:
        view: dict[str, Any] = json.loads(response.read())
    return view


def member_urls(node: ShoalServer | str) -> set[str]:
    """The URLs of the members a node sees (itself included)."""
    return {m["url"] for m in cluster_view(node)["members"]}


def wait_for(condition: Callable[[], bool], what: str, within: float) -> float:
    """Poll ``condition`` every 20 ms until it holds; return the seconds it took.

    A poll that cannot reach a node counts as "not yet".

    Raises:
        AssertionError: it did not hold within ``within`` seconds.
    """
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(0.02)


def all_see(nodes: Iterable[ShoalServer | str], urls: Iterable[str]) -> Callable[[], bool]:
    """A condition: every one of ``nodes`` sees exactly the members ``urls``."""
    expected, observers = set(urls), list(nodes)
    return lambda: all(member_urls(n) == expected for n in observers)


def none_see(nodes: Iterable[ShoalServer | str], url: str) -> Callable[[], bool]:
    """A condition: none of ``nodes`` lists ``url`` any more."""
    observers = list(nodes)
    return lambda: all(url not in member_urls(n) for n in observers)
