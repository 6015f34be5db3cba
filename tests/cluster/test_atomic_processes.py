"""Atomic operations across three ``shoal serve`` processes, through their HTTP APIs:
increments sent to every node at once all count, and of racing adds one wins, on a
partitioned and a replicated group."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.processes import http_request, shoal_cluster

CONFIG = """\
[groups.part]

[groups.repl]
mode = "replicated"
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("atomic") / "groups.toml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize("group", ["part", "repl"])
def test_increments_from_every_node_all_count_and_one_add_wins(config: Path, group: str) -> None:
    with shoal_cluster(3, "--config", str(config)) as cluster:
        nodes = cluster.nodes
        key = f"/v1/groups/{group}/keys/counter"

        def add(i: int) -> int:
            return http_request("POST", nodes[i % 3].url + key + "?op=add", b"0")[0]

        with ThreadPoolExecutor(9) as pool:
            assert sorted(pool.map(add, range(9))) == [201] + [409] * 8

        def bump(i: int) -> list[int]:
            values = []
            for _ in range(50):
                status, body = http_request("POST", nodes[i % 3].url + key + "?op=incr")
                assert status == 200, body
                values.append(json.loads(body)["value"])
            return values

        with ThreadPoolExecutor(24) as pool:
            seen = [v for values in pool.map(bump, range(24)) for v in values]
        assert sorted(seen) == list(range(1, 1201))  # every answer distinct: none lost
        for node in nodes:
            deadline = time.monotonic() + 10
            while http_request("GET", node.url + key)[1] != b"1200":
                assert time.monotonic() < deadline, node.stderr()
                time.sleep(0.05)
