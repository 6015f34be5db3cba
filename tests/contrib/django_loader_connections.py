"""A sync Django loader on shoal's thread pool, and the PostgreSQL connections it leaves.

Run as a script by ``test_django_loader_connections.py`` (Django's settings are
process-wide)::

    python django_loader_connections.py DSN_HOST DSN_PORT USER DB MODE LOADS

MODE is ``plain`` (a loader that only queries) or ``released`` (the same loader
wrapped in :func:`shoal.contrib.django.releases_connections`). It loads LOADS
distinct keys, eight at a time, through a ``SyncNode`` group, then prints as JSON
how many connections of its own PostgreSQL still has open.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def main(host: str, port: str, user: str, db: str, mode: str, loads: str) -> int:
    import django
    from django.conf import settings

    name = f"shoal-django-{os.getpid()}-{mode}"
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": host,
                "PORT": port,
                "USER": user,
                "NAME": db,
                "OPTIONS": {"application_name": name},
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    import psycopg
    from django.db import connection

    from shoal import NodeConfig
    from shoal.contrib.django import releases_connections
    from shoal.sync import SyncNode

    def load(key: str) -> bytes:
        with connection.cursor() as cursor:
            cursor.execute("SELECT upper(%s)", [key])
            (value,) = cursor.fetchone()
        return str(value).encode()

    loader = releases_connections(load) if mode == "released" else load
    with SyncNode(NodeConfig(loader_threads=16)) as node:
        group = node.group("users", loader)
        with ThreadPoolExecutor(8) as pool:
            values = list(pool.map(group.get, [f"user{i}" for i in range(int(loads))]))
        assert values == [f"USER{i}".encode() for i in range(int(loads))], values
        with psycopg.connect(host=host, port=int(port), user=user, dbname=db) as check:
            (open_connections,) = check.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
            ).fetchone()  # type: ignore[misc]
    print(json.dumps({"open": open_connections}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
