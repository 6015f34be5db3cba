"""etcd membership with a real etcd server and real ``shoal serve`` processes.

One etcd serves the whole module; each test uses its own ``--cluster`` name, so
the clusters share the server the way several deployments would. Nodes load
through ``helpers.loadlog:load``, which records which node loaded which key.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aetcd
import aiohttp

from helpers.cluster_views import all_see, cluster_view, member_urls, none_see, wait_for
from helpers.processes import (
    LoadLog,
    ShoalServer,
    free_port,
    loaded_value,
    run_shoal,
    shoal_nodes,
    shoal_serve,
)
from shoal.cli.localetcd import LocalEtcd
from shoal.ring import Ring

TTL = 2
"""The lease TTL of the tests that kill nodes: a dead node must be gone within TTL + 1 s."""

JOIN_WITHIN = 10.0
"""Seconds a started node may take to show up everywhere (process start included)."""


def etcd_args(etcd: LocalEtcd, cluster: str, *extra: str) -> list[str]:
    """``shoal serve`` arguments of a member of ``cluster`` loading through loadlog."""
    return [
        "--group",
        "data=helpers.loadlog:load",
        "--hot-admission",
        "never",
        "--etcd",
        etcd.url,
        "--cluster",
        cluster,
        *extra,
    ]


def start_node(stack: contextlib.ExitStack, loads: LoadLog, index: int, *args: str) -> ShoalServer:
    """Start one more node (its own free peer port) and return it once it is healthy."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = stack.enter_context(shoal_serve(*args, "--port", str(port), env=loads.env()(index, url)))
    node.peer_port = port
    return node


def owned_keys(urls: list[str], owner: str, prefix: str, count: int) -> list[str]:
    """``count`` keys the ring of ``urls`` (in URL order, as etcd members sort) gives ``owner``."""
    ring = Ring.build(sorted(urls))
    keys = (f"{prefix}-{i}" for i in range(100_000))
    found = [k for k in keys if ring.owner(k) == owner][:count]
    assert len(found) == count
    return found


def get(node: ShoalServer, key: str) -> tuple[int, bytes]:
    """``GET /api?key=KEY`` on a node."""
    try:
        with urllib.request.urlopen(f"{node.url}/api?key={key}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_nodes_join_one_by_one_and_a_stopped_node_leaves_at_once(
    live_etcd: LocalEtcd, tmp_path: Path
) -> None:
    """Three nodes started one after another: after each start every node sees all
    the started ones, with their ids and source; another cluster in the same etcd
    stays apart; a node stopped with SIGTERM vanishes at once, not at lease expiry."""
    loads = LoadLog(tmp_path / "calls")
    with contextlib.ExitStack() as stack:
        nodes: list[ShoalServer] = []
        for i in range(3):
            nodes.append(start_node(stack, loads, i, *etcd_args(live_etcd, "join")))
            urls = [n.peer_url for n in nodes]
            wait_for(all_see(nodes, urls), f"{i + 1} members on every node", JOIN_WITHIN)

        for node in nodes:
            view = cluster_view(node)
            assert view["node_id"] == f"127.0.0.1:{node.peer_port}"
            membership = view["membership"]
            assert membership["source"] == "etcd"
            assert membership["connected"] is True
            assert membership["cluster"] == "join"
            assert membership["key"] == f"/shoal/join/members/127.0.0.1:{node.peer_port}"
            assert {(m["url"], m["node_id"], m["source"]) for m in view["members"]} == {
                (n.peer_url, f"127.0.0.1:{n.peer_port}", "etcd") for n in nodes
            }

        # `shoal members` prints the same view.
        shown = run_shoal("members", "--url", nodes[0].url)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout.decode()
        assert "3 members by etcd (cluster 'join'" in text
        assert "; ring shoal x160, 8 probes" in text
        for node in nodes:
            assert node.peer_url in text

        # A node of another cluster in the same etcd sees only itself.
        other = start_node(stack, loads, 9, *etcd_args(live_etcd, "other"))
        wait_for(all_see([other], [other.peer_url]), "the other cluster alone", JOIN_WITHIN)
        assert all(member_urls(n) == set(urls) for n in nodes)

        # Graceful stop: the key is deleted, the others drop it long before the
        # lease (3 s by default) could have expired.
        leaving = nodes.pop()
        stopped = time.monotonic()
        assert leaving.stop(signal.SIGTERM) == 0
        wait_for(none_see(nodes, leaving.peer_url), "the stopped node to vanish", 1.0)
        assert time.monotonic() - stopped < 1.5
        assert "deregistered from etcd" in leaving.stderr()


def test_a_killed_node_is_dropped_within_the_ttl_and_a_new_node_takes_its_share(
    live_etcd: LocalEtcd, tmp_path: Path
) -> None:
    """SIGKILL one of three nodes: the others drop it within TTL + 1 s and load its
    keys themselves; a node that joins then owns its share of the ring and loads
    the keys it owns when asked through another node."""
    loads = LoadLog(tmp_path / "calls")
    args = etcd_args(live_etcd, "kill", "--etcd-ttl", str(TTL))
    with contextlib.ExitStack() as stack:
        nodes = stack.enter_context(shoal_nodes([args] * 3, env=loads.env()))
        urls = [n.peer_url for n in nodes]
        wait_for(all_see(nodes, urls), "3 members on every node", JOIN_WITHIN)
        victim, survivors = nodes[2], nodes[:2]
        orphans = owned_keys(urls, victim.peer_url, "orphan", 5)

        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        wait_for(none_see(survivors, victim.peer_url), "the killed node to be dropped", TTL + 1)
        assert time.monotonic() - killed <= TTL + 1

        # Its keys are now the survivors': loaded by the owner in the new ring.
        remaining = [n.peer_url for n in survivors]
        ring = Ring.build(sorted(remaining))
        for i, key in enumerate(orphans):
            assert get(survivors[i % 2], key) == (200, loaded_value(key))
            assert loads.nodes(key) == [ring.owner(key)]

        # A new node joins and receives its share.
        newcomer = start_node(stack, loads, 3, *args)
        members = [*remaining, newcomer.peer_url]
        wait_for(all_see([*survivors, newcomer], members), "the newcomer everywhere", JOIN_WITHIN)
        view = cluster_view(survivors[0])
        share = next(m["share"] for m in view["members"] if m["url"] == newcomer.peer_url)
        assert 0.2 < share < 0.5
        for key in owned_keys(members, newcomer.peer_url, "newcomer", 5):
            assert get(survivors[0], key) == (200, loaded_value(key))
            assert loads.nodes(key) == [newcomer.peer_url]


async def test_etcd_down_for_10s_under_load_fails_no_request_and_recovers(
    live_etcd: LocalEtcd, tmp_path: Path
) -> None:
    """etcd is SIGKILLed for 10 s while clients keep asking every live node for keys
    (one node is SIGKILLed meanwhile): no request fails. When etcd returns, the
    nodes re-register (one key each, no duplicates), watch again from where they
    were, and drop the node that died while etcd was away. A lease lost in etcd is
    replaced: the node registers again."""
    loads = LoadLog(tmp_path / "calls")
    args = etcd_args(live_etcd, "outage", "--etcd-ttl", str(TTL))
    with shoal_nodes([args] * 3, env=loads.env()) as nodes:
        urls = [n.peer_url for n in nodes]
        await asyncio.to_thread(wait_for, all_see(nodes, urls), "3 members", JOIN_WITHIN)
        targets = list(nodes)
        inflight = Counter[str]()
        failures: list[str] = []
        served = 0
        stop = asyncio.Event()

        async def client(session: aiohttp.ClientSession, worker: int) -> None:
            nonlocal served
            i = worker
            while not stop.is_set():
                node, key = targets[i % len(targets)], f"load-{i % 500}"
                i += 7
                inflight[node.url] += 1
                try:
                    async with session.get(f"{node.url}/api", params={"key": key}) as response:
                        body = await response.read()
                        if (response.status, body) != (200, loaded_value(key)):
                            failures.append(f"{node.url} {key}: {response.status} {body[:80]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"{node.url} {key}: {exc!r}")
                finally:
                    inflight[node.url] -= 1
                served += 1

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            clients = [asyncio.create_task(client(session, w)) for w in range(6)]
            try:
                await asyncio.sleep(1.0)
                live_etcd.kill()
                await asyncio.sleep(2.0)
                # A node dies while etcd is away: the clients stop using it first.
                victim = nodes[2]
                targets.remove(victim)
                # Requests already sent to it finish first.
                await asyncio.to_thread(
                    wait_for, lambda: not inflight[victim.url], "requests to the victim", 5.0
                )
                victim.proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.proc.wait)
                await asyncio.sleep(8.0)
                views = [await asyncio.to_thread(cluster_view, n) for n in nodes[:2]]
                assert [v["membership"]["connected"] for v in views] == [False, False]
                # The last view is kept while etcd is away.
                assert [len(v["members"]) for v in views] == [3, 3]
                await asyncio.to_thread(live_etcd.start)
                restarted = time.monotonic()
                await asyncio.to_thread(
                    wait_for,
                    lambda: all(cluster_view(n)["membership"]["connected"] for n in nodes[:2]),
                    "both survivors to reconnect",
                    5.0,
                )
                await asyncio.to_thread(
                    wait_for, all_see(nodes[:2], urls[:2]), "the dead node dropped", TTL + 3
                )
                assert time.monotonic() - restarted < TTL + 3
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*clients)
    assert failures == []
    assert served > 300


async def test_a_lost_lease_is_replaced(live_etcd: LocalEtcd) -> None:
    """The lease of a node is revoked behind its back (as when etcd was away longer
    than the TTL), which deletes its key: its next keep-alive finds the lease gone, it
    registers again under a new lease, and every node sees it; etcd holds one key
    per node."""
    args = ["--group", "data", "--etcd", live_etcd.url, "--cluster", "lease", "--etcd-ttl", "2"]
    with shoal_nodes([args] * 2) as nodes:
        urls = [n.peer_url for n in nodes]
        await asyncio.to_thread(wait_for, all_see(nodes, urls), "2 members", JOIN_WITHIN)
        before: dict[str, Any] = (await asyncio.to_thread(cluster_view, nodes[0]))["membership"]
        client = aetcd.Client(host=live_etcd.host, port=live_etcd.client_port, timeout=5)
        async with client:
            await client.revoke_lease(before["lease"])
            registered = before["registrations"] + 1
            await asyncio.to_thread(
                wait_for,
                lambda: cluster_view(nodes[0])["membership"]["registrations"] == registered,
                "a new registration",
                3.0,
            )
            await asyncio.to_thread(wait_for, all_see(nodes, urls), "both members", 3.0)
            after = (await asyncio.to_thread(cluster_view, nodes[0]))["membership"]
            assert after["lease"] != before["lease"]
            assert after["registrations"] == before["registrations"] + 1
            keys = [kv.key for kv in await client.get_prefix(b"/shoal/lease/")]
        expected = [f"/shoal/lease/members/127.0.0.1:{n.peer_port}".encode() for n in nodes]
        assert sorted(keys) == sorted(expected)


BAD_RECORDS = {
    "deep": b"[" * 5000,
    "nourl": b'{"node_id":"nourl","started_at":1}',
    "empty-url": b'{"url":"http://","started_at":1}',
    "userinfo": b'{"url":"http://user@127.0.0.1:1","started_at":1}',
    "url-number": b'{"url":5,"started_at":1}',
    "started-text": b'{"url":"http://127.0.0.1:2","started_at":"soon"}',
    "started-huge": b'{"url":"http://127.0.0.1:3","started_at":1' + b"0" * 400 + b"}",
    "grpc-list": b'{"url":"http://127.0.0.1:4","grpc":[]}',
    "not-an-object": b'"http://127.0.0.1:5"',
    "big": b'{"url":"http://127.0.0.1:6","pad":"' + b"x" * 5000 + b'"}',
    "bad id!": b'{"url":"http://127.0.0.1:7"}',
}
"""etcd records under a cluster's prefix that no node may take as a member (key suffix
→ value): each must be skipped on its own, the real members still followed."""


async def test_bad_records_are_skipped_and_never_freeze_the_view(
    live_etcd: LocalEtcd, tmp_path: Path
) -> None:
    """Malformed records (deep JSON, wrong types, an unusable URL, too large) put
    under the prefix while three nodes run: each node skips them, logs it, and keeps
    following the real members: a SIGKILLed node is dropped within TTL + 1 s, a new
    one joins, and once the bad records are deleted the view is the real members'."""
    loads = LoadLog(tmp_path / "calls")
    args = etcd_args(live_etcd, "bad", "--etcd-ttl", str(TTL))
    prefix = b"/shoal/bad/members/"
    client = aetcd.Client(host=live_etcd.host, port=live_etcd.client_port, timeout=5)
    with contextlib.ExitStack() as stack:
        nodes = stack.enter_context(shoal_nodes([args] * 3, env=loads.env()))
        urls = [n.peer_url for n in nodes]
        await asyncio.to_thread(wait_for, all_see(nodes, urls), "3 members", JOIN_WITHIN)
        async with client:
            for name, value in BAD_RECORDS.items():
                await client.put(prefix + name.encode(), value)
            victim, survivors = nodes[2], nodes[:2]
            victim.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.proc.wait)
            killed = time.monotonic()
            await asyncio.to_thread(
                wait_for, all_see(survivors, urls[:2]), "the killed node dropped", TTL + 1
            )
            assert time.monotonic() - killed <= TTL + 1
            newcomer = await asyncio.to_thread(start_node, stack, loads, 3, *args)
            members = [*urls[:2], newcomer.peer_url]
            everyone = [*survivors, newcomer]
            await asyncio.to_thread(
                wait_for, all_see(everyone, members), "the newcomer everywhere", JOIN_WITHIN
            )
            # A member whose record is overwritten by one that is not a member leaves.
            extra = f"http://127.0.0.1:{free_port()}"
            await client.put(prefix + b"flip", f'{{"url":"{extra}"}}'.encode())
            await asyncio.to_thread(
                wait_for, all_see(everyone, [*members, extra]), "a good record", 5.0
            )
            await client.put(prefix + b"flip", b'{"url":["' + extra.encode() + b'"]}')
            await asyncio.to_thread(
                wait_for, all_see(everyone, members), "the record no longer a member", 5.0
            )
            await client.delete(prefix + b"flip")
            for name in BAD_RECORDS:
                await client.delete(prefix + name.encode())
            await client.put(prefix + b"late", b'{"url":"http://","started_at":1}')
            await client.delete(prefix + b"late")
            newest = start_node(stack, loads, 4, *args)
            members.append(newest.peer_url)
            everyone.append(newest)
            await asyncio.to_thread(
                wait_for, all_see(everyone, members), "a node started after", JOIN_WITHIN
            )
        for node in survivors:
            view = await asyncio.to_thread(cluster_view, node)
            assert view["membership"]["bad_records"] >= len(BAD_RECORDS) - 2
            log = node.stderr()
            assert "Traceback" not in log
            assert "RecursionError" not in log
            assert "ignoring the malformed etcd member '/shoal/bad/members/deep'" in log
            # The unusable URL is the node's to refuse: logged once, however often seen.
            assert log.count("leaving member 'empty-url' (etcd) out of the ring") == 1


async def test_a_node_cut_off_across_a_compaction_reads_the_members_again(
    live_etcd: LocalEtcd,
) -> None:
    """A node is paused while etcd restarts and a member joins and the history is
    compacted past the node's revision: resumed, it reconnects, reads the prefix again
    and follows the watch from there: it sees the new member, then one that joins
    after, and one that leaves."""
    args = ["--group", "data", "--etcd", live_etcd.url, "--cluster", "compact", "--etcd-ttl", "30"]
    prefix = b"/shoal/compact/members/"
    extra = [f"http://127.0.0.1:{port}" for port in (free_port(), free_port())]
    with shoal_nodes([args] * 2) as nodes:
        urls = [n.peer_url for n in nodes]
        await asyncio.to_thread(wait_for, all_see(nodes, urls), "2 members", JOIN_WITHIN)
        paused = nodes[0]
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.to_thread(live_etcd.kill)
            await asyncio.to_thread(live_etcd.start)
            client = aetcd.Client(host=live_etcd.host, port=live_etcd.client_port, timeout=5)
            async with client:
                for _ in range(20):  # history to compact
                    await client.put(prefix + b"churn", b'{"url":"http://127.0.0.1:9"}')
                    await client.delete(prefix + b"churn")
                await client.put(prefix + b"joined", f'{{"url":"{extra[0]}"}}'.encode())
                revision = (await client.get(prefix + b"joined")).mod_revision
                await client.compact(revision, physical=True)
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        await asyncio.to_thread(
            wait_for, all_see(nodes, [*urls, extra[0]]), "the member joined while away", 10.0
        )
        async with aetcd.Client(
            host=live_etcd.host, port=live_etcd.client_port, timeout=5
        ) as client:
            await client.put(prefix + b"later", f'{{"url":"{extra[1]}"}}'.encode())
            await asyncio.to_thread(
                wait_for, all_see(nodes, [*urls, *extra]), "a member joined after", 5.0
            )
            await client.delete(prefix + b"joined")
            await asyncio.to_thread(
                wait_for, all_see(nodes, [*urls, extra[1]]), "a member gone after", 5.0
            )
            await client.delete(prefix + b"later")
        view = await asyncio.to_thread(cluster_view, paused)
        assert view["membership"]["connected"] is True
