"""``shoal serve --otel``: two node processes export their spans and metrics through
the exporters the ``OTEL_*`` variables choose (here the SDK's console exporters, on
each node's stdout), and a request's trace runs from one node into the other."""

from __future__ import annotations

import json
import signal
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from helpers.processes import LoadLog, clean_env, free_port, run_shoal, shoal_cluster

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects a console exporter printed, among the node's other lines."""
    decoder = json.JSONDecoder()
    found = []
    at = text.find("{")
    while at != -1:
        try:
            item, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(item, dict):
            found.append(item)
        at = text.find("{", end)
    return found


def test_serve_otel_exports_one_trace_across_two_nodes() -> None:
    with tempfile.TemporaryDirectory(prefix="shoal-otel-") as tmp:
        loads = LoadLog(Path(tmp) / "loads")
        base_env = loads.env()

        def env(index: int, url: str) -> dict[str, str]:
            return base_env(index, url) | {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_METRICS_EXPORTER": "console",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }

        with shoal_cluster(2, "--otel", "--group", "data=helpers.loadlog:load", env=env) as c:
            key = c.keys_owned_by(1, "traced")[0]
            request = urllib.request.Request(
                f"{c.nodes[0].url}/api?key={key}&group=data", headers={"traceparent": TRACEPARENT}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.read() == f"value of {key}".encode()
            for node in c.nodes:  # a clean stop exports what is left
                assert node.stop(signal.SIGTERM) == 0
            asker, owner = (_objects(node.stdout()) for node in c.nodes)

    spans = {(s["kind"], s["name"]): s for s in asker + owner if "span_id" in s.get("context", {})}
    api = spans[("SpanKind.SERVER", "GET /api")]
    client = spans[("SpanKind.CLIENT", "GET")]
    server = spans[("SpanKind.SERVER", "GET /_groupcache/{group}/{key}")]
    load = spans[("SpanKind.INTERNAL", "shoal.load")]
    for span in (api, client, server, load):
        assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
        assert span["resource"]["attributes"]["service.name"] == "shoal"
    assert client["parent_id"] == api["context"]["span_id"]
    assert server["parent_id"] == client["context"]["span_id"]
    assert load["parent_id"] == server["context"]["span_id"]
    assert "shoal.key" not in load["attributes"]
    assert load in owner
    assert api in asker

    names = {
        metric["name"]
        for item in asker
        for resource in item.get("resource_metrics", ())
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
    }
    assert {"groupcache.group.gets", "groupcache.group.peer.loads"} <= names


def test_serve_otel_with_an_exporter_not_installed_refuses_to_start() -> None:
    env = clean_env(OTEL_TRACES_EXPORTER="nosuch", OTEL_METRICS_EXPORTER="none")
    done = run_shoal("serve", "--otel", "--api-port", str(free_port()), "--group", "a", env=env)
    assert done.returncode == 2, done.stderr
    assert b"OTEL_TRACES_EXPORTER='nosuch': no such exporter installed" in done.stderr
