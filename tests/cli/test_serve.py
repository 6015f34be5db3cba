"""``shoal serve`` as a real process: the demo, SQL groups, config files, signals, bad config."""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import time
from pathlib import Path

import pytest

import shoal
from helpers.databases import (
    MariaDB,
    Postgres,
    Row,
    create_sqlite_table,
    create_table,
    drop_table,
    run_async,
    table_name,
)
from helpers.processes import ShoalServer, clean_env, free_port, http_get, run_shoal, shoal_serve

ROWS: list[Row] = [("Tom", "hello", 630, None), ("ghost", None, None, None)]


def wait_for_text(read: object, text: str, timeout: float = 10.0) -> str:
    """Poll ``read()`` (a server's log) until it contains ``text``; return what was read."""
    assert callable(read)
    deadline = time.monotonic() + timeout
    while True:
        content: str = read()
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.02)


# --------------------------------------------------------------------------- the demo


def test_demo_answers_like_the_seeds(slowdb: ShoalServer) -> None:
    """``curl 'http://127.0.0.1:PORT/api?key=Tom'`` answers 630."""
    assert http_get(f"{slowdb.url}/api?key=Tom") == (200, b"630")
    assert http_get(f"{slowdb.url}/v1/groups/scores/keys/Lily") == (200, b"589")


def test_demo_unknown_name_is_a_json_404(slowdb: ShoalServer) -> None:
    """A name the database does not have is a 404 with a JSON error."""
    status, body = http_get(f"{slowdb.url}/api?key=Nobody")
    assert status == 404
    assert json.loads(body) == {"error": "key not found: 'Nobody'", "code": "not_found"}


def test_demo_logs_each_real_load_once(slowdb: ShoalServer) -> None:
    """The SlowDB logs a search on a miss; the second get is a hit and logs nothing."""
    assert http_get(f"{slowdb.url}/api?key=Sam") == (200, b"567")
    assert http_get(f"{slowdb.url}/api?key=Sam") == (200, b"567")
    log = wait_for_text(slowdb.stderr, "[SlowDB] search key Sam")
    assert log.count("[SlowDB] search key Sam") == 1


def test_banner_has_a_ready_to_paste_curl(slowdb: ShoalServer) -> None:
    """One line per group, with a curl command for this very server."""
    banner = slowdb.stdout()
    assert f"curl 'http://127.0.0.1:{slowdb.port}/api?key=Tom'" in banner
    assert "'scores'" in banner
    assert len(banner.strip().splitlines()) == 1


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_exit_0(sig: signal.Signals) -> None:
    """SIGINT (Ctrl-C) and SIGTERM close the node and exit 0, without a traceback."""
    with shoal_serve("--slowdb") as server:
        assert http_get(f"{server.url}/api?key=Tom") == (200, b"630")
        assert server.stop(sig) == 0
        log = server.stderr()
    assert "Traceback" not in log
    assert f"received {sig.name}, shutting down" in log
    assert "stopped" in log


def test_demo_database_is_removed_on_exit() -> None:
    """The SlowDB's temporary directory does not outlive the server."""
    with shoal_serve("--slowdb") as server:
        assert http_get(f"{server.url}/api?key=Tom") == (200, b"630")
        stats = json.loads(http_get(f"{server.url}/v1/stats")[1])
        assert stats["groups"]["scores"]["local_loads"] == 1
        # SQLite keeps the file open, so the server's open files show where it is.
        open_files = [p.resolve() for p in Path(f"/proc/{server.proc.pid}/fd").iterdir()]
        databases = [p for p in open_files if p.name == "scores.db"]
        assert databases, "the demo database is not open"
        assert server.stop(signal.SIGTERM) == 0
    assert not databases[0].exists()
    assert not databases[0].parent.exists()


# --------------------------------------------------------------------------- SQL groups


def test_sqlite_file_group(tmp_path: Path) -> None:
    """``--group NAME=sql:sqlite:///file --query NAME=SQL`` serves from that file."""
    path = tmp_path / "x.db"
    create_sqlite_table(path, "people", ROWS)
    with shoal_serve(
        "--group",
        f"people=sql:sqlite://{path}",
        "--query",
        "people=SELECT n FROM people WHERE k = :key",
    ) as server:
        assert http_get(f"{server.url}/api?key=Tom") == (200, b"630")
        assert http_get(f"{server.url}/api?key=ghost")[0] == 404
        assert http_get(f"{server.url}/api?key=nobody")[0] == 404
        assert f"'people' ready (sql:sqlite://{path})" in server.stdout()


@pytest.mark.parametrize(
    "db",
    [
        pytest.param("mariadb", marks=pytest.mark.mysql),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_sql_group_on_a_database_server(db: str, request: pytest.FixtureRequest) -> None:
    """A sql: group on MariaDB and on PostgreSQL, through a real server process."""
    server_db: MariaDB | Postgres = request.getfixturevalue(db)
    name = table_name()
    run_async(create_table(server_db, name, ROWS))
    try:
        with shoal_serve(
            "--group",
            f"people=sql:{server_db.dsn}",
            "--query",
            f"people=SELECT n FROM {name} WHERE k = :key",
        ) as server:
            assert http_get(f"{server.url}/api?key=Tom") == (200, b"630")
            assert http_get(f"{server.url}/api?key=nobody")[0] == 404
            assert server.stop(signal.SIGTERM) == 0
    finally:
        run_async(drop_table(server_db, name))


def test_database_failure_is_a_502_and_the_server_keeps_going(tmp_path: Path) -> None:
    """A loader error reaches the client as 502 JSON; the node stays up."""
    with shoal_serve(
        "--group",
        f"people=sql:sqlite://{tmp_path}/absent.db",
        "--query",
        "people=SELECT n FROM people WHERE k = :key",
    ) as server:
        status, body = http_get(f"{server.url}/api?key=Tom")
        assert status == 502
        assert json.loads(body)["code"] == "load_failed"
        assert http_get(f"{server.url}/healthz") == (200, b"ok")


# --------------------------------------------------------------------------- config files


def test_config_file_groups_and_flag_overrides(tmp_path: Path) -> None:
    """A TOML file defines groups and the API; flags override it."""
    path = tmp_path / "x.db"
    create_sqlite_table(path, "people", ROWS)
    config = tmp_path / "shoal.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [api]
            host = "127.0.0.1"
            port = 1  # overridden by --api-port

            [node]
            request_timeout = "30s"

            [groups.people]
            loader = "sql:sqlite://{path}"
            query = "SELECT v FROM people WHERE k = :key"
            capacity_bytes = "1MiB"
            ttl = 60

            [groups.notes]
            capacity_entries = 100
            """
        )
    )
    with shoal_serve("--config", str(config), "--capacity", "notes=64KiB") as server:
        assert http_get(f"{server.url}/api?key=Tom&group=people") == (200, b"hello")
        # Two groups: /api needs the group parameter.
        assert http_get(f"{server.url}/api?key=Tom")[0] == 400
        # A group without a loader is a plain cache.
        assert http_get(f"{server.url}/api?key=n1&group=notes")[0] == 404
        stored = run_shoal("set", "n1", "remember", "--group", "notes", "--url", server.url)
        assert stored.returncode == 0, stored.stderr
        assert http_get(f"{server.url}/api?key=n1&group=notes") == (200, b"remember")
        stats = json.loads(http_get(f"{server.url}/v1/stats")[1])["groups"]

        def budget(group: str, bound: str) -> int:
            # The group's budget is shared by its main and its hot cache.
            return int(stats[group]["main"][bound] + stats[group]["hot"][bound])

        assert budget("people", "capacity_bytes") == 1 << 20
        assert budget("notes", "capacity_bytes") == 64 << 10
        assert budget("notes", "capacity_entries") == 100
        banner = server.stdout().splitlines()
        assert len(banner) == 2
        assert f"curl 'http://127.0.0.1:{server.port}/api?key=KEY&group=people'" in banner[0]


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    """``SHOAL_CONFIG`` names the file when ``--config`` is not given."""
    config = tmp_path / "shoal.toml"
    config.write_text("[groups.notes]\n")
    with shoal_serve(env=clean_env(SHOAL_CONFIG=str(config))) as server:
        assert "'notes'" in server.stdout()


# --------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        ((), {}, "no groups to serve"),
        (("--group", "x=nope"), {}, "must be 'module:function' or 'sql:DSN'"),
        (("--group", "x=shoal_no_such_module:load"), {}, "no module named"),
        (("--slowdb", "--capacity", "scores=12XB"), {}, "unknown unit"),
        (("--slowdb", "--ttl", "scores=-1"), {}, "ttl"),
        (("--slowdb", "--capacity", "other=1MiB"), {}, "no group 'other'"),
        (("--slowdb", "--api-port", "http"), {}, "api port"),
        (("--slowdb", "--api-port", "70000"), {}, "api port"),
        (("--group", "x=json:loads", "--query", "x=SELECT 1"), {}, "needs a sql: loader"),
        (("--group", "x=sql:sqlite:///x.db"), {}, "needs a query"),
        (("--group", "x=sql:sqlite:///x.db", "--query", "x=SELECT v"), {}, ":key"),
        (("--group", "bad name=json:loads"), {}, "group name"),
        (("--group", "x=sql:oracle://u:s3cret@h/db", "--query", "x=:key"), {}, "unsupported"),
        (("--config", "{tmp}/absent.toml"), {}, "cannot read config file"),
        (("--config", "{tmp}/c.toml"), {"c.toml": "[groups.x\n"}, "invalid TOML"),
        (("--config", "{tmp}/c.toml"), {"c.toml": "[groups.x]\nsize = 1\n"}, "unknown key"),
        (("--config", "{tmp}/c.toml"), {"c.toml": "[cache]\n"}, "unknown section"),
        (("--config", "{tmp}/c.toml"), {"c.toml": "[node]\nthreads = 2\n"}, "unknown key"),
        (
            ("--slowdb", "--codec", "scores=json"),
            {},
            "codec must be 'bytes'",
        ),
        (("--slowdb", "--group", "scores=json:loads"), {}, "already has the loader"),
        (("--slowdb", "--peers", "http://127.0.0.1:1"), {}, "--peers needs --port"),
        (("--slowdb", "--port", "1", "--peers", "ftp://h:1"), {}, "must be a URL"),
        (("--slowdb", "--port", "1", "--peers", "http://a:1,,http://b:2"), {}, "empty entry"),
        (("--slowdb", "--port", "1", "--peers", "http://a:1/x"), {}, "nothing after it"),
        (("--slowdb", "--port", "0", "--peers", "http://a:1"), {}, "--port 0"),
        (("--slowdb", "--port", "1", "--self", "http://a:x"), {}, "bad port"),
        (
            ("--slowdb", "--host", "0.0.0.0", "--port", "1", "--peers", "http://a:1"),
            {},
            "give --self",
        ),
        (("--slowdb", "--port", "70000"), {}, "--port must be 0-65535"),
        (("--slowdb", "--replicas", "many"), {}, "--replicas must be a whole number"),
        (("--slowdb", "--peer-timeout", "0"), {}, "--peer-timeout must be positive"),
        (("--slowdb", "--base-path", "groupcache"), {}, "base_path must start and end"),
        (("--group", "g", "--slowdb-file", "{tmp}/x.db"), {}, "needs --slowdb"),
        (("--config", "{tmp}/c.toml"), {"c.toml": '[node]\nring = "ketama"\n'}, "ketama"),
        (("--config", "{tmp}/c.toml"), {"c.toml": "[node]\npeers = 3\n"}, "[node] peers"),
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], files: dict[str, str], message: str
) -> None:
    """Bad configuration: exit code 2 and one line on stderr naming the problem."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_shoal("serve", "--api-port", str(free_port()), *argv)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("shoal serve: error: ")
    assert "s3cret" not in stderr  # a DSN's password never reaches the terminal


def test_port_in_use_exits_1() -> None:
    """A port that cannot be bound is a runtime failure (exit 1), reported in one line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_shoal("serve", "--slowdb", "--api-port", str(port))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "cannot start" in stderr
    assert "Traceback" not in stderr


def test_help_and_version() -> None:
    """``--help`` and ``--version`` work without a server."""
    help_text = run_shoal("serve", "--help")
    assert help_text.returncode == 0
    assert b"--slowdb" in help_text.stdout
    version = run_shoal("--version")
    assert version.returncode == 0
    assert version.stdout.startswith(f"shoal {shoal.__version__} ".encode())
    assert b"(with its C speedups)" in version.stdout  # the test install compiles them
    off = run_shoal("--version", env=clean_env(SHOAL_NO_SPEEDUPS="1"))
    assert b"pure Python: the C speedups are turned off by SHOAL_NO_SPEEDUPS" in off.stdout


def test_the_version_is_the_installed_one() -> None:
    """``shoal.__version__`` is a constant (no metadata lookup on import), and the build
    takes it from there: the installed distribution says the same."""
    from importlib.metadata import version

    assert shoal.__version__ == version("shoal")


def test_unknown_command_is_a_usage_error() -> None:
    """argparse errors are one line and exit 2."""
    result = run_shoal("frobnicate")
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1
