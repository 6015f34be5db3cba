"""Membership configuration: the config classes, the CLI's flags, variables and TOML
tables, and the building blocks (snapshot channel, static list) in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal import Node, NodeConfig
from shoal.cli.main import build_parser
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.config import EtcdConfig, GossipConfig, default_node_id
from shoal.errors import ConfigError
from shoal.membership import Member, SnapshotChannel
from shoal.membership.etcd import EtcdMembership
from shoal.membership.gossip import GossipMembership
from shoal.membership.static import StaticMembership

ETCD = "http://127.0.0.1:2379"


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan for ``shoal serve ARGV`` under ``env``."""
    return build_serve_plan(build_parser().parse_args(["serve", *argv]), env or {})


class TestConfigClasses:
    """EtcdConfig, GossipConfig and the membership fields of NodeConfig."""

    def test_etcd_defaults(self) -> None:
        """TTL 3 s refreshed every second; keys under /shoal/CLUSTER/members/."""
        cfg = EtcdConfig(endpoints=(ETCD,))
        assert (cfg.lease_ttl, cfg.refresh_interval, cfg.cluster) == (3, 1.0, "default")
        assert cfg.members_prefix == "/shoal/default/members/"
        assert EtcdConfig.address("http://10.0.0.1:2379") == ("10.0.0.1", 2379)

    @pytest.mark.parametrize(
        "options",
        [
            {"endpoints": ()},
            {"endpoints": ETCD},
            {"endpoints": ("127.0.0.1:2379",)},
            {"endpoints": ("http://127.0.0.1",)},
            {"endpoints": ("http://127.0.0.1:2379/v3",)},
            {"endpoints": (ETCD,), "cluster": "a/b"},
            {"endpoints": (ETCD,), "lease_ttl": 0},
            {"endpoints": (ETCD,), "lease_ttl": 2.5},
            {"endpoints": (ETCD,), "lease_ttl": 3, "keepalive_interval": 3},
            {"endpoints": (ETCD,), "timeout": 0},
            {"endpoints": (ETCD,), "prefix": "shoal"},
            {"endpoints": (ETCD,), "prefix": "/shoal/"},
        ],
    )
    def test_etcd_refuses(self, options: dict[str, object]) -> None:
        """Malformed endpoints, names and timings are ConfigErrors at construction."""
        with pytest.raises(ConfigError):
            EtcdConfig(**options)  # type: ignore[arg-type]

    def test_gossip_profiles(self) -> None:
        """``lan`` is the default; ``local`` is faster; fields override a profile."""
        assert GossipConfig() == GossipConfig.profile("lan")
        local = GossipConfig.profile("local", probe_interval=0.5)
        assert (local.probe_interval, local.suspicion_timeout) == (0.5, 1.0)
        assert local.detection_bound(5) < GossipConfig().detection_bound(5)
        assert local.detection_bound(10) > local.detection_bound(5)
        with pytest.raises(ConfigError, match="unknown gossip timers"):
            GossipConfig.profile("wan")

    @pytest.mark.parametrize(
        "options",
        [
            {"port": 70000},
            {"join": "127.0.0.1:7000"},
            {"join": ("127.0.0.1",)},
            {"advertise": "host"},
            {"probe_timeout": 1.0, "probe_interval": 1.0},
            {"indirect_probes": 0},
            {"gossip_fanout": 1.5},
            {"suspicion_timeout": -1},
            {"max_packet": 100},
        ],
    )
    def test_gossip_refuses(self, options: dict[str, object]) -> None:
        """Malformed addresses and impossible timers are ConfigErrors."""
        with pytest.raises(ConfigError):
            GossipConfig(**options)  # type: ignore[arg-type]

    def test_node_membership(self) -> None:
        """One source at a time; a dynamic one needs a port and no static peers."""
        etcd, gossip = EtcdConfig(endpoints=(ETCD,)), GossipConfig()
        assert NodeConfig().membership == "static"
        assert NodeConfig(port=0, etcd=etcd).membership == "etcd"
        assert NodeConfig(port=0, gossip=gossip).membership == "gossip"
        with pytest.raises(ConfigError, match="not both"):
            NodeConfig(port=0, etcd=etcd, gossip=gossip)
        with pytest.raises(ConfigError, match="do not also give peers"):
            NodeConfig(port=1, etcd=etcd, peers=("http://127.0.0.1:1",))
        with pytest.raises(ConfigError, match="needs a peer port"):
            NodeConfig(gossip=gossip)
        with pytest.raises(ConfigError, match="node id"):
            NodeConfig(node_id="a/b")

    def test_default_node_id_is_host_and_port(self) -> None:
        """Stable across restarts: derived from the advertised URL."""
        assert default_node_id("http://10.0.0.2:8001") == "10.0.0.2:8001"
        assert default_node_id("http://[::1]:8001") == "[::1]:8001"
        assert default_node_id("http://cache-1.internal") == "cache-1.internal:80"


class TestServeFlags:
    """``shoal serve`` flags, SHOAL_* variables and [node.etcd]/[node.gossip] tables."""

    def test_etcd_flags(self) -> None:
        """--etcd, --cluster and --etcd-ttl build an EtcdConfig."""
        node = plan(
            "--group", "g", "--port", "8001", "--etcd", f"{ETCD},http://127.0.0.2:2379",
            "--cluster", "blue", "--etcd-ttl", "5s", "--node-id", "cache-1",
        ).node  # fmt: skip
        assert node.etcd == EtcdConfig(
            endpoints=(ETCD, "http://127.0.0.2:2379"), cluster="blue", lease_ttl=5
        )
        assert (node.node_id, node.gossip, node.membership) == ("cache-1", None, "etcd")

    def test_gossip_flags(self) -> None:
        """--gossip-port and --join turn gossip on; --gossip-timers picks the profile."""
        node = plan(
            "--group", "g", "--port", "8001", "--gossip-port", "7946",
            "--join", "10.0.0.1:7946,10.0.0.2:7946", "--gossip-timers", "local",
        ).node  # fmt: skip
        assert node.gossip == GossipConfig.profile(
            "local", port=7946, join=("10.0.0.1:7946", "10.0.0.2:7946")
        )

    def test_environment_and_file(self, tmp_path: Path) -> None:
        """Variables beat the file; flags beat variables; the tables take any field."""
        config = tmp_path / "shoal.toml"
        config.write_text(
            "[node]\nport = 8001\n[node.gossip]\nport = 7000\ntimers = 'local'\n"
            "suspicion_timeout = '2s'\njoin = ['10.0.0.1:7000']\n[groups.g]\n"
        )
        node = plan("--config", str(config), env={"SHOAL_JOIN": "10.0.0.9:7000"}).node
        assert node.gossip is not None
        assert node.gossip.join == ("10.0.0.9:7000",)
        assert (node.gossip.port, node.gossip.suspicion_timeout) == (7000, 2.0)
        assert node.gossip.probe_interval == GossipConfig.profile("local").probe_interval
        node = plan("--config", str(config), "--gossip-timers", "lan").node
        assert node.gossip is not None
        assert node.gossip.probe_interval == GossipConfig().probe_interval

        config.write_text(
            f"[node]\nport = 8001\n[node.etcd]\nendpoints = ['{ETCD}']\n"
            "cluster = 'red'\nkeepalive_interval = '500ms'\n[groups.g]\n"
        )
        node = plan("--config", str(config), env={"SHOAL_CLUSTER": "green"}).node
        assert node.etcd == EtcdConfig(endpoints=(ETCD,), cluster="green", keepalive_interval=0.5)

    def test_a_timer_profile_alone_does_not_turn_gossip_on(self) -> None:
        """SHOAL_GOSSIP_TIMERS in a shared environment leaves a static node static."""
        node = plan("--group", "g", env={"SHOAL_GOSSIP_TIMERS": "local"}).node
        assert node.membership == "static"

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--cluster", "x"], "need --etcd"),
            (["--etcd", ETCD], "needs --port"),
            (["--port", "1", "--etcd", ETCD, "--gossip-port", "7000"], "choose one membership"),
            (["--port", "1", "--etcd", ETCD, "--peers", "http://127.0.0.1:1"], "--peers"),
            (["--port", "1", "--etcd", "localhost:2379"], "http://host:port"),
            (["--port", "1", "--join", "10.0.0.1"], "host:port"),
            (["--port", "1", "--etcd", ETCD, "--etcd-ttl", "1.5"], "whole seconds"),
            (["--port", "1", "--host", "0.0.0.0", "--etcd", ETCD], "--self"),
            (["--node-id", "a b"], "node id"),
        ],
    )
    def test_refused(self, argv: list[str], message: str) -> None:
        """Contradictions and malformed values are one-line ConfigErrors."""
        with pytest.raises(ConfigError, match=message):
            plan("--group", "g", *argv)


class TestBuildingBlocks:
    """SnapshotChannel and StaticMembership."""

    async def test_snapshot_channel_yields_the_latest_distinct_view(self) -> None:
        """A slow reader skips views replaced before it looked; repeats are not news."""
        a, b, c = (Member(node_id=n, url=f"http://{n}:1", source="etcd") for n in "abc")
        channel = SnapshotChannel([a])
        reader = channel.snapshots()
        assert await anext(reader) == {a}
        assert channel.publish([a]) is False
        assert channel.publish([a, b]) is True
        assert channel.publish([a, b, c]) is True
        assert await anext(reader) == {a, b, c}
        waiting = asyncio.ensure_future(anext(reader))
        await asyncio.sleep(0)
        assert not waiting.done()
        channel.publish([c])
        assert await waiting == {c}

    async def test_static_membership_keeps_the_configured_order(self) -> None:
        """The list order settles ring collisions; this node is added if missing."""
        static = StaticMembership(["http://b:1", "http://a:1"], self_url="http://c:1", node_id="me")
        assert static.urls == ("http://b:1", "http://a:1", "http://c:1")
        first = await static.start()
        assert {(m.node_id, m.url) for m in first} == {
            ("b:1", "http://b:1"), ("a:1", "http://a:1"), ("me", "http://c:1")
        }  # fmt: skip
        assert await anext(static.snapshots()) == first

    def test_each_source_names_the_ring_order(self) -> None:
        """A static list keeps its configured order whatever a snapshot holds; a
        discovered membership sorts the URLs, so every node builds the same ring."""
        static = StaticMembership(["http://b:1", "http://a:1"], self_url="http://c:1", node_id="me")
        assert static.ring_order(["http://c:1", "http://a:1"]) == [
            "http://b:1",
            "http://a:1",
            "http://c:1",
        ]
        urls = ["http://b:1", "http://c:1", "http://a:1"]
        etcd = EtcdMembership(EtcdConfig(endpoints=(ETCD,)), node_id="me", url="http://c:1")
        gossip = GossipMembership(GossipConfig(), node_id="me", url="http://c:1")
        for discovered in (etcd, gossip):
            assert discovered.ring_order(urls) == sorted(urls)

    async def test_a_static_node_reports_its_source_and_id(self) -> None:
        """GET /v1/cluster data: node id, membership source, and per member id and source."""
        node = Node(NodeConfig(port=0, node_id="solo"))
        async with node:
            info = node.cluster_info()
        assert info["node_id"] == "solo"
        assert info["membership"] == {"source": "static", "members": 1}
        assert [(m["node_id"], m["source"], m["self"]) for m in info["members"]] == [
            ("solo", "static", True)
        ]


async def test_two_nodes_gossip_in_process_and_one_leaves() -> None:
    """Two nodes in one process over real UDP on loopback: the second joins the first,
    both rings hold both; closing one announces its leave and the other drops it."""
    first = Node(NodeConfig(port=0, gossip=GossipConfig.profile("local")))
    async with first:
        info = first.cluster_info()
        address = info["membership"]["address"]
        second = Node(NodeConfig(port=0, gossip=GossipConfig.profile("local", join=(address,))))
        async with second:
            # The join answer arrives during start: the first view already holds both.
            assert len(second.cluster_info()["members"]) == 2
            for _ in range(100):
                if len(first.cluster_info()["members"]) == 2:
                    break
                await asyncio.sleep(0.01)
            assert {m["url"] for m in first.cluster_info()["members"]} == {
                first.self_url, second.self_url
            }  # fmt: skip
        for _ in range(100):
            if len(first.cluster_info()["members"]) == 1:
                break
            await asyncio.sleep(0.01)
        assert [m["url"] for m in first.cluster_info()["members"]] == [first.self_url]
        assert first.cluster_info()["membership"]["states"]["left"] == 1
