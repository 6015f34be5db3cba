"""Fixtures shared by the whole suite: the machine's database servers."""

from __future__ import annotations

import pytest

from procs import MariaDB, Postgres, ensure_mariadb, ensure_postgres


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    """The MariaDB server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_mariadb()


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """The PostgreSQL server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_postgres()
