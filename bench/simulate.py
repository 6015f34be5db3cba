"""A deterministic simulation of a large gossip cluster: the real SWIM state machine
and the real ring, on a virtual clock and a simulated network.

Each member is a :class:`shoal.membership.gossip.swim.Swim`, the state machine
every ``shoal serve --gossip-port`` node runs, driven here as the UDP driver
drives it (``tick`` when ``next_deadline`` comes, ``receive`` for each
datagram, then ``take_outgoing``), but on a virtual clock: an event queue
jumps from one datagram or timer to the next, so 1,000 members and minutes of
protocol time take seconds, and a run is the same for the same ``--seed``. The
network delivers each datagram after a random delay (``--delay-ms``, 0.2 ms
plus an exponential jitter of that mean) or drops it with probability
``--loss``. Timers are the ``lan`` profile (the default of ``shoal serve``):
probe every 1 s, ack timeout 0.5 s, suspicion 4 s, gossip rounds every 0.2 s
to 3 members, a full-table sync every 30 s.

The cluster starts converged: every member has heard from every other at its
address, as after a join (the join itself is not simulated). Then, for each
loss rate:

* **quiet**: ``--quiet`` seconds of protocol time with no crash: the
  suspicions raised (every one is false), the members declared dead by
  someone (false deaths), the refutations, and the gossip bytes each member
  sends per second (all datagrams: probes, acks, gossip, syncs);
* **crashes**: ``--crashes`` members crash one after the other (a crashed
  member stops answering; datagrams to it vanish): the time from the crash
  until some member suspects it, and until every live member marks it dead
  (median and worst), against the protocol's bound
  (:meth:`shoal.config.GossipConfig.detection_bound`); any live member that
  leaves any view meanwhile is a false death too;
* **leave** (at the first loss rate only): 1% of the members leave (``leave``,
  as on SIGTERM); once every survivor's view has settled, a
  :class:`shoal.ring.Ring` of a survivor's view against one of all members:
  the share of ``--keys`` keys whose owner changed, against the ideal (the
  leavers' share, 1%), and whether only the leavers' keys moved.

Run: ``python bench/simulate.py [--members 1000] [--loss 0,0.01,0.05]
[--seed 1] [--json FILE]`` (``--members 100`` runs in seconds).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shoal.config import GossipConfig
from shoal.membership.gossip.messages import Sync, Update, encode
from shoal.membership.gossip.swim import Address, Swim
from shoal.ring import Ring

_TIMER = 0
_DATAGRAM = 1


@dataclass
class Member:
    """One simulated node: its state machine and when its next timer is due."""

    index: int
    swim: Swim
    url: str
    due: float = math.inf
    crashed: bool = False
    version: int = -1
    live: frozenset[str] = frozenset()


class Simulation:
    """``members`` SWIM nodes on a virtual clock and a lossy, delaying network.

    Args:
        members: how many nodes.
        config: the protocol's timers.
        seed: every random choice (each node's, the network's) derives from it.
        loss: the probability that a datagram is dropped.
        delay: the mean jitter of a datagram's delay, in seconds (on top of 0.2 ms).
    """

    def __init__(
        self, members: int, config: GossipConfig, *, seed: int, loss: float, delay: float
    ) -> None:
        self.config = config
        self.loss = loss
        self.delay = delay
        self.now = 0.0
        self.net = random.Random(f"net-{seed}")
        self._queue: list[tuple[float, int, int, int, bytes, Address]] = []
        self._seq = itertools.count()
        self.by_address: dict[Address, Member] = {}
        self.members: list[Member] = []
        self.sent = 0
        self.dropped = 0
        for i in range(members):
            address = (f"10.{i // 250}.{i % 250}.1", 7946)
            swim = Swim(
                name=f"n{i}",
                address=address,
                meta={"url": f"http://{address[0]}:8001"},
                config=config,
                rng=random.Random(f"node-{seed}-{i}"),
                now=0.0,
            )
            member = Member(i, swim, f"http://{address[0]}:8001")
            self.members.append(member)
            self.by_address[address] = member
        self._converge()
        self.alive_names = frozenset(m.swim.name for m in self.members)
        """The members running (not crashed, not left)."""
        self.false_deaths: set[tuple[str, str]] = set()
        """(observer, member) pairs: a live member that left the observer's view."""
        self.expected_gone: set[str] = set()
        for member in self.members:
            self._observe(member)
            self._schedule(member)

    def _converge(self) -> None:
        """Every node hears from every other at its address (a converged cluster)."""
        hello = [
            (
                m.swim.address,
                encode(
                    Sync(
                        m.swim.name,
                        (Update("alive", m.swim.name, 0, m.swim.address, (("url", m.url),)),),
                        reply=True,
                    )
                ),
            )
            for m in self.members
        ]
        for member in self.members:
            for address, data in hello:
                if address != member.swim.address:
                    member.swim.receive(0.0, data, address)
            member.swim.take_outgoing()
            # The news of those joins would take the first minute of gossip to
            # spread (each item retransmitted 4*ceil(log10(N+1)) times): a
            # converged cluster has none left.
            member.swim._broadcasts.clear()

    # -- the event loop ----------------------------------------------------------------

    def _schedule(self, member: Member) -> None:
        due = max(member.swim.next_deadline(), self.now)
        if due < member.due or member.due < self.now:
            member.due = due
            if due < math.inf:
                heapq.heappush(
                    self._queue, (due, next(self._seq), _TIMER, member.index, b"", ("", 0))
                )

    def _flush(self, member: Member) -> None:
        for address, data in member.swim.take_outgoing():
            self.sent += 1
            if self.loss and self.net.random() < self.loss:
                self.dropped += 1
                continue
            target = self.by_address.get(address)
            if target is None:
                continue
            at = self.now + 0.0002 + self.net.expovariate(1 / self.delay)
            heapq.heappush(
                self._queue,
                (at, next(self._seq), _DATAGRAM, target.index, data, member.swim.address),
            )

    def run_until(self, end: float) -> None:
        """Process every event due before ``end``; the clock then reads ``end``."""
        queue = self._queue
        members = self.members
        while queue and queue[0][0] <= end:
            at, _, kind, index, data, source = heapq.heappop(queue)
            member = members[index]
            if member.crashed:
                continue
            self.now = at
            if kind == _TIMER:
                if at != member.due:
                    continue  # superseded by an earlier deadline
                member.due = math.inf
                member.swim.tick(at)
            else:
                member.swim.receive(at, data, source)
            self._flush(member)
            self._observe(member)
            self._schedule(member)
        self.now = end

    def _observe(self, member: Member) -> None:
        """Note the member's live set when it changed; flag a live member missing."""
        swim = member.swim
        if swim.version == member.version:
            return
        member.version = swim.version
        member.live = frozenset(m.name for m in swim.live())
        missing = self.alive_names - member.live - self.expected_gone
        for name in missing:
            self.false_deaths.add((swim.name, name))

    # -- scenarios ---------------------------------------------------------------------

    def running(self) -> list[Member]:
        return [m for m in self.members if not m.crashed]

    def crash(self, member: Member) -> None:
        """The member stops: no timer, no answer, its datagrams in flight vanish."""
        member.crashed = True
        self.alive_names = self.alive_names - {member.swim.name}
        self.expected_gone.add(member.swim.name)

    def leave(self, member: Member) -> None:
        """The member announces that it leaves (SIGTERM), then stops."""
        member.swim.leave(self.now)
        self._flush(member)
        self.crash(member)

    def traffic(self) -> tuple[int, int]:
        """Bytes and datagrams sent so far by the running members."""
        stats = [m.swim.statistics() for m in self.running()]
        return sum(s.bytes_sent for s in stats), sum(s.packets_sent for s in stats)

    def counters(self) -> dict[str, int]:
        """Suspicions, deaths and refutations decided so far, summed over the members."""
        stats = [m.swim.statistics() for m in self.members]
        return {
            "suspicions": sum(s.suspicions for s in stats),
            "deaths": sum(s.deaths for s in stats),
            "refutations": sum(s.refutations for s in stats),
        }


@dataclass
class Crash:
    """How one crash was noticed."""

    member: str
    first_suspect: float
    all_dead: float


@dataclass
class Result:
    """The figures of one loss rate."""

    members: int
    loss: float
    quiet_seconds: float
    false_suspicions: int
    false_deaths: int
    refutations: int
    bytes_per_member_second: float
    datagrams_per_member_second: float
    crashes: list[Crash] = field(default_factory=list)
    detection_bound: float = 0.0
    moved: float | None = None
    moved_ideal: float | None = None
    moved_only_leavers: bool | None = None
    wall_seconds: float = 0.0

    @property
    def detect_median(self) -> float:
        return statistics.median(c.all_dead for c in self.crashes)

    @property
    def detect_worst(self) -> float:
        return max(c.all_dead for c in self.crashes)


def crash_once(sim: Simulation, member: Member, limit: float) -> Crash:
    """Crash ``member``; run until every running member marks it dead (or ``limit``)."""
    name = member.swim.name
    start = sim.now
    before = {m.index: m.swim.statistics().suspicions for m in sim.running() if m is not member}
    sim.crash(member)
    first = math.inf
    step = 0.05
    while sim.now - start < limit:
        sim.run_until(sim.now + step)
        if first == math.inf and any(
            m.swim.statistics().suspicions > before.get(m.index, 0) for m in sim.running()
        ):
            first = sim.now - start
        if all(name not in m.live for m in sim.running()):
            return Crash(name, min(first, sim.now - start), sim.now - start)
    return Crash(name, first, math.inf)


def simulate(
    members: int,
    loss: float,
    *,
    seed: int,
    quiet: float,
    crashes: int,
    keys: int,
    leave: bool,
    delay: float,
) -> Result:
    """Run the quiet window, the crashes and (with ``leave``) the 1% leave at one loss rate."""
    started = time.perf_counter()
    config = GossipConfig()
    sim = Simulation(members, config, seed=seed, loss=loss, delay=delay)
    # Let the random probe phases settle, then measure a quiet window.
    sim.run_until(config.probe_interval * 2)
    counters0 = sim.counters()
    bytes0, packets0 = sim.traffic()
    t0 = sim.now
    sim.run_until(t0 + quiet)
    bytes1, packets1 = sim.traffic()
    counters1 = sim.counters()
    span = sim.now - t0
    n = len(sim.running())
    quiet_false_deaths = len(sim.false_deaths)
    result = Result(
        members=members,
        loss=loss,
        quiet_seconds=span,
        false_suspicions=counters1["suspicions"] - counters0["suspicions"],
        false_deaths=quiet_false_deaths,
        refutations=counters1["refutations"] - counters0["refutations"],
        bytes_per_member_second=(bytes1 - bytes0) / n / span,
        datagrams_per_member_second=(packets1 - packets0) / n / span,
        detection_bound=config.detection_bound(members),
    )
    pick = random.Random(f"victims-{seed}")
    bound = config.detection_bound(members)
    for victim in pick.sample(sim.members, crashes):
        result.crashes.append(crash_once(sim, victim, bound * 2))
        sim.run_until(sim.now + config.probe_interval)
    if leave:
        before = Ring.build(m.url for m in sim.running())
        leavers = pick.sample(sim.running(), max(1, members // 100))
        for m in leavers:
            sim.leave(m)
        gone = {m.swim.name for m in leavers}
        deadline = sim.now + bound
        while sim.now < deadline and not all(not (gone & m.live) for m in sim.running()):
            sim.run_until(sim.now + 0.05)
        survivor = sim.running()[0]
        view = sorted(m.address for m in survivor.swim.live())
        after = before.with_nodes(
            sim.by_address[a].url for a in view if not sim.by_address[a].crashed
        )
        leaver_urls = {m.url for m in leavers}
        moved = 0
        only_leavers = True
        for k in range(keys):
            key = f"key-{k}"
            was = before.owner(key)
            if after.owner(key) != was:
                moved += 1
                only_leavers = only_leavers and was in leaver_urls
        shares = before.shares()
        result.moved = moved / keys
        result.moved_ideal = sum(shares[u] for u in leaver_urls)
        result.moved_only_leavers = only_leavers
    result.false_deaths = len(sim.false_deaths)
    result.wall_seconds = time.perf_counter() - started
    return result


# -- the report ------------------------------------------------------------------------


def render(results: Sequence[Result], seed: int) -> str:
    from _common import environment, markdown_table

    def secs(value: float) -> str:
        return "never" if value == math.inf else f"{value:.2f}"

    rows = []
    for r in results:
        rows.append(
            (
                f"{r.loss:.0%}",
                r.false_suspicions,
                r.false_deaths,
                r.refutations,
                f"{r.bytes_per_member_second:,.0f}",
                f"{r.datagrams_per_member_second:.1f}",
                secs(statistics.median(c.first_suspect for c in r.crashes)),
                secs(r.detect_median),
                secs(r.detect_worst),
                f"{r.detection_bound:.1f}",
            )
        )
    lines = [
        f"{results[0].members} members, seed {seed}, {results[0].quiet_seconds:g} s quiet "
        f"window, {len(results[0].crashes)} crashes per loss rate",
        "",
        markdown_table(
            (
                "loss",
                "false suspicions",
                "false deaths",
                "refutations",
                "gossip B/member/s",
                "datagrams/member/s",
                "first suspect (s, median)",
                "all know (s, median)",
                "all know (s, worst)",
                "bound (s)",
            ),
            rows,
        ),
    ]
    for r in results:
        if r.moved is not None:
            lines += [
                "",
                f"keys moved when {max(1, r.members // 100)} of {r.members} members leave: "
                f"{r.moved:.3%} (ideal: the leavers' share, {r.moved_ideal:.3%}; "
                f"only the leavers' keys moved: {'yes' if r.moved_only_leavers else 'NO'})",
            ]
    lines += ["", f"simulated in {sum(r.wall_seconds for r in results):.0f} s; {environment()}"]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=1000, help="cluster size (1000)")
    p.add_argument("--loss", default="0,0.01,0.05", help="loss rates, comma separated")
    p.add_argument("--seed", type=int, default=1, help="the seed of every random choice (1)")
    p.add_argument("--quiet", type=float, default=60.0, help="seconds of the quiet window (60)")
    p.add_argument("--crashes", type=int, default=5, help="crashes per loss rate (5)")
    p.add_argument("--keys", type=int, default=100_000, help="keys for the moved share")
    p.add_argument("--delay-ms", type=float, default=0.5, help="mean network jitter (0.5 ms)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    losses = [float(x) for x in args.loss.split(",")]
    results = [
        simulate(
            args.members,
            loss,
            seed=args.seed,
            quiet=args.quiet,
            crashes=args.crashes,
            keys=args.keys,
            leave=i == 0,
            delay=args.delay_ms / 1000,
        )
        for i, loss in enumerate(losses)
    ]
    print(render(results, args.seed))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
