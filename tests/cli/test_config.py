"""How ``shoal serve`` turns flags, environment and a TOML file into configuration (in process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import shoal.cli.plan as cli
from shoal.cli.main import build_parser
from shoal.cli.parse import parse_duration, parse_size
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.config import GroupConfig, NodeConfig
from shoal.errors import ConfigError


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan for ``shoal serve ARGV`` under ``env``."""
    args = build_parser().parse_args(["serve", *argv])
    return build_serve_plan(args, env or {})


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        (4096, 4096),
        ("64MiB", 64 << 20),
        ("64mib", 64 << 20),
        ("64M", 64 << 20),
        ("1GB", 1_000_000_000),
        ("1GiB", 1 << 30),
        ("1.5G", 3 << 29),
        ("10 KB", 10_000),
        ("512B", 512),
        ("2TiB", 2 << 40),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    """Sizes take plain integers, SI (1000) and binary (1024) units."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1XB", "MiB", "1.5", "one", True, 1.5, None])
def test_parse_size_rejects(text: object) -> None:
    """Anything that is not a positive whole number of bytes is a ConfigError."""
    with pytest.raises(ConfigError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60", 60.0),
        (60, 60.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("2.5s", 2.5),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    """Durations are seconds, optionally with a unit."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "soon", "1w", "", True, float("inf"), float("nan")])
def test_parse_duration_rejects(text: object) -> None:
    """Zero, negative, infinite and unknown durations are ConfigErrors."""
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_parse_duration_zero_when_allowed() -> None:
    """A delay may be zero."""
    assert parse_duration("0", allow_zero=True) == 0.0


def test_every_config_field_can_be_set() -> None:
    """The CLI knows how to read every GroupConfig and NodeConfig field."""
    group = {f.name for f in dataclasses.fields(GroupConfig)} - {"name"}
    # [api] host/port/unix/tokens_file and the [tls] table have sections of their own.
    node = {f.name for f in dataclasses.fields(NodeConfig)} - {
        "api_host",
        "api_port",
        "api_unix",
        "api_tokens",
        "tls",
    }
    assert set(cli._GROUP_FIELDS) == group
    assert set(cli._NODE_FIELDS) == node


def test_defaults() -> None:
    """Without a file or flags: 127.0.0.1:9999, info logging, group defaults."""
    result = plan("--slowdb")
    assert (result.node.api_host, result.node.api_port) == ("127.0.0.1", 9999)
    assert result.log_level == "info"
    (group,) = result.groups
    assert group.slowdb
    assert group.config == GroupConfig(name="scores")
    assert group.describe() == "SlowDB demo"


def test_precedence_flags_env_file(tmp_path: Path) -> None:
    """Flags beat SHOAL_* variables, which beat the file."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[api]\nhost = "10.0.0.1"\nport = 1000\n[node]\ninsecure = true\n[groups.g]\n'
    )
    assert plan("--config", str(config)).node.api_port == 1000
    env = {"SHOAL_API_PORT": "2000", "SHOAL_LOG_LEVEL": "debug"}
    from_env = plan("--config", str(config), env=env)
    assert (from_env.node.api_host, from_env.node.api_port) == ("10.0.0.1", 2000)
    assert from_env.log_level == "debug"
    from_flags = plan(
        "--config", str(config), "--api-port", "3000", "--log-level", "warning", env=env
    )
    assert from_flags.node.api_port == 3000
    assert from_flags.log_level == "warning"
    # The file may also come from the environment.
    assert plan(env={"SHOAL_CONFIG": str(config)}).node.api_port == 1000


def test_file_group_options_and_flag_overrides(tmp_path: Path) -> None:
    """Every group option is read from the file; --capacity and --ttl override it."""
    config = tmp_path / "c.toml"
    config.write_text(
        """
        [node]
        loader_threads = 4
        max_body_bytes = "1MiB"
        request_timeout = "2m"

        [groups.users]
        loader = "json:loads"
        capacity_bytes = "8MiB"
        capacity_entries = 1000
        ttl = "5m"
        negative_ttl = 10
        load_timeout = 2.5
        codec = "json"
        policy = "lru"
        max_key_bytes = 256
        max_value_bytes = "1MiB"

        [groups.sessions]
        capacity_bytes = "none"
        capacity_entries = 50
        """
    )
    result = plan("--config", str(config), "--capacity", "users=16MiB", "--ttl", "users=30")
    assert result.node.loader_threads == 4
    assert result.node.max_body_bytes == 1 << 20
    assert result.node.request_timeout == 120.0
    users, sessions = result.groups
    assert users.loader == "json:loads"
    assert users.config == GroupConfig(
        name="users",
        capacity_bytes=16 << 20,
        capacity_entries=1000,
        ttl=30.0,
        negative_ttl=10.0,
        load_timeout=2.5,
        codec="json",
        policy="lru",
        max_key_bytes=256,
        max_value_bytes=1 << 20,
    )
    assert sessions.loader is None
    assert sessions.config.capacity_bytes is None
    assert sessions.config.capacity_entries == 50


def test_write_path_options_from_file_and_flags(tmp_path: Path) -> None:
    """mode, stale_while_revalidate, tombstone_ttl and anti_entropy_interval come from the
    file; --mode and --stale set them per group."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[groups.flags]\nmode = "replicated"\ntombstone_ttl = "1h"\nanti_entropy_interval = 2\n'
        '[groups.users]\nstale_while_revalidate = "30s"\n'
    )
    flags, users = plan("--config", str(config)).groups
    assert (flags.config.mode, flags.config.tombstone_ttl) == ("replicated", 3600.0)
    assert flags.config.anti_entropy_interval == 2.0
    assert users.config.stale_while_revalidate == 30.0
    (group,) = plan("--group", "g", "--mode", "g=replicated", "--stale", "g=5").groups
    assert (group.config.mode, group.config.stale_while_revalidate) == ("replicated", 5.0)
    with pytest.raises(ConfigError, match="unknown mode"):
        plan("--group", "g", "--mode", "g=everywhere")


def test_flag_group_replaces_the_file_loader(tmp_path: Path) -> None:
    """``--group NAME=SPEC`` replaces the loader of a group from the file, keeping its options."""
    config = tmp_path / "c.toml"
    config.write_text('[groups.g]\nloader = "json:loads"\nttl = 9\n')
    (group,) = plan("--config", str(config), "--group", "g=json:dumps").groups
    assert group.loader == "json:dumps"
    assert group.config.ttl == 9.0


def test_sql_group_from_flags() -> None:
    """--group with a sql: spec and --query; the description hides the password."""
    (group,) = plan(
        "--group", "g=sql:mysql://app:pw@db:3306/x", "--query", "g=SELECT v FROM t WHERE k = :key"
    ).groups
    assert group.loader == "sql:mysql://app:pw@db:3306/x"
    assert group.query == "SELECT v FROM t WHERE k = :key"
    assert group.describe() == "sql:mysql://app:***@db:3306/x"


def test_query_values_may_contain_equals_signs() -> None:
    """Only the first '=' separates NAME from VALUE."""
    (group,) = plan(
        "--group", "g=sql:sqlite:///x.db", "--query", "g=SELECT v FROM t WHERE k = :key"
    ).groups
    assert group.query == "SELECT v FROM t WHERE k = :key"


def test_slowdb_delay() -> None:
    """--slowdb-delay takes a duration, zero included."""
    assert plan("--slowdb", "--slowdb-delay", "0").slowdb_delay == 0.0
    assert plan("--slowdb", "--slowdb-delay", "200ms").slowdb_delay == 0.2
    assert plan("--slowdb").slowdb_delay is None
    with pytest.raises(ConfigError):
        plan("--slowdb", "--slowdb-delay", "-1")


def test_group_order_is_kept(tmp_path: Path) -> None:
    """Groups appear in the order they were configured: file first, then flags."""
    config = tmp_path / "c.toml"
    config.write_text("[groups.b]\n[groups.a]\n")
    names = [
        g.config.name for g in plan("--config", str(config), "--group", "c", "--slowdb").groups
    ]
    assert names == ["b", "a", "c", "scores"]
