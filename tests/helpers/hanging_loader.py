"""Sync loaders for ``shoal serve`` tests (``--group NAME=helpers.hanging_loader:load``): a key
starting with ``hang`` never returns; any other key loads ``value of KEY``."""

from __future__ import annotations

import threading

_NEVER = threading.Event()


def load(key: str) -> bytes:
    """``value of KEY``; for a key starting with ``hang``, block forever."""
    if key.startswith("hang"):
        _NEVER.wait()
    return f"value of {key}".encode()
