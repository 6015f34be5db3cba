"""The example apps under real servers: FastAPI under ``uvicorn --workers 3``, Flask under
``gunicorn -w 3`` (with and without ``--preload``), on two "hosts" (127.0.0.1 and 127.0.0.2).

Each host runs one ``shoal serve`` node (the two form a cluster; their loader is a
``sql:`` loader on a real PostgreSQL table) and one app server whose three workers
talk to that node. Hit over HTTP, every key is loaded once across all workers and
hosts, and a ``PUT`` through one worker is what every later request on every worker
of both hosts reads.
"""

from __future__ import annotations

import contextlib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.databases import Postgres, run_async, table_name
from helpers.processes import (
    ProcessGroup,
    ShoalServer,
    free_ports,
    group_stats,
    process_group,
    shoal_nodes,
)

pytestmark = pytest.mark.postgres

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent
HOSTS = ("127.0.0.1", "127.0.0.2")
KEYS = [f"page-{i}" for i in range(6)]


def body_of(key: str) -> str:
    """What the table holds for ``key`` before any write."""
    return f"the page called {key}"


async def _create(server: Postgres, table: str) -> None:
    import asyncpg

    pg = await asyncpg.connect(server.dsn)
    try:
        await pg.execute(f"CREATE TABLE {table} (slug TEXT PRIMARY KEY, body TEXT NOT NULL)")
        await pg.executemany(
            f"INSERT INTO {table} VALUES ($1, $2)", [(k, body_of(k)) for k in KEYS]
        )
    finally:
        await pg.close()


async def _query(server: Postgres, sql: str, *args: object) -> object:
    import asyncpg

    pg = await asyncpg.connect(server.dsn)
    try:
        return await pg.fetchval(sql, *args)
    finally:
        await pg.close()


@pytest.fixture
def pages(postgres: Postgres) -> Iterator[str]:
    """A fresh ``pages`` table (slug, body) holding :data:`KEYS`; dropped afterwards."""
    table = table_name()
    run_async(_create(postgres, table))
    try:
        yield table
    finally:
        run_async(_query(postgres, f"DROP TABLE IF EXISTS {table}"))


@contextlib.contextmanager
def two_node_cluster(postgres: Postgres, table: str) -> Iterator[list[ShoalServer]]:
    """One node per host, members of one cluster, loading ``pages`` from ``table``."""
    peer_ports = free_ports(2)
    urls = [f"http://{ip}:{port}" for ip, port in zip(HOSTS, peer_ports, strict=True)]
    common = [
        "--peers",
        ",".join(urls),
        "--group",
        f"pages=sql:{postgres.dsn}",
        "--query",
        f"pages=SELECT body FROM {table} WHERE slug = :key",
        "--codec",
        "pages=str",
    ]
    args = [["--host", ip, *common] for ip in HOSTS]
    with shoal_nodes(args, peer_ports=peer_ports) as nodes:
        yield nodes


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, str, int]:
    """One request on a new connection: status, body and the answering worker's pid."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), int(resp.headers.get("X-Worker", 0))
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(), 0


def get(url: str) -> tuple[int, str, int]:
    """``GET url`` (see :func:`request`)."""
    return request("GET", url)


def wait_ready(app: ProcessGroup, base: str, within: float = 60.0) -> None:
    """Until the server answers (a 404 for ``/``: no cache call is made)."""
    deadline = time.monotonic() + within
    while True:
        if app.proc.poll() is not None:
            raise AssertionError(f"the app server exited:\n{app.output()}")
        try:
            request("GET", f"{base}/")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{base} did not answer:\n{app.output()}") from None
            time.sleep(0.1)


def loads(nodes: list[ShoalServer]) -> int:
    """Loads run for ``pages`` by the whole cluster."""
    return sum(group_stats(node, "pages")["loads_run"] for node in nodes)


STALENESS = 5.0
"""Seconds a near cache may answer the old value after a write (docs/workers.md
measures the bound: p99 0.13 s on a busy machine); without one, none."""


def check_one_cache(
    bases: list[str], nodes: list[ShoalServer], put_through: str, *, near: bool = False
) -> set[int]:
    """Hit every server concurrently; check loads and a write's visibility; the pids seen."""
    seen: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        urls = [f"{base}/pages/{key}" for key in KEYS for base in bases for _ in range(4)]
        for url, (status, text, pid) in zip(urls, pool.map(get, urls), strict=True):
            assert status == 200, (url, text)
            assert text == body_of(url.rsplit("/", 1)[1])
            seen.add(pid)
        assert loads(nodes) == len(KEYS), "each key loaded once across all workers and hosts"
        status, _, _ = request("PUT", f"{put_through}/pages/page-0", b"rewritten")
        assert status == 204
        urls = [f"{base}/pages/page-0" for base in bases for _ in range(12)]
        deadline = time.monotonic() + STALENESS
        while near and time.monotonic() < deadline:  # until every near cache dropped it
            if all(r[1] == "rewritten" for r in pool.map(get, urls)):
                break
            time.sleep(0.05)
        for url, (status, text, pid) in zip(urls, pool.map(get, urls), strict=True):
            assert (status, text) == (200, "rewritten"), url
            seen.add(pid)
    assert loads(nodes) == len(KEYS)
    return seen


@contextlib.contextmanager
def outputs_on_failure(apps: list[ProcessGroup], nodes: list[ShoalServer]) -> Iterator[None]:
    """Add the app servers' and nodes' logs to a failure's message."""
    try:
        yield
    except AssertionError as exc:
        logs = [app.output() for app in apps] + [node.stderr() for node in nodes]
        raise AssertionError(f"{exc}\n" + "\n----\n".join(logs)) from exc


def workers_seen(pids: set[int], server: ProcessGroup) -> None:
    """Requests reached more than one worker of ``server`` (pids are its children)."""
    children = set(
        map(
            int,
            Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split(),
        )
    )
    assert len(pids & children) >= 2, (pids, children)


def test_fastapi_under_uvicorn_workers(postgres: Postgres, pages: str) -> None:
    """FastAPI + PostgreSQL loader: ``uvicorn --workers 3`` on each of two hosts."""
    ports = free_ports(2)
    bases = [f"http://{ip}:{port}" for ip, port in zip(HOSTS, ports, strict=True)]
    with two_node_cluster(postgres, pages) as nodes, contextlib.ExitStack() as stack:
        apps = []
        for ip, port, node in zip(HOSTS, ports, nodes, strict=True):
            command = [str(BIN / "uvicorn"), "app:app", "--workers", "3", "--host", ip]
            command += ["--port", str(port), "--app-dir", str(EXAMPLES / "fastapi_pages")]
            env = {"SHOAL_NODE": node.url, "DATABASE_URL": postgres.dsn, "PAGES_TABLE": pages}
            apps.append(stack.enter_context(process_group(command, env=env)))
        for app, base in zip(apps, bases, strict=True):
            wait_ready(app, base)
        with outputs_on_failure(apps, nodes):
            pids = check_one_cache(bases, nodes, put_through=bases[1])
        stored = run_async(_query(postgres, f"SELECT body FROM {pages} WHERE slug = 'page-0'"))
        assert stored == "rewritten", "the PUT wrote the row too"
        for app in apps:
            workers_seen(pids, app)


@pytest.mark.parametrize(
    ("preload", "near"),
    [(False, False), (True, False), (True, True)],
    ids=["fork-then-import", "preload", "preload-near-cache"],
)
def test_flask_under_gunicorn_workers(
    postgres: Postgres, pages: str, preload: bool, near: bool
) -> None:
    """Flask: ``gunicorn -w 3`` (``--preload`` too, and with a near cache in every
    worker) on each of two hosts."""
    ports = free_ports(2)
    bases = [f"http://{ip}:{port}" for ip, port in zip(HOSTS, ports, strict=True)]
    with two_node_cluster(postgres, pages) as nodes, contextlib.ExitStack() as stack:
        apps = []
        for ip, port, node in zip(HOSTS, ports, nodes, strict=True):
            command = [str(BIN / "gunicorn"), "-w", "3", "-b", f"{ip}:{port}"]
            command += ["--chdir", str(EXAMPLES / "flask_pages"), "--graceful-timeout", "2"]
            command += [*(["--preload"] if preload else []), "app:app"]
            env = {"SHOAL_NODE": node.url, "SHOAL_NEAR_CACHE": "1" if near else "0"}
            apps.append(stack.enter_context(process_group(command, env=env)))
        for app, base in zip(apps, bases, strict=True):
            wait_ready(app, base)
        with outputs_on_failure(apps, nodes):
            pids = check_one_cache(bases, nodes, put_through=bases[0], near=near)
        for app in apps:
            workers_seen(pids, app)
