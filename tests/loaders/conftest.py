"""Fixtures for the loader tests: one throwaway table per test in SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.databases import (
    MariaDB,
    Postgres,
    Row,
    create_sqlite_table,
    create_table,
    drop_table,
    table_name,
)
from shoal.loaders import SqlLoader, sql_loader

QUOTED_KEY = 'O\'Brien "Q" ; -- \\ %s :key'
UNICODE_KEY = "Zoë 🐟 ключ"

ROWS: list[Row] = [
    ("Tom", "hello", 630, b"\x00\xffbin"),
    ("ghost", None, None, None),
    (QUOTED_KEY, "quoted", 1, None),
    (UNICODE_KEY, "fish", 2, None),
]
"""Every test table holds these rows (k, v, n, b)."""


@dataclass
class Db:
    """One database holding a fresh test table filled with :data:`ROWS`."""

    kind: str
    dsn: str
    table: str
    server: MariaDB | Postgres | None
    path: Path | None = None

    def query(self, column: str) -> str:
        """``SELECT column FROM table WHERE k = :key``."""
        return f"SELECT {column} FROM {self.table} WHERE k = :key"

    async def set_v(self, key: str, value: str) -> None:
        """Change column ``v`` of row ``key`` through a separate connection."""
        if self.server is None:
            import sqlite3

            assert self.path is not None
            with sqlite3.connect(self.path) as conn:
                conn.execute(f"UPDATE {self.table} SET v = ? WHERE k = ?", (value, key))
            conn.close()
        elif isinstance(self.server, MariaDB):
            import aiomysql

            conn2 = await aiomysql.connect(
                host=self.server.host,
                port=self.server.port,
                user=self.server.user,
                db=self.server.db,
                autocommit=True,
            )
            try:
                async with conn2.cursor() as cur:
                    await cur.execute(f"UPDATE {self.table} SET v = %s WHERE k = %s", (value, key))
            finally:
                conn2.close()
        else:
            import asyncpg

            pg = await asyncpg.connect(self.server.dsn)
            try:
                await pg.execute(f"UPDATE {self.table} SET v = $1 WHERE k = $2", value, key)
            finally:
                await pg.close()


_SERVERS = [
    pytest.param("mariadb", marks=pytest.mark.mysql),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


async def _server_table(request: pytest.FixtureRequest, kind: str) -> AsyncIterator[Db]:
    server: MariaDB | Postgres = request.getfixturevalue(kind)
    name = table_name()
    await create_table(server, name, ROWS)
    try:
        yield Db(kind, server.dsn, name, server)
    finally:
        await drop_table(server, name)


@pytest.fixture(params=["sqlite", *_SERVERS])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    """A fresh table in SQLite, MariaDB and PostgreSQL in turn; dropped after the test."""
    kind: str = request.param
    if kind == "sqlite":
        path = tmp_path / "test.db"
        name = table_name()
        create_sqlite_table(path, name, ROWS)
        yield Db(kind, f"sqlite://{path}", name, None, path)
        return
    async for table in _server_table(request, kind):
        yield table


@pytest.fixture(params=_SERVERS)
async def server_db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    """A fresh table in MariaDB and PostgreSQL in turn (the database servers only)."""
    async for table in _server_table(request, request.param):
        yield table


@pytest.fixture
async def make_loader() -> AsyncIterator[Callable[..., SqlLoader[Any]]]:
    """Build SQL loaders that are closed when the test ends."""
    loaders: list[SqlLoader[Any]] = []

    def make(dsn: str, query: str, **options: Any) -> SqlLoader[Any]:
        loader = sql_loader(dsn, query, **options)
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        await loader.aclose()
