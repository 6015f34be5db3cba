"""bench/simulate.py at 100 members: the real SWIM state machine and the real ring on a
virtual clock. The figures are the benchmark's; this checks what must hold whatever
they are: every member learns of each crash within the protocol's bound, nothing
live is suspected or declared dead on a loss-free network, only the leavers' keys
move (about their share), and a run is the same for the same seed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from types import ModuleType

from helpers.bench_modules import bench_module
from shoal.config import GossipConfig


def simulate_module() -> ModuleType:
    """bench/simulate.py, imported as a module."""
    return bench_module("simulate")


def test_100_members_learn_of_crashes_within_the_bound_and_only_leavers_keys_move() -> None:
    sim = simulate_module()
    members = 100
    result = sim.simulate(
        members, 0.0, seed=7, quiet=5.0, crashes=3, keys=20_000, leave=True, delay=0.0005
    )
    config = GossipConfig()
    bound = config.detection_bound(members)
    assert result.detection_bound == bound
    assert len(result.crashes) == 3
    for crash in result.crashes:
        assert 0 < crash.first_suspect <= crash.all_dead <= bound, crash
    # Typically a crash is known everywhere within two probe intervals plus the
    # suspicion timeout (GossipConfig.detection_bound); one more interval of slack.
    typical = 3 * config.probe_interval + config.suspicion_timeout + 4 * config.gossip_interval
    assert statistics.median(c.all_dead for c in result.crashes) <= typical
    # Loss-free: no live member suspected, none declared dead by anyone.
    assert result.false_suspicions == 0
    assert result.false_deaths == 0
    assert result.refutations == 0
    assert 0 < result.bytes_per_member_second < 10_000
    assert result.datagrams_per_member_second >= 2 * (1 / config.probe_interval) * 0.9
    # One member of 100 leaves: only its keys move, about its share (1%).
    assert result.moved_only_leavers is True
    assert result.moved_ideal is not None
    assert result.moved is not None
    assert 0 < result.moved <= 2 / members
    assert math.isclose(result.moved, result.moved_ideal, abs_tol=0.004)


def test_loss_suspects_live_members_and_they_refute() -> None:
    sim = simulate_module()
    result = sim.simulate(
        30, 0.15, seed=3, quiet=10.0, crashes=1, keys=1000, leave=False, delay=0.0005
    )
    assert result.false_suspicions > 0  # 15% loss: some probes and relays all fail
    assert result.refutations > 0  # and the suspected members hear it and refute
    assert result.crashes[0].all_dead <= GossipConfig().detection_bound(30)


def test_a_run_is_the_same_for_the_same_seed() -> None:
    sim = simulate_module()

    def run(seed: int) -> dict[str, object]:
        result = sim.simulate(
            20, 0.05, seed=seed, quiet=5.0, crashes=1, keys=1000, leave=True, delay=0.0005
        )
        return {k: v for k, v in dataclasses.asdict(result).items() if k != "wall_seconds"}

    first = run(11)
    assert run(11) == first
    assert run(12) != first
