"""Configuration: frozen keyword-only dataclasses, validated at construction.

Only the CLI reads files and environment variables; everything else receives
these objects. Each field documents its default. Invalid values raise
:class:`~shoal.errors.ConfigError` when the object is built, never later.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Self

from .errors import ConfigError

__all__ = [
    "GroupConfig",
    "NodeConfig",
    "EtcdConfig",
    "GossipConfig",
    "DnsConfig",
    "TlsConfig",
    "API_CLIENT_AUTH",
    "POLICIES",
    "CODECS",
    "HOT_ADMISSIONS",
    "MODES",
    "RINGS",
    "TRANSPORTS",
    "GOSSIP_PROFILES",
    "default_node_id",
    "check_node_id",
]

POLICIES = ("lru", "lfu", "fifo", "arc", "tinylfu")
"""Eviction policy names a group accepts: least recently used, least frequently used
(with aging), first in first out, ARC, and W-TinyLFU (see :mod:`shoal.policy`)."""

CODECS = ("bytes", "str", "json", "msgpack")
"""Codec names a group accepts."""

RINGS = ("shoal", "golang", "groupcache-go")
"""Ring flavours a node accepts (DESIGN §6)."""

TRANSPORTS = ("http", "grpc")
"""Peer transports a node accepts: what its peer port speaks."""

HOT_ADMISSIONS = ("random", "always", "rate", "never")
"""How a group decides to keep a copy of a value fetched from its owner."""

MODES = ("partitioned", "replicated")
"""How a group spreads its keys over the cluster: each key at its owner
(``partitioned``), or every key on every member (``replicated``)."""

API_CLIENT_AUTH = ("none", "optional", "required")
"""What the HTTP API asks of its clients' certificates when TLS is on: nothing,
a certificate if they have one (verified against the CA), or a verified one."""

_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def _freeze_sequence(config: object, name: str) -> None:
    """Store a list (or any sequence but a string) given for ``name`` as a tuple, so a
    config stays immutable and hashable whatever sequence it was built with."""
    value = getattr(config, name)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, tuple)):
        object.__setattr__(config, name, tuple(value))


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
    """Eviction policy of the main and the hot cache, one of :data:`POLICIES`: ``lru``,
    ``lfu``, ``fifo``, ``arc`` or ``tinylfu``. Default ``lru``."""

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
    """Largest value, in bytes: written, loaded or fetched from a peer (a larger
    loaded or fetched value is an error for its key, not cached). Default 16 MiB."""

    peer_timeout: float = 2.0
    """Seconds to wait for the owner of a key; then the owner is suspect (see
    ``NodeConfig.peer_backoff``) and the key is loaded locally (counted in
    ``duplicate_loads``: the owner may be loading it too), or, with no loader here,
    the get fails with ``PeerUnavailable``. Keep it above the slowest load. Default 2."""

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

    stale_while_revalidate: float | None = None
    """Seconds an expired value may still be served while one background load
    replaces it (the first get after expiry starts the load, every get meanwhile
    gets the old value at once). Default None: an expired value is never served."""

    mode: str = "partitioned"
    """``partitioned`` (default): each key lives at its owner, other members keep
    hot copies. ``replicated``: every member keeps every key; a write on any member
    reaches all of them (last writer wins by hybrid-logical-clock version) and
    anti-entropy repairs whatever a push missed. A replicated group holds every
    key it is given: its capacity bounds the writes this node accepts
    (``GroupFull``), it never evicts, as that would make members disagree."""

    tombstone_ttl: float = 86_400.0
    """Replicated groups: seconds a delete (or an expired value) is remembered, so a
    write older than it arriving late cannot bring the key back. A member
    partitioned away for longer than this may resurrect keys deleted meanwhile.
    Default one day."""

    anti_entropy_interval: float = 5.0
    """Replicated groups: seconds between two digest exchanges with a random peer.
    Default 5."""

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
        _positive("stale_while_revalidate", self.stale_while_revalidate)
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        _positive("tombstone_ttl", self.tombstone_ttl, allow_none=False)
        _positive("anti_entropy_interval", self.anti_entropy_interval, allow_none=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsConfig:
    """TLS on every server port of a node, and towards its peers (docs: Security).

    With ``cert`` and ``key`` the HTTP API, the HTTP peer port and the gRPC port speak
    TLS (1.2 or newer) and the node's URL is ``https://``. With ``ca`` too, the peer
    port requires a client certificate signed by that CA (mutual TLS between members):
    the node presents its own certificate to its peers and verifies theirs against
    ``ca``. ``SIGHUP`` to ``shoal serve`` (or :meth:`shoal.Node.reload`) reads the
    files again.
    """

    cert: str
    """PEM file of the node's certificate (its chain may follow it)."""

    key: str
    """PEM file of the certificate's private key."""

    ca: str | None = None
    """PEM file of the CA (or CAs) that signs the members' certificates. Default None:
    peers' certificates are checked against the system's CAs, and the peer port asks
    for no client certificate."""

    api_client_auth: str = "none"
    """Client certificates on the HTTP API: ``none`` (default), ``optional`` (verified
    when given) or ``required``; ``optional`` and ``required`` need ``ca``."""

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if value is None and name == "ca":
                continue
            if not isinstance(value, str) or not value:
                raise ConfigError(f"tls {name} must be a file name, got {value!r}")
        if self.api_client_auth not in API_CLIENT_AUTH:
            raise ConfigError(
                f"unknown api_client_auth {self.api_client_auth!r}; choose one of {API_CLIENT_AUTH}"
            )
        if self.api_client_auth != "none" and self.ca is None:
            raise ConfigError(
                f"api_client_auth {self.api_client_auth!r} verifies client certificates: "
                "it needs a ca"
            )

    @property
    def mutual(self) -> bool:
        """True when the peer port requires client certificates (``ca`` is set)."""
        return self.ca is not None


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a name to bind) is reachable from this
    machine alone: ``localhost``, 127.0.0.0/8, ``::1``. A wildcard (``0.0.0.0``,
    ``::``, ``""``) and any other name or address count as reachable from a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeConfig:
    """How one node runs: its servers, thread pool and housekeeping."""

    api_host: str = "127.0.0.1"
    """Address the HTTP API listens on. Default ``127.0.0.1``."""

    api_port: int | None = None
    """Port of the HTTP API. Default None: no API server (embedded use);
    0 picks a free port (see ``Node.api_address``)."""

    api_unix: str | None = None
    """Path of a Unix socket the HTTP API also listens on (``shoal serve --api-unix``):
    the same routes and tokens as its TCP port, the cheapest hop for the workers of one
    host. The socket file is created owner-only (mode 0600: only processes of the
    node's user may connect) and removed when the node closes; a stale socket file
    left by a node that died is replaced, any other file at the path is an error.
    Plain HTTP even on a node with TLS (the file's permissions are its protection).
    Default None: no Unix socket. Without ``api_port`` the API listens on the socket
    only."""

    host: str = "127.0.0.1"
    """Address the peer server listens on. Default ``127.0.0.1``."""

    port: int | None = None
    """Port of the peer server (the groupcache HTTP protocol, or gRPC with
    ``transport="grpc"``). Default None: no peer server; 0 picks a free port."""

    self_url: str | None = None
    """This node's URL as peers know it (its identity on the ring); may differ from
    the bind address. Default ``http://{host}:{port}``."""

    peers: Sequence[str] = ()
    """URLs of every member of the cluster (this node's may be included), any sequence
    (kept as a tuple). Default none: the node runs alone."""

    node_id: str | None = None
    """This node's stable identity in etcd and gossip (1-128 characters of letters,
    digits and ``_.:-[]@``). Default: ``host:port`` of ``self_url`` (see
    :func:`default_node_id`), so a restarted node keeps its id."""

    etcd: EtcdConfig | None = None
    """Find the members through etcd (register under a lease, watch the prefix)
    instead of the static ``peers``. Default None."""

    gossip: GossipConfig | None = None
    """Find the members by gossip (SWIM over UDP) instead of the static ``peers``.
    Default None."""

    dns: DnsConfig | None = None
    """Find the members in DNS (A/AAAA or SRV records, looked up again every
    interval) instead of the static ``peers``. Default None."""

    ring: str = "shoal"
    """Ring flavour: ``shoal``, ``golang`` (join golang/groupcache) or
    ``groupcache-go`` (join mailgun/groupcache and groupcache-go). Default ``shoal``."""

    replicas: int | None = None
    """Virtual nodes per member; None takes the flavour's (160 shoal, 50 Go)."""

    base_path: str = "/_groupcache/"
    """Path prefix of the peer protocol. Default ``/_groupcache/``, groupcache's."""

    transport: str = "http"
    """How this node talks to its peers, and what its peer port speaks: ``http``
    (groupcache's HTTP protocol) or ``grpc`` (gRPC, with shoal's client API,
    geek-cache's service, health and reflection on the same port; needs the
    ``shoal[grpc]`` extra). Every member of a cluster uses the same. Default ``http``."""

    peer_backoff: float = 1.0
    """Seconds a peer that just failed is skipped (its keys fail over at once
    meanwhile); then one request probes it, and each failed probe doubles the wait,
    up to 8 times this. A probe that succeeds ends the back-off. Default 1."""

    loader_threads: int = 16
    """Threads that run synchronous loaders at once. Default 16. A loader still
    running when its load is given up (``load_timeout``) is abandoned: its thread
    no longer counts, and a replacement starts (up to 3 times this many abandoned
    at once). While several groups run sync loaders, each may hold at most three
    quarters of the threads, so one group's hung loaders leave some to the others."""

    sweep_interval: float = 1.0
    """Seconds between sweeps that reclaim expired entries. Default 1."""

    max_header_bytes: int = 16 << 10
    """Largest request line plus headers the HTTP API accepts. Default 16 KiB."""

    max_body_bytes: int = 16 << 20
    """Largest request body the HTTP API accepts, and largest message the gRPC server
    accepts. Default 16 MiB."""

    header_timeout: float = 10.0
    """Seconds a client may take to send a request's headers. Default 10."""

    body_timeout: float = 30.0
    """Seconds a client may take to send a request's body. Default 30."""

    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection stays open. Default 75."""

    request_timeout: float = 60.0
    """Seconds the HTTP API waits for a cache answer before replying 504. Default 60."""

    tls: TlsConfig | None = None
    """TLS on the API, peer and gRPC ports, and mutual TLS between members with a CA
    (:class:`TlsConfig`). Default None: plain TCP (loopback only, see ``insecure``)."""

    api_tokens: str | None = None
    """File of API tokens, one ``ROLE TOKEN`` per line (roles ``read``, ``write``,
    ``admin``). When set, every API request needs ``Authorization: Bearer TOKEN`` with
    a role that allows it (``/healthz`` stays open). Default None: no tokens."""

    insecure: bool = False
    """Bind a port to a network address without the protection it needs (TLS and
    tokens for the API, mutual TLS for the peer port, a keyring for gossip); logged as
    a warning at every start. Default False: such a node refuses to start."""

    otel: bool = False
    """Trace gets, loads and peer fetches and report the groups' counters through
    OpenTelemetry (``shoal[otel]``), with the global tracer and meter providers unless
    the node is given its own. Default False: no span, no instrument, no cost."""

    otel_keys: bool = False
    """Put each key in its spans (``shoal.key``). Keys may be sensitive (user ids,
    e-mail addresses): default False, spans carry the group only."""

    @property
    def membership(self) -> str:
        """Where the member list comes from: ``static``, ``etcd``, ``gossip`` or ``dns``."""
        if self.etcd is not None:
            return "etcd"
        if self.gossip is not None:
            return "gossip"
        if self.dns is not None:
            return "dns"
        return "static"

    def __post_init__(self) -> None:
        _freeze_sequence(self, "peers")
        if self.api_port is not None and (
            isinstance(self.api_port, bool)
            or not isinstance(self.api_port, int)
            or not 0 <= self.api_port <= 65535
        ):
            raise ConfigError(f"api_port must be 0-65535 or None, got {self.api_port!r}")
        if self.api_unix is not None and (
            not isinstance(self.api_unix, str) or not self.api_unix.startswith("/")
        ):
            raise ConfigError(f"api_unix must be an absolute path, got {self.api_unix!r}")
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
            raise ConfigError(f"peers must be a sequence of http:// URLs, got {self.peers!r}")
        if self.self_url is not None and not self.self_url.startswith(("http://", "https://")):
            raise ConfigError(f"self_url must be an http:// URL, got {self.self_url!r}")
        if self.ring not in RINGS:
            raise ConfigError(f"unknown ring {self.ring!r}; choose one of {RINGS}")
        if self.replicas is not None:
            _positive("replicas", self.replicas)
        if not (self.base_path.startswith("/") and self.base_path.endswith("/")):
            raise ConfigError(f"base_path must start and end with '/', got {self.base_path!r}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r}; choose one of {TRANSPORTS}")
        if self.peers and self.port is None and self.self_url is None:
            raise ConfigError("a node with peers needs a peer port (port) or a self_url")
        if self.node_id is not None:
            check_node_id(self.node_id)
        if self.etcd is not None and not isinstance(self.etcd, EtcdConfig):
            raise ConfigError(f"etcd must be an EtcdConfig, got {self.etcd!r}")
        if self.gossip is not None and not isinstance(self.gossip, GossipConfig):
            raise ConfigError(f"gossip must be a GossipConfig, got {self.gossip!r}")
        if self.dns is not None and not isinstance(self.dns, DnsConfig):
            raise ConfigError(f"dns must be a DnsConfig, got {self.dns!r}")
        dynamic = [name for name in ("etcd", "gossip", "dns") if getattr(self, name) is not None]
        if len(dynamic) > 1:
            both = "both" if len(dynamic) == 2 else "several"
            raise ConfigError(f"choose one membership: {' or '.join(dynamic)}, not {both}")
        if dynamic and self.peers:
            raise ConfigError(f"{dynamic[0]} finds the members; do not also give peers")
        if dynamic and self.port is None and self.self_url is None:
            raise ConfigError(f"a node using {dynamic[0]} needs a peer port (port) or a self_url")
        if isinstance(self.loader_threads, bool) or not isinstance(self.loader_threads, int):
            raise ConfigError("loader_threads must be an integer")
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise ConfigError(f"tls must be a TlsConfig, got {self.tls!r}")
        if self.tls is not None:
            # Every member's peer port speaks TLS: a plain http:// URL would never answer.
            plain = [u for u in (self.self_url, *self.peers) if u and u.startswith("http://")]
            if plain:
                raise ConfigError(
                    f"with TLS every member URL is https://, got {plain[0]!r} "
                    "(in --self or --peers)"
                )
        if self.api_tokens is not None and (
            not isinstance(self.api_tokens, str) or not self.api_tokens
        ):
            raise ConfigError(f"api_tokens must be a file name, got {self.api_tokens!r}")
        for flag in ("insecure", "otel", "otel_keys"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
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
        if not self.insecure and (exposed := self.unprotected()):
            raise ConfigError(
                "refusing to start: "
                + "; ".join(exposed)
                + " (or pass --insecure, insecure=True, to run unprotected anyway)"
            )

    def unprotected(self) -> list[str]:
        """Each port this config binds to a network address without the protection
        it needs, as a sentence naming what is missing; empty when every port is
        protected or bound to loopback. ``insecure`` lets a node start regardless."""
        exposed: list[str] = []
        if self.api_port is not None and not is_loopback(self.api_host):
            missing = [
                what
                for what, present in (
                    ("TLS (--tls-cert, --tls-key)", self.tls is not None),
                    ("API tokens (--api-tokens)", self.api_tokens is not None),
                )
                if not present
            ]
            if missing:
                exposed.append(
                    f"the HTTP API on {self.api_host or '*'} is reachable from the network "
                    f"without {' and '.join(missing)}"
                )
        if (
            self.port is not None
            and not is_loopback(self.host)
            and (self.tls is None or not self.tls.mutual)
        ):
            exposed.append(
                f"the peer port on {self.host or '*'} is reachable from the network "
                "without mutual TLS (--tls-cert, --tls-key, --tls-ca)"
            )
        if self.gossip is not None:
            gossip_host = self.gossip.host or self.host
            if not is_loopback(gossip_host) and self.gossip.keyring is None:
                exposed.append(
                    f"gossip on {gossip_host or '*'} is reachable from the network "
                    "without a keyring (--gossip-keyring)"
                )
            elif not is_loopback(gossip_host) and self.gossip.accept_plain:
                exposed.append(
                    f"gossip on {gossip_host or '*'} accepts plain datagrams from the "
                    "network (--gossip-accept-plain, a step of an upgrade)"
                )
        return exposed


# --------------------------------------------------------------------------- membership

_NODE_ID = re.compile(r"^[A-Za-z0-9_.:\-\[\]@]{1,128}$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it is a valid node id.

    Raises:
        ConfigError: not 1 to 128 characters of letters, digits and ``_.:-[]@``
            (a node id is a segment of the etcd key and travels in gossip).
    """
    if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
        raise ConfigError(
            "a node id must be 1-128 characters of letters, digits and _ . : - [ ] @, "
            f"got {node_id!r}"
        )
    return node_id


def default_node_id(url: str) -> str:
    """The node id derived from a node's advertised URL: its ``host:port``.

    Stable across restarts (unlike a random id) and readable in logs; two nodes
    never share a URL, so they never share this id.

    >>> default_node_id("http://10.0.0.2:8001")
    '10.0.0.2:8001'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return check_node_id(f"{host}:{port}")


def _host_port(value: str, what: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{what} must be host:port, got {value!r}")
    return host, int(port)


@dataclass(frozen=True, kw_only=True, slots=True)
class EtcdConfig:
    """Membership through etcd v3 (DESIGN §8).

    Each node puts ``{prefix}/{cluster}/members/{node_id}`` → JSON ``{url, grpc,
    started_at, node_id}`` under a lease of ``lease_ttl`` seconds, refreshes the
    lease every ``keepalive_interval``, and watches the prefix. A node that dies
    disappears when its lease runs out; a node that stops deletes its key at once.
    """

    endpoints: Sequence[str]
    """etcd client URLs, ``http://host:port`` (or all ``https://host:port``: TLS, with
    ``ca``, ``cert`` and ``key``); tried in turn when one fails."""

    cluster: str = "default"
    """Cluster name: several clusters can share one etcd. Default ``default``."""

    lease_ttl: int = 3
    """Seconds a member outlives its last keep-alive (a dead node is dropped after
    at most this long). Whole seconds, as etcd grants them. Default 3."""

    keepalive_interval: float | None = None
    """Seconds between lease refreshes. Default None: a third of ``lease_ttl``."""

    timeout: float = 1.0
    """Seconds any one etcd request may take. Default 1."""

    retry_interval: float = 0.5
    """Seconds between attempts to reach etcd while it is unreachable. Default 0.5."""

    prefix: str = "/shoal"
    """Key prefix in front of the cluster name. Default ``/shoal``."""

    ca: str | None = None
    """PEM file of the CA that signs etcd's server certificate (``https://`` endpoints).
    Default None: the system's CAs."""

    cert: str | None = None
    """PEM file of a client certificate to present to etcd (with ``key``)."""

    key: str | None = None
    """PEM file of the client certificate's private key."""

    user: str | None = None
    """etcd user to authenticate as (with ``password_file``). Default None: no auth."""

    password_file: str | None = None
    """File whose first line is the etcd user's password (read at start and at each
    reconnection; the password is never logged or shown)."""

    def __post_init__(self) -> None:
        _freeze_sequence(self, "endpoints")
        if isinstance(self.endpoints, str) or not isinstance(self.endpoints, tuple):
            raise ConfigError(f"etcd endpoints must be a sequence of URLs, got {self.endpoints!r}")
        if not self.endpoints:
            raise ConfigError("etcd needs at least one endpoint URL")
        for url in self.endpoints:
            self.address(url)
        if not isinstance(self.cluster, str) or not _CLUSTER_NAME.match(self.cluster):
            raise ConfigError(
                "a cluster name must be 1-128 characters of letters, digits, '_', '.', '-', "
                f"got {self.cluster!r}"
            )
        if isinstance(self.lease_ttl, bool) or not isinstance(self.lease_ttl, int):
            raise ConfigError(
                f"lease_ttl must be a whole number of seconds, got {self.lease_ttl!r}"
            )
        _positive("lease_ttl", self.lease_ttl)
        _positive("keepalive_interval", self.keepalive_interval)
        if self.keepalive_interval is not None and self.keepalive_interval >= self.lease_ttl:
            raise ConfigError(
                f"keepalive_interval ({self.keepalive_interval:g}s) must be shorter than "
                f"lease_ttl ({self.lease_ttl}s)"
            )
        _positive("timeout", self.timeout, allow_none=False)
        for name in ("ca", "cert", "key", "user", "password_file"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"etcd {name} must be a non-empty string, got {value!r}")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("an etcd client certificate needs both cert and key")
        if (self.user is None) != (self.password_file is None):
            raise ConfigError("etcd auth needs both user and password_file")
        schemes = {urllib.parse.urlsplit(url).scheme for url in self.endpoints}
        if len(schemes) > 1:
            raise ConfigError("etcd endpoints must all be http:// or all https://, not both")
        if not self.tls and any(v is not None for v in (self.ca, self.cert, self.key)):
            raise ConfigError(
                "an etcd CA or client certificate (--etcd-ca, --etcd-cert) is for TLS: "
                "the endpoints must be https://"
            )
        _positive("retry_interval", self.retry_interval, allow_none=False)
        if not (self.prefix.startswith("/") and not self.prefix.endswith("/")):
            raise ConfigError(
                f"prefix must start with '/' and not end with it, got {self.prefix!r}"
            )

    @staticmethod
    def address(url: str) -> tuple[str, int]:
        """``(host, port)`` of an endpoint URL.

        Raises:
            ConfigError: not ``http://host:port`` (or ``https://``).
        """
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        try:
            port = parts.port if parts is not None else None
        except ValueError:
            port = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or port is None
            or parts.path not in ("", "/")
        ):
            raise ConfigError(f"an etcd endpoint must be http://host:port, got {url!r}")
        return parts.hostname, port

    @property
    def tls(self) -> bool:
        """True when the endpoints are ``https://``: etcd is spoken to over TLS."""
        return urllib.parse.urlsplit(self.endpoints[0]).scheme == "https"

    @property
    def members_prefix(self) -> str:
        """The key prefix every member of this cluster registers under."""
        return f"{self.prefix}/{self.cluster}/members/"

    @property
    def refresh_interval(self) -> float:
        """Seconds between lease refreshes (``keepalive_interval`` or ``lease_ttl / 3``)."""
        return self.keepalive_interval or self.lease_ttl / 3


GOSSIP_PROFILES = ("lan", "local")
"""Named sets of gossip timers: ``lan`` (the defaults) and ``local`` (one machine)."""

_GOSSIP_TIMERS: dict[str, dict[str, float]] = {
    # Close to memberlist's LAN profile (probe 1 s, timeout 500 ms, suspicion 4 s).
    "lan": {
        "probe_interval": 1.0,
        "probe_timeout": 0.5,
        "suspicion_timeout": 4.0,
        "gossip_interval": 0.2,
        "sync_interval": 30.0,
        "reconnect_interval": 10.0,
        "join_interval": 2.0,
    },
    # Every member on one machine (tests, `make run`): loopback answers in
    # microseconds, so a probe that takes 150 ms means a stalled process.
    "local": {
        "probe_interval": 0.3,
        "probe_timeout": 0.15,
        "suspicion_timeout": 1.0,
        "gossip_interval": 0.05,
        "sync_interval": 5.0,
        "reconnect_interval": 1.0,
        "join_interval": 0.5,
    },
}


@dataclass(frozen=True, kw_only=True, slots=True)
class GossipConfig:
    """Membership by gossip: SWIM failure detection over UDP (DESIGN §8).

    A node joins through any member's gossip address (``join``); from then on it
    probes one member every ``probe_interval``, asks ``indirect_probes`` others
    to probe a member that did not answer within ``probe_timeout``, suspects it
    when none could, and declares it dead when it has not refuted the suspicion
    within ``suspicion_timeout``. News rides on the probes and on gossip rounds
    every ``gossip_interval``; every ``sync_interval`` two members exchange their
    whole tables. Timer defaults are the ``lan`` profile; :meth:`profile` gives
    the ``local`` one. See :meth:`detection_bound` for how long a crash takes to
    be noticed everywhere.
    """

    port: int = 0
    """UDP port to listen on. Default 0: a free port (then others must be told it)."""

    host: str | None = None
    """Address to listen on. Default None: the node's ``host``."""

    advertise: str | None = None
    """``host:port`` the other members send to. Default: the listening address
    (with the host of the node's URL when listening on a wildcard address)."""

    join: Sequence[str] = ()
    """Bootstrap ``host:port`` addresses of members; one that answers is enough.
    Default none: this node starts a cluster (others join it)."""

    probe_interval: float = 1.0
    """Seconds between two probes sent by this node. Default 1."""

    probe_timeout: float = 0.5
    """Seconds to wait for a direct ack before asking others to probe. Default 0.5."""

    indirect_probes: int = 3
    """Members asked to probe a member that did not ack (SWIM's *k*). Default 3."""

    suspicion_timeout: float = 4.0
    """Seconds a suspected member has to refute before it is declared dead. Default 4."""

    gossip_interval: float = 0.2
    """Seconds between gossip rounds that spread news. Default 0.2."""

    gossip_fanout: int = 3
    """Members each gossip round sends to. Default 3."""

    retransmit_mult: int = 4
    """Each piece of news is sent ``retransmit_mult * ceil(log10(N+1))`` times. Default 4."""

    sync_interval: float = 30.0
    """Seconds between full-table exchanges with a random member (anti-entropy). Default 30."""

    reconnect_interval: float = 10.0
    """Seconds between attempts to reach a member believed dead (heals partitions).
    Default 10."""

    join_interval: float = 2.0
    """Seconds between join attempts while this node knows no live member. Default 2."""

    dead_timeout: float = 3600.0
    """Seconds a dead member is remembered (and retried) before it is forgotten.
    Default 3600."""

    max_packet: int = 1400
    """Largest datagram sent, in bytes (fits an Ethernet MTU). Default 1400."""

    keyring: str | None = None
    """File of gossip keys, one base64 key of 16, 24 or 32 bytes per line, the first
    the primary: every datagram is sealed with AES-GCM (the primary seals, any key
    opens). Default None: plain datagrams (loopback only, see ``NodeConfig.insecure``)."""

    cluster: str = "default"
    """The cluster's name, sealed into every datagram as associated data: a node
    drops datagrams sealed for another cluster, even under the same key. Default
    ``default``."""

    replay_window: float = 30.0
    """Seconds a sealed datagram's timestamp may differ from this node's clock; one
    further off is dropped as stale, and one seen before within the window as a
    replay. Default 30 (the members' clocks must agree within it)."""

    accept_plain: bool = False
    """With a keyring, accept plain datagrams too (while sending sealed ones): the
    middle step of a live upgrade from plain to sealed gossip. Default False."""

    send_plain: bool = False
    """With a keyring and ``accept_plain``, send plain datagrams still: the first step
    of that upgrade, while some members have no keyring yet. Default False."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not (0 <= self.port <= 65535)
        ):
            raise ConfigError(f"gossip port must be 0-65535, got {self.port!r}")
        _freeze_sequence(self, "join")
        if self.host is not None and (not isinstance(self.host, str) or not self.host):
            raise ConfigError("gossip host must be a non-empty string")
        if self.advertise is not None:
            _host_port(self.advertise, "gossip advertise")
        if isinstance(self.join, str) or not isinstance(self.join, tuple):
            raise ConfigError(f"gossip join must be a sequence of host:port, got {self.join!r}")
        for seed in self.join:
            _host_port(seed, "a gossip join address")
        for f in fields(self):
            if f.type in ("float", "int") and f.name != "port":
                value = getattr(self, f.name)
                if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ConfigError(f"{f.name} must be a whole number, got {value!r}")
                _positive(f.name, value, allow_none=False)
        if self.probe_timeout >= self.probe_interval:
            raise ConfigError(
                f"probe_timeout ({self.probe_timeout:g}s) must be shorter than "
                f"probe_interval ({self.probe_interval:g}s)"
            )
        if self.keyring is not None and (not isinstance(self.keyring, str) or not self.keyring):
            raise ConfigError(f"gossip keyring must be a file name, got {self.keyring!r}")
        if self.max_packet < 512:
            raise ConfigError(f"max_packet must be at least 512 bytes, got {self.max_packet}")
        if not isinstance(self.cluster, str) or not 0 < len(self.cluster) <= 128:
            raise ConfigError(
                f"gossip cluster must be a name of 1-128 characters, got {self.cluster!r}"
            )
        _positive("replay_window", self.replay_window, allow_none=False)
        for name in ("accept_plain", "send_plain"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"gossip {name} must be true or false")
        if (self.accept_plain or self.send_plain) and self.keyring is None:
            raise ConfigError(
                "accepting or sending plain gossip is a step of the upgrade to sealed "
                "gossip: it needs a keyring"
            )
        if self.send_plain and not self.accept_plain:
            raise ConfigError(
                "a node that sends plain gossip must accept it too (accept_plain): its "
                "members are still plain"
            )

    @classmethod
    def profile(cls, name: str, **options: Any) -> Self:
        """A config with the timers of profile ``name`` (``lan`` or ``local``);
        ``options`` set any field, timers included.

        Raises:
            ConfigError: an unknown profile or an invalid option.
        """
        try:
            timers = _GOSSIP_TIMERS[name]
        except KeyError:
            raise ConfigError(
                f"unknown gossip timers {name!r}; choose one of {GOSSIP_PROFILES}"
            ) from None
        try:
            return cls(**{**timers, **options})
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    def with_options(self, **options: Any) -> Self:
        """A copy with ``options`` changed (validated again)."""
        return replace(self, **options)

    def seeds(self) -> list[tuple[str, int]]:
        """The ``join`` addresses as ``(host, port)``."""
        return [_host_port(seed, "a gossip join address") for seed in self.join]

    def detection_bound(self, members: int) -> float:
        """Seconds within which every live member marks a crashed one dead, in a
        cluster of ``members`` nodes with no packet loss.

        Each member probes the others in a shuffled round-robin, so some member
        probes the crashed one within ``2*(N-1)`` probe intervals (worst case, at a
        reshuffle); it suspects it by the end of that probe interval, everyone hears
        the suspicion within a few gossip rounds and declares the member dead when
        ``suspicion_timeout`` runs out. Typically it takes about
        ``2*probe_interval + suspicion_timeout``.
        """
        n = max(2, members)
        return (
            (2 * (n - 1) + 1) * self.probe_interval
            + self.suspicion_timeout
            + 4 * self.gossip_interval
        )


_DNS_NAME = re.compile(
    r"^(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class DnsConfig:
    """Membership through DNS: the members are the records of one name, looked up
    again every ``interval``.

    With ``name``, every A and AAAA address is a member on this node's peer port
    and scheme (a headless service, a round-robin name); with ``srv``
    (``_service._proto.name``), every SRV record is a member on its own target and
    port, the target resolved to its addresses. A lookup that fails or finds
    nothing keeps the last members found.
    """

    name: str | None = None
    """The name whose A/AAAA records are the members. Default None (give it or ``srv``)."""

    srv: str | None = None
    """The ``_service._proto.name`` whose SRV records are the members. Default None."""

    interval: float = 5.0
    """Seconds between two lookups. Default 5."""

    server: str | None = None
    """``host:port`` of the DNS server to ask (UDP, then TCP for a truncated answer;
    extra ``shoal[dns]``). Default None: the system's resolver (``getaddrinfo`` for
    A/AAAA; for SRV the servers of ``/etc/resolv.conf``, extra ``shoal[dns]``)."""

    timeout: float = 2.0
    """Seconds one lookup may take (SRV targets included). Default 2."""

    max_members: int = 1024
    """The most members taken from one answer; the rest are left out (and counted).
    Default 1024."""

    def __post_init__(self) -> None:
        given = [f for f in ("name", "srv") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ConfigError("DNS membership needs one of name (A/AAAA) or srv (SRV)")
        value = getattr(self, given[0])
        if not isinstance(value, str) or not _DNS_NAME.fullmatch(value):
            raise ConfigError(f"dns {given[0]} must be a DNS name, got {value!r}")
        if self.srv is not None and not self.srv.startswith("_"):
            raise ConfigError(f"dns srv must be _service._proto.name, got {self.srv!r}")
        if self.server is not None:
            if not isinstance(self.server, str):
                raise ConfigError(f"dns server must be host:port, got {self.server!r}")
            host, _ = _host_port(self.server, "dns server")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(
                    f"dns server must be an IP address and a port, got {self.server!r}"
                ) from None
        _positive("dns interval", self.interval, allow_none=False)
        _positive("dns timeout", self.timeout, allow_none=False)
        if (
            isinstance(self.max_members, bool)
            or not isinstance(self.max_members, int)
            or not 1 <= self.max_members <= 65535
        ):
            raise ConfigError(f"max_members must be 1-65535, got {self.max_members!r}")

    @property
    def query(self) -> str:
        """The name looked up (``name`` or ``srv``), without a trailing dot."""
        value = self.name if self.name is not None else self.srv
        assert value is not None
        return value.rstrip(".")

    @property
    def record_type(self) -> str:
        """``A/AAAA`` or ``SRV``."""
        return "SRV" if self.srv is not None else "A/AAAA"

    def server_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of ``server``, None for the system's resolver."""
        return _host_port(self.server, "dns server") if self.server is not None else None
