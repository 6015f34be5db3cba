"""``GET /readyz`` and :meth:`shoal.Node.drain` on in-process nodes with real sockets,
the ``drain`` setting from flags, variables and TOML, and ``shoal cluster``'s default.

The process-level behaviour (SIGTERM, exit codes, a rolling restart under load) is in
``tests/cluster/test_rolling_restart.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from helpers.dns_server import dns_server
from shoal import Node, NodeConfig
from shoal.cli.cluster import child_arguments, plan_members
from shoal.cli.main import build_parser
from shoal.cli.plan import build_serve_plan
from shoal.config import DnsConfig
from shoal.errors import ConfigError


async def readyz(node: Node) -> tuple[int, str | None]:
    """The status of the node's ``GET /readyz`` and, for a 503, its JSON ``code``."""
    assert node.api_address is not None
    host, port = node.api_address
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/readyz") as response,
    ):
        body = await response.read()
        if response.status == 200:
            assert body == b"ready"
            return 200, None
        return response.status, json.loads(body)["code"]


async def test_a_static_node_is_ready_once_started_and_not_while_draining() -> None:
    config = NodeConfig(port=0, api_port=0, drain=0.3)
    async with Node(config) as node:
        assert node.readiness == "ready"
        assert await readyz(node) == (200, None)
        began = time.monotonic()
        drain = asyncio.create_task(node.drain())
        await asyncio.sleep(0.05)
        assert node.readiness == "draining"
        assert await readyz(node) == (503, "draining")
        await drain
        assert time.monotonic() - began >= 0.3
        assert await readyz(node) == (503, "draining")  # still answering until closed
    assert node.readiness == "draining"


async def test_a_dns_node_is_starting_until_a_lookup_finds_members() -> None:
    """The first lookup finds no record: alive but ``starting``; once the record is
    there the next lookup gives the first view, and the node is ready."""
    with dns_server() as dns:
        config = NodeConfig(
            port=0,
            api_port=0,
            dns=DnsConfig(name="shoal.test", server=dns.address, interval=0.2),
        )
        async with Node(config) as node:
            assert node.membership is not None
            assert not node.membership.has_view
            assert await readyz(node) == (503, "starting")
            dns.zone.set_addresses("shoal.test", ["127.0.0.1"])
            for _ in range(100):
                if node.ready:
                    break
                await asyncio.sleep(0.05)
            assert await readyz(node) == (200, None)
            # A later failed lookup keeps the view: still ready.
            dns.zone.set_mode("servfail")
            await asyncio.sleep(0.5)
            assert await readyz(node) == (200, None)


async def test_readyz_needs_no_token(tmp_path: Path) -> None:
    """With API tokens every route but the probes needs one: /readyz stays open."""
    tokens = tmp_path / "tokens"
    tokens.write_text("read abcdefghijklmnopqrstuvwxyz\n")
    tokens.chmod(0o600)
    async with Node(NodeConfig(port=0, api_port=0, api_tokens=str(tokens))) as node:
        assert await readyz(node) == (200, None)
        assert node.api_address is not None
        host, port = node.api_address
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/v1/cluster") as response,
        ):
            assert response.status == 401


async def test_a_draining_grpc_node_reports_not_serving_and_still_answers() -> None:
    import grpc
    from grpc_health.v1 import health_pb2

    from helpers.grpc_calls import health_check
    from shoal import GroupConfig

    config = NodeConfig(port=0, api_port=0, transport="grpc", drain=0)
    async with Node(config) as node:
        node.add_group(GroupConfig(name="g"), lambda key: key.encode())
        assert node.peer_address is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{node.peer_address[1]}") as channel:
            serving = health_pb2.HealthCheckResponse.SERVING
            assert (await health_check(channel, "shoal.v1.Cache")).status == serving
            await node.drain()
            for service in ("", "shoal.v1.Cache", "shoal.v1.Peer", "pb.GroupCache"):
                reply = await health_check(channel, service)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
            assert await readyz(node) == (503, "draining")
            assert await node.get_group("g").get("k") == b"k"


def test_drain_is_validated() -> None:
    assert NodeConfig().drain == 5.0
    assert NodeConfig(drain=0).drain == 0
    for bad in (-1, True, float("inf"), "5"):
        with pytest.raises(ConfigError, match="drain"):
            NodeConfig(drain=bad)  # type: ignore[arg-type]


def test_drain_from_a_flag_a_variable_and_the_config_file(tmp_path: Path) -> None:
    def plan(*argv: str, env: dict[str, str] | None = None) -> float:
        args = build_parser().parse_args(["serve", "--group", "g", *argv])
        return build_serve_plan(args, env or {}).node.drain

    config = tmp_path / "shoal.toml"
    config.write_text("[node]\ndrain = 7\n")
    assert plan() == 5.0
    assert plan("--config", str(config)) == 7.0
    assert plan("--config", str(config), env={"SHOAL_DRAIN": "0"}) == 0.0
    assert plan("--drain", "1500ms", env={"SHOAL_DRAIN": "0"}) == 1.5
    with pytest.raises(ConfigError, match="--drain"):
        plan("--drain", "-1")


def test_shoal_cluster_nodes_drain_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_DRAIN", raising=False)
    members = plan_members(2, host="127.0.0.1", port=7001, api_host="127.0.0.1", api_port=7100)

    def child_drain(*flags: str) -> float:
        args = build_parser().parse_args(["cluster", "--nodes", "2", "--group", "g", *flags])
        argv = child_arguments(args, members[0], members, None)
        return build_serve_plan(build_parser().parse_args(argv), {}).node.drain

    assert child_drain() == 0.0
    assert child_drain("--drain", "3") == 3.0
