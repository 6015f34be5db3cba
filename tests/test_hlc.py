"""Hybrid logical clock: monotonic under a wall clock that steps back, the receive rule,
counter overflow carrying into the milliseconds, and the 64-bit bounds."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.hlc import HLC_MAX, HybridClock, hlc_from_seconds, hlc_seconds

COUNTER = 0xFFFF
START = 1_700_000_000.0
START_TS = 1_700_000_000_000 << 16


class FakeClock:
    """A wall clock that returns ``t``, which tests set freely (backwards too)."""

    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_first_timestamp_is_the_physical_time() -> None:
    """The first timestamp is the wall clock's millisecond with a zero counter."""
    clock = HybridClock(FakeClock(START + 0.0125))
    assert clock.last == 0
    ts = clock.now()
    assert ts == (1_700_000_000_012 << 16)
    assert clock.last == ts
    assert hlc_seconds(ts) == 1_700_000_000.012


def test_same_millisecond_counts_up() -> None:
    """Within one millisecond the counter increments."""
    clock = HybridClock(FakeClock())
    assert [clock.now() for _ in range(4)] == [START_TS, START_TS + 1, START_TS + 2, START_TS + 3]


def test_physical_time_resets_the_counter() -> None:
    """A later millisecond starts again at counter 0."""
    wall = FakeClock()
    clock = HybridClock(wall)
    clock.now()
    clock.now()
    wall.t = START + 0.002
    assert clock.now() == START_TS + (2 << 16)


def test_monotonic_when_the_wall_clock_steps_back() -> None:
    """A wall clock that steps back 10 s neither repeats nor lowers a timestamp; the clock
    keeps counting on the latest millisecond until wall time passes it again."""
    wall = FakeClock()
    clock = HybridClock(wall)
    first = clock.now()
    wall.t = START - 10
    assert [clock.now() for _ in range(3)] == [first + 1, first + 2, first + 3]
    wall.t = START + 1
    assert clock.now() == START_TS + (1000 << 16)


def test_default_clock_is_wall_time() -> None:
    """Without a clock the timestamps follow time.time()."""
    ts = HybridClock().now()
    assert abs(hlc_seconds(ts) - time.time()) < 60


def test_wall_clock_before_the_epoch() -> None:
    """A wall clock before 1970 still gives increasing, valid timestamps."""
    clock = HybridClock(FakeClock(-5.0))
    assert [clock.now(), clock.now()] == [1, 2]


@pytest.mark.parametrize(("reading", "error"), [(math.nan, ValueError), (math.inf, OverflowError)])
def test_broken_wall_clock(reading: float, error: type[Exception]) -> None:
    """A NaN or infinite wall clock raises and leaves the clock unchanged."""
    wall = FakeClock()
    clock = HybridClock(wall)
    ts = clock.now()
    wall.t = reading
    with pytest.raises(error):
        clock.now()
    assert clock.last == ts


def test_observe_a_later_timestamp() -> None:
    """After observing a timestamp ahead of the wall clock, now() is just above it."""
    clock = HybridClock(FakeClock())
    remote = START_TS + (5 << 16) + 7
    clock.observe(remote)
    assert clock.last == remote
    assert clock.now() == remote + 1
    assert clock.now() == remote + 2


def test_observe_an_earlier_timestamp_changes_nothing() -> None:
    """An observed timestamp at or below the latest one is ignored."""
    clock = HybridClock(FakeClock())
    ts = clock.now()
    clock.observe(ts - 100)
    clock.observe(ts)
    assert clock.last == ts
    assert clock.now() == ts + 1


def test_wall_clock_overtakes_an_observed_timestamp() -> None:
    """Once wall time passes the observed timestamp, timestamps follow wall time again."""
    wall = FakeClock()
    clock = HybridClock(wall)
    clock.observe(START_TS + (3 << 16) + 9)
    wall.t = START + 0.004
    assert clock.now() == START_TS + (4 << 16)


def test_counter_overflow_carries_into_the_milliseconds() -> None:
    """A full counter carries into the next millisecond, ahead of wall time."""
    clock = HybridClock(FakeClock())
    clock.observe(START_TS | COUNTER)
    ts = clock.now()
    assert ts == START_TS + (1 << 16)
    assert hlc_seconds(ts) == START + 0.001


def test_counter_overflow_from_local_events() -> None:
    """65,537 events in one frozen millisecond stay strictly increasing and spill into
    the next millisecond after 65,536 of them."""
    clock = HybridClock(FakeClock())
    stamps = [clock.now() for _ in range(COUNTER + 2)]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[COUNTER] == START_TS | COUNTER
    assert stamps[COUNTER + 1] == START_TS + (1 << 16)


@pytest.mark.parametrize("bad", [-1, HLC_MAX + 1, 2**80, 1.5, "7", None])
def test_observe_rejects_what_is_not_a_uint64(bad: object) -> None:
    """observe() refuses negative, oversized and non-int timestamps, and changes nothing."""
    clock = HybridClock(FakeClock())
    ts = clock.now()
    with pytest.raises(ValueError, match="remote HLC timestamp"):
        clock.observe(bad)  # type: ignore[arg-type]
    assert clock.last == ts


def test_observe_the_largest_timestamp_then_overflow() -> None:
    """HLC_MAX can be observed; the next now() cannot fit and raises OverflowError."""
    clock = HybridClock(FakeClock())
    clock.observe(HLC_MAX)
    with pytest.raises(OverflowError, match="64 bits"):
        clock.now()
    assert clock.last == HLC_MAX


def test_hlc_seconds() -> None:
    """hlc_seconds keeps the physical part and ignores the counter."""
    assert hlc_seconds(0) == 0.0
    assert hlc_seconds(START_TS) == START
    assert hlc_seconds(START_TS | COUNTER) == START
    assert hlc_seconds(HLC_MAX) == ((1 << 48) - 1) / 1000


@pytest.mark.parametrize("bad", [-1, HLC_MAX + 1])
def test_hlc_seconds_bounds(bad: int) -> None:
    """hlc_seconds refuses values outside 64 unsigned bits."""
    with pytest.raises(ValueError, match="outside"):
        hlc_seconds(bad)


def test_hlc_from_seconds() -> None:
    """hlc_from_seconds floors to the millisecond, with a zero counter."""
    assert hlc_from_seconds(0.0) == 0
    assert hlc_from_seconds(START) == START_TS
    assert hlc_from_seconds(START + 0.0019) == START_TS + (1 << 16)
    assert hlc_from_seconds(0.0009999) == 0
    last = ((1 << 48) - 1) / 1000
    assert hlc_from_seconds(last) == HLC_MAX & ~COUNTER


@pytest.mark.parametrize("bad", [-0.001, -1e-300, math.nan, math.inf, -math.inf, 2**48 / 1000])
def test_hlc_from_seconds_bounds(bad: float) -> None:
    """hlc_from_seconds refuses negative, non-finite and unencodable times."""
    with pytest.raises(ValueError, match="time"):
        hlc_from_seconds(bad)


@settings(max_examples=500, deadline=None)
@given(ms=st.integers(0, (1 << 48) - 1), counter=st.integers(0, COUNTER))
def test_round_trip_from_timestamps(ms: int, counter: int) -> None:
    """hlc_from_seconds(hlc_seconds(ts)) is ts with its counter cleared."""
    ts = ms << 16 | counter
    assert hlc_from_seconds(hlc_seconds(ts)) == ms << 16


@settings(max_examples=500, deadline=None)
@given(t=st.floats(0, ((1 << 48) - 1) / 1000))
def test_round_trip_from_seconds(t: float) -> None:
    """hlc_from_seconds(t) is the last millisecond not after t."""
    ts = hlc_from_seconds(t)
    assert ts & COUNTER == 0
    assert hlc_seconds(ts) <= t
    if ts < HLC_MAX & ~COUNTER:
        assert hlc_seconds(ts + (1 << 16)) > t


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("now"), st.floats(START - 5, START + 5)),
            st.tuples(st.just("observe"), st.integers(START_TS - 2**28, START_TS + 2**28)),
        ),
        max_size=60,
    )
)
def test_timestamps_strictly_increase(steps: list[tuple[str, float]]) -> None:
    """Whatever the wall clock does and whatever is observed, each now() exceeds every
    earlier timestamp, issued or observed, and is not below the wall clock."""
    wall = FakeClock()
    clock = HybridClock(wall)
    highest = 0
    for action, arg in steps:
        if action == "now":
            wall.t = arg
            ts = clock.now()
            assert ts > highest
            assert ts >= hlc_from_seconds(arg)
            highest = ts
        else:
            clock.observe(int(arg))
            highest = max(highest, int(arg))
        assert clock.last == highest


def test_repr() -> None:
    """The repr shows the latest timestamp."""
    clock = HybridClock(FakeClock())
    assert repr(clock) == "HybridClock(last=0)"
