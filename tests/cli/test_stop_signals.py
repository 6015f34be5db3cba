"""How the CLI tells a repeated stop signal from a second request."""

from __future__ import annotations

from shoal.cli.common import StopSignals


def test_a_repeat_within_the_window_is_ignored_and_a_later_one_is_a_second_request() -> None:
    now = [100.0]
    signals = StopSignals(window=1.0, clock=lambda: now[0])
    assert signals.received() == "first"
    now[0] += 0.01  # the group's copy and the parent's forwarded one
    assert signals.received() == "repeat"
    now[0] += 0.98
    assert signals.received() == "repeat"
    now[0] += 0.02  # a second Ctrl-C, a second later
    assert signals.received() == "again"
    assert signals.received() == "again"
