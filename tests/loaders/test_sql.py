"""SQL loaders against real databases: every test runs on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.databases import MariaDB, Postgres, create_sqlite_table
from helpers.processes import free_port
from shoal.errors import Closed, LoadError, NotFound, ShoalError
from shoal.loaders import SqlLoader, sql_loader

from .conftest import QUOTED_KEY, ROWS, UNICODE_KEY, Db

MakeLoader = Callable[..., SqlLoader[Any]]


async def test_hit_returns_text_as_utf8(db: Db, make_loader: MakeLoader) -> None:
    """A text cell comes back as its UTF-8 bytes."""
    loader = make_loader(db.dsn, db.query("v"))
    assert await loader("Tom") == b"hello"


async def test_integer_column_is_decimal_text(db: Db, make_loader: MakeLoader) -> None:
    """A number is cached as its decimal text, like the groupcache demo's scores."""
    loader = make_loader(db.dsn, db.query("n"))
    assert await loader("Tom") == b"630"


async def test_binary_column_is_returned_unchanged(db: Db, make_loader: MakeLoader) -> None:
    """Binary cells (BLOB, BYTEA) are returned byte for byte."""
    loader = make_loader(db.dsn, db.query("b"))
    assert await loader("Tom") == b"\x00\xffbin"


async def test_missing_key_raises_not_found(db: Db, make_loader: MakeLoader) -> None:
    """No row means NotFound, which is also a KeyError carrying the key."""
    loader = make_loader(db.dsn, db.query("v"))
    with pytest.raises(NotFound) as info:
        await loader("nobody")
    assert isinstance(info.value, KeyError)
    assert info.value.key == "nobody"


async def test_null_cell_raises_not_found(db: Db, make_loader: MakeLoader) -> None:
    """A row whose value is SQL NULL counts as missing."""
    loader = make_loader(db.dsn, db.query("v"))
    with pytest.raises(NotFound):
        await loader("ghost")


@pytest.mark.parametrize("key", [QUOTED_KEY, UNICODE_KEY])
async def test_awkward_keys_are_bound_parameters(db: Db, make_loader: MakeLoader, key: str) -> None:
    """Keys with quotes, backslashes, '%s', ':key' or non-ASCII text match their own row."""
    loader = make_loader(db.dsn, db.query("v"))
    expected = {QUOTED_KEY: b"quoted", UNICODE_KEY: b"fish"}[key]
    assert await loader(key) == expected


async def test_injection_attempts_are_just_missing_keys(db: Db, make_loader: MakeLoader) -> None:
    """SQL in a key is data: it matches nothing and changes nothing."""
    loader = make_loader(db.dsn, db.query("v"))
    for key in ("' OR '1'='1", f"x'; DROP TABLE {db.table}; --", "1 OR 1=1"):
        with pytest.raises(NotFound):
            await loader(key)
    assert await loader("Tom") == b"hello"  # the table is still there


async def test_key_may_appear_several_times(db: Db, make_loader: MakeLoader) -> None:
    """Each :key occurrence gets the key (positional drivers need it repeated)."""
    loader = make_loader(db.dsn, f"SELECT v FROM {db.table} WHERE k = :key AND :key = k")
    assert await loader("Tom") == b"hello"


async def test_percent_and_literal_key_in_query(db: Db, make_loader: MakeLoader) -> None:
    """A '%' in the query and ':key' inside a literal are left alone."""
    loader = make_loader(
        db.dsn, f"SELECT v FROM {db.table} WHERE k = :key AND v LIKE 'h%' AND ':key' <> k"
    )
    assert await loader("Tom") == b"hello"


async def test_sees_rows_changed_after_the_first_load(db: Db, make_loader: MakeLoader) -> None:
    """A pooled connection reads fresh data, not a snapshot from its first query."""
    loader = make_loader(db.dsn, db.query("v"), pool_size=1)
    assert await loader("Tom") == b"hello"
    await db.set_v("Tom", "changed")
    assert await loader("Tom") == b"changed"


async def test_concurrent_first_calls_open_one_pool(db: Db, make_loader: MakeLoader) -> None:
    """Many misses arriving before any connection exists share one pool."""
    loader = make_loader(db.dsn, db.query("v"), pool_size=3)
    results = await asyncio.gather(*(loader("Tom") for _ in range(40)))
    assert results == [b"hello"] * 40
    stats = loader.statistics()
    assert stats.pools_opened == 1
    assert stats.queries == 40
    assert stats.errors == 0


async def test_query_error_is_a_load_error_chained_to_the_driver(
    db: Db, make_loader: MakeLoader
) -> None:
    """A driver failure becomes LoadError, with the driver's exception as its cause."""
    loader = make_loader(db.dsn, "SELECT v FROM shoal_no_such_table WHERE k = :key")
    with pytest.raises(LoadError) as info:
        await loader("Tom")
    cause = info.value.__cause__
    assert cause is not None
    assert not isinstance(cause, ShoalError)
    assert loader.statistics().errors == 1


async def test_aclose_closes_and_later_loads_fail(db: Db, make_loader: MakeLoader) -> None:
    """After aclose the loader refuses loads; aclose is idempotent."""
    loader = make_loader(db.dsn, db.query("v"))
    assert await loader("Tom") == b"hello"
    await loader.aclose()
    assert loader.statistics().closed
    with pytest.raises(Closed):
        await loader("Tom")
    await loader.aclose()


async def test_aclose_without_any_load(db: Db, make_loader: MakeLoader) -> None:
    """Closing a loader that never connected opens nothing."""
    loader = make_loader(db.dsn, db.query("v"))
    await loader.aclose()
    assert loader.statistics().pools_opened == 0


# --------------------------------------------------------------------------- server-side checks


async def _session_alive(server: MariaDB | Postgres, session_id: int) -> bool:
    if isinstance(server, MariaDB):
        import aiomysql

        conn = await aiomysql.connect(
            host=server.host, port=server.port, user=server.user, db=server.db, autocommit=True
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                    (session_id,),
                )
                row = await cur.fetchone()
        finally:
            conn.close()
        return bool(row[0])
    import asyncpg

    pg = await asyncpg.connect(server.dsn)
    try:
        count = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", session_id
        )
    finally:
        await pg.close()
    return bool(count)


async def _wait_session_gone(server: MariaDB | Postgres, session_id: int) -> None:
    # The server notices a closed socket asynchronously; give it a bounded while.
    for _ in range(200):
        if not await _session_alive(server, session_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"database session {session_id} is still open after aclose()")


_SESSION_ID_QUERY = {
    "mariadb": "SELECT CONNECTION_ID() FROM DUAL WHERE :key IS NOT NULL",
    "postgres": "SELECT pg_backend_pid() WHERE :key IS NOT NULL",
}


async def test_aclose_disconnects_from_the_server(server_db: Db, make_loader: MakeLoader) -> None:
    """aclose ends the loader's sessions on the database server."""
    assert server_db.server is not None
    loader = make_loader(server_db.dsn, _SESSION_ID_QUERY[server_db.kind], pool_size=1)
    session_id = int(await loader("any"))
    assert await _session_alive(server_db.server, session_id)
    await loader.aclose()
    await _wait_session_gone(server_db.server, session_id)


async def test_sqlite_aclose_stops_the_reader_threads(tmp_path: Path) -> None:
    """aclose joins the SQLite reader threads and closes their connections."""
    path = tmp_path / "x.db"
    create_sqlite_table(path, "t", ROWS)
    loader = sql_loader(f"sqlite://{path}", "SELECT v FROM t WHERE k = :key")
    try:
        assert await loader("Tom") == b"hello"
        assert any(t.name.startswith("shoal-sqlite") for t in threading.enumerate())
    finally:
        await loader.aclose()
    assert not any(t.name.startswith("shoal-sqlite") for t in threading.enumerate())


_SLOW_QUERY = {
    # Sleeps for :key seconds, then answers "done".
    "mariadb": "SELECT 'done' FROM DUAL WHERE SLEEP(:key) = 0",
    "postgres": "SELECT 'done' FROM pg_sleep(:key::float)",
}


async def test_cancelled_query_leaves_the_pool_usable(
    server_db: Db, make_loader: MakeLoader
) -> None:
    """A query cut short (as by the group's load_timeout) does not poison the connection."""
    loader = make_loader(server_db.dsn, _SLOW_QUERY[server_db.kind], pool_size=1)
    assert await loader("0") == b"done"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await loader("30")
    assert await loader("0") == b"done"


@pytest.mark.parametrize("kind", ["mysql", "postgresql"])
async def test_connect_failure_masks_the_password(kind: str, make_loader: MakeLoader) -> None:
    """An unreachable server gives LoadError naming the database, never the password."""
    dsn = f"{kind}://app:s3cr3t-pw@127.0.0.1:{free_port()}/test"
    loader = make_loader(dsn, "SELECT v FROM t WHERE k = :key")
    with pytest.raises(LoadError) as info:
        await loader("Tom")
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert "app:***@127.0.0.1" in message
    assert "s3cr3t-pw" not in repr(loader)
    assert loader.statistics().pools_opened == 0
