"""Statistics: frozen snapshots handed to callers; live counters stay private."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["StoreStats", "GroupStats"]


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of one :class:`~shoal.store.Store`."""

    bytes: int
    """Key plus value bytes held now."""
    items: int
    """Entries held now (negative entries included)."""
    gets: int
    """Lookups since the store was created."""
    hits: int
    """Lookups that found a live entry."""
    evictions: int
    """Entries removed to make room."""
    expirations: int
    """Entries removed because their TTL ran out (on read or by a sweep)."""
    capacity_bytes: int | None
    """Byte bound, or None."""
    capacity_entries: int | None
    """Entry bound, or None."""

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A snapshot of one :class:`~shoal.group.Group`, in groupcache's terms."""

    name: str
    """The group's name."""
    gets: int
    """Every get, hit or miss."""
    hits: int
    """Gets answered from the main or the hot cache."""
    loads: int
    """Gets that missed both caches and went through the flight (deduplicated or not)."""
    loads_run: int
    """Loads actually run (loader calls and peer fetches started): ``loads`` minus
    the callers that joined a flight already running. Named ``loads_deduped`` until
    0.x, groupcache's name; that name stays as an alias for one release."""
    local_loads: int
    """Loader calls that succeeded."""
    local_load_errors: int
    """Loader calls that failed (``NotFound`` included)."""
    peer_loads: int
    """Values fetched from a peer."""
    peer_errors: int
    """Exchanges with peers that failed (fetches, and the messages of writes)."""
    server_requests: int
    """Gets that arrived over the network (HTTP API or peer protocol)."""
    main: StoreStats
    """The main cache: keys this node owns and loaded."""
    hot: StoreStats
    """The hot cache: copies of keys owned by other nodes."""
    mode: str = "partitioned"
    """``partitioned`` or ``replicated``."""
    replication: dict[str, int] | None = None
    """A replicated group's state and traffic: ``entries`` (tombstones included),
    ``live_bytes``, ``pushes``, ``push_failures``, ``writes_received``,
    ``sync_rounds``, ``sync_rounds_in_sync``, ``sync_failures``, ``entries_repaired``,
    ``bytes_sent``, ``bytes_received`` (the bytes of the pushes and anti-entropy
    rounds this node started, each way: an exchange counts once, at the node that
    began it), ``messages_refused`` (peer messages refused whole as malformed, out
    of range or over a cap); None for a partitioned group."""
    duplicate_loads: int = 0
    """Loader calls made here after the key's owner did not answer within
    ``peer_timeout``: the owner may have been loading the same key (a loader slower
    than ``peer_timeout`` is loaded once by the owner and once by each asker)."""
    oversized_values: int = 0
    """Values over ``max_value_bytes`` that a loader returned or a peer sent: refused,
    neither cached nor served."""

    @property
    def loads_deduped(self) -> int:
        """Deprecated alias of :attr:`loads_run` (groupcache's name), for one release."""
        return self.loads_run

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (for JSON), with the deprecated
        ``loads_deduped`` beside ``loads_run`` for one release."""
        found = asdict(self)
        found["loads_deduped"] = self.loads_run
        return found
