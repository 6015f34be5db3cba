"""SlowDB: the demo database behind ``shoal serve --slowdb``.

The groupcache and geecache demos front a "slow database" of scores and log
``[SlowDB] search key Tom`` whenever the cache has to ask it. This is the same
demo on a real database: a small SQLite file of scores, read through the
``sql:`` loader, with a configurable delay so the cost of a miss is visible
next to the speed of a hit::

    $ shoal serve --slowdb
    $ curl 'http://127.0.0.1:9999/api?key=Tom'     # logs [SlowDB] search key Tom
    630
    $ curl 'http://127.0.0.1:9999/api?key=Tom'     # a hit: nothing logged
    630
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from types import MappingProxyType
from typing import Final

from .._printable import printable
from ..errors import ConfigError
from ..loaders.sql import SQLiteLoader

__all__ = ["SCORES", "SCORES_QUERY", "DEFAULT_DELAY", "create_scores_db", "SlowDB"]

# The logger keeps the name of the lines users know (and the tour counts).
log = logging.getLogger("shoal.demo")

SCORES: Final[Mapping[str, int]] = MappingProxyType(
    {
        "Tom": 630,
        "Jack": 589,
        "Sam": 567,
        "Lily": 589,
        "Ann": 612,
        "Bob": 540,
        "Mia": 701,
        "Leo": 498,
        "Zoe": 655,
        "Max": 575,
    }
)
"""The demo's rows: name → score (the first four are the groupcache demo's)."""

SCORES_QUERY: Final = "SELECT score FROM scores WHERE name = :key"
"""The query SlowDB runs for a key."""

DEFAULT_DELAY: Final = 0.05
"""Seconds SlowDB waits before each query, to play a slow database. Default 50 ms."""


def create_scores_db(path: str | Path) -> Path:
    """Write the :data:`SCORES` table into the SQLite file at ``path``.

    Creates the file and the ``scores(name TEXT PRIMARY KEY, score INTEGER)``
    table when missing and (re)sets the demo rows, leaving any other rows alone.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS scores (name TEXT PRIMARY KEY, score INTEGER NOT NULL)"
        )
        conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", SCORES.items())
    return path


class SlowDB:
    """A loader over a demo database of scores that logs each search and is slow on purpose.

    Every real load logs ``[SlowDB] search key <key>`` at INFO on the
    ``shoal.demo`` logger, waits ``delay`` seconds, then runs
    :data:`SCORES_QUERY` through a :class:`~shoal.loaders.sql.SQLiteLoader`.
    Scores come back as decimal text (``b"630"``); unknown names raise
    :class:`~shoal.errors.NotFound`.

    Args:
        path: The SQLite file to use (created and filled with :data:`SCORES`).
            Default None: a file in a new temporary directory, removed by
            :meth:`aclose`.
        delay: Seconds to wait before each query. Default :data:`DEFAULT_DELAY`.

    Raises:
        ConfigError: a negative or non-finite ``delay``.
    """

    def __init__(self, path: str | Path | None = None, *, delay: float = DEFAULT_DELAY) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise ConfigError(f"delay must be a number of seconds, got {delay!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ConfigError(f"delay must be zero or more seconds, got {delay!r}")
        self.delay = float(delay)
        self._tempdir: Path | None = None
        if path is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="shoal-slowdb-"))
            path = self._tempdir / "scores.db"
        try:
            self.path = create_scores_db(path).resolve()
            self._sql = SQLiteLoader("sqlite://" + urllib.parse.quote(str(self.path)), SCORES_QUERY)
        except BaseException:
            self._remove_tempdir()
            raise
        self.searches = 0
        """Real loads so far (each one a logged search)."""

    def __repr__(self) -> str:
        return f"<SlowDB {str(self.path)!r} delay={self.delay}>"

    async def __call__(self, key: str) -> bytes:
        """Look ``key`` up: log the search, wait ``delay``, query the scores table.

        Raises:
            NotFound: no score for ``key``.
        """
        self.searches += 1
        log.info("[SlowDB] search key %s", printable(key))
        if self.delay:
            await asyncio.sleep(self.delay)
        value: bytes = await self._sql(key)  # never bound to a codec: the cell's bytes
        return value

    async def aclose(self) -> None:
        """Close the database (and remove the temporary directory if SlowDB made it)."""
        try:
            await self._sql.aclose()
        finally:
            self._remove_tempdir()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
