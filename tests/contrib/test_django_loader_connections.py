"""A Django loader on shoal's thread pool gives its PostgreSQL connection back.

Outside Django's request cycle nothing closes the connections of shoal's loader
threads: 40 loads leave one open connection per pool thread. Wrapped in
``releases_connections``, the same loader leaves none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.databases import ensure_postgres
from helpers.processes import clean_env

pytest.importorskip("django")
pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).with_name("django_loader_connections.py")


def open_after(mode: str, loads: int) -> int:
    pg = ensure_postgres()
    args = [pg.host, str(pg.port), pg.user, pg.db, mode, str(loads)]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return int(json.loads(proc.stdout.splitlines()[-1])["open"])


def test_a_plain_loader_leaves_a_connection_per_pool_thread() -> None:
    assert open_after("plain", 40) > 1


def test_a_released_loader_leaves_none() -> None:
    assert open_after("released", 40) == 0
