"""The database servers of the loader tests, and throwaway tables in them.

The servers (MariaDB on 127.0.0.1:3306, PostgreSQL on 127.0.0.1:5432) are machine
services shared with other test runs: the helpers only start one that is down (so
the suite works right after a reboot) and never stop it. A server that cannot be
reached fails the test under ``CI=true`` and skips it otherwise. Every table a test
creates has a name of its own and is dropped by the fixture that made it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import pytest

from helpers.processes import READY_TIMEOUT

__all__ = [
    "MariaDB",
    "Postgres",
    "ensure_mariadb",
    "ensure_postgres",
    "run_async",
    "Row",
    "table_name",
    "create_table",
    "drop_table",
    "create_sqlite_table",
]

T = TypeVar("T")


@dataclass(frozen=True)
class MariaDB:
    """Connection facts of the MariaDB server the tests use."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    db: str = "test"

    @property
    def dsn(self) -> str:
        """The ``mysql://`` URL of the test database."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class Postgres:
    """Connection facts of the PostgreSQL server the tests use."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    db: str = "test"

    @property
    def dsn(self) -> str:
        """The ``postgresql://`` URL of the test database."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db}"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


async def _probe_mariadb(server: MariaDB) -> None:
    import aiomysql

    conn = await aiomysql.connect(
        host=server.host, port=server.port, user=server.user, db=server.db, connect_timeout=5
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()
    finally:
        conn.close()


async def _probe_postgres(server: Postgres) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.dsn, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh event loop in a helper thread.

    Works from sync tests and from inside a running loop alike (an async
    fixture may be the first to need a database server).
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="test-db") as pool:
        return pool.submit(asyncio.run, coro).result()


def _answers_mariadb() -> MariaDB | None:
    server = MariaDB()
    if not _tcp_open(server.host, server.port):
        return None
    try:
        run_async(_probe_mariadb(server))
    except Exception:
        return None
    return server


def _answers_postgres() -> Postgres | None:
    # The superuser is "postgres" on a stock install; some images use "root".
    for user in ("postgres", "root"):
        server = Postgres(user=user)
        if not _tcp_open(server.host, server.port):
            return None
        try:
            run_async(_probe_postgres(server))
        except Exception:
            continue
        return server
    return None


def _start_mariadb() -> None:
    # After a reboot /run is empty; mariadbd needs its socket directory.
    run_dir = Path("/run/mysqld")
    if not run_dir.exists():
        run_dir.mkdir(parents=True)
        with contextlib.suppress(LookupError, OSError):
            shutil.chown(run_dir, "mysql", "mysql")
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def _start_postgres() -> None:
    etc = Path("/etc/postgresql")
    versions = sorted(p.name for p in etc.iterdir()) if etc.is_dir() else []
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _unavailable(what: str) -> NoReturn:
    reason = f"{what} is not reachable and could not be started"
    # In CI a missing database is a broken machine, not a reason to pass quietly.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# What each server probe found, so a server that is down costs one wait per
# test session, not one per fixture that needs it.
_found: dict[str, object] = {}


def _ensure(probe: Callable[[], T | None], start: Callable[[], None], what: str) -> T:
    if what not in _found:
        found = probe()
        if found is None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                start()
            deadline = time.monotonic() + READY_TIMEOUT
            while found is None and time.monotonic() < deadline:
                time.sleep(0.5)
                found = probe()
        _found[what] = found
    known = _found[what]
    if known is None:
        _unavailable(what)
    return cast(T, known)  # stored by this same probe


def ensure_mariadb() -> MariaDB:
    """The MariaDB server on 127.0.0.1:3306, started if it is down.

    Fails the test when it cannot be reached and ``CI=true``; skips it otherwise.
    """
    return _ensure(_answers_mariadb, _start_mariadb, "MariaDB on 127.0.0.1:3306")


def ensure_postgres() -> Postgres:
    """The PostgreSQL server on 127.0.0.1:5432, started if it is down.

    Fails the test when it cannot be reached and ``CI=true``; skips it otherwise.
    """
    return _ensure(_answers_postgres, _start_postgres, "PostgreSQL on 127.0.0.1:5432")


# --------------------------------------------------------------------------- throwaway tables

Row = tuple[str, str | None, int | None, bytes | None]
"""One row of a test table: key ``k``, text ``v``, integer ``n``, binary ``b``."""


def table_name() -> str:
    """A table name no other test (or parallel test run) uses."""
    return f"shoal_test_{uuid.uuid4().hex[:16]}"


async def create_table(server: MariaDB | Postgres, name: str, rows: Sequence[Row]) -> None:
    """Create table ``name`` (k, v, n, b) in ``server``'s test database and fill it.

    If filling fails, the table is dropped again: the caller never saw it exist.
    """
    try:
        await _create_table(server, name, rows)
    except BaseException:
        await drop_table(server, name)
        raise


async def _create_table(server: MariaDB | Postgres, name: str, rows: Sequence[Row]) -> None:
    if isinstance(server, MariaDB):
        import aiomysql

        conn = await aiomysql.connect(
            host=server.host, port=server.port, user=server.user, db=server.db, autocommit=True
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    f"CREATE TABLE {name} (k VARCHAR(191) PRIMARY KEY, v TEXT NULL, "
                    "n INTEGER NULL, b BLOB NULL) CHARACTER SET utf8mb4"
                )
                # Binary goes in as hex: aiomysql 0.3.2 cannot escape bytes
                # parameters with current PyMySQL (the loader only binds str keys).
                await cur.executemany(
                    f"INSERT INTO {name} VALUES (%s, %s, %s, UNHEX(%s))",
                    [(k, v, n, None if b is None else b.hex()) for k, v, n, b in rows],
                )
        finally:
            conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(server.dsn)
        try:
            await pg.execute(
                f"CREATE TABLE {name} (k TEXT PRIMARY KEY, v TEXT NULL, "
                "n INTEGER NULL, b BYTEA NULL)"
            )
            await pg.executemany(f"INSERT INTO {name} VALUES ($1, $2, $3, $4)", list(rows))
        finally:
            await pg.close()


async def drop_table(server: MariaDB | Postgres, name: str) -> None:
    """Drop table ``name`` if it exists."""
    if isinstance(server, MariaDB):
        import aiomysql

        conn = await aiomysql.connect(
            host=server.host, port=server.port, user=server.user, db=server.db, autocommit=True
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"DROP TABLE IF EXISTS {name}")
        finally:
            conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(server.dsn)
        try:
            await pg.execute(f"DROP TABLE IF EXISTS {name}")
        finally:
            await pg.close()


def create_sqlite_table(path: Path, name: str, rows: Sequence[Row]) -> None:
    """Create table ``name`` (k, v, n, b) in the SQLite file at ``path`` and fill it."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            f"CREATE TABLE {name} (k TEXT PRIMARY KEY, v TEXT NULL, n INTEGER NULL, b BLOB NULL)"
        )
        conn.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)", rows)
