"""Config fields that take several values accept any sequence and keep a tuple."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shoal import ConfigError, EtcdConfig, GossipConfig, NodeConfig

PEERS = ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]


def test_a_list_of_peers_is_kept_as_a_tuple() -> None:
    config = NodeConfig(port=8001, peers=PEERS)
    assert config.peers == tuple(PEERS)
    assert isinstance(config.peers, tuple)
    assert hash(config) == hash(NodeConfig(port=8001, peers=tuple(PEERS)))
    PEERS.append("http://127.0.0.1:8003")  # the caller's list is not the config's
    assert len(config.peers) == 2
    PEERS.pop()


def test_etcd_endpoints_and_gossip_join_take_lists() -> None:
    assert EtcdConfig(endpoints=["http://127.0.0.1:2379"]).endpoints == ("http://127.0.0.1:2379",)
    assert GossipConfig(join=["127.0.0.1:7946"]).join == ("127.0.0.1:7946",)


@pytest.mark.parametrize(
    "build",
    [
        lambda: NodeConfig(port=8001, peers="http://127.0.0.1:8001"),  # a str is a Sequence
        lambda: EtcdConfig(endpoints="http://127.0.0.1:2379"),
        lambda: GossipConfig(join="127.0.0.1:7946"),
    ],
)
def test_a_single_string_is_still_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigError, match="sequence"):
        build()
