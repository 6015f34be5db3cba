"""Nothing that runs in the background stops a node: failures injected into each
background task of live nodes (real sockets on 127.0.0.1, real datagrams for
gossip) are counted under the task's name, the node keeps serving its HTTP API, and
the task recovers; plus the rules of :func:`shoal.supervise.supervised` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from helpers.peer_nodes import Served, cached, serving
from helpers.processes import free_ports
from helpers.raw_http import call
from shoal import Node, NodeConfig
from shoal.config import GossipConfig
from shoal.supervise import BackgroundErrors, supervised
from shoal.testing import ManualClock

T = TypeVar("T")
MIRROR = "mirror"


def failing_first(times: int, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, except that its first ``times`` calls raise RuntimeError."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> T:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise RuntimeError(f"injected failure {calls}")
        return fn(*args, **kwargs)

    return wrapper


async def wait_until(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


def api_port(node: Node) -> int:
    assert node.api_address is not None
    return node.api_address[1]


async def metric_errors(node: Node, task: str) -> int:
    """``shoal_background_errors_total{task=…}`` from the node's ``GET /metrics``."""
    response = await call(api_port(node), "GET", "/metrics")
    assert response.status == 200
    found = re.search(
        rf'^shoal_background_errors_total{{task="{task}"}} (\d+)$',
        response.body.decode(),
        re.MULTILINE,
    )
    assert found is not None, response.body.decode()
    return int(found[1])


async def serves(node: Node) -> None:
    """The node answers its HTTP API, statistics included."""
    assert (await call(api_port(node), "GET", "/healthz")).status == 200
    stats = await call(api_port(node), "GET", "/v1/stats")
    assert stats.status == 200
    assert stats.json()["background_errors"] == node.background_errors()


# -- the supervisor's rules -------------------------------------------------------------


async def test_a_failed_round_is_counted_and_the_next_one_runs() -> None:
    """Three failing rounds, then good ones: three counted, the loop goes on, and the
    pauses after failures grow (bounded) while a good round resets them."""
    errors = BackgroundErrors(["job"])
    assert errors.counts() == {"job": 0}
    done: list[float] = []
    round_ = failing_first(3, lambda: done.append(time.monotonic()))

    async def one() -> None:
        round_()
        await asyncio.sleep(0)

    began = time.monotonic()
    task = asyncio.create_task(supervised("job", one, errors, initial=0.02, maximum=0.04))
    await wait_until(lambda: len(done) >= 5, "rounds after the failures")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert errors.counts() == {"job": 3}
    # Pauses of about 0.02, 0.04 and 0.04 (capped) before the first good round.
    assert 0.06 <= done[0] - began < 1.0
    assert done[4] - done[1] < 0.05  # no pause between good rounds


@pytest.mark.parametrize("stop", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
async def test_cancellation_and_exits_are_never_swallowed(stop: type[BaseException]) -> None:
    errors = BackgroundErrors()

    async def round_() -> None:
        raise stop

    with pytest.raises(stop):
        await supervised("job", round_, errors)
    assert errors.counts() == {}


async def test_a_whole_task_is_rerun_only_after_it_fails() -> None:
    """``forever=False``: run again after a failure, and done when it returns."""
    errors = BackgroundErrors()
    runs = 0

    async def whole() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ValueError("not yet")

    await asyncio.wait_for(supervised("job", whole, errors, forever=False, initial=0.01), 2)
    assert (runs, errors.counts()) == (3, {"job": 2})


def test_the_same_failure_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """A failure repeating every round is logged with its traceback once, then once
    per interval with how often it happened; a different failure is logged at once."""
    clock = ManualClock(0.0)
    errors = BackgroundErrors(log_interval=60.0, clock=clock)
    caplog.set_level(logging.ERROR, logger="shoal.background")
    for _ in range(100):
        errors.record("sweep", RuntimeError("disk on fire"), "group 'a'")
        clock.advance(0.1)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert "group 'a'" in caplog.messages[0]
    errors.record("sweep", KeyError("other"), "group 'a'")
    assert len(caplog.records) == 2
    clock.advance(60)
    errors.record("sweep", RuntimeError("disk on fire"), "group 'a'")
    assert len(caplog.records) == 3
    assert "again, 100 more times" in caplog.messages[2]
    assert errors.counts() == {"sweep": 102}


# -- live nodes ---------------------------------------------------------------------------


async def test_a_failing_sweep_is_counted_and_later_sweeps_reclaim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock(1_800_000_000.0)
    config = NodeConfig(api_port=0, sweep_interval=0.02)
    async with Node(config, clock=clock) as node:
        group = node.group("g", None, ttl=1)
        monkeypatch.setattr(group, "sweep", failing_first(3, group.sweep))
        for i in range(5):
            await group.set_bytes(f"k{i}", b"v")
        clock.advance(10)
        await wait_until(lambda: node.background_errors()["sweep"] >= 3, "three failed sweeps")
        await serves(node)
        await wait_until(lambda: group.statistics().main.items == 0, "expired keys reclaimed")
        assert await metric_errors(node, "sweep") == 3


@contextlib.asynccontextmanager
async def mirrored(n: int, **options: Any) -> AsyncIterator[list[Served]]:
    """``n`` started nodes with an HTTP API each and the replicated group ``mirror``,
    not yet told about each other."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(serving(config={"api_port": 0})) for _ in range(n)]
        for served in nodes:
            served.node.group(MIRROR, None, mode="replicated", **options)
        yield nodes


def meet(nodes: list[Served]) -> None:
    urls = [s.url for s in nodes]
    for served in nodes:
        served.node.set_peers(urls)


async def test_failing_anti_entropy_rounds_are_counted_and_it_converges_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes made alone reach the other member only by anti-entropy; its first
    rounds fail on both members, then it converges."""
    async with mirrored(2, anti_entropy_interval=0.05) as nodes:
        for i, served in enumerate(nodes):
            await served.node.groups[MIRROR].set_bytes(f"alone{i}", b"x")  # not pushed
            replica = served.node.groups[MIRROR].replica
            assert replica is not None
            monkeypatch.setattr(replica, "sync_with", failing_first(3, replica.sync_with))
        meet(nodes)
        await wait_until(
            lambda: all(s.node.background_errors()["anti-entropy"] >= 3 for s in nodes),
            "three failed rounds on each member",
        )
        for served in nodes:
            await serves(served.node)
        await wait_until(
            lambda: (
                cached(nodes, "alone0", MIRROR) == cached(nodes, "alone1", MIRROR) == [b"x"] * 2
            ),
            "anti-entropy converged",
        )
        for served in nodes:
            assert await metric_errors(served.node, "anti-entropy") == 3


async def test_a_failing_push_releases_its_writers_and_later_pushes_go_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with mirrored(2, anti_entropy_interval=3600) as nodes:
        meet(nodes)
        group = nodes[0].node.groups[MIRROR]
        replica = group.replica
        assert replica is not None
        monkeypatch.setattr(replica, "_skipped", failing_first(2, replica._skipped))
        for i in range(2):
            await asyncio.wait_for(group.set_bytes(f"lost{i}", b"x"), 2)  # not left waiting
        assert nodes[0].node.background_errors()["replica-push"] == 2
        await serves(nodes[0].node)
        await group.set_bytes("after", b"y")
        assert cached(nodes, "after", MIRROR) == [b"y", b"y"]
        assert await metric_errors(nodes[0].node, "replica-push") == 2


async def test_a_failing_probe_is_counted_and_the_next_one_reaches_the_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member in its failure back-off gets pushes by probe; a probe that raises is
    counted and stops nothing: the next one delivers."""
    async with mirrored(2, anti_entropy_interval=3600) as nodes:
        meet(nodes)
        group = nodes[0].node.groups[MIRROR]
        replica, picker = group.replica, nodes[0].node.peers
        assert replica is not None
        assert picker is not None
        monkeypatch.setattr(replica, "_send", failing_first(1, replica._send))
        picker.failed(nodes[1].url)
        await group.set_bytes("first", b"1")  # nobody live: returns at once
        await wait_until(lambda: nodes[0].node.background_errors()["replica-probe"] == 1, "probe")
        await serves(nodes[0].node)
        await group.set_bytes("second", b"2")
        await wait_until(lambda: cached(nodes, "second", MIRROR) == [b"2", b"2"], "probe delivered")
        assert await metric_errors(nodes[0].node, "replica-probe") == 1


async def test_a_client_that_fails_to_close_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client of a member that left is closed in the background; one whose close
    raises is counted under ``members`` and the node goes on."""
    async with mirrored(2, anti_entropy_interval=3600) as nodes:
        meet(nodes)
        node = nodes[0].node
        assert node.peers is not None
        client = node.peers.view.clients[nodes[1].url]
        monkeypatch.setattr(client, "aclose", failing_first(1, client.aclose))
        node.set_peers([nodes[0].url])
        await wait_until(lambda: node.background_errors()["members"] == 1, "the failed close")
        await serves(node)
        node.set_peers([s.url for s in nodes])
        await node.groups[MIRROR].set_bytes("after", b"y")
        assert cached(nodes, "after", MIRROR) == [b"y", b"y"]


def gossip_node(port: int, join: tuple[str, ...] = ()) -> Node:
    gossip = GossipConfig.profile("local", port=port, host="127.0.0.1", join=join)
    return Node(NodeConfig(port=0, api_port=0, host="127.0.0.1", gossip=gossip))


async def test_failing_membership_rounds_are_counted_and_changes_still_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gossip loop of the first node fails three times and applying its first
    membership changes fails twice: the second node's join still reaches its ring."""
    first_port, second_port = free_ports(2)
    async with gossip_node(first_port) as first:
        membership: Any = first.membership
        monkeypatch.setattr(membership, "_step", failing_first(3, membership._step))
        monkeypatch.setattr(first, "_apply_members", failing_first(2, first._apply_members))
        async with gossip_node(second_port, join=(f"127.0.0.1:{first_port}",)) as second:
            assert second.self_url is not None
            await wait_until(
                lambda: first.peers is not None and second.self_url in first.peers.view.ring.nodes,
                "the join applied on the first node",
                within=10,
            )
            await wait_until(
                lambda: first.background_errors()["membership"] >= 3, "three failed gossip rounds"
            )
            assert first.background_errors()["members"] == 2
            await serves(first)
            assert await metric_errors(first, "members") == 2
            assert await metric_errors(first, "membership") == 3
