"""A loader for cluster tests whose calls are counted from outside the node processes.

``shoal serve --group data=helpers.loadlog:load`` with the tests directory on
``PYTHONPATH`` (:meth:`helpers.processes.LoadLog.env` sets it).
Each call appends ``NODE<TAB>KEY`` to the file ``LOADLOG_FILE`` (one ``write``
of one short line to a file opened with ``O_APPEND``, so the lines of several
processes never mix), waits ``LOADLOG_DELAY`` seconds, then returns
``value of KEY``; keys starting with ``missing`` are ``NotFound``.
"""

from __future__ import annotations

import asyncio
import os

from shoal import NotFound

NODE = os.environ.get("LOADLOG_NODE", "?")
DELAY = float(os.environ.get("LOADLOG_DELAY", "0"))


async def load(key: str) -> bytes:
    """Record the call, wait, answer."""
    fd = os.open(os.environ["LOADLOG_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{NODE}\t{key}\n".encode())
    finally:
        os.close(fd)
    if DELAY:
        await asyncio.sleep(DELAY)
    if key.startswith("missing"):
        raise NotFound(key)
    return f"value of {key}".encode()
