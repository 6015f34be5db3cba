"""PeerPicker's failure rules: a suspect peer fails over at once, one probe per
back-off window finds out when it is back, and the window grows while it is silent."""

from __future__ import annotations

from shoal.peers import MAX_BACKOFF_FACTOR, PeerPicker
from shoal.ring import Ring
from shoal.transport.memory import MemoryNetwork

SELF, OTHER = "http://10.0.0.1:8000", "http://10.0.0.2:8000"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def picker(clock: Clock, backoff: float = 1.0) -> tuple[PeerPicker, str]:
    p = PeerPicker(SELF, MemoryNetwork().transport(), backoff=backoff, clock=clock)
    p.set_peers([SELF, OTHER])
    ring = Ring.build([SELF, OTHER])
    key = next(k for k in (f"k{i}" for i in range(100)) if ring.owner(k) == OTHER)
    return p, key


def test_a_failed_peer_is_skipped_for_its_window() -> None:
    clock = Clock()
    p, key = picker(clock)
    assert p.pick(key) is not None
    p.failed(OTHER)
    assert p.suspect(OTHER)
    assert p.pick(key) is None
    assert p.backing_off() == [OTHER]
    clock.now += 0.99
    assert p.pick(key) is None


def test_one_probe_per_window_and_success_heals_at_once() -> None:
    clock = Clock()
    p, key = picker(clock)
    other = next(k for k in (f"o{i}" for i in range(100)) if p.owner(k) == OTHER)
    p.failed(OTHER)
    clock.now += 1.0
    assert p.pick(key) is not None  # the probe
    assert p.pick(key) is not None  # the same load, picking again
    assert p.pick(other) is None  # the others still fail over while it is out
    clock.now += 5.0  # a probe slower than the window: still one at a time
    assert p.pick(other) is None
    assert p.backing_off() == [OTHER]
    p.succeeded(OTHER)
    assert not p.suspect(OTHER)
    assert p.pick(key) is not None
    assert p.pick(key) is not None
    assert p.backing_off() == []


def test_the_window_doubles_while_the_probes_fail_up_to_a_bound() -> None:
    clock = Clock()
    p, key = picker(clock, backoff=0.5)
    p.failed(OTHER)
    windows = []
    for _ in range(8):
        start = clock.now
        while p.pick(key) is None:
            clock.now += 0.125
        windows.append(clock.now - start)
        p.failed(OTHER)  # the probe failed
    assert windows[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert max(windows) == 0.5 * MAX_BACKOFF_FACTOR


def test_failures_of_requests_sent_before_do_not_grow_the_window() -> None:
    """Requests in flight when the peer went silent fail one after the other: the
    first makes it suspect; the others change nothing."""
    clock = Clock()
    p, key = picker(clock)
    p.failed(OTHER)
    for _ in range(10):
        clock.now += 0.05
        p.failed(OTHER)
    clock.now = 101.0
    assert p.pick(key) is not None


def test_a_probe_whose_outcome_never_comes_is_given_up_after_the_longest_window() -> None:
    clock = Clock()
    p, key = picker(clock)
    p.failed(OTHER)
    clock.now += 1.0
    assert p.pick(key) is not None
    other = next(k for k in (f"o{i}" for i in range(100)) if p.owner(k) == OTHER)
    clock.now += MAX_BACKOFF_FACTOR - 0.01
    assert p.pick(other) is None
    clock.now += 0.01
    assert p.pick(other) is not None


def test_a_write_after_the_window_may_probe_and_its_failure_renews_the_window() -> None:
    """backing_off (what writes and replication skip) ends with the window; a failed
    write then starts a longer one."""
    clock = Clock()
    p, key = picker(clock)
    p.failed(OTHER)
    clock.now += 1.0
    assert p.backing_off() == []
    p.failed(OTHER)
    assert p.backing_off() == [OTHER]
    clock.now += 1.99
    assert p.pick(key) is None
    clock.now += 0.01
    assert p.pick(key) is not None


def test_a_member_that_leaves_is_forgotten() -> None:
    clock = Clock()
    p, _ = picker(clock)
    p.failed(OTHER)
    p.set_peers([SELF])
    assert not p.suspect(OTHER)
    assert p.backing_off() == []
