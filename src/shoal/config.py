"""Configuration: frozen keyword-only dataclasses, validated at construction.

Only the CLI reads files and environment variables; everything else receives
these objects. Each field documents its default. Invalid values raise
:class:`~shoal.errors.ConfigError` when the object is built, never later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["GroupConfig", "NodeConfig", "POLICIES", "CODECS", "HOT_ADMISSIONS", "RINGS"]

POLICIES = ("lru",)
"""Eviction policy names a group accepts."""

CODECS = ("bytes", "str", "json", "msgpack")
"""Codec names a group accepts."""

RINGS = ("shoal", "golang", "groupcache-go")
"""Ring flavours a node accepts (DESIGN §6)."""

HOT_ADMISSIONS = ("random", "always", "rate", "never")
"""How a group decides to keep a copy of a value fetched from its owner."""

_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ConfigError(f"{name} is required")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be positive and finite, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupConfig:
    """How one group stores and loads its keys."""

    name: str
    """Group name: 1 to 128 characters of letters, digits, ``_``, ``.``, ``-``."""

    capacity_bytes: int | None = 64 << 20
    """Byte budget of the group's cache (key + value bytes). Default 64 MiB;
    None means unbounded in bytes (then ``capacity_entries`` should be set)."""

    capacity_entries: int | None = None
    """Maximum number of cached entries. Default None: bounded by bytes only."""

    policy: str = "lru"
    """Eviction policy, one of :data:`POLICIES`. Default ``lru``."""

    ttl: float | None = None
    """Default time to live of a loaded or set value, in seconds. Default None:
    values never expire (a loader or a write may still give a TTL)."""

    negative_ttl: float | None = None
    """How long a ``NotFound`` from the loader is remembered, in seconds. Default
    None: not remembered, every get of a missing key asks the loader."""

    load_timeout: float = 30.0
    """Seconds a load may take before every waiter gets ``LoadTimeout``. Default 30."""

    codec: str = "bytes"
    """How values are turned into bytes, one of :data:`CODECS`. Default ``bytes``."""

    max_key_bytes: int = 1024
    """Longest accepted key, in UTF-8 bytes. Default 1024."""

    max_value_bytes: int = 16 << 20
    """Largest accepted value, in bytes. Default 16 MiB."""

    peer_timeout: float = 2.0
    """Seconds to wait for the owner of a key; then the key is loaded locally. Default 2."""

    hot_admission: str = "random"
    """When a value fetched from its owner is also kept here, in the hot cache:
    ``random`` (one fetch in ten, as golang/groupcache does), ``always``,
    ``rate`` (once fetched ``hot_rate_count`` times within ``hot_rate_window``
    seconds) or ``never``. Default ``random``."""

    hot_fraction: float = 0.125
    """Share of ``capacity_bytes``/``capacity_entries`` given to the hot cache; the
    main cache gets the rest. Default 1/8, groupcache's ratio."""

    hot_rate_count: int = 2
    """With ``hot_admission="rate"``: fetches that make a key hot. Default 2."""

    hot_rate_window: float = 60.0
    """With ``hot_admission="rate"``: the window those fetches must fall in, in seconds."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _GROUP_NAME.match(self.name):
            raise ConfigError(
                f"group name must be 1-128 characters of letters, digits, '_', '.', '-': "
                f"{self.name!r}"
            )
        _positive("capacity_bytes", self.capacity_bytes)
        _positive("capacity_entries", self.capacity_entries)
        if self.capacity_bytes is None and self.capacity_entries is None:
            raise ConfigError("a group needs capacity_bytes or capacity_entries (or both)")
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; choose one of {POLICIES}")
        if self.codec not in CODECS:
            raise ConfigError(f"unknown codec {self.codec!r}; choose one of {CODECS}")
        _positive("ttl", self.ttl)
        _positive("negative_ttl", self.negative_ttl)
        _positive("load_timeout", self.load_timeout, allow_none=False)
        _positive("max_key_bytes", self.max_key_bytes, allow_none=False)
        _positive("max_value_bytes", self.max_value_bytes, allow_none=False)
        _positive("peer_timeout", self.peer_timeout, allow_none=False)
        if self.hot_admission not in HOT_ADMISSIONS:
            raise ConfigError(
                f"unknown hot_admission {self.hot_admission!r}; choose one of {HOT_ADMISSIONS}"
            )
        if not isinstance(self.hot_fraction, int | float) or not 0 < self.hot_fraction < 1:
            raise ConfigError(f"hot_fraction must be between 0 and 1, got {self.hot_fraction!r}")
        _positive("hot_rate_count", self.hot_rate_count, allow_none=False)
        _positive("hot_rate_window", self.hot_rate_window, allow_none=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeConfig:
    """How one node runs: its servers, thread pool and housekeeping."""

    api_host: str = "127.0.0.1"
    """Address the HTTP API listens on. Default ``127.0.0.1``."""

    api_port: int | None = None
    """Port of the HTTP API. Default None: no API server (embedded use);
    0 picks a free port (see ``Node.api_address``)."""

    host: str = "127.0.0.1"
    """Address the peer server listens on. Default ``127.0.0.1``."""

    port: int | None = None
    """Port of the peer server (the groupcache HTTP protocol). Default None: no
    peer server; 0 picks a free port."""

    self_url: str | None = None
    """This node's URL as peers know it (its identity on the ring); may differ from
    the bind address. Default ``http://{host}:{port}``."""

    peers: tuple[str, ...] = ()
    """URLs of every member of the cluster (this node's may be included). Default
    none: the node runs alone."""

    ring: str = "shoal"
    """Ring flavour: ``shoal``, ``golang`` (join golang/groupcache) or
    ``groupcache-go`` (join mailgun/groupcache and groupcache-go). Default ``shoal``."""

    replicas: int | None = None
    """Virtual nodes per member; None takes the flavour's (160 shoal, 50 Go)."""

    base_path: str = "/_groupcache/"
    """Path prefix of the peer protocol. Default ``/_groupcache/``, groupcache's."""

    peer_backoff: float = 1.0
    """Seconds a failing peer is skipped (its keys load locally meanwhile). Default 1."""

    loader_threads: int = 16
    """Threads that run synchronous loaders. Default 16."""

    sweep_interval: float = 1.0
    """Seconds between sweeps that reclaim expired entries. Default 1."""

    max_header_bytes: int = 16 << 10
    """Largest request line plus headers the HTTP API accepts. Default 16 KiB."""

    max_body_bytes: int = 16 << 20
    """Largest request body the HTTP API accepts. Default 16 MiB."""

    header_timeout: float = 10.0
    """Seconds a client may take to send a request's headers. Default 10."""

    body_timeout: float = 30.0
    """Seconds a client may take to send a request's body. Default 30."""

    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection stays open. Default 75."""

    request_timeout: float = 60.0
    """Seconds the HTTP API waits for a cache answer before replying 504. Default 60."""

    def __post_init__(self) -> None:
        if self.api_port is not None and (
            isinstance(self.api_port, bool)
            or not isinstance(self.api_port, int)
            or not 0 <= self.api_port <= 65535
        ):
            raise ConfigError(f"api_port must be 0-65535 or None, got {self.api_port!r}")
        if self.port is not None and (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise ConfigError(f"port must be 0-65535 or None, got {self.port!r}")
        for name in ("api_host", "host"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string")
        if not isinstance(self.peers, tuple) or not all(
            isinstance(p, str) and p.startswith(("http://", "https://")) for p in self.peers
        ):
            raise ConfigError(f"peers must be a tuple of http:// URLs, got {self.peers!r}")
        if self.self_url is not None and not self.self_url.startswith(("http://", "https://")):
            raise ConfigError(f"self_url must be an http:// URL, got {self.self_url!r}")
        if self.ring not in RINGS:
            raise ConfigError(f"unknown ring {self.ring!r}; choose one of {RINGS}")
        if self.replicas is not None:
            _positive("replicas", self.replicas)
        if not (self.base_path.startswith("/") and self.base_path.endswith("/")):
            raise ConfigError(f"base_path must start and end with '/', got {self.base_path!r}")
        if self.peers and self.port is None and self.self_url is None:
            raise ConfigError("a node with peers needs a peer port (port) or a self_url")
        if isinstance(self.loader_threads, bool) or not isinstance(self.loader_threads, int):
            raise ConfigError("loader_threads must be an integer")
        for name in (
            "loader_threads",
            "sweep_interval",
            "max_header_bytes",
            "max_body_bytes",
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "request_timeout",
            "peer_backoff",
        ):
            _positive(name, getattr(self, name), allow_none=False)
