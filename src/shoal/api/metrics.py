"""Prometheus text exposition (format 0.0.4) of the groups' statistics.

The series follow mailgun/groupcache's Prometheus exporter, renamed ``shoal_*``:
group counters carry a ``group`` label; the per-cache series add
``cache="main"`` or ``cache="hot"``. Rendering is a pure function of
:class:`~shoal.stats.GroupStats` snapshots, so it needs no node to test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..stats import GroupStats
from ..tokens import REASONS

__all__ = ["CONTENT_TYPE", "render_metrics", "escape_label_value"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of the text exposition format."""

AUTH_PORTS: Final = ("api", "grpc")
"""The ports that check API tokens: the HTTP API and gRPC's ``shoal.v1.Cache``."""

# (series, GroupStats field, help)
_GROUP_COUNTERS: Final = (
    ("shoal_gets_total", "gets", "Gets of any kind, hits and misses."),
    ("shoal_hits_total", "hits", "Gets answered from the main or the hot cache."),
    ("shoal_loads_total", "loads", "Gets that missed both caches (deduplicated or not)."),
    ("shoal_loads_run_total", "loads_run", "Loads actually run, after duplicate suppression."),
    (
        "shoal_loads_deduped_total",
        "loads_run",
        "Deprecated name of shoal_loads_run_total (kept for one release).",
    ),
    ("shoal_local_loads_total", "local_loads", "Loader calls that succeeded."),
    ("shoal_local_load_errors_total", "local_load_errors", "Loader calls that failed."),
    ("shoal_peer_loads_total", "peer_loads", "Values fetched from a peer."),
    ("shoal_peer_errors_total", "peer_errors", "Exchanges with peers that failed."),
    ("shoal_server_requests_total", "server_requests", "Gets that arrived over the network."),
    (
        "shoal_duplicate_loads_total",
        "duplicate_loads",
        "Loads made here after the owner timed out (it may have been loading too).",
    ),
    (
        "shoal_oversized_values_total",
        "oversized_values",
        "Loaded or fetched values over max_value_bytes, refused.",
    ),
)

# (series, type, StoreStats field, help)
_CACHE_SERIES: Final = (
    ("shoal_cache_bytes", "gauge", "bytes", "Key plus value bytes held by the cache."),
    ("shoal_cache_items", "gauge", "items", "Entries held by the cache."),
    ("shoal_cache_gets_total", "counter", "gets", "Lookups in the cache."),
    ("shoal_cache_hits_total", "counter", "hits", "Lookups that found a live entry."),
    ("shoal_cache_evictions_total", "counter", "evictions", "Entries evicted to make room."),
    ("shoal_cache_expirations_total", "counter", "expirations", "Entries removed by their TTL."),
)


# Replicated groups only: (series, type, key of GroupStats.replication, help)
_REPLICA_SERIES: Final = (
    ("shoal_replica_entries", "gauge", "entries", "Keys held, tombstones included."),
    ("shoal_replica_live_bytes", "gauge", "live_bytes", "Key plus value bytes of live keys."),
    ("shoal_replica_pushes_total", "counter", "pushes", "Push messages sent to peers."),
    ("shoal_replica_push_failures_total", "counter", "push_failures", "Pushes that failed."),
    ("shoal_replica_writes_received_total", "counter", "writes_received", "Writes pushed here."),
    ("shoal_replica_sync_rounds_total", "counter", "sync_rounds", "Anti-entropy rounds begun."),
    (
        "shoal_replica_sync_rounds_in_sync_total",
        "counter",
        "sync_rounds_in_sync",
        "Anti-entropy rounds that found nothing to repair.",
    ),
    ("shoal_replica_sync_failures_total", "counter", "sync_failures", "Rounds that failed."),
    (
        "shoal_replica_entries_repaired_total",
        "counter",
        "entries_repaired",
        "Entries anti-entropy sent or received.",
    ),
    (
        "shoal_replica_bytes_sent_total",
        "counter",
        "bytes_sent",
        "Bytes sent in the pushes and rounds this node started.",
    ),
    (
        "shoal_replica_bytes_received_total",
        "counter",
        "bytes_received",
        "Bytes received in the pushes and rounds this node started.",
    ),
    (
        "shoal_replica_messages_refused_total",
        "counter",
        "messages_refused",
        "Peer messages refused whole: malformed, out of range or over a cap.",
    ),
)


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# HTTP peer clients only: (series, type, key of a member's "client" counters, help)
_PEER_SERIES: Final = (
    ("shoal_peer_client_requests_total", "counter", "requests", "HTTP requests sent to the peer."),
    (
        "shoal_peer_client_retries_total",
        "counter",
        "retries",
        "Requests sent again on a new connection.",
    ),
    (
        "shoal_peer_client_pipelined_total",
        "counter",
        "pipelined",
        "GETs written together with others on one connection.",
    ),
    (
        "shoal_peer_client_batched_keys_total",
        "counter",
        "batched",
        "Keys of single fetches gathered into batch gets.",
    ),
    (
        "shoal_peer_client_connections_opened_total",
        "counter",
        "connections_opened",
        "Connections opened to the peer.",
    ),
    ("shoal_peer_client_connections_open", "gauge", "connections_open", "Connections open now."),
)


def _labelled(
    series: str, kind: str, text: str, label: str, samples: Iterable[tuple[object, object]]
) -> list[str]:
    """One metric: its ``# HELP`` and ``# TYPE`` lines, then a sample per
    ``(label value, value)`` (the label value escaped)."""
    return [
        f"# HELP {series} {text}",
        f"# TYPE {series} {kind}",
        *(f'{series}{{{label}="{escape_label_value(str(name))}"}} {n}' for name, n in samples),
    ]


def _membership_lines(membership: Mapping[str, Any]) -> list[str]:
    """The series of the membership source's input drops (gossip, etcd or DNS)."""
    lines: list[str] = []
    dropped = membership.get("dropped")
    if isinstance(dropped, Mapping):
        lines += _labelled(
            "shoal_gossip_dropped_total",
            "counter",
            "Gossip datagrams and updates dropped, by reason.",
            "reason",
            sorted(dropped.items()),
        )
    if membership.get("source") == "dns":
        return lines + _dns_lines(membership)
    bad = membership.get("bad_records")
    if isinstance(bad, int):
        series = "shoal_etcd_bad_records_total"
        lines += (
            f"# HELP {series} Malformed etcd member records skipped.",
            f"# TYPE {series} counter",
            f"{series} {bad}",
        )
    return lines


def _dns_lines(membership: Mapping[str, Any]) -> list[str]:
    """The series of DNS membership: lookups that kept the last members, and the records
    of the answers that were skipped."""
    lines: list[str] = []
    reasons = [(r, membership.get(key)) for r, key in (("failed", "failures"), ("empty", "empty"))]
    lines += _labelled(
        "shoal_dns_lookups_kept_total",
        "counter",
        "DNS lookups that found no member (no answer, or no record): the last members kept.",
        "reason",
        [(r, n) for r, n in reasons if isinstance(n, int)],
    )
    for key, series, text in (
        (
            "bad_records",
            "shoal_dns_bad_records_total",
            "DNS records that cannot be a member, skipped.",
        ),
        ("left_out", "shoal_dns_left_out_total", "DNS members left out past max_members."),
    ):
        value = membership.get(key)
        if isinstance(value, int):
            lines += (f"# HELP {series} {text}", f"# TYPE {series} counter", f"{series} {value}")
    return lines


def _auth_lines(failures: Mapping[tuple[str, str], int]) -> list[str]:
    """``shoal_auth_failures_total{port,reason}``: every port and reason, zeros included."""
    series = "shoal_auth_failures_total"
    lines = [
        f"# HELP {series} API requests refused for their token (missing, malformed, "
        "unknown, or a role that does not allow the request).",
        f"# TYPE {series} counter",
    ]
    keys = sorted({*((p, r) for p in AUTH_PORTS for r in REASONS), *failures})
    lines += (
        f'{series}{{port="{escape_label_value(port)}",reason="{escape_label_value(reason)}"}} '
        f"{failures.get((port, reason), 0)}"
        for port, reason in keys
    )
    return lines


def render_metrics(
    stats: Iterable[GroupStats],
    peers: Mapping[str, Mapping[str, int]] | None = None,
    *,
    membership: Mapping[str, Any] | None = None,
    background_errors: Mapping[str, int] | None = None,
    loader_threads: Mapping[str, int] | None = None,
    accept_errors: Mapping[str, int] | None = None,
    auth_failures: Mapping[tuple[str, str], int] | None = None,
    tls_handshake_failures: Mapping[str, int] | None = None,
) -> bytes:
    """Render the statistics of some groups in the Prometheus text format.

    Each metric gets its ``# HELP`` and ``# TYPE`` lines once, followed by one
    sample per group (and per cache for the ``shoal_cache_*`` series).

    Args:
        stats: one snapshot per group, e.g. ``(g.statistics() for g in node.groups.values())``.
        peers: per peer URL, its client's counters (``Node.peer_statistics()``), rendered
            as ``shoal_peer_client_*`` series with a ``peer`` label.
        membership: the membership source's statistics (``Membership.statistics()``):
            its dropped input as ``shoal_gossip_dropped_total{reason}`` (gossip),
            ``shoal_etcd_bad_records_total`` (etcd), or for DNS
            ``shoal_dns_lookups_kept_total{reason}``, ``shoal_dns_bad_records_total``
            and ``shoal_dns_left_out_total``.
        background_errors: failed rounds of the node's background tasks by task
            (``Node.background_errors()``), as ``shoal_background_errors_total``
            with a ``task`` label.
        loader_threads: the sync loader pool's counters (``Node.loader_statistics()``),
            as ``shoal_loader_threads{state}`` and ``shoal_loader_threads_abandoned_total``.
        accept_errors: per server (``api``, ``peer``), the times accepting a connection
            failed for lack of file descriptors (``Node.accept_errors()``), as
            ``shoal_accept_errors_total{server}``.
        auth_failures: per (port, reason), the requests refused for their API token
            (``ApiTokens.failures()``), as ``shoal_auth_failures_total{port,reason}``;
            None when the node has no tokens.
        tls_handshake_failures: per TLS server (``api``, ``peer``), the handshakes that
            failed or timed out (``Node.tls_handshake_failures()``), as
            ``shoal_tls_handshake_failures_total{server}``.

    Returns:
        The exposition as UTF-8 bytes, to serve with :data:`CONTENT_TYPE`.
    """
    snapshots = [(escape_label_value(s.name), s) for s in stats]
    lines: list[str] = []
    for series, field, text in _GROUP_COUNTERS:
        lines += (f"# HELP {series} {text}", f"# TYPE {series} counter")
        lines += (f'{series}{{group="{label}"}} {getattr(s, field)}' for label, s in snapshots)
    for series, kind, field, text in _CACHE_SERIES:
        lines += (f"# HELP {series} {text}", f"# TYPE {series} {kind}")
        for label, s in snapshots:
            lines += (
                f'{series}{{group="{label}",cache="main"}} {getattr(s.main, field)}',
                f'{series}{{group="{label}",cache="hot"}} {getattr(s.hot, field)}',
            )
    replicated = [(label, s.replication) for label, s in snapshots if s.replication is not None]
    for series, kind, key, text in _REPLICA_SERIES if replicated else ():
        lines += (f"# HELP {series} {text}", f"# TYPE {series} {kind}")
        lines += (f'{series}{{group="{label}"}} {r.get(key, 0)}' for label, r in replicated)
    clients = [(escape_label_value(url), c) for url, c in (peers or {}).items()]
    for series, kind, key, text in _PEER_SERIES if clients else ():
        lines += (f"# HELP {series} {text}", f"# TYPE {series} {kind}")
        lines += (f'{series}{{peer="{label}"}} {c.get(key, 0)}' for label, c in clients)
    if background_errors:
        lines += _labelled(
            "shoal_background_errors_total",
            "counter",
            "Background rounds that failed (logged, then retried).",
            "task",
            background_errors.items(),
        )
    if loader_threads is not None:
        lines += _labelled(
            "shoal_loader_threads",
            "gauge",
            "Sync loader threads: busy, abandoned (stuck in a loader that outlived its "
            "load) and alive in all.",
            "state",
            (
                (state, loader_threads.get(key, 0))
                for state, key in (
                    ("alive", "threads"),
                    ("busy", "busy"),
                    ("abandoned", "abandoned"),
                )
            ),
        )
        series = "shoal_loader_threads_abandoned_total"
        lines += (
            f"# HELP {series} Loader threads abandoned to a loader that outlived its load.",
            f"# TYPE {series} counter",
            f"{series} {loader_threads.get('abandoned_total', 0)}",
        )
    if accept_errors:
        lines += _labelled(
            "shoal_accept_errors_total",
            "counter",
            "Failed accepts for lack of file descriptors (too many open files).",
            "server",
            accept_errors.items(),
        )
    if tls_handshake_failures:
        lines += _labelled(
            "shoal_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out (plaintext to a TLS port, a client "
            "certificate missing, expired or from another CA...).",
            "server",
            tls_handshake_failures.items(),
        )
    if membership is not None:
        lines += _membership_lines(membership)
    if auth_failures is not None:
        lines += _auth_lines(auth_failures)
    lines.append("")  # the format ends with a line feed
    return "\n".join(lines).encode()
