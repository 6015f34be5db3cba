"""The SWIM state machine, alone: an in-memory network, a virtual clock, seeded randomness.

No sockets and no sleeps: :class:`Net` delivers datagrams after a fixed latency and
jumps the clock to the next delivery or timer deadline (trio's autojump idea), so
minutes of protocol time run in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.config import GossipConfig
from shoal.membership.gossip.messages import (
    Ack,
    Gossip,
    Ping,
    PingReq,
    Sync,
    Update,
    decode,
    encode,
)
from shoal.membership.gossip.swim import (
    MAX_INCARNATION_JUMP,
    MAX_PENDING,
    MAX_RELAYS,
    Address,
    Status,
    Swim,
)

LOCAL = GossipConfig.profile("local")
LATENCY = 0.0005


class Net:
    """Swim machines joined by a lossy in-memory datagram network."""

    def __init__(self, config: GossipConfig = LOCAL, seed: int = 1, loss: float = 0.0) -> None:
        self.config = config
        self.now = 0.0
        self.rng = random.Random(seed)
        self.loss = loss
        self.nodes: dict[Address, Swim] = {}
        self.crashed: set[Address] = set()
        self.blocked: set[tuple[Address, Address]] = set()
        self._queue: list[tuple[float, int, Address, Address, bytes]] = []
        self._order = itertools.count()

    def add(self, index: int, seeds: Iterable[Address] = ()) -> Swim:
        """Start node ``index`` (name ``n{index}``, address ``10.0.0.{index}:7000``)."""
        address = (f"10.0.0.{index}", 7000)
        swim = Swim(
            name=f"n{index}",
            address=address,
            meta={"url": f"http://10.0.0.{index}:8000"},
            config=self.config,
            rng=random.Random(self.rng.random()),
            now=self.now,
            seeds=seeds,
        )
        self.nodes[address] = swim
        self.crashed.discard(address)
        swim.tick(self.now)
        self._collect(swim)
        return swim

    def cluster(self, size: int) -> list[Swim]:
        """``size`` nodes that all join through node 0, run until they converge."""
        first = self.add(0)
        nodes = [first] + [self.add(i, [first.address]) for i in range(1, size)]
        self.run(3.0)
        assert all(live_names(n) == {f"n{i}" for i in range(size)} for n in nodes)
        return nodes

    def crash(self, swim: Swim) -> None:
        """The node stops: it neither sends, receives nor ticks."""
        self.crashed.add(swim.address)

    def cut(self, a: Iterable[Swim], b: Iterable[Swim]) -> None:
        """Drop every datagram between the two groups, both ways."""
        for x, y in itertools.product(a, b):
            self.blocked |= {(x.address, y.address), (y.address, x.address)}

    def heal(self) -> None:
        """Deliver everything again."""
        self.blocked.clear()

    def live(self) -> list[Swim]:
        """The nodes that did not crash."""
        return [s for a, s in self.nodes.items() if a not in self.crashed]

    def _collect(self, swim: Swim) -> None:
        for destination, data in swim.take_outgoing():
            if (swim.address, destination) in self.blocked:
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            entry = (self.now + LATENCY, next(self._order), destination, swim.address, data)
            heapq.heappush(self._queue, entry)

    def run(self, seconds: float) -> None:
        """Run the network for ``seconds`` of virtual time."""
        end = self.now + seconds
        while True:
            live = self.live()
            deadline = min((s.next_deadline() for s in live), default=end)
            packet = self._queue[0][0] if self._queue else end
            step = min(deadline, packet, end)
            self.now = max(self.now, step)
            if self.now >= end and step >= end:
                return
            while self._queue and self._queue[0][0] <= self.now:
                _, _, destination, source, data = heapq.heappop(self._queue)
                node = self.nodes.get(destination)
                if node is not None and destination not in self.crashed:
                    node.receive(self.now, data, source)
                    self._collect(node)
            for swim in self.live():
                if swim.next_deadline() <= self.now:
                    swim.tick(self.now)
                self._collect(swim)

    def run_until(self, condition: object, within: float) -> float:
        """Run until ``condition()`` holds; return the virtual seconds it took."""
        assert callable(condition)
        start = self.now
        while not condition():
            if self.now - start > within:
                raise AssertionError(f"not within {within}s of virtual time")
            self.run(0.01)
        return self.now - start


def live_names(swim: Swim) -> set[str]:
    """The members ``swim`` considers alive or suspect."""
    return {m.name for m in swim.live()}


def status_of(swim: Swim, name: str) -> Status | None:
    """What ``swim`` believes about ``name`` (None: never heard of it, or forgotten)."""
    return next((m.status for m in swim.members() if m.name == name), None)


class TestConvergence:
    """Joining, crash detection, refutation, leaving, partitions."""

    def test_five_nodes_joining_through_one_seed_all_see_each_other(self) -> None:
        """Each new node syncs with the seed; gossip tells the rest."""
        Net().cluster(5)

    @pytest.mark.parametrize("seed", range(5))
    def test_a_crash_is_declared_dead_everywhere_within_the_documented_bound(
        self, seed: int
    ) -> None:
        """Suspicion is raised, spread, and turned into death on every survivor within
        :meth:`GossipConfig.detection_bound`, and never sooner than the suspicion timeout."""
        net = Net(seed=seed)
        nodes = net.cluster(5)
        victim = nodes[3]
        net.crash(victim)
        took = net.run_until(
            lambda: all(status_of(n, victim.name) is Status.DEAD for n in net.live()),
            LOCAL.detection_bound(5),
        )
        assert LOCAL.suspicion_timeout <= took <= LOCAL.detection_bound(5)
        assert all(live_names(n) == {"n0", "n1", "n2", "n4"} for n in net.live())

    def test_a_suspected_member_refutes_with_a_higher_incarnation(self) -> None:
        """A rumour that n2 is suspect reaches n2, which answers alive at incarnation 1:
        the rumour dies out and nobody declares n2 dead."""
        net = Net()
        nodes = net.cluster(4)
        rumour = Gossip("n1", (Update("suspect", "n2", 0, origin="n1"),))
        nodes[0].receive(net.now, encode(rumour), nodes[1].address)
        net.run(LOCAL.suspicion_timeout * 3)
        assert nodes[2].incarnation == 1
        for node in nodes:
            state = next(m for m in node.members() if m.name == "n2")
            assert (state.status, state.incarnation) == (Status.ALIVE, 1)
        assert nodes[2].statistics().refutations == 1

    def test_indirect_probes_keep_a_member_whose_direct_path_fails(self) -> None:
        """n0 cannot reach n1 directly, but others relay its probes: n1 stays a member."""
        net = Net()
        nodes = net.cluster(5)
        net.cut([nodes[0]], [nodes[1]])
        net.run(20.0)
        assert all(live_names(n) == {f"n{i}" for i in range(5)} for n in nodes)
        assert nodes[0].statistics().indirect_probes > 0

    def test_a_leave_removes_the_member_at_once(self) -> None:
        """The leaving node tells every live member directly: gone after one delivery."""
        net = Net()
        nodes = net.cluster(4)
        nodes[3].leave(net.now)
        net._collect(nodes[3])
        net.crash(nodes[3])
        net.run(2 * LATENCY)
        assert all(status_of(n, "n3") is Status.LEFT for n in nodes[:3])

    def test_a_restarted_member_rejoins_with_a_fresh_incarnation(self) -> None:
        """Declared dead, then started again (incarnation 0): it learns of its death from
        the seed, refutes, and is alive everywhere again."""
        net = Net()
        nodes = net.cluster(4)
        net.crash(nodes[2])
        net.run(LOCAL.detection_bound(4))
        assert all(status_of(n, "n2") is Status.DEAD for n in net.live())
        again = net.add(2, [nodes[0].address])
        net.run(3.0)
        assert again.incarnation >= 1
        assert all(live_names(n) == {"n0", "n1", "n2", "n3"} for n in net.live())

    def test_both_sides_of_a_healed_partition_find_each_other(self) -> None:
        """Split 3/2 until each side declares the other dead; heal: the reconnect
        probes of dead members bring all five back."""
        net = Net()
        nodes = net.cluster(5)
        left, right = nodes[:3], nodes[3:]
        net.cut(left, right)
        net.run(LOCAL.detection_bound(5) + 1)
        assert all(live_names(n) == {"n0", "n1", "n2"} for n in left)
        assert all(live_names(n) == {"n3", "n4"} for n in right)
        net.heal()
        took = net.run_until(
            lambda: all(live_names(n) == {f"n{i}" for i in range(5)} for n in nodes), 10.0
        )
        assert took <= LOCAL.reconnect_interval + LOCAL.detection_bound(5)

    def test_a_node_cut_off_alone_rejoins_through_its_seed(self) -> None:
        """n4 is cut off from everyone (everyone dead to it, it dead to them); once the
        link is back it rejoins."""
        net = Net()
        nodes = net.cluster(5)
        net.cut([nodes[4]], nodes[:4])
        net.run(LOCAL.detection_bound(5) + 1)
        assert live_names(nodes[4]) == {"n4"}
        assert all("n4" not in live_names(n) for n in nodes[:4])
        net.heal()
        net.run_until(
            lambda: all(live_names(n) == {f"n{i}" for i in range(5)} for n in nodes), 10.0
        )


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(3, 7),
    crashes=st.integers(0, 2),
    loss=st.sampled_from([0.0, 0.02, 0.05]),
)
def test_views_converge_on_the_survivors_despite_packet_loss(
    seed: int, size: int, crashes: int, loss: float
) -> None:
    """Whatever the size, the crashes and a few percent of lost datagrams, every
    survivor ends up seeing exactly the survivors: false suspicions are refuted,
    crashed members are declared dead."""
    net = Net(seed=seed, loss=loss)
    first = net.add(0)
    nodes = [first] + [net.add(i, [first.address]) for i in range(1, size)]
    net.run(5.0)
    victims = random.Random(seed).sample(nodes[1:], min(crashes, size - 2))
    for victim in victims:
        net.crash(victim)
    net.run(3 * LOCAL.detection_bound(size))
    survivors = {n.name for n in net.live()}
    assert all(live_names(n) == survivors for n in net.live())


# --------------------------------------------------------------------------- rules

ALIVE, SUSPECT, DEAD, LEFT = Status.ALIVE, Status.SUSPECT, Status.DEAD, Status.LEFT


@pytest.mark.parametrize(
    ("known", "news", "expected"),
    [
        # (status, incarnation) known about n9, then an update (kind, incarnation)
        ((ALIVE, 1), ("suspect", 1), (SUSPECT, 1)),
        ((ALIVE, 1), ("suspect", 0), (ALIVE, 1)),  # older news is ignored
        ((ALIVE, 1), ("dead", 1), (DEAD, 1)),
        ((ALIVE, 1), ("left", 1), (LEFT, 1)),
        ((SUSPECT, 1), ("alive", 1), (SUSPECT, 1)),  # alive needs a higher incarnation
        ((SUSPECT, 1), ("alive", 2), (ALIVE, 2)),  # the refutation
        ((DEAD, 1), ("alive", 1), (DEAD, 1)),
        ((DEAD, 1), ("suspect", 1), (DEAD, 1)),
        ((DEAD, 1), ("alive", 2), (ALIVE, 2)),  # back from the dead
        ((DEAD, 1), ("left", 1), (LEFT, 1)),
        ((LEFT, 1), ("dead", 1), (LEFT, 1)),
        ((LEFT, 1), ("alive", 2), (ALIVE, 2)),  # restarted after leaving
    ],
)
def test_update_precedence(
    known: tuple[Status, int], news: tuple[str, int], expected: tuple[Status, int]
) -> None:
    """At one incarnation alive < suspect < dead < left; a higher incarnation wins."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    peer = ("10.0.0.1", 7000)
    status, incarnation = known
    steps = [Update("alive", "n9", incarnation, ("10.0.0.9", 7000))]
    if status is not ALIVE:
        steps.append(Update(status.value, "n9", incarnation, origin="n1"))
    kind, news_incarnation = news
    address = ("10.0.0.9", 7000) if kind == "alive" else None
    steps.append(Update(kind, "n9", news_incarnation, address, origin="n1"))
    for step in steps:
        swim.receive(0.0, encode(Gossip("n1", (step,))), peer)
    state = next(m for m in swim.members() if m.name == "n9")
    assert (state.status, state.incarnation) == expected


def test_news_about_itself_is_refuted() -> None:
    """Suspect, dead or left news about this node at its incarnation raises it."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    for expected, kind in enumerate(("suspect", "dead", "left"), start=1):
        update = Update(kind, "n0", swim.incarnation, origin="n1")
        swim.receive(0.0, encode(Gossip("n1", (update,))), ("10.0.0.1", 7000))
        assert swim.incarnation == expected
    assert status_of(swim, "n0") is ALIVE


def test_garbage_is_counted_and_ignored() -> None:
    """A datagram that is not a gossip message changes nothing."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    for data in (b"", b"\xff\xfe", b"[]", b'{"t": "ping"}', b'{"t": "nope", "f": "x"}'):
        swim.receive(0.0, data, ("10.0.0.1", 7000))
    assert swim.statistics().bad_packets == 5
    assert live_names(swim) == {"n0"}
    assert swim.take_outgoing() == []


def test_a_restart_takes_its_former_incarnation_from_the_join_table() -> None:
    """A member whose incarnation went far past MAX_INCARNATION_JUMP crashes and
    restarts at 0: the table its seed answers the join with carries its old
    incarnation, and the new process refutes its death from there (a node that has
    joined would drop such a jump as forged)."""
    net = Net()
    n0, _, n2 = net.cluster(3)
    for _ in range(3):  # n2 refutes suspicions far above its incarnation (within the jump)
        news = Update("suspect", "n2", n2.incarnation + MAX_INCARNATION_JUMP - 1, origin="n1")
        n2.receive(net.now, encode(Gossip("n1", (news,))), ("10.0.0.1", 7000))
        net.run(1.0)
    old = n2.incarnation
    assert old > 3 * MAX_INCARNATION_JUMP - 10
    assert all(m.incarnation == old for s in net.live() for m in s.members() if m.name == "n2")
    net.crash(n2)
    net.run_until(lambda: status_of(n0, "n2") is Status.DEAD, 10.0)
    back = net.add(2, [n0.address])
    net.run_until(lambda: all(live_names(s) == {"n0", "n1", "n2"} for s in net.live()), 5.0)
    assert back.incarnation == old + 1
    # Joined, the same jump is suspect input.
    news = Update("dead", "n2", back.incarnation + MAX_INCARNATION_JUMP + 1, origin="n1")
    back.receive(net.now, encode(Gossip("n1", (news,))), ("10.0.0.1", 7000))
    assert back.incarnation == old + 1
    assert back.statistics().dropped["incarnation"] == 1


def test_indirect_probes_relayed_at_once_are_bounded() -> None:
    """More ping-reqs than MAX_RELAYS at once: the rest are dropped as a flood."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    for seq in range(MAX_RELAYS + 10):
        request = PingReq(seq, "n1", "n9", ("10.0.0.9", 7000))
        swim.receive(0.0, encode(request), ("10.0.0.1", 7000))
    assert len(swim.take_outgoing()) == MAX_RELAYS
    assert swim.statistics().dropped["flood"] == 10


def test_a_stranger_gets_one_datagram_and_a_large_cluster_still_converges() -> None:
    """30 nodes, whose table takes several datagrams: a sync from a stranger is answered
    with one datagram of at most max_packet bytes, one from a confirmed member with the
    whole table; nodes joining through one seed still all see each other."""
    net = Net()
    first = net.add(0)
    nodes = [first] + [net.add(i, [first.address]) for i in range(1, 30)]
    names = {f"n{i}" for i in range(30)}
    net.run_until(lambda: all(live_names(n) == names for n in nodes), 10.0)
    stranger = encode(Sync("stranger", (), part=0))
    first.receive(net.now, stranger, ("10.0.0.99", 7000))
    answer = first.take_outgoing()
    assert len(answer) == 1
    assert len(answer[0][1]) <= LOCAL.max_packet
    assert b'"n":"n0"' in answer[0][1]
    member = encode(Sync("n5", (), part=0))
    first.receive(net.now, member, nodes[5].address)
    whole = first.take_outgoing()
    assert len(whole) > 1
    assert all(len(data) <= LOCAL.max_packet for _, data in whole)
    assert sum(data.count(b'"k":"alive"') for _, data in whole) == 30


def test_forged_members_are_bounded_and_forgotten_when_they_die() -> None:
    """A burst of forged members in syncs: at most MAX_PENDING are taken, the rest
    counted as a flood; they never answer, die, and are forgotten, after which
    new members are taken again."""
    net = Net()
    n0, n1 = net.cluster(2)
    rows = [Update("alive", f"f{i}", 0, ("10.0.1.1", 7000 + i)) for i in range(3300)]
    for start in range(0, len(rows), 11):
        n0.receive(net.now, encode(Sync("x", tuple(rows[start : start + 11]))), ("10.9.9.9", 1))
    n0.take_outgoing()
    assert len(live_names(n0)) <= 2 + MAX_PENDING
    assert n0.statistics().dropped["flood"] >= 3300 - MAX_PENDING
    net.run_until(lambda: live_names(n0) == live_names(n1) == {"n0", "n1"}, 60.0)
    net.run(2 * LOCAL.suspicion_timeout)
    assert {m.name for m in n0.members()} == {"n0", "n1"}
    late = Update("alive", "late", 0, ("10.0.1.2", 7000))
    n0.receive(net.now, encode(Gossip("x", (late,))), ("10.9.9.9", 1))
    assert "late" in live_names(n0)


def test_a_member_that_answers_a_probe_is_confirmed_whatever_its_source_address() -> None:
    """With MAX_PENDING members heard of second-hand, a new one is dropped; one of them
    answering this node's probe (from another source address, as behind NAT) is
    confirmed, which makes room for the next."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    rows = [Update("alive", f"m{i}", 0, ("10.0.1.1", 7000 + i)) for i in range(MAX_PENDING + 1)]
    for row in rows:
        swim.receive(0.0, encode(Gossip("x", (row,))), ("10.9.9.9", 1))
    assert len(live_names(swim)) == 1 + MAX_PENDING
    assert swim.statistics().dropped["flood"] == 1
    swim.take_outgoing()
    swim.tick(LOCAL.probe_interval)
    pings = [(a, decode(d)) for a, d in swim.take_outgoing()]
    probe = next(m for _, m in pings if isinstance(m, Ping))
    swim.receive(LOCAL.probe_interval, encode(Ack(probe.seq, probe.target)), ("192.168.0.1", 1))
    swim.receive(LOCAL.probe_interval, encode(Gossip("x", (rows[-1],))), ("10.9.9.9", 1))
    assert f"m{MAX_PENDING}" in live_names(swim)
    assert swim.statistics().dropped["flood"] == 1


def test_a_jump_is_refused_whatever_the_members_state() -> None:
    """Alive news more than MAX_INCARNATION_JUMP above a dead member's incarnation is
    refused as for a live one (else a forger could pin it at uint32's top); a
    refutation one above is taken."""
    swim = Swim(
        name="n0", address=("10.0.0.0", 7000), meta={}, config=LOCAL, rng=random.Random(0), now=0
    )
    n9 = ("10.0.0.9", 7000)
    for update in (Update("alive", "n9", 5, n9), Update("dead", "n9", 5, origin="n1")):
        swim.receive(0.0, encode(Gossip("n9", (update,))), n9)
    assert status_of(swim, "n9") is Status.DEAD
    forged = Update("alive", "n9", 5 + MAX_INCARNATION_JUMP + 1, ("10.6.6.6", 7000))
    swim.receive(0.0, encode(Gossip("x", (forged,))), ("10.6.6.6", 7000))
    assert status_of(swim, "n9") is Status.DEAD
    assert swim.statistics().dropped["incarnation"] == 1
    swim.receive(0.0, encode(Gossip("n9", (Update("alive", "n9", 6, n9),))), n9)
    assert status_of(swim, "n9") is ALIVE
