"""Every setting of the config classes can be given to ``shoal serve`` by a flag: each
parses to the right config, and a real node runs with several of them and no HTTP API."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import shoal.cli.plan as plan_module
from helpers.processes import clean_env, free_ports, http_request, shoal_cmd, stop
from shoal.cli.cluster import child_arguments, plan_members
from shoal.cli.main import build_parser
from shoal.cli.membership_flags import _FLAG_KEYS
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.config import EtcdConfig, GossipConfig, GroupConfig, NodeConfig
from shoal.errors import ConfigError


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan of ``shoal serve ARGV`` with ``env`` as the environment."""
    args = build_parser().parse_args(["serve", *argv])
    return build_serve_plan(args, env or {})


# (flag, value after NAME=, GroupConfig field, expected value)
GROUP_FLAGS = [
    ("--capacity-entries", "500", "capacity_entries", 500),
    ("--policy", "arc", "policy", "arc"),
    ("--negative-ttl", "30s", "negative_ttl", 30.0),
    ("--load-timeout", "500ms", "load_timeout", 0.5),
    ("--codec", "json", "codec", "json"),
    ("--max-key-bytes", "64", "max_key_bytes", 64),
    ("--max-value-bytes", "1MiB", "max_value_bytes", 1 << 20),
    ("--hot-fraction", "0.25", "hot_fraction", 0.25),
    ("--hot-rate-count", "5", "hot_rate_count", 5),
    ("--hot-rate-window", "10m", "hot_rate_window", 600.0),
    ("--tombstone-ttl", "1h", "tombstone_ttl", 3600.0),
    ("--anti-entropy-interval", "2s", "anti_entropy_interval", 2.0),
    ("--capacity", "1GB", "capacity_bytes", 1_000_000_000),
    ("--ttl", "60", "ttl", 60.0),
    ("--mode", "replicated", "mode", "replicated"),
    ("--stale", "5s", "stale_while_revalidate", 5.0),
]

# (flag, value, NodeConfig field, expected value, environment variable)
NODE_FLAGS = [
    ("--loader-threads", "4", "loader_threads", 4, "SHOAL_LOADER_THREADS"),
    ("--sweep-interval", "250ms", "sweep_interval", 0.25, "SHOAL_SWEEP_INTERVAL"),
    ("--max-header-bytes", "8KiB", "max_header_bytes", 8 << 10, "SHOAL_MAX_HEADER_BYTES"),
    ("--max-body-bytes", "1MB", "max_body_bytes", 1_000_000, "SHOAL_MAX_BODY_BYTES"),
    ("--header-timeout", "3s", "header_timeout", 3.0, "SHOAL_HEADER_TIMEOUT"),
    ("--body-timeout", "4s", "body_timeout", 4.0, "SHOAL_BODY_TIMEOUT"),
    ("--keepalive-timeout", "1m", "keepalive_timeout", 60.0, "SHOAL_KEEPALIVE_TIMEOUT"),
    ("--request-timeout", "20", "request_timeout", 20.0, "SHOAL_REQUEST_TIMEOUT"),
]


def test_every_group_field_has_a_flag() -> None:
    """Each GroupConfig field is set by a per-group flag or by one for every group."""
    fields = {f.name for f in dataclasses.fields(GroupConfig)} - {"name"}
    per_group = {key for key, *_ in plan_module._PER_GROUP_OPTIONS} - {"query"}
    every_group = {key for key, *_ in plan_module._GROUP_WIDE_OPTIONS}
    assert per_group | every_group == fields
    assert {field for _, _, field, _ in GROUP_FLAGS} == per_group


def test_every_node_field_has_a_flag() -> None:
    """Each NodeConfig field is set by a flag (etcd, gossip and DNS by theirs, tested below)."""
    fields = {f.name for f in dataclasses.fields(NodeConfig)}
    flagged = {key for key, *_ in (*plan_module._CLUSTER_OPTIONS, *plan_module._SERVER_OPTIONS)}
    security = {"tls", "api_tokens", "insecure"}  # tested below
    telemetry = {"otel", "otel_keys"}  # tested below
    api = {"api_host", "api_port", "api_unix"}  # api_unix: test_api_unix_flag_variable_and_file
    assert flagged | api | {"etcd", "gossip", "dns"} | security | telemetry == fields
    assert {field for _, _, field, _, _ in NODE_FLAGS} == {
        key for key, *_ in plan_module._SERVER_OPTIONS
    }


@pytest.mark.parametrize(("flag", "value", "field", "expected"), GROUP_FLAGS)
def test_group_flag_sets_its_field(flag: str, value: str, field: str, expected: Any) -> None:
    """``--FLAG NAME=VALUE`` sets the field of that group only."""
    result = plan("--group", "a", "--group", "b", flag, f"a={value}")
    a, b = (g.config for g in result.groups)
    assert getattr(a, field) == expected
    assert getattr(b, field) == getattr(GroupConfig(name="b"), field)


def test_group_flag_beats_the_file(tmp_path: Path) -> None:
    """A per-group flag overrides the group's value in the TOML file."""
    config = tmp_path / "shoal.toml"
    config.write_text('[groups.a]\npolicy = "lfu"\nhot_rate_count = 3\n')
    (a,) = plan("--config", str(config), "--policy", "a=tinylfu").groups
    assert (a.config.policy, a.config.hot_rate_count) == ("tinylfu", 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["--policy", "nosuch=arc"],
        ["--policy", "a=mru"],
        ["--hot-fraction", "a=1.5"],
        ["--hot-rate-count", "a=many"],
        ["--load-timeout", "a=0"],
        ["--max-key-bytes", "a"],
    ],
)
def test_bad_group_flag_is_a_config_error(argv: list[str]) -> None:
    """An unknown group, an unknown policy, an out-of-range or malformed value: ConfigError."""
    with pytest.raises(ConfigError):
        plan("--group", "a", *argv)


@pytest.mark.parametrize(("flag", "value", "field", "expected", "env"), NODE_FLAGS)
def test_node_flag_and_variable_set_their_field(
    flag: str, value: str, field: str, expected: Any, env: str
) -> None:
    """Each server limit has a flag and a SHOAL_* variable; the flag wins."""
    assert getattr(plan("--group", "a", flag, value).node, field) == expected
    assert getattr(plan("--group", "a", env={env: value}).node, field) == expected
    default = getattr(NodeConfig(), field)
    assert getattr(plan("--group", "a", flag, str(default), env={env: value}).node, field) == (
        default
    )


def test_bad_node_flag_is_a_config_error() -> None:
    """A limit that is not a size or a duration is a ConfigError naming the flag."""
    with pytest.raises(ConfigError, match="--max-body-bytes"):
        plan("--group", "a", "--max-body-bytes", "lots")
    with pytest.raises(ConfigError, match="--header-timeout"):
        plan("--group", "a", "--header-timeout", "-1")


def test_gossip_option_sets_any_gossip_field() -> None:
    """``--gossip-option KEY=VALUE`` reaches every GossipConfig field without a flag of its own."""
    result = plan(
        *("--group", "a", "--port", "7000", "--gossip-port", "7001"),
        *("--gossip-option", "probe_timeout=250ms", "--gossip-option", "max_packet=1200"),
        *("--gossip-option", "indirect_probes=2"),
    )
    gossip = result.node.gossip
    assert gossip is not None
    assert (gossip.probe_timeout, gossip.max_packet, gossip.indirect_probes) == (0.25, 1200, 2)


def test_gossip_option_names_the_keys_it_takes() -> None:
    """A wrong key is refused with the list of the right ones: every GossipConfig field
    but those with a flag of their own."""
    with pytest.raises(ConfigError) as info:
        plan("--group", "a", "--port", "7000", "--gossip-port", "0", "--gossip-option", "x=1")
    listed = str(info.value).split("expected one of ", 1)[1]
    for field in {f.name for f in dataclasses.fields(GossipConfig)}:
        assert (repr(field) in listed) == (field not in _FLAG_KEYS), (field, listed)


def test_etcd_option_sets_any_etcd_field() -> None:
    """``--etcd-option KEY=VALUE`` reaches the EtcdConfig fields without a flag of their own."""
    result = plan(
        *("--group", "a", "--port", "7000", "--etcd", "http://127.0.0.1:2379"),
        *("--etcd-option", "timeout=2s", "--etcd-option", "prefix=/caches"),
        *("--etcd-option", "retry_interval=100ms", "--etcd-option", "keepalive_interval=1"),
    )
    etcd = result.node.etcd
    assert etcd is not None
    assert (etcd.timeout, etcd.prefix, etcd.retry_interval, etcd.keepalive_interval) == (
        2.0,
        "/caches",
        0.1,
        1.0,
    )
    fields = {f.name for f in dataclasses.fields(EtcdConfig)}
    assert fields - _FLAG_KEYS == {"timeout", "prefix", "retry_interval", "keepalive_interval"}


@pytest.mark.parametrize(
    "argv",
    [
        # Tuning alone does not turn gossip on.
        ["--port", "7000", "--gossip-option", "probe_timeout=1"],
        # A key with its own flag is given by that flag.
        ["--port", "7000", "--gossip-port", "0", "--gossip-option", "port=9"],
        ["--port", "7000", "--etcd", "http://e:2379", "--etcd-option", "cluster=x"],
        ["--port", "7000", "--etcd", "http://e:2379", "--etcd-option", "timeout"],
        ["--port", "7000", "--etcd", "http://e:2379", "--etcd-option", "timeout=soon"],
        # Options without etcd endpoints.
        ["--port", "7000", "--etcd-option", "timeout=1"],
    ],
)
def test_bad_membership_option_is_a_config_error(argv: list[str]) -> None:
    """A membership option that cannot apply, or a malformed one, is a ConfigError."""
    with pytest.raises(ConfigError):
        plan("--group", "a", *argv)


def test_api_unix_flag_variable_and_file(tmp_path: Path) -> None:
    """--api-unix, SHOAL_API_UNIX and [api] unix set NodeConfig.api_unix; flags win; a
    node with only the Unix socket needs no --port."""
    assert plan("--group", "a", "--api-unix", "/run/a.sock").node.api_unix == "/run/a.sock"
    env = {"SHOAL_API_UNIX": "/run/e.sock"}
    assert plan("--group", "a", env=env).node.api_unix == "/run/e.sock"
    config = tmp_path / "shoal.toml"
    config.write_text('[api]\nunix = "/run/f.sock"\n[groups.a]\n')
    assert plan("--config", str(config)).node.api_unix == "/run/f.sock"
    assert plan("--config", str(config), env=env).node.api_unix == "/run/e.sock"
    only = plan("--group", "a", "--no-api", "--api-unix", "/run/a.sock").node
    assert (only.api_port, only.api_unix) == (None, "/run/a.sock")
    assert plan("--group", "a").node.api_unix is None


def test_no_api(tmp_path: Path) -> None:
    """``--no-api``, ``--api-port none``, ``SHOAL_API_PORT=none`` and ``port = "none"`` in
    ``[api]`` run no HTTP API; the flag beats the variable; a node with neither an API
    nor a peer port is refused."""
    config = tmp_path / "shoal.toml"
    config.write_text('[api]\nport = "none"\n[node]\nport = 7000\n[groups.a]\n')
    assert plan("--config", str(config)).node.api_port is None
    assert plan("--group", "a", "--port", "7000", "--no-api").node.api_port is None
    assert plan("--group", "a", "--port", "7000", "--api-port", "none").node.api_port is None
    assert (
        plan("--group", "a", "--port", "7000", env={"SHOAL_API_PORT": "none"}).node.api_port is None
    )
    no_api = plan("--group", "a", "--port", "7000", "--no-api", env={"SHOAL_API_PORT": "8080"})
    assert no_api.node.api_port is None
    with pytest.raises(ConfigError, match="--port"):
        plan("--group", "a", "--no-api")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--no-api", "--api-port", "9000"])


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_without_api_with_settings_from_flags() -> None:
    """A real node with ``--no-api`` serves its peer port only, with the limits its flags
    gave it: the group's key bound (414 on the peer protocol), the node's body bound (413)."""
    peer_port, api_port = free_ports(2)
    workdir = Path(tempfile.mkdtemp(prefix="shoal-noapi-"))
    argv = shoal_cmd(
        *("serve", "--no-api", "--port", str(peer_port), "--slowdb", "--slowdb-delay", "0"),
        *("--max-key-bytes", "scores=8", "--policy", "scores=arc", "--max-body-bytes", "64"),
        *("--load-timeout", "scores=5s", "--loader-threads", "2", "--log-level", "warning"),
    )
    out_path = workdir / "stdout"
    try:
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(SHOAL_API_PORT=str(api_port)),
                start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{peer_port}/_groupcache/scores"
            deadline = time.monotonic() + 30
            while "no HTTP API" not in out_path.read_text(errors="replace"):
                assert proc.poll() is None, out_path.read_text(errors="replace")
                assert time.monotonic() < deadline, out_path.read_text(errors="replace")
                time.sleep(0.05)
            status, body = http_request("GET", f"{base}/Tom")
            assert status == 200, body
            assert b"630" in body
            assert http_request("GET", f"{base}/Tom-the-longer")[0] == 414
            assert http_request("PUT", f"{base}/Tom", b"x" * 100)[0] == 413
            assert _refused(api_port)  # the variable's port: --no-api won
            proc.terminate()
            assert proc.wait(30) == 0, out_path.read_text(errors="replace")
        finally:
            stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_cluster_passes_the_new_flags_to_its_nodes() -> None:
    """``shoal cluster`` hands each node the serve flags it was given, the new ones too,
    and each node's plan has them."""
    args = build_parser().parse_args(
        [
            *("cluster", "--group", "a", "--policy", "a=arc", "--hot-rate-count", "a=4"),
            *("--max-body-bytes", "1MiB", "--gossip-option", "probe_timeout=250ms"),
            *("--membership", "gossip"),
        ]
    )
    members = plan_members(2, host="127.0.0.1", port=7001, api_host="127.0.0.1", api_port=7101)
    argv = child_arguments(args, members[1], members, None)
    node = build_serve_plan(build_parser().parse_args(argv), {})
    (a,) = node.groups
    assert (a.config.policy, a.config.hot_rate_count) == ("arc", 4)
    assert node.node.max_body_bytes == 1 << 20
    assert node.node.gossip is not None
    assert node.node.gossip.probe_timeout == 0.25


def test_security_flags_variables_and_file(tmp_path: Path) -> None:
    """--tls-cert/--tls-key/--tls-ca/--api-client-auth, --api-tokens and --insecure, their
    SHOAL_* variables, and the [tls] table and [api] tokens_file; flags win."""
    flags = plan(
        "--group", "a",
        "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem",
        "--api-client-auth", "optional", "--api-tokens", "tokens", "--insecure",
    ).node  # fmt: skip
    assert flags.tls is not None
    assert (flags.tls.cert, flags.tls.key, flags.tls.ca) == ("c.pem", "k.pem", "ca.pem")
    assert flags.tls.api_client_auth == "optional"
    assert flags.tls.mutual
    assert (flags.api_tokens, flags.insecure) == ("tokens", True)
    env = {
        "SHOAL_TLS_CERT": "ec.pem",
        "SHOAL_TLS_KEY": "ek.pem",
        "SHOAL_API_TOKENS": "etokens",
        "SHOAL_INSECURE": "1",
    }
    from_env = plan("--group", "a", env=env).node
    assert from_env.tls is not None
    assert (from_env.tls.cert, from_env.tls.ca) == ("ec.pem", None)
    assert (from_env.api_tokens, from_env.insecure) == ("etokens", True)
    config = tmp_path / "shoal.toml"
    config.write_text(
        '[api]\ntokens_file = "ftokens"\n'
        '[tls]\ncert = "f.pem"\nkey = "fk.pem"\nca = "fca.pem"\napi_client_auth = "required"\n'
        "[groups.a]\n"
    )
    from_file = plan("--config", str(config)).node
    assert from_file.tls is not None
    assert from_file.tls.api_client_auth == "required"
    assert (from_file.tls.cert, from_file.api_tokens, from_file.insecure) == (
        "f.pem",
        "ftokens",
        False,
    )
    over = plan("--config", str(config), "--tls-cert", "flag.pem", env=env).node
    assert over.tls is not None
    assert (over.tls.cert, over.tls.key) == ("flag.pem", "ek.pem")
    assert plan("--group", "a").node.tls is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--tls-cert", "c.pem"],
        ["--tls-key", "k.pem", "--tls-ca", "ca.pem"],
        ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--api-client-auth", "required"],
    ],
)
def test_incomplete_tls_is_a_config_error(argv: list[str]) -> None:
    """A certificate without its key (or a key alone), client auth without a CA."""
    with pytest.raises(ConfigError):
        plan("--group", "a", *argv)


def test_otel_flags_variables_and_file(tmp_path: Path) -> None:
    """--otel and --otel-keys, SHOAL_OTEL and SHOAL_OTEL_KEYS, and [node] otel/otel_keys;
    off by default."""
    default = plan("--group", "a").node
    assert (default.otel, default.otel_keys) == (False, False)
    flags = plan("--group", "a", "--otel", "--otel-keys").node
    assert (flags.otel, flags.otel_keys) == (True, True)
    from_env = plan("--group", "a", env={"SHOAL_OTEL": "1", "SHOAL_OTEL_KEYS": "0"}).node
    assert (from_env.otel, from_env.otel_keys) == (True, False)
    config = tmp_path / "shoal.toml"
    config.write_text("[node]\notel = true\notel_keys = true\n[groups.a]\n")
    from_file = plan("--config", str(config)).node
    assert (from_file.otel, from_file.otel_keys) == (True, True)
    with pytest.raises(ConfigError, match="--otel"):
        plan("--group", "a", env={"SHOAL_OTEL": "maybe"})
