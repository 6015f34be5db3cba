"""A cluster of real ``shoal serve`` processes talking the groupcache HTTP peer protocol:
forwarding to the owner, one load per key in the whole cluster, hot copies, an owner
killed under load, and malformed peer requests."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers.processes import (
    CountedCluster,
    LoadLog,
    ShoalServer,
    group_stats,
    http_get,
    http_request,
    loaded_value,
    shoal_cluster,
    sigkill_under_load,
    until,
)
from helpers.raw_http import call
from shoal.ring import DEFAULT_PROBES
from shoal.wire import decode_get_response, encode_set_request

GROUP = "data"


def stats(node: ShoalServer) -> dict[str, Any]:
    """The statistics of group ``data`` on ``node``."""
    return group_stats(node, GROUP)


def get(node: ShoalServer, key: str) -> tuple[int, bytes]:
    """``GET /api?key=KEY`` on ``node``."""
    return http_get(f"{node.url}/api?key={key}")


# --------------------------------------------------------------------------- the read path


def test_a_non_owner_forwards_to_the_owner(counted: CountedCluster) -> None:
    """A miss on a node that does not own the key is loaded by the owner, once."""
    c, loads = counted.cluster, counted.loads
    (key,) = c.keys_owned_by(1, "forward")
    asker, owner = c.nodes[0], c.nodes[1]
    before = stats(owner)
    assert get(asker, key) == (200, loaded_value(key))
    assert loads.nodes(key) == [owner.peer_url]
    after = stats(owner)
    assert after["local_loads"] == before["local_loads"] + 1
    assert after["server_requests"] == before["server_requests"] + 1  # the peer request
    # The logs tell the story, each line naming its node.
    assert f"miss '{key}' -> fetched from {owner.peer_url}" in asker.stderr()
    assert (
        f"[node {owner.peer_port}] INFO    shoal.cluster: load '{key}' here (this node owns it)"
        in owner.stderr()
    )


def test_the_banner_names_the_node_and_its_peers(counted: CountedCluster) -> None:
    """Each node prints its URL and the member list, then a curl line."""
    c = counted.cluster
    for node in c.nodes:
        banner = node.stdout()
        assert f"is {node.peer_url} (peers on {node.peer_url}/_groupcache/" in banner
        members = ", ".join(f"{url} (this node)" if url == node.peer_url else url for url in c.urls)
        assert f"members: {members}" in banner
        assert f"curl '{node.url}/api?key=KEY'" in banner


async def test_1000_concurrent_cold_requests_are_one_load_per_key(counted: CountedCluster) -> None:
    """1,000 concurrent requests for 10 cold keys, spread over the three nodes' HTTP
    APIs: the loader runs once per key in the whole cluster, on the key's owner."""
    c, loads = counted.cluster, counted.loads
    keys = [f"burst-{i}" for i in range(10)]
    connector = aiohttp.TCPConnector(limit=0)  # one connection per request: all at once
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> tuple[str, int, bytes]:
            node, key = c.nodes[i % 3], keys[i % len(keys)]
            async with session.get(f"{node.url}/api", params={"key": key}) as resp:
                return key, resp.status, await resp.read()

        answers = await asyncio.gather(*(one(i) for i in range(1000)))
    assert [(s, b) for k, s, b in answers if (s, b) != (200, loaded_value(k))] == []
    for key in keys:
        assert loads.nodes(key) == [c.nodes[c.owner(key)].peer_url], key


def test_a_hot_copy_spares_the_owner(counted: CountedCluster) -> None:
    """With --hot-admission always, the second request on a non-owner is answered from
    its hot cache: the owner is not asked again."""
    c = counted.cluster
    (key,) = c.keys_owned_by(2, "hot")
    asker, owner = c.nodes[0], c.nodes[2]
    assert get(asker, key) == (200, loaded_value(key))
    served = stats(owner)["server_requests"]
    hot_hits = stats(asker)["hot"]["hits"]
    assert get(asker, key) == (200, loaded_value(key))
    assert stats(owner)["server_requests"] == served
    assert stats(asker)["hot"]["hits"] == hot_hits + 1


def test_a_missing_key_is_a_404_everywhere(counted: CountedCluster) -> None:
    """The owner's NotFound travels back to the asker as a 404; nobody loads it twice."""
    c, loads = counted.cluster, counted.loads
    (key,) = c.keys_owned_by(1, "missing")
    assert get(c.nodes[0], key)[0] == 404
    assert loads.nodes(key) == [c.nodes[1].peer_url]


def test_cluster_route_shows_members_shares_and_owners(counted: CountedCluster) -> None:
    """GET /v1/cluster on any node: the same members and shares; the owner of a key."""
    c = counted.cluster
    views = []
    for i, node in enumerate(c.nodes):
        (key,) = c.keys_owned_by((i + 1) % 3, "whose")
        status, body = http_get(f"{node.url}/v1/cluster?key={key}")
        assert status == 200, body
        view = json.loads(body)
        assert view["self"] == node.peer_url
        assert view["owner"] == c.nodes[(i + 1) % 3].peer_url
        assert view["ring"] == {
            "flavour": c.ring,
            "replicas": 160,
            "probes": DEFAULT_PROBES[c.ring],
        }
        members = view["members"]
        assert sorted(m["url"] for m in members) == sorted(c.urls)
        assert [m["url"] for m in members if m["self"]] == [node.peer_url]
        assert abs(sum(m["share"] for m in members) - 1.0) < 1e-9
        assert all(0.2 < m["share"] < 0.5 for m in members)
        views.append({m["url"]: m["share"] for m in members})
    assert views[0] == views[1] == views[2]


# --------------------------------------------------------------------------- bad peer requests


def _truncated_set_request() -> bytes:
    body = encode_set_request(GROUP, "k", b"some value")
    return body[: len(body) - 3]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "data/%zz", b""),
        ("GET", "data/ok%", b""),
        ("GET", "no-such-group/k", b""),
        ("GET", "data/", b""),
        ("GET", "data/" + "k" * 2000, b""),
        ("GET", "data/" + "k" * 70_000, b""),
        ("PUT", "data/k", b"\xff\xfe garbage \x00\x01"),
        ("PUT", "data/k", _truncated_set_request()),
        ("PATCH", "data/k", b""),
        ("BREW", "data/k", b""),
    ],
    ids=[
        "bad-escape",
        "truncated-escape",
        "unknown-group",
        "empty-key",
        "long-key",
        "huge-key",
        "garbage-protobuf",
        "truncated-protobuf",
        "wrong-method",
        "unknown-method",
    ],
)
async def test_malformed_peer_requests_get_a_4xx(
    counted: CountedCluster, method: str, path: str, body: bytes
) -> None:
    """Bad input on the peer port is a 4xx; it stores nothing and the node keeps serving."""
    c = counted.cluster
    node = c.nodes[0]
    assert node.peer_port is not None
    items = stats(node)["main"]["items"]
    answer = await call(node.peer_port, method, f"/_groupcache/{path}", body)
    assert 400 <= answer.status < 500, (answer.status, answer.body[:200])
    # Still serving, on both ports, and the cache did not change.
    (key,) = c.keys_owned_by(0, f"after-{zlib.crc32(f'{method} {path}'.encode() + body)}")
    good = await call(node.peer_port, "GET", f"/_groupcache/{GROUP}/{key}")
    assert good.status == 200
    assert decode_get_response(good.body).value == loaded_value(key)
    assert stats(node)["main"]["items"] == items + 1
    assert node.proc.poll() is None


# --------------------------------------------------------------------------- a crash under load


async def test_sigkill_of_an_owner_under_load_fails_no_request(tmp_path: Path) -> None:
    """Clients keep hammering two nodes while the third, owner of a third of the keys,
    is SIGKILLed: not one request fails. After the kill the survivors load its keys
    themselves (a peer error, then local loads) and skip it for the back-off period
    instead of paying a failed request per key."""
    loads = LoadLog(tmp_path / "calls")
    with shoal_cluster(
        3, "--group", "data=helpers.loadlog:load", "--hot-admission", "never", env=loads.env(0.005)
    ) as c:
        survivors = c.nodes[:2]

        def victim_keys_after() -> list[str]:
            return [k for k in after_kill if c.owner(k) == 2]

        async with aiohttp.ClientSession() as session:

            async def request(n: int) -> tuple[str, str | None]:
                key, node = f"steady-{n}", survivors[n % 2]
                try:
                    async with session.get(f"{node.url}/api", params={"key": key}) as resp:
                        status, body = resp.status, await resp.read()
                except aiohttp.ClientError as exc:
                    return key, f"{key} on {node.url}: {exc!r}"
                if (status, body) != (200, loaded_value(key)):
                    return key, f"{key} on {node.url}: {status} {body[:200]!r}"
                return key, None

            run = await sigkill_under_load(
                c, 2, [request] * 16, before=200, after=300, victim_after=60
            )
        failures, before_kill, after_kill = run.failures, run.before, run.after
        assert failures == []
        assert any(c.owner(k) == 2 for k in before_kill)  # the victim did serve before
        for key in victim_keys_after():
            nodes = loads.nodes(key)
            assert nodes, key
            assert set(nodes) <= {s.peer_url for s in survivors}, (key, nodes)
        for key in after_kill:
            if c.owner(key) != 2:  # the survivors' own keys still go to their owner
                assert loads.nodes(key) == [c.nodes[c.owner(key)].peer_url], key
        peer_errors = sum(stats(s)["peer_errors"] for s in survivors)
        assert peer_errors >= 1
        # Back-off: far fewer failed peer requests than keys of the dead node.
        assert peer_errors < len(victim_keys_after()) / 2, peer_errors
        assert "loading locally" in "".join(s.stderr() for s in survivors)


# --------------------------------------------------------------------------- a hung owner


@dataclass
class Read:
    """One read of the hung-owner test."""

    key: str
    node: int
    start: float
    took: float
    status: int
    code: str | None


async def test_sigstop_of_an_owner_under_load_is_503_never_404_and_the_stall_is_paid_once(
    tmp_path: Path,
) -> None:
    """Keys that exist only by PUT (no loader), read continuously from two nodes while
    the third, their owner for a third of them, is SIGSTOPped: its keys answer 503
    ``peer_unavailable`` (never 404: they exist), the others 200; a request waits
    ``peer_timeout`` only as the first after the stop or as the one probe of a back-off
    window; after SIGCONT its keys answer 200 again within about a window."""
    timeout, backoff, hang = 0.5, 0.5, 3.0
    with shoal_cluster(
        3,
        "--group",
        "data",
        "--hot-admission",
        "never",
        "--peer-timeout",
        str(timeout),
        "--peer-backoff",
        str(backoff),
    ) as c:
        victim, survivors = c.nodes[2], (0, 1)
        keys = [f"put-{i}" for i in range(60)]
        for key in keys:
            status, body = http_request(
                "PUT", f"{c.nodes[0].url}/v1/groups/{GROUP}/keys/{key}", key.encode()
            )
            assert status == 204, body
        theirs = {k for k in keys if c.owner(k) == 2}
        assert theirs
        reads: list[Read] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def client(session: aiohttp.ClientSession, node: int, offset: int) -> None:
            url = f"{c.nodes[node].url}/v1/groups/{GROUP}/keys/"
            for n in itertools.count(offset):
                if stop.is_set():
                    return
                key = keys[n % len(keys)]
                start = loop.time()
                async with session.get(url + key) as resp:
                    body = await resp.read()
                    code = None
                    if resp.status != 200:
                        code = json.loads(body).get("code")
                    else:
                        assert body == key.encode(), (key, body)
                reads.append(Read(key, node, start, loop.time() - start, resp.status, code))

        async with aiohttp.ClientSession() as session:
            clients = [
                asyncio.create_task(client(session, node, offset))
                for node in survivors
                for offset in (0, 31)
            ]
            try:
                await asyncio.sleep(0.5)
                victim.proc.send_signal(signal.SIGSTOP)
                stopped = loop.time()
                await asyncio.sleep(hang)
                victim.proc.send_signal(signal.SIGCONT)
                resumed = loop.time()
                # Within the longest window a hang this short reaches (2 s), plus slack.
                await until(
                    lambda: all(
                        any(
                            r.status == 200 and r.key in theirs and r.start > resumed + 0.1
                            for r in reads
                            if r.node == node
                        )
                        for node in survivors
                    ),
                    "the stopped owner's keys to answer 200 again",
                    within=4 * backoff + 1.5,
                )
                await asyncio.sleep(0.3)
            finally:
                victim.proc.send_signal(signal.SIGCONT)
                stop.set()
                await asyncio.gather(*clients)
        assert [r for r in reads if r.status == 404] == []
        wrong = [
            r
            for r in reads
            if r.status != 200 and (r.key not in theirs or r.code != "peer_unavailable")
        ]
        assert wrong == []
        assert all(r.start + r.took > stopped for r in reads if r.status != 200)
        for node in survivors:
            during = [r for r in reads if r.node == node and stopped <= r.start < resumed]
            unavailable = [r for r in during if r.status == 503]
            stalls = [r for r in during if r.took >= 0.8 * timeout]
            # Two reads in flight at the stop, then one probe per window (at ~1 s and
            # ~2.5 s: the windows grow); the node's other client may wait on the same
            # load (same key), never on a load of its own.
            assert len({r.key for r in stalls}) <= 4, [
                (round(r.start - stopped, 2), r.key) for r in stalls
            ]
            assert len(stalls) <= 8
            assert len(unavailable) >= 30, len(unavailable)  # failed over at once
            assert all(r.took < 3 * timeout for r in during)  # none waits two timeouts
        # Once a survivor reads one of the owner's keys again, it reads them all.
        for node in survivors:
            back = min(
                r.start
                for r in reads
                if r.node == node and r.key in theirs and r.status == 200 and r.start > resumed
            )
            after = [r for r in reads if r.node == node and r.start > back + 0.05]
            assert after
            assert all(r.status == 200 for r in after)
