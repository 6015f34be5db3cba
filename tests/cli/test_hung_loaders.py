"""Hung sync loaders on a real ``shoal serve`` process: loaders that never return
hold no thread of the pool once their ``load_timeout`` is over, another group still
answers at once meanwhile, and SIGTERM still stops the process promptly, exit 0."""

from __future__ import annotations

import json
import signal
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.processes import ShoalServer, clean_env, http_get, shoal_serve

TESTS = Path(__file__).resolve().parent.parent
HANGING = 24
"""Hanging requests per wave: more than the node's 16 loader threads."""


def config(tmp_path: Path) -> Path:
    path = tmp_path / "shoal.toml"
    path.write_text(
        textwrap.dedent(
            """
            [groups.stuck]
            loader = "helpers.hanging_loader:load"
            load_timeout = "1s"

            [groups.other]
            loader = "helpers.hanging_loader:load"
            load_timeout = "1s"
            """
        )
    )
    return path


def timed_get(url: str) -> tuple[int, float]:
    began = time.monotonic()
    status, _ = http_get(url)
    return status, time.monotonic() - began


def loader_threads(server: ShoalServer) -> dict[str, int]:
    stats: dict[str, int] = json.loads(http_get(f"{server.url}/v1/stats")[1])["loader_threads"]
    return stats


def test_hung_loaders_hold_no_thread_and_sigterm_still_exits(tmp_path: Path) -> None:
    env = clean_env(PYTHONPATH=str(TESTS))
    with (
        shoal_serve("--config", str(config(tmp_path)), env=env) as server,
        ThreadPoolExecutor(max_workers=HANGING + 4) as clients,
    ):
        for wave in range(2):
            hanging = [
                clients.submit(timed_get, f"{server.url}/api?group=stuck&key=hang{wave}-{i}")
                for i in range(HANGING)
            ]
            time.sleep(0.3)  # every loader thread the stuck group may hold is stuck
            # Another group answers at once: the stuck one holds only its share.
            status, took = timed_get(f"{server.url}/api?group=other&key=k{wave}")
            assert (status, took < 0.5) == (200, True), took
            assert [f.result()[0] for f in hanging] == [504] * HANGING
            # Their threads are abandoned: the same group loads its other keys again.
            assert http_get(f"{server.url}/api?group=stuck&key=fine{wave}") == (
                200,
                f"value of fine{wave}".encode(),
            )
        stats = loader_threads(server)
        assert stats["abandoned"] == stats["abandoned_total"] >= 2 * 12, stats
        assert stats["busy"] == 0, stats
        metrics = http_get(f"{server.url}/metrics")[1].decode()
        assert f"shoal_loader_threads_abandoned_total {stats['abandoned_total']}" in metrics
        began = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=5) == 0
        assert time.monotonic() - began < 5
