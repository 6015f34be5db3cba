"""``--transport`` of ``shoal serve``: flag, environment, file and the default (in process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.cli.main import build_parser
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.config import NodeConfig
from shoal.errors import ConfigError


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan for ``shoal serve ARGV`` under ``env``."""
    args = build_parser().parse_args(["serve", "--slowdb", *argv])
    return build_serve_plan(args, env or {})


def test_http_is_the_default() -> None:
    """Without the flag the peer port speaks the groupcache HTTP protocol."""
    assert plan("--port", "8001").node.transport == "http"


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    """--transport, then SHOAL_TRANSPORT, then [node] transport in the file."""
    config = tmp_path / "shoal.toml"
    config.write_text('[node]\ntransport = "grpc"\n')
    assert plan("--config", str(config)).node.transport == "grpc"
    env = {"SHOAL_TRANSPORT": "http"}
    assert plan("--config", str(config), env=env).node.transport == "http"
    assert plan("--transport", "grpc", env=env).node.transport == "grpc"


def test_unknown_transports_are_refused(tmp_path: Path) -> None:
    """The flag takes http or grpc only; the variable and the file are checked too."""
    with pytest.raises(SystemExit) as exited:
        plan("--transport", "carrier-pigeon")
    assert exited.value.code == 2
    with pytest.raises(ConfigError, match="unknown transport 'udp'"):
        plan(env={"SHOAL_TRANSPORT": "udp"})
    config = tmp_path / "shoal.toml"
    config.write_text('[node]\ntransport = "smtp"\n')
    with pytest.raises(ConfigError, match="unknown transport"):
        plan("--config", str(config))
    with pytest.raises(ConfigError, match="unknown transport"):
        NodeConfig(transport="GRPC")
