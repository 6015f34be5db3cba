"""Cluster settings of ``shoal serve`` and ``shoal cluster`` (in process: no servers)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from shoal import Node, NodeConfig
from shoal.cli.cluster import child_arguments, plan_members
from shoal.cli.main import build_parser
from shoal.cli.parse import parse_peers, parse_url
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.cli.tracing import NodeLabel, TracingTransport, node_label, traced_loader
from shoal.errors import ConfigError
from shoal.ring import Ring
from shoal.transport.memory import MemoryNetwork

PEERS = "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan for ``shoal serve --slowdb ARGV`` under ``env``."""
    args = build_parser().parse_args(["serve", "--slowdb", *argv])
    return build_serve_plan(args, env or {})


def test_a_node_alone_by_default() -> None:
    """Without cluster flags: no peer server, no peers, the default ring."""
    node = plan().node
    assert (node.port, node.peers, node.self_url, node.ring) == (None, (), None, "shoal")
    assert not plan().clustered


def test_cluster_flags() -> None:
    """Every cluster flag reaches NodeConfig, and the group-wide ones every group."""
    result = plan(
        "--host",
        "127.0.0.2",
        "--port",
        "8001",
        "--self",
        "http://127.0.0.2:8001/",
        "--peers",
        f" {PEERS} ,http://127.0.0.1:8002",
        "--ring",
        "golang",
        "--replicas",
        "20",
        "--base-path",
        "/cache/",
        "--peer-backoff",
        "500ms",
        "--peer-timeout",
        "250ms",
        "--hot-admission",
        "never",
        "--group",
        "other=json:loads",
    )
    node = result.node
    assert node.host == "127.0.0.2"
    assert node.port == 8001
    assert node.self_url == "http://127.0.0.2:8001"  # a lone trailing / is dropped
    assert node.peers == tuple(PEERS.split(","))  # duplicates dropped, order kept
    assert (node.ring, node.replicas, node.base_path) == ("golang", 20, "/cache/")
    assert node.peer_backoff == 0.5
    assert result.clustered
    for group in result.groups:
        assert group.config.peer_timeout == 0.25
        assert group.config.hot_admission == "never"


def test_cluster_precedence_flags_env_file(tmp_path: Path) -> None:
    """Flags beat SHOAL_* variables, which beat the [node] table of the file."""
    config = tmp_path / "c.toml"
    config.write_text(
        "[node]\n"
        "port = 7001\n"
        'peers = ["http://127.0.0.1:7001", "http://127.0.0.1:7002"]\n'
        'ring = "groupcache-go"\n'
        "[groups.scores]\n"
        'hot_admission = "rate"\n'
        "hot_rate_count = 3\n"
        'hot_rate_window = "10s"\n'
        "hot_fraction = 0.25\n"
        'peer_timeout = "1s"\n'
    )
    from_file = plan("--config", str(config))
    assert from_file.node.port == 7001
    assert from_file.node.peers == ("http://127.0.0.1:7001", "http://127.0.0.1:7002")
    assert from_file.node.ring == "groupcache-go"
    (group,) = from_file.groups
    assert (group.config.hot_admission, group.config.hot_rate_count) == ("rate", 3)
    assert (group.config.hot_rate_window, group.config.hot_fraction) == (10.0, 0.25)
    assert group.config.peer_timeout == 1.0

    env = {
        "SHOAL_PORT": "8001",
        "SHOAL_PEERS": PEERS,
        "SHOAL_SELF": "http://127.0.0.1:8001",
        "SHOAL_RING": "golang",
        "SHOAL_REPLICAS": "7",
        "SHOAL_BASE_PATH": "/x/",
        "SHOAL_HOST": "127.0.0.1",
        "SHOAL_PEER_BACKOFF": "2",
        "SHOAL_PEER_TIMEOUT": "3",
        "SHOAL_HOT_ADMISSION": "always",
    }
    from_env = plan("--config", str(config), env=env)
    assert from_env.node.port == 8001
    assert from_env.node.peers == tuple(PEERS.split(","))
    assert from_env.node.self_url == "http://127.0.0.1:8001"
    assert (from_env.node.ring, from_env.node.replicas, from_env.node.base_path) == (
        "golang",
        7,
        "/x/",
    )
    assert from_env.node.peer_backoff == 2.0
    (group,) = from_env.groups
    assert (group.config.peer_timeout, group.config.hot_admission) == (3.0, "always")

    from_flags = plan(
        "--config",
        str(config),
        "--port",
        "9001",
        "--peers",
        "http://127.0.0.1:9001",
        "--hot-admission",
        "never",
        env=env,
    )
    assert (from_flags.node.port, from_flags.node.peers) == (9001, ("http://127.0.0.1:9001",))
    assert from_flags.groups[0].config.hot_admission == "never"


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        (" http://10.0.0.1:8001/ ", "http://10.0.0.1:8001"),
        ("https://cache.example:443", "https://cache.example:443"),
        ("http://[::1]:8001", "http://[::1]:8001"),
        ("http://cache", "http://cache"),
    ],
)
def test_parse_url(text: str, url: str) -> None:
    """A node URL is scheme://host[:port]; a lone trailing slash is dropped."""
    assert parse_url(text) == url


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1:8001",
        "ftp://h:1",
        "http://:8001",
        "http://h:port",
        "http://h:1/_groupcache/",
        "http://h:1?x",
        "http://u@h:1",
        3,
    ],
)
def test_parse_url_rejects(text: object) -> None:
    """Anything else could make two members spell one node differently."""
    with pytest.raises(ConfigError):
        parse_url(text)


def test_parse_peers() -> None:
    """Comma-separated or a list; empty entries are errors; an empty string is no peers."""
    assert parse_peers("") == ()
    assert parse_peers(["http://a:1", "http://b:2", "http://a:1"]) == ("http://a:1", "http://b:2")
    for bad in ("http://a:1,", ",http://a:1", ["http://a:1", ""], 7):
        with pytest.raises(ConfigError):
            parse_peers(bad)


# --------------------------------------------------------------------------- shoal cluster


def cluster_args(*argv: str) -> argparse.Namespace:
    """The parsed ``shoal cluster ARGV``."""
    return build_parser().parse_args(["cluster", *argv])


def test_cluster_ports_count_up_and_down() -> None:
    """Peer ports PORT+i, API ports API-PORT-i: 8001-8003 and 9999-9997 by default."""
    args = cluster_args("--slowdb")
    members = plan_members(
        args.nodes, host="127.0.0.1", port=args.port, api_host="127.0.0.1", api_port=args.api_port
    )
    assert [(m.peer_port, m.api_port) for m in members] == [
        (8001, 9999),
        (8002, 9998),
        (8003, 9997),
    ]
    assert [m.url for m in members] == PEERS.split(",")
    assert [m.name for m in members] == ["node 8001", "node 8002", "node 8003"]


@pytest.mark.parametrize(
    ("nodes", "port", "api_port", "message"),
    [
        (0, 8001, 9999, "--nodes"),
        (65, 8001, 9999, "--nodes"),
        (3, 65534, 9999, "peer ports"),
        (3, 8001, 1, "API ports"),
        (3, 9997, 9999, "overlap"),
    ],
)
def test_cluster_bad_ports(nodes: int, port: int, api_port: int, message: str) -> None:
    """Impossible layouts are refused before anything starts."""
    with pytest.raises(ConfigError, match=message):
        plan_members(nodes, host="127.0.0.1", port=port, api_host="127.0.0.1", api_port=api_port)


def test_cluster_passes_every_other_flag_to_each_node(tmp_path: Path) -> None:
    """A node's arguments: the cluster's flags as given, plus its own ports and the members."""
    config = tmp_path / "c.toml"
    config.write_text("[groups.extra]\n")
    args = cluster_args(
        "--nodes",
        "2",
        "--port",
        "7001",
        "--api-port",
        "7100",
        "--config",
        str(config),
        "--slowdb",
        "--slowdb-delay",
        "0",
        "--ttl",
        "scores=60",
        "--ttl",
        "extra=5",
        "--hot-admission",
        "always",
        "--ring",
        "golang",
        "--log-level",
        "debug",
    )
    members = plan_members(
        args.nodes, host="127.0.0.1", port=args.port, api_host="127.0.0.1", api_port=args.api_port
    )
    argv = child_arguments(args, members[1], members, str(tmp_path / "scores.db"))
    assert argv[0] == "serve"
    assert "--supervised" in argv
    child = build_serve_plan(build_parser().parse_args(argv), {})
    assert child.supervised
    assert (child.node.port, child.node.api_port) == (7002, 7099)
    assert child.node.self_url == "http://127.0.0.1:7002"
    assert child.node.peers == ("http://127.0.0.1:7001", "http://127.0.0.1:7002")
    assert child.node.ring == "golang"
    assert child.slowdb_file == str(tmp_path / "scores.db")
    assert (child.slowdb_delay, child.log_level) == (0.0, "debug")
    groups = {g.config.name: g.config for g in child.groups}
    assert (groups["scores"].ttl, groups["extra"].ttl) == (60.0, 5.0)
    assert {g.hot_admission for g in groups.values()} == {"always"}


# --------------------------------------------------------------------------- log lines


def test_node_label() -> None:
    """Loopback nodes are named by port, others by host and port."""
    assert node_label("http://127.0.0.1:8001") == "node 8001"
    assert node_label("http://10.0.0.7:8001") == "node 10.0.0.7:8001"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    label = NodeLabel()
    assert label.filter(record)
    assert record.__dict__["node"] == ""
    label.set("node 8001")
    assert label.filter(record)
    assert record.__dict__["node"] == "[node 8001] "


async def test_tracing_says_where_each_miss_went(caplog: pytest.LogCaptureFixture) -> None:
    """The non-owner logs the owner it fetched from; the owner logs that it loaded the key."""
    network = MemoryNetwork()
    urls = ["http://10.0.0.1:1", "http://10.0.0.2:1"]
    key = next(k for k in (f"k{i}" for i in range(100)) if Ring.build(urls).owner(k) == urls[1])
    calls: list[str] = []

    def load(k: str) -> bytes:  # a sync loader: the tracer must keep it sync
        calls.append(k)
        return b"v-" + k.encode()

    nodes = [
        Node(
            NodeConfig(self_url=url, peers=tuple(urls)),
            transport=TracingTransport(network.transport()),
        )
        for url in urls
    ]
    groups = [node.group("g", traced_loader(load, node), hot_admission="never") for node in nodes]
    for url, node in zip(urls, nodes, strict=True):
        network.register(url, node)
    async with nodes[0], nodes[1]:
        caplog.set_level(logging.INFO, logger="shoal.cluster")
        assert await groups[0].get(key) == b"v-" + key.encode()
        network.down.add(urls[1])
        other = next(
            k for k in (f"x{i}" for i in range(100)) if Ring.build(urls).owner(k) == urls[1]
        )
        assert await groups[0].get(other) == b"v-" + other.encode()
    assert calls == [key, other]
    messages = [r.getMessage() for r in caplog.records if r.name == "shoal.cluster"]
    assert f"load {key!r} here (this node owns it)" in messages
    assert any(m.startswith(f"miss {key!r} -> fetched from {urls[1]} in ") for m in messages)
    assert any(m.startswith(f"miss {other!r} -> {urls[1]} failed after ") for m in messages)
    assert f"load {other!r} here (its owner {urls[1]} is failing and skipped for now)" in messages
