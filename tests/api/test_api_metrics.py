"""Prometheus text rendering of GroupStats snapshots."""

from __future__ import annotations

import re
from typing import Any

from shoal.api.metrics import CONTENT_TYPE, escape_label_value, render_metrics
from shoal.stats import GroupStats, StoreStats


def store(**values: int) -> StoreStats:
    fields: dict[str, Any] = {
        "bytes": 0,
        "items": 0,
        "gets": 0,
        "hits": 0,
        "evictions": 0,
        "expirations": 0,
    }
    fields.update(values)
    return StoreStats(capacity_bytes=1024, capacity_entries=None, **fields)


def group(name: str, **values: int) -> GroupStats:
    fields: dict[str, Any] = {
        "gets": 0,
        "hits": 0,
        "loads": 0,
        "loads_run": 0,
        "local_loads": 0,
        "local_load_errors": 0,
        "peer_loads": 0,
        "peer_errors": 0,
        "server_requests": 0,
    }
    fields.update(values)
    main, hot = store(bytes=100, items=2, gets=7), store(hits=1)
    return GroupStats(name=name, main=main, hot=hot, **fields)


GROUP_COUNTERS = [
    "shoal_gets_total",
    "shoal_hits_total",
    "shoal_loads_total",
    "shoal_loads_run_total",
    "shoal_loads_deduped_total",
    "shoal_local_loads_total",
    "shoal_local_load_errors_total",
    "shoal_peer_loads_total",
    "shoal_peer_errors_total",
    "shoal_server_requests_total",
]
CACHE_SERIES = {
    "shoal_cache_bytes": "gauge",
    "shoal_cache_items": "gauge",
    "shoal_cache_gets_total": "counter",
    "shoal_cache_hits_total": "counter",
    "shoal_cache_evictions_total": "counter",
    "shoal_cache_expirations_total": "counter",
}


def test_content_type() -> None:
    """The text format's version 0.0.4 content type."""
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_every_series_is_declared_once_with_samples_per_group() -> None:
    """HELP and TYPE once per metric; one sample per group (and per cache)."""
    text = render_metrics([group("a", gets=10, hits=4), group("b", loads=3)]).decode()
    assert text.endswith("\n")
    for series in GROUP_COUNTERS:
        assert text.count(f"# HELP {series} ") == 1
        assert text.count(f"# TYPE {series} counter\n") == 1
        assert len(re.findall(rf"^{series}{{group=\"[ab]\"}} \d+$", text, re.MULTILINE)) == 2
    for series, kind in CACHE_SERIES.items():
        assert text.count(f"# HELP {series} ") == 1
        assert text.count(f"# TYPE {series} {kind}\n") == 1
        pattern = rf'^{series}{{group="[ab]",cache="(main|hot)"}} \d+$'
        assert len(re.findall(pattern, text, re.MULTILINE)) == 4
    assert 'shoal_gets_total{group="a"} 10\n' in text
    assert 'shoal_hits_total{group="a"} 4\n' in text
    assert 'shoal_loads_total{group="b"} 3\n' in text
    assert 'shoal_cache_bytes{group="a",cache="main"} 100\n' in text
    assert 'shoal_cache_items{group="b",cache="main"} 2\n' in text
    assert 'shoal_cache_gets_total{group="a",cache="main"} 7\n' in text
    assert 'shoal_cache_hits_total{group="a",cache="hot"} 1\n' in text


def test_every_line_is_well_formed() -> None:
    """Only comments and `name{labels} value` lines."""
    text = render_metrics([group("a")]).decode()
    sample = re.compile(r'^shoal_[a-z_]+\{group="a"(,cache="(main|hot)")?\} \d+$')
    for line in text.splitlines():
        assert line.startswith(("# HELP shoal_", "# TYPE shoal_")) or sample.match(line), line


def test_no_groups() -> None:
    """Without groups the metrics are declared without samples."""
    text = render_metrics([]).decode()
    assert "# TYPE shoal_gets_total counter" in text
    assert "{" not in text


def test_label_values_are_escaped() -> None:
    """Backslash, double quote and newline are escaped in label values."""
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = render_metrics([group('we"ird\\\n')]).decode()
    assert 'shoal_gets_total{group="we\\"ird\\\\\\n"} 0\n' in text


def test_replicated_groups_add_replica_series() -> None:
    """shoal_replica_* series appear only for replicated groups, one sample each."""
    from dataclasses import replace

    counters = {"entries": 12, "live_bytes": 340, "pushes": 5, "sync_rounds": 9}
    flags = replace(group("flags"), mode="replicated", replication=counters)
    text = render_metrics([group("plain"), flags]).decode()
    assert 'shoal_replica_entries{group="flags"} 12' in text
    assert 'shoal_replica_live_bytes{group="flags"} 340' in text
    assert 'shoal_replica_sync_rounds_total{group="flags"} 9' in text
    assert 'shoal_replica_push_failures_total{group="flags"} 0' in text
    assert 'group="plain"' not in "".join(
        line for line in text.splitlines() if line.startswith("shoal_replica_")
    )
    assert text.count("# TYPE shoal_replica_entries gauge") == 1
    assert "shoal_replica_" not in render_metrics([group("plain")]).decode()


def test_peer_client_series() -> None:
    """Each HTTP peer client's counters become shoal_peer_client_* series labelled by peer;
    with no such clients there are none."""
    peers = {
        "http://10.0.0.2:8001": {"requests": 7, "batched": 40, "connections_open": 2},
        'http://we"ird:1': {"requests": 1},
    }
    lines = render_metrics([group("a")], peers).decode().splitlines()
    for line in (
        "# TYPE shoal_peer_client_requests_total counter",
        "# TYPE shoal_peer_client_connections_open gauge",
        'shoal_peer_client_requests_total{peer="http://10.0.0.2:8001"} 7',
        'shoal_peer_client_batched_keys_total{peer="http://10.0.0.2:8001"} 40',
        'shoal_peer_client_connections_open{peer="http://10.0.0.2:8001"} 2',
        'shoal_peer_client_retries_total{peer="http://we\\"ird:1"} 0',
    ):
        assert line in lines
    assert "shoal_peer_client_" not in render_metrics([group("a")]).decode()
    assert "shoal_peer_client_" not in render_metrics([group("a")], {}).decode()


def test_background_error_series() -> None:
    """Failed background rounds become shoal_background_errors_total labelled by task;
    without the counters there is no such series."""
    errors = {"sweep": 0, "anti-entropy": 3}
    text = render_metrics([group("a")], background_errors=errors).decode()
    lines = text.splitlines()
    assert lines.count("# TYPE shoal_background_errors_total counter") == 1
    assert 'shoal_background_errors_total{task="sweep"} 0' in lines
    assert 'shoal_background_errors_total{task="anti-entropy"} 3' in lines
    assert "shoal_background_errors_total" not in render_metrics([group("a")]).decode()


def test_membership_drop_series() -> None:
    """Gossip drops by reason, and malformed etcd records, as counters."""
    gossip = {"source": "gossip", "dropped": {"malformed": 2, "invalid": 3, "flood": 0}}
    text = render_metrics([], membership=gossip).decode()
    assert "# TYPE shoal_gossip_dropped_total counter" in text
    assert 'shoal_gossip_dropped_total{reason="invalid"} 3' in text
    assert 'shoal_gossip_dropped_total{reason="malformed"} 2' in text
    assert "shoal_etcd_bad_records_total" not in text
    text = render_metrics([], membership={"source": "etcd", "bad_records": 4}).decode()
    assert "shoal_etcd_bad_records_total 4" in text
    assert "shoal_gossip_dropped_total" not in text
    assert "shoal_gossip" not in render_metrics([], membership={"source": "static"}).decode()
