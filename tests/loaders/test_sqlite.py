"""What is specific to the SQLite loader: file paths, read-only access, missing files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from helpers.databases import create_sqlite_table
from shoal.errors import LoadError
from shoal.loaders import SQLiteLoader, sql_loader

from .conftest import ROWS


async def test_missing_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    """A path with no database fails the load (never creates an empty file)."""
    path = tmp_path / "absent.db"
    loader = sql_loader(f"sqlite://{path}", "SELECT v FROM t WHERE k = :key")
    try:
        with pytest.raises(LoadError, match=r"absent\.db"):
            await loader("Tom")
        assert not path.exists()
        # A failed open is not remembered as a pool: the next load tries again.
        create_sqlite_table(path, "t", ROWS)
        assert await loader("Tom") == b"hello"
        assert loader.statistics().pools_opened == 1
    finally:
        await loader.aclose()


async def test_not_a_database_is_a_load_error(tmp_path: Path) -> None:
    """A file that is not SQLite fails the first load clearly."""
    path = tmp_path / "text.db"
    path.write_text("this is not a database, just some text that is long enough" * 20)
    loader = sql_loader(f"sqlite://{path}", "SELECT v FROM t WHERE k = :key")
    try:
        with pytest.raises(LoadError, match="not a database"):
            await loader("Tom")
    finally:
        await loader.aclose()


async def test_relative_path_and_awkward_directory_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite://rel/x.db`` is relative; spaces, '?' and '#' in paths work (%-escaped or not)."""
    awkward = tmp_path / "dir with space?#"
    awkward.mkdir()
    create_sqlite_table(awkward / "x.db", "t", ROWS)
    monkeypatch.chdir(tmp_path)
    dsns = [
        "sqlite://dir%20with%20space%3F%23/x.db",
        f"sqlite://{tmp_path}/dir%20with%20space%3F%23/x.db",
        f"sqlite://{tmp_path}/dir with space%3F%23/x.db",
    ]
    for dsn in dsns:
        loader = sql_loader(dsn, "SELECT v FROM t WHERE k = :key")
        assert isinstance(loader, SQLiteLoader)
        try:
            assert await loader("Tom") == b"hello", dsn
        finally:
            await loader.aclose()


async def test_connection_is_read_only(tmp_path: Path) -> None:
    """The loader opens the file read-only: a writing query fails and changes nothing."""
    path = tmp_path / "x.db"
    create_sqlite_table(path, "t", ROWS)
    loader = sql_loader(f"sqlite://{path}", "INSERT INTO t (k, v) VALUES (:key, 'new') RETURNING v")
    reader = sql_loader(f"sqlite://{path}", "SELECT v FROM t WHERE k = :key")
    try:
        with pytest.raises(LoadError, match="readonly"):
            await loader("Ann")
        with pytest.raises(KeyError):
            await reader("Ann")
    finally:
        await loader.aclose()
        await reader.aclose()


async def test_reads_run_in_parallel_threads(tmp_path: Path) -> None:
    """Concurrent loads are spread over the reader threads, each with its own connection."""
    path = tmp_path / "x.db"
    create_sqlite_table(path, "t", ROWS)
    loader = sql_loader(f"sqlite://{path}", "SELECT v FROM t WHERE k = :key", pool_size=4)
    try:
        results = await asyncio.gather(*(loader(k) for k in ["Tom"] * 100))
        assert set(results) == {b"hello"}
    finally:
        await loader.aclose()
