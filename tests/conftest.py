"""Fixtures shared by the whole suite: the machine's database servers; and the
hypothesis profile of ``make fuzz`` (``SHOAL_FUZZ_EXAMPLES`` examples per property)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from helpers.databases import MariaDB, Postgres, ensure_mariadb, ensure_postgres

# Nodes the tests start stop at once on SIGTERM (a drain is asked for where it is tested);
# helpers.processes.clean_env() says the same for the environments it builds.
os.environ.setdefault("SHOAL_DRAIN", "0")

if os.environ.get("SHOAL_FUZZ_EXAMPLES"):
    settings.register_profile(
        "fuzz", max_examples=int(os.environ["SHOAL_FUZZ_EXAMPLES"]), deadline=None
    )
    settings.load_profile("fuzz")


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    """The MariaDB server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_mariadb()


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """The PostgreSQL server (started if down; skipped, or failed under CI, if unavailable)."""
    return ensure_postgres()
