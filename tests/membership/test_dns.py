"""DNS membership with a real DNS server on loopback and real ``shoal serve`` processes.

The DNS server (dnslib, :mod:`helpers.dns_server`) answers on 127.0.0.1 from a
zone the test changes while the nodes run; the nodes listen on 127.0.0.1,
127.0.0.2, ... on one peer port (A records: every address is a member on the
node's own port) or on 127.0.0.1 with a port each (SRV records). They look the
name up every 0.2 s, so a change shows everywhere within a fraction of a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers.cluster_views import all_see, cluster_view, member_urls, wait_for
from helpers.dns_server import LoopbackDns, dns_server
from helpers.processes import (
    LoadLog,
    ShoalServer,
    free_ports,
    http_get,
    loaded_value,
    run_shoal,
    shoal_nodes,
)
from shoal.cli.main import build_parser
from shoal.cli.membership_flags import _DNS_FLAG_KEYS
from shoal.cli.plan import ServePlan, build_serve_plan
from shoal.config import DnsConfig, EtcdConfig, NodeConfig
from shoal.errors import ConfigError
from shoal.membership import SOURCES
from shoal.membership.dns import DnsMembership
from shoal.membership.dns import member_urls as dns_member_urls
from shoal.ring import Ring

NAME = "cache.shoal.test"
ETCD = "http://127.0.0.1:2379"
SRV_NAME = "_shoal._tcp.shoal.test"
INTERVAL = "0.2"
DNS_TIMING = ("--dns-interval", INTERVAL)

CHANGE_WITHIN = 2.0
"""Seconds a change of the records may take to show on every node (ten intervals: the
lookups run every 0.2 s; the rest is slack for a loaded machine)."""


def plan(*argv: str, env: dict[str, str] | None = None) -> ServePlan:
    """The plan for ``shoal serve --group g ARGV`` under ``env``."""
    return build_serve_plan(build_parser().parse_args(["serve", "--group", "g", *argv]), env or {})


def common_port(hosts: Sequence[str]) -> int:
    """A TCP port below 32768 that is free on every one of ``hosts``."""
    for port in free_ports(50):
        with contextlib.ExitStack() as stack:
            try:
                for host in hosts:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no port free on all of {hosts}")


def hosts(count: int) -> list[str]:
    """``127.0.0.1`` ... ``127.0.0.COUNT``."""
    return [f"127.0.0.{i + 1}" for i in range(count)]


GROUP = ("--group", "data=helpers.loadlog:load", "--hot-admission", "never")
"""Each node loads through helpers.loadlog, which records which node loaded which key."""


@contextlib.contextmanager
def a_record_nodes(dns: LoopbackDns, count: int, loads: LoadLog) -> Iterator[list[ShoalServer]]:
    """``count`` nodes on 127.0.0.1..COUNT, one peer port, finding each other by ``--dns``."""
    addresses = hosts(count)
    port = common_port(addresses)
    args = [
        [*GROUP, "--host", host, "--dns", NAME, "--dns-server", dns.address, *DNS_TIMING]
        for host in addresses
    ]
    node_env = loads.env()
    with shoal_nodes(
        args,
        peer_ports=[port] * count,
        env=lambda i, _: node_env(i, f"http://{addresses[i]}:{port}"),
    ) as nodes:
        for node, host in zip(nodes, addresses, strict=True):
            node.ip = host  # the peer URL's host; the API stays on 127.0.0.1
        yield nodes


def peer_url(node: ShoalServer) -> str:
    return f"http://{node.ip}:{node.peer_port}"


def api(node: ShoalServer) -> str:
    return f"http://127.0.0.1:{node.port}"


def membership(node: ShoalServer) -> dict[str, Any]:
    info: dict[str, Any] = cluster_view(api(node))["membership"]
    return info


def sees(nodes: Sequence[ShoalServer], urls: Sequence[str]) -> bool:
    return all_see([api(n) for n in nodes], urls)()


def timed(nodes: Sequence[ShoalServer], urls: Sequence[str], what: str) -> float:
    return wait_for(lambda: sees(nodes, urls), what, CHANGE_WITHIN)


def log_lines(node: ShoalServer, text: str) -> int:
    return sum(text in line for line in node.stderr().splitlines())


# --------------------------------------------------------------------------- nodes


def test_a_records_members_appear_and_disappear(tmp_path: Path) -> None:
    """Three nodes on 127.0.0.1-3 are one cluster when the name lists their addresses
    (each key loaded by its owner only); a removed address leaves every other node's
    ring within a few intervals and comes back as fast; a node left out of the records
    still serves its own share."""
    loads = LoadLog(tmp_path / "loads")
    with dns_server() as dns:
        dns.zone.set_addresses(NAME, hosts(3))
        with a_record_nodes(dns, 3, loads) as nodes:
            urls = [peer_url(n) for n in nodes]
            wait_for(lambda: sees(nodes, urls), "one cluster of three", 10.0)
            ring = Ring.build(sorted(urls))
            for i in range(12):
                key = f"k{i}"
                status, body = http_get(f"{api(nodes[i % 3])}/api?key={key}")
                assert (status, body) == (200, loaded_value(key))
                assert loads.nodes(key) == [ring.owner(key)]
            for node in nodes:
                view = cluster_view(api(node))
                assert view["membership"]["source"] == "dns"
                assert view["membership"]["state"] == "ok"
                assert (view["membership"]["name"], view["membership"]["type"]) == (
                    NAME,
                    "A/AAAA",
                )
                # Its own address in the answer is this node: its URL and id, once.
                (me,) = [m for m in view["members"] if m["self"]]
                assert me["url"] == peer_url(node)
                assert me["node_id"] == f"{node.ip}:{node.peer_port}"
                assert {m["source"] for m in view["members"]} == {"dns"}

            dns.zone.set_addresses(NAME, hosts(2))
            gone = timed(nodes[:2], urls[:2], "127.0.0.3 to leave the others' rings")
            # The node whose address is gone keeps itself (and what the name lists).
            assert member_urls(api(nodes[2])) == set(urls)

            dns.zone.set_addresses(NAME, hosts(3))
            back = timed(nodes, urls, "127.0.0.3 to join again")
            print(f"left within {gone:.2f}s, back within {back:.2f}s")


def test_a_failing_or_empty_lookup_keeps_the_last_members(tmp_path: Path) -> None:
    """SERVFAIL, no answer at all, and an answer with no record each keep the members
    found last; the node warns once per streak and shows the state in /v1/cluster."""
    with dns_server() as dns:
        dns.zone.set_addresses(NAME, hosts(2))
        with a_record_nodes(dns, 2, LoadLog(tmp_path / "loads")) as nodes:
            urls = [peer_url(n) for n in nodes]
            wait_for(lambda: sees(nodes, urls), "one cluster of two", 10.0)

            dns.zone.set_mode("servfail")
            failures = [membership(n)["failures"] for n in nodes]
            wait_for(
                lambda: all(
                    membership(n)["failures"] >= f + 3 for n, f in zip(nodes, failures, strict=True)
                ),
                "three failed lookups",
                CHANGE_WITHIN,
            )
            for node in nodes:
                state = membership(node)
                assert state["state"] == "failing"
                assert "SERVFAIL" in state["last_error"] or "answered" in state["last_error"]
            assert sees(nodes, urls)
            status, body = http_get(f"{api(nodes[0])}/metrics")
            assert status == 200
            samples = dict(
                line.rsplit(" ", 1) for line in body.decode().splitlines() if line[:1] != "#"
            )
            assert int(samples['shoal_dns_lookups_kept_total{reason="failed"}']) >= 3
            assert samples['shoal_dns_lookups_kept_total{reason="empty"}'] == "0"
            assert samples["shoal_dns_bad_records_total"] == "0"
            assert not any(name.startswith("shoal_etcd") for name in samples)

            dns.zone.set_mode("silent")  # dnspython then times out (--dns-interval stays)
            wait_for(
                lambda: all("no answer" in (membership(n)["last_error"] or "") for n in nodes),
                "a lookup that timed out",
                10.0,
            )
            assert sees(nodes, urls)

            dns.zone.set_addresses(NAME, [])  # first: no answer may bring the old records
            dns.zone.set_mode("answer")
            wait_for(
                lambda: all(membership(n)["state"] == "empty" for n in nodes),
                "an empty answer",
                CHANGE_WITHIN,
            )
            assert sees(nodes, urls)
            shown = run_shoal("members", "--url", api(nodes[0]))
            assert shown.returncode == 0, shown.stderr
            first = shown.stdout.decode().splitlines()[0]
            assert first.startswith(f"2 members by dns (A/AAAA of {NAME} via {dns.address}; ")
            assert "DNS EMPTY: last view (no usable A/AAAA record)" in first
            for node in nodes:
                # One warning for the whole streak (SERVFAIL, timeouts, empty answers).
                assert log_lines(node, "found no member") == 1, node.stderr()

            dns.zone.set_addresses(NAME, hosts(1))
            timed(nodes[:1], urls[:1], "the smaller set once DNS answers again")
            state = membership(nodes[0])
            assert (state["state"], state["last_error"]) == ("ok", None)
            assert log_lines(nodes[0], "answers again") == 1


def test_srv_records_give_each_member_its_port(tmp_path: Path) -> None:
    """With --dns-srv every record is a member on its own target and port: targets
    resolved from the additional section, or looked up when it is missing."""
    with dns_server() as dns:
        ports = free_ports(3)
        records = [(f"n{i}.shoal.test", port) for i, port in enumerate(ports)]
        for target, _ in records:
            dns.zone.set_addresses(target, ["127.0.0.1"])
        dns.zone.set_srv(SRV_NAME, records)
        dns.zone.glue = False  # first the targets' own lookups
        args = [*GROUP, "--dns-srv", SRV_NAME, "--dns-server", dns.address]
        args += ["--dns-interval", INTERVAL]
        loads = LoadLog(tmp_path / "loads")
        with shoal_nodes([args] * 3, peer_ports=ports, env=loads.env()) as nodes:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            wait_for(lambda: sees(nodes, urls), "one cluster of three", 10.0)
            assert membership(nodes[0])["type"] == "SRV"

            dns.zone.glue = True
            dns.zone.set_srv(SRV_NAME, records[:2])
            timed(nodes[:2], urls[:2], "the third record to go")
            dns.zone.set_srv(SRV_NAME, records)
            timed(nodes, urls, "the third record to come back")
            # A target without an address is not a member, and is counted.
            dns.zone.set_srv(SRV_NAME, [*records, ("nowhere.shoal.test", 1)])
            wait_for(lambda: membership(nodes[0])["bad_records"] > 0, "a bad record", CHANGE_WITHIN)
            assert sees(nodes, urls)


def test_five_nodes_started_together_form_one_cluster(tmp_path: Path) -> None:
    """Five nodes started at the same moment against an empty record set each serve
    alone; once the records are filled in, every node lists the same five."""
    with dns_server() as dns:
        dns.zone.set_addresses(NAME, [])
        with a_record_nodes(dns, 5, LoadLog(tmp_path / "loads")) as nodes:
            for node in nodes:
                assert member_urls(api(node)) == {peer_url(node)}
            wait_for(
                lambda: all(membership(n)["state"] == "empty" for n in nodes),
                "every node to find the name empty",
                5.0,
            )
            dns.zone.set_addresses(NAME, hosts(5))
            urls = [peer_url(n) for n in nodes]
            timed(nodes, urls, "one cluster of five")
            views = [cluster_view(api(n)) for n in nodes]
            assert len({tuple(m["url"] for m in v["members"]) for v in views}) == 1
            assert all(len(v["members"]) == 5 for v in views)


# --------------------------------------------------------------------------- in process


async def test_hostile_answers_are_bounded_and_checked() -> None:
    """More addresses than max_members: the first in URL order are taken and the rest
    counted; addresses that cannot be a member's are skipped and counted."""
    with dns_server() as dns:
        many = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(300)]
        dns.zone.set_addresses(NAME, [*many, "0.0.0.0", "224.0.0.1", "::", "ff02::1"])
        config = DnsConfig(name=NAME, server=dns.address, interval=60, max_members=64)
        source = DnsMembership(config, node_id="me", url="http://127.0.0.1:8001")
        first = await source.start()
        urls = sorted(f"http://{a}:8001" for a in many)[:64]
        assert {m.url for m in first} == {*urls, "http://127.0.0.1:8001"}
        (me,) = [m for m in first if m.url == "http://127.0.0.1:8001"]
        assert me.node_id == "me"
        stats = source.statistics()
        # The 64 taken, and this node (always a member of its own view).
        assert (stats["members"], stats["left_out"], stats["bad_records"]) == (
            len({*urls, "http://127.0.0.1:8001"}),
            236,
            4,
        )
        await source.aclose()


async def test_srv_answers_are_bounded_and_checked() -> None:
    """More SRV records than max_members: the first in (target, port) order are resolved
    and taken, whatever order the server sends; a target of "." or a port of 0 is
    skipped and counted."""
    with dns_server() as dns:
        records = [(f"n{i:02}.shoal.test", 9000 + i) for i in range(40)]
        for target, _ in records:
            dns.zone.set_addresses(target, ["127.0.0.1"])
        dns.zone.set_srv(SRV_NAME, [*reversed(records), (".", 9999), ("n00.shoal.test", 0)])
        config = DnsConfig(srv=SRV_NAME, server=dns.address, interval=60, max_members=8)
        source = DnsMembership(config, node_id="me", url="http://127.0.0.1:9000")
        members = await source.start()
        assert sorted(m.url for m in members) == [f"http://127.0.0.1:{9000 + i}" for i in range(8)]
        (me,) = [m for m in members if m.node_id == "me"]
        assert me.url == "http://127.0.0.1:9000"  # n00's record is this node
        stats = source.statistics()
        assert (stats["left_out"], stats["bad_records"], stats["state"]) == (32, 2, "ok")
        await source.aclose()


async def test_aaaa_records_and_https_scheme() -> None:
    """An AAAA address is a member in brackets; every member takes this node's scheme
    and port (https when the node's URL is)."""
    with dns_server() as dns:
        dns.zone.set_addresses(NAME, ["::1", "127.0.0.9"])
        config = DnsConfig(name=NAME, server=dns.address, interval=60)
        source = DnsMembership(config, node_id="me", url="https://127.0.0.9:8443")
        members = await source.start()
        assert {(m.url, m.node_id) for m in members} == {
            ("https://[::1]:8443", "[::1]:8443"),
            ("https://127.0.0.9:8443", "me"),
        }
        await source.aclose()


async def test_this_node_is_recognised_by_the_addresses_of_its_host_name() -> None:
    """A node whose URL names a host: the addresses that name has are this node (its URL
    and id, once), not a second member."""
    with dns_server() as dns:
        dns.zone.set_addresses("node-0.shoal.test", ["127.0.0.7"])
        dns.zone.set_addresses(NAME, ["127.0.0.7", "127.0.0.8"])
        config = DnsConfig(name=NAME, server=dns.address, interval=60)
        url = "http://node-0.shoal.test:8001"
        source = DnsMembership(config, node_id="node-0", url=url)
        members = await source.start()
        assert {(m.url, m.node_id) for m in members} == {
            (url, "node-0"),
            ("http://127.0.0.8:8001", "127.0.0.8:8001"),
        }
        await source.aclose()


async def test_system_resolver_for_a_records() -> None:
    """Without --dns-server, A/AAAA come from getaddrinfo (no extra needed)."""
    source = DnsMembership(
        DnsConfig(name="localhost", interval=60), node_id="me", url="http://127.0.0.5:8001"
    )
    members = await source.start()
    assert "http://127.0.0.1:8001" in {m.url for m in members}
    assert source.statistics()["server"] == "system"


# --------------------------------------------------------------------------- config


def test_member_urls_is_pure_and_bounded() -> None:
    """Sorted, without repeats, bounded; bad addresses and ports counted."""
    found = [("10.0.0.2", 80), ("10.0.0.1", 80), ("10.0.0.1", 80), ("::1", 80)]
    found += [("not-an-ip", 80), ("10.0.0.3", 0), ("10.0.0.4", 70000), ("fe80::1%eth0", 80)]
    assert dns_member_urls("http", found, limit=2) == (
        ["http://10.0.0.1:80", "http://10.0.0.2:80"],
        4,
        1,
    )


def test_dns_config() -> None:
    """One of name and srv; a DNS name; an IP server; positive timings; bounded members."""
    assert DnsConfig(name=NAME).interval == 5.0
    assert DnsConfig(srv=SRV_NAME + ".").query == SRV_NAME
    assert "dns" in SOURCES
    assert NodeConfig(port=0, dns=DnsConfig(name=NAME)).membership == "dns"
    for options in (
        {},
        {"name": NAME, "srv": SRV_NAME},
        {"name": "a b"},
        {"name": "x" * 64},
        {"srv": "shoal.test"},
        {"name": NAME, "server": "ns.shoal.test:53"},
        {"name": NAME, "server": "127.0.0.1"},
        {"name": NAME, "interval": 0},
        {"name": NAME, "timeout": -1},
        {"name": NAME, "max_members": 0},
    ):
        with pytest.raises(ConfigError):
            DnsConfig(**options)
    with pytest.raises(ConfigError, match="do not also give peers"):
        NodeConfig(port=0, dns=DnsConfig(name=NAME), peers=("http://127.0.0.1:1",))
    with pytest.raises(ConfigError, match="choose one membership"):
        NodeConfig(port=0, dns=DnsConfig(name=NAME), etcd=EtcdConfig(endpoints=(ETCD,)))


def test_flags_variables_and_file(tmp_path: Path) -> None:
    """--dns, --dns-srv, --dns-interval, --dns-server; SHOAL_DNS*; [node.dns]."""
    node = plan("--port", "8001", "--dns", NAME, "--dns-server", "127.0.0.1:5353").node
    assert node.dns == DnsConfig(name=NAME, server="127.0.0.1:5353")
    assert node.membership == "dns"
    node = plan("--port", "8001", env={"SHOAL_DNS_SRV": SRV_NAME, "SHOAL_DNS_INTERVAL": "1s"}).node
    assert node.dns == DnsConfig(srv=SRV_NAME, interval=1.0)
    config = tmp_path / "shoal.toml"
    config.write_text(f"[node]\nport = 8001\n[node.dns]\nname = '{NAME}'\ntimeout = '500ms'\n")
    node = plan("--config", str(config), "--dns-interval", "2").node
    assert node.dns == DnsConfig(name=NAME, timeout=0.5, interval=2.0)


def test_every_dns_field_has_a_flag_or_an_option() -> None:
    """--dns-option KEY=VALUE reaches the DnsConfig fields without a flag of their own."""
    node = plan(
        *("--port", "1", "--dns", NAME, "--dns-option", "timeout=300ms"),
        *("--dns-option", "max_members=16"),
    ).node
    assert node.dns == DnsConfig(name=NAME, timeout=0.3, max_members=16)
    fields = {f.name for f in dataclasses.fields(DnsConfig)}
    assert fields - _DNS_FLAG_KEYS == {"timeout", "max_members"}
    with pytest.raises(ConfigError, match=r"expected one of \['max_members', 'timeout'\]"):
        plan("--port", "1", "--dns", NAME, "--dns-option", "interval=1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "1", "--dns-option", "timeout=1"], "needs --dns"),
        (["--port", "1", "--dns", NAME, "--dns-option", "max_members=0"], "max_members"),
        (["--port", "1", "--dns-interval", "1"], "need --dns"),
        (["--dns", NAME], "needs --port"),
        (["--port", "1", "--dns", NAME, "--dns-srv", SRV_NAME], "choose one DNS name"),
        (["--port", "1", "--dns", NAME, "--gossip-port", "7000"], "choose one membership"),
        (["--port", "1", "--dns", NAME, "--peers", "http://127.0.0.1:1"], "--peers"),
        (["--port", "1", "--dns", NAME, "--dns-server", "127.0.0.1"], "host:port"),
        (["--port", "1", "--dns", "a..b"], "DNS name"),
    ],
)
def test_flags_refused(argv: list[str], message: str) -> None:
    """Contradictions and malformed values are clear errors before anything starts."""
    with pytest.raises(ConfigError, match=message):
        plan(*argv)
