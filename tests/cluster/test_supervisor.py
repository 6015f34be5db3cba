"""``shoal cluster`` (a supervised local cluster) and ``shoal demo``, as real processes."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

from helpers.processes import (
    ProcessGroup,
    free_port_range,
    http_get,
    process_gone,
    process_group,
    shoal_cmd,
)

ROOT = Path(__file__).resolve().parents[2]


def wait_until_gone(pids: list[int], timeout: float = 15.0) -> None:
    """Poll until every process in ``pids`` has exited."""
    deadline = time.monotonic() + timeout
    while not all(process_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.02)


def start_cluster(group: ProcessGroup) -> dict[str, int]:
    """Wait for the cluster's banner; return the nodes' pids by name."""
    output = group.wait_for_output("Ctrl-C stops the cluster")
    pids = {m[1]: int(m[2]) for m in re.finditer(r"started (node \d+) \(pid (\d+)\)", output)}
    assert len(pids) == 3, output
    return pids


def cluster_command(peer_port: int, api_port: int) -> list[str]:
    return shoal_cmd(
        "cluster",
        "--port",
        str(peer_port),
        "--api-port",
        str(api_port),
        "--slowdb",
        "--slowdb-delay",
        "0",
    )


def test_cluster_serves_one_cache_and_reports_a_dead_node() -> None:
    """Three supervised nodes answer on every API port with one database search per key;
    a node killed from outside is reported, the others keep serving; Ctrl-C (SIGINT to
    the process group, as a terminal sends it) stops the rest."""
    peer_port = free_port_range(3)
    api_port = free_port_range(3) + 2
    with process_group(cluster_command(peer_port, api_port)) as group:
        pids = start_cluster(group)
        output = group.output()
        assert f"curl 'http://127.0.0.1:{api_port}/api?key=Tom'" in output
        apis = [f"http://127.0.0.1:{api_port - i}" for i in range(3)]
        for api in apis:
            assert http_get(f"{api}/api?key=Tom") == (200, b"630")
        output = group.output()
        assert output.count("[SlowDB] search key Tom") == 1, output
        assert re.search(rf"\[node {peer_port + 1}\] INFO +shoal.cluster: miss 'Tom'", output) or (
            re.search(rf"\[node {peer_port + 1}\] INFO +shoal.cluster: load 'Tom' here", output)
        ), output

        victim = f"node {peer_port + 1}"
        os.kill(pids[victim], signal.SIGKILL)
        group.wait_for_output(f"{victim} (http://127.0.0.1:{peer_port + 1}) was killed by SIGKILL")
        for api in (apis[0], apis[2]):
            assert http_get(f"{api}/api?key=Jack") == (200, b"589")

        os.killpg(group.proc.pid, signal.SIGINT)
        assert group.proc.wait(30) == 1  # a node died: not a clean run
        wait_until_gone(list(pids.values()))
        output = group.output()
    assert "Traceback" not in output
    assert "received SIGINT, stopping the nodes" in output


def test_ctrl_c_stops_every_node_cleanly() -> None:
    """SIGINT to the whole process group: each node stops once, cleanly; exit code 0."""
    peer_port = free_port_range(3)
    api_port = free_port_range(3) + 2
    with process_group(cluster_command(peer_port, api_port)) as group:
        pids = start_cluster(group)
        os.killpg(group.proc.pid, signal.SIGINT)
        assert group.proc.wait(30) == 0, group.output()
        wait_until_gone(list(pids.values()))
        output = group.output()
    assert "Traceback" not in output
    assert output.count("shoal.cli: stopped") == 3, output
    assert "again" not in output  # no node saw a second signal


def test_sigterm_to_the_process_group_stops_every_node_cleanly() -> None:
    """SIGTERM to the whole process group (as ``timeout``, an init system or a container
    runtime sends it): each node gets it from there and once more from the supervisor,
    and still stops cleanly, once; exit code 0."""
    peer_port = free_port_range(3)
    api_port = free_port_range(3) + 2
    with process_group(cluster_command(peer_port, api_port)) as group:
        pids = start_cluster(group)
        for i in range(3):  # loads open the demo database in every node
            assert http_get(f"http://127.0.0.1:{api_port - i}/api?key=Tom") == (200, b"630")
            assert http_get(f"http://127.0.0.1:{api_port - i}/api?key=Jack") == (200, b"589")
        os.killpg(group.proc.pid, signal.SIGTERM)
        assert group.proc.wait(30) == 0, group.output()
        wait_until_gone(list(pids.values()))
        output = group.output()
    assert "Traceback" not in output
    assert output.count("shoal.cli: stopped") == 3, output
    assert "exiting without waiting" not in output, output


def test_nodes_stop_when_the_supervisor_is_killed() -> None:
    """SIGKILL of the supervisor alone: its nodes notice (stdin closes) and stop."""
    peer_port = free_port_range(3)
    api_port = free_port_range(3) + 2
    with process_group(cluster_command(peer_port, api_port)) as group:
        pids = start_cluster(group)
        group.proc.kill()
        group.proc.wait()
        wait_until_gone(list(pids.values()))
        output = group.output()
    assert output.count("the supervisor is gone (stdin closed), shutting down") == 3, output


def test_cluster_bad_layout_is_a_usage_error() -> None:
    """Overlapping ports: exit 2 and one line, before anything starts."""
    with process_group(shoal_cmd("cluster", "--port", "9998", "--slowdb")) as group:
        assert group.proc.wait(30) == 2
        lines = group.output().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("shoal cluster: error: ")
    assert "overlap" in lines[0]


def test_make_demo() -> None:
    """``make demo``: the scripted tour passes every one of its checks."""
    venv_bin = ROOT / ".venv" / "bin"
    if Path(sys.executable).parent == venv_bin:
        # `-o venv`: the test runs in the installed environment; never reinstall it.
        command = ["make", "-s", "--no-print-directory", "-o", "venv", "demo"]
    else:
        # Another environment runs the tests: run the same tour with its interpreter.
        command = shoal_cmd("demo")
    with process_group(command, cwd=ROOT) as group:
        code = group.proc.wait(120)
        output = group.output()
    assert code == 0, output
    assert "exactly one '[SlowDB] search key Tom' in the whole cluster" in output
    assert re.search(r"shoal demo: all \d+ checks passed", output), output
    assert "FAIL" not in output
