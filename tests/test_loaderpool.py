"""The sync loader pool: abandoned threads are replaced up to a bound, each group
keeps to its share while others run sync loads, waiting work given up on leaves the
queue, and shutdown waits for no thread. Real threads; every blocked loader is
released at the end of its test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest

from shoal.loaderpool import LoaderPool


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Loaders block on it; set at the end of the test so every thread ends."""
    event = threading.Event()
    yield event
    event.set()


def blocker(gate: threading.Event, started: threading.Semaphore) -> Callable[[], str]:
    def block() -> str:
        started.release()
        gate.wait(10)
        return "released"

    return block


def wait_started(started: threading.Semaphore, n: int) -> None:
    for _ in range(n):
        assert started.acquire(timeout=5), "a load did not start"


def test_runs_work_and_is_an_executor() -> None:
    pool = LoaderPool(2)
    try:
        assert pool.submit(lambda x: x * 2, 21).result(5) == 42
        assert pool.run("g", str.upper, "abc").result(5) == "ABC"
        failing = pool.run("g", int, "nope")
        with pytest.raises(ValueError, match="invalid literal"):
            failing.result(5)
        assert pool.statistics()["busy"] == 0
    finally:
        pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.run("g", str, 1)


def test_an_abandoned_thread_is_replaced(gate: threading.Event) -> None:
    """Two threads, both stuck: work waits; abandoning them starts replacements."""
    pool = LoaderPool(2)
    started = threading.Semaphore(0)
    stuck = [pool.run("g", blocker(gate, started)) for _ in range(2)]
    wait_started(started, 2)
    waiting = pool.run("g", lambda: "ran")
    time.sleep(0.05)
    assert not waiting.done()
    assert all(pool.abandon(f) for f in stuck)
    assert waiting.result(5) == "ran"
    stats = pool.statistics()
    assert (stats["abandoned"], stats["abandoned_total"], stats["busy"]) == (2, 2, 0)
    assert not pool.abandon(waiting)  # done: nothing to give up
    gate.set()
    assert [f.result(5) for f in stuck] == ["released"] * 2
    deadline = time.monotonic() + 5
    while pool.statistics()["abandoned"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.statistics()["abandoned"] == 0  # an abandoned thread that returns ends
    pool.shutdown()


def test_abandoning_is_bounded(gate: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    pool = LoaderPool(1, max_abandoned=2)
    started = threading.Semaphore(0)
    results = []
    for _ in range(3):
        future = pool.run("g", blocker(gate, started))
        wait_started(started, 1)
        results.append(pool.abandon(future))
    assert results == [True, True, False]
    assert "no more are replaced" in caplog.text
    assert pool.statistics()["threads"] == 3  # the bound on threads alive
    pool.shutdown()


def test_one_group_keeps_to_its_share(gate: threading.Event) -> None:
    """With two groups, a stuck one holds 3 of 4 threads; the other still runs."""
    pool = LoaderPool(4)
    pool.register("stuck")
    pool.register("other")
    started = threading.Semaphore(0)
    stuck = [pool.run("stuck", blocker(gate, started)) for _ in range(6)]
    wait_started(started, 3)
    assert pool.run("other", lambda: "ran").result(5) == "ran"
    stats = pool.statistics()
    assert (stats["busy"], stats["queued"]) == (3, 3)
    gate.set()
    assert [f.result(5) for f in stuck] == ["released"] * 6
    pool.shutdown()


def test_a_group_alone_may_use_every_thread(gate: threading.Event) -> None:
    pool = LoaderPool(4)
    started = threading.Semaphore(0)
    futures = [pool.run("only", blocker(gate, started)) for _ in range(4)]
    wait_started(started, 4)
    gate.set()
    assert [f.result(5) for f in futures] == ["released"] * 4
    pool.shutdown()


def test_waiting_work_given_up_on_leaves_the_queue(gate: threading.Event) -> None:
    pool = LoaderPool(1)
    started = threading.Semaphore(0)
    running = pool.run("g", blocker(gate, started))
    wait_started(started, 1)
    waiting: Future[str] = pool.run("g", lambda: "never")
    assert pool.statistics()["queued"] == 1
    assert pool.abandon(waiting)
    assert waiting.cancelled()
    assert pool.statistics()["queued"] == 0
    gate.set()
    assert running.result(5) == "released"
    pool.shutdown()


def test_shutdown_waits_for_no_thread_and_cancels_waiting_work(gate: threading.Event) -> None:
    pool = LoaderPool(1)
    started = threading.Semaphore(0)
    running = pool.run("g", blocker(gate, started))
    wait_started(started, 1)
    waiting = pool.run("g", lambda: "never")
    began = time.monotonic()
    pool.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - began < 1
    assert waiting.cancelled()
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("shoal-loader"))
    gate.set()
    assert running.result(5) == "released"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        LoaderPool(0)
    with pytest.raises(ValueError, match="share"):
        LoaderPool(2, share=0)
