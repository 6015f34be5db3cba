"""Fixtures for the CLI tests: real ``shoal serve`` processes and the database servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from procs import MariaDB, Postgres, ShoalServer, ensure_mariadb, ensure_postgres, shoal_serve


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    """The MariaDB server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_mariadb()


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """The PostgreSQL server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_postgres()


@pytest.fixture(scope="module")
def slowdb() -> Iterator[ShoalServer]:
    """``shoal serve --slowdb`` shared by the tests of one module (they use distinct keys)."""
    with shoal_serve("--slowdb") as server:
        yield server
