"""``shoal serve``'s settings: its flags, the ``SHOAL_*`` variables and the TOML file,
resolved into a :class:`ServePlan` of frozen config objects.

This is the only code in shoal that reads configuration files or environment
variables. Everything it reads becomes the config objects the rest of the
package takes (:class:`~shoal.config.NodeConfig`, :class:`~shoal.config.GroupConfig`).

Precedence: command-line flags, then ``SHOAL_*`` environment variables, then the
TOML file, then the documented defaults. The environment variables are:

=======================  =====================================================================
``SHOAL_CONFIG``         ``serve``: the TOML file (as ``--config``)
``SHOAL_API_HOST``       ``serve``: address of the HTTP API (as ``--api-host``)
``SHOAL_API_PORT``       ``serve``: port of the HTTP API (as ``--api-port``)
``SHOAL_LOG_LEVEL``      ``serve``: log level (as ``--log-level``)
``SHOAL_HOST``           ``serve``: address of the peer server (as ``--host``)
``SHOAL_PORT``           ``serve``: port of the peer server (as ``--port``)
``SHOAL_SELF``           ``serve``: this node's URL on the ring (as ``--self``)
``SHOAL_PEERS``          ``serve``: the members' URLs, comma-separated (as ``--peers``)
``SHOAL_RING``           ``serve``: ring flavour (as ``--ring``)
``SHOAL_REPLICAS``       ``serve``: virtual nodes per member (as ``--replicas``)
``SHOAL_BASE_PATH``      ``serve``: peer protocol path prefix (as ``--base-path``)
``SHOAL_TRANSPORT``      ``serve``: what the peer port speaks, http or grpc (as ``--transport``)
``SHOAL_PEER_TIMEOUT``   ``serve``: wait for an owner, every group (as ``--peer-timeout``)
``SHOAL_PEER_BACKOFF``   ``serve``: how long a failing peer is skipped (as ``--peer-backoff``)
``SHOAL_HOT_ADMISSION``  ``serve``: hot-cache admission, every group (as ``--hot-admission``)
``SHOAL_TLS_CERT``       ``serve``: the node's certificate (as ``--tls-cert``)
``SHOAL_TLS_KEY``        ``serve``: its private key (as ``--tls-key``)
``SHOAL_TLS_CA``         ``serve``: the members' CA: mutual TLS (as ``--tls-ca``)
``SHOAL_API_CLIENT_AUTH`` ``serve``: client certificates on the API (as ``--api-client-auth``)
``SHOAL_API_TOKENS``     ``serve``: the API tokens file (as ``--api-tokens``)
``SHOAL_INSECURE``       ``serve``: ``1`` runs unprotected on a network address (as ``--insecure``)
``SHOAL_OTEL``           ``serve``: ``1`` turns OpenTelemetry on (as ``--otel``; the ``OTEL_*``
                         variables choose the exporters)
``SHOAL_OTEL_KEYS``      ``serve``: ``1`` puts keys in spans (as ``--otel-keys``)
``SHOAL_LOADER_THREADS``, ``SHOAL_SWEEP_INTERVAL``, ``SHOAL_MAX_HEADER_BYTES``,
``SHOAL_MAX_BODY_BYTES``, ``SHOAL_HEADER_TIMEOUT``, ``SHOAL_BODY_TIMEOUT``,
``SHOAL_KEEPALIVE_TIMEOUT``, ``SHOAL_REQUEST_TIMEOUT``: the server limits, as their flags
``SHOAL_DRAIN``          ``serve``: seconds a node answers after a SIGTERM (as ``--drain``)
=======================  =====================================================================

``SHOAL_API_PORT=none`` (or ``--no-api``, or ``port = "none"`` in ``[api]``) runs no HTTP
API. Every group setting also has a per-group flag, ``--FLAG NAME=VALUE`` (``--policy
users=arc``); every etcd and gossip setting without a flag of its own has
``--etcd-option`` and ``--gossip-option KEY=VALUE``.

The membership settings (``SHOAL_NODE_ID``, ``SHOAL_ETCD``, ``SHOAL_CLUSTER``,
``SHOAL_ETCD_TTL``, ``SHOAL_GOSSIP_PORT``, ``SHOAL_JOIN``, ``SHOAL_GOSSIP_ADVERTISE``,
``SHOAL_GOSSIP_TIMERS``, ``SHOAL_DNS``, ``SHOAL_DNS_SRV``...) are listed in
:mod:`shoal.cli.membership_flags`.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..config import (
    API_CLIENT_AUTH,
    HOT_ADMISSIONS,
    RINGS,
    TRANSPORTS,
    GroupConfig,
    NodeConfig,
    TlsConfig,
)
from ..errors import ConfigError
from ..loaders.sql import mask_password
from ..policy import POLICY_NAMES
from .common import (
    DEFAULT_API_HOST,
    DEFAULT_API_PORT,
    DEFAULT_PEER_PORT,
    DEMO_GROUP,
    LOG_LEVELS,
    FlagSet,
    Parser,
    given,
)
from .membership_flags import (
    add_membership_arguments,
    parse_dns_table,
    parse_etcd_table,
    parse_gossip_table,
    parse_node_id,
    resolve_membership,
)
from .parse import (
    optional,
    parse_bool,
    parse_duration,
    parse_float,
    parse_int,
    parse_peers,
    parse_port,
    parse_size,
    parse_str,
    parse_url,
    split_assignment,
)

__all__ = [
    "ServePlan",
    "GroupPlan",
    "add_serve_arguments",
    "build_serve_plan",
    "serve_parser",
]


# (a test checks that these tables cover every field of the config classes).
_GROUP_FIELDS: Final[Mapping[str, Callable[..., Any]]] = {
    "capacity_bytes": optional(parse_size),
    "capacity_entries": optional(parse_int),
    "policy": parse_str,
    "ttl": optional(parse_duration),
    "negative_ttl": optional(parse_duration),
    "load_timeout": parse_duration,
    "codec": parse_str,
    "max_key_bytes": parse_size,
    "max_value_bytes": parse_size,
    "peer_timeout": parse_duration,
    "hot_admission": parse_str,
    "hot_fraction": parse_float,
    "hot_rate_count": parse_int,
    "hot_rate_window": parse_duration,
    "stale_while_revalidate": optional(parse_duration),
    "mode": parse_str,
    "tombstone_ttl": parse_duration,
    "anti_entropy_interval": parse_duration,
}
_NODE_FIELDS: Final[Mapping[str, Callable[..., Any]]] = {
    "host": parse_str,
    "port": optional(parse_port),
    "self_url": parse_url,
    "peers": parse_peers,
    "node_id": parse_node_id,
    "etcd": parse_etcd_table,
    "gossip": parse_gossip_table,
    "dns": parse_dns_table,
    "ring": parse_str,
    "replicas": optional(parse_int),
    "base_path": parse_str,
    "transport": parse_str,
    "peer_backoff": parse_duration,
    "loader_threads": parse_int,
    "sweep_interval": parse_duration,
    "max_header_bytes": parse_size,
    "max_body_bytes": parse_size,
    "header_timeout": parse_duration,
    "body_timeout": parse_duration,
    "keepalive_timeout": parse_duration,
    "request_timeout": parse_duration,
    "drain": lambda value, *, what: parse_duration(value, what=what, allow_zero=True),
    "insecure": parse_bool,
    "otel": parse_bool,
    "otel_keys": parse_bool,
}
# The [tls] table: (key, flag, variable); every key is a TlsConfig field.
_TLS_OPTIONS: Final = (
    ("cert", "--tls-cert", "SHOAL_TLS_CERT"),
    ("key", "--tls-key", "SHOAL_TLS_KEY"),
    ("ca", "--tls-ca", "SHOAL_TLS_CA"),
    ("api_client_auth", "--api-client-auth", "SHOAL_API_CLIENT_AUTH"),
)
_GROUP_KEYS: Final = frozenset({"loader", "query", *_GROUP_FIELDS})

# Node settings that also have a flag and a SHOAL_* variable: (field, flag, variable).
# The argparse dest of each flag is the field name.
_CLUSTER_OPTIONS: Final = (
    ("host", "--host", "SHOAL_HOST"),
    ("port", "--port", "SHOAL_PORT"),
    ("self_url", "--self", "SHOAL_SELF"),
    ("peers", "--peers", "SHOAL_PEERS"),
    ("node_id", "--node-id", "SHOAL_NODE_ID"),
    ("ring", "--ring", "SHOAL_RING"),
    ("replicas", "--replicas", "SHOAL_REPLICAS"),
    ("base_path", "--base-path", "SHOAL_BASE_PATH"),
    ("transport", "--transport", "SHOAL_TRANSPORT"),
    ("peer_backoff", "--peer-backoff", "SHOAL_PEER_BACKOFF"),
)

# The node's server limits and tuning, each with a flag and a variable: (field, flag,
# variable, metavar, help). The argparse dest of each flag is the field name.
_SERVER_OPTIONS: Final = (
    ("loader_threads", "--loader-threads", "SHOAL_LOADER_THREADS", "N",
     "threads that run synchronous loaders (default 16)"),
    ("sweep_interval", "--sweep-interval", "SHOAL_SWEEP_INTERVAL", "SECONDS",
     "how often expired entries are swept out (default 1s)"),
    ("max_header_bytes", "--max-header-bytes", "SHOAL_MAX_HEADER_BYTES", "BYTES",
     "largest request head the HTTP servers read (default 16KiB; larger: 431)"),
    ("max_body_bytes", "--max-body-bytes", "SHOAL_MAX_BODY_BYTES", "BYTES",
     "largest request body the HTTP servers read (default 16MiB; larger: 413)"),
    ("header_timeout", "--header-timeout", "SHOAL_HEADER_TIMEOUT", "SECONDS",
     "time to send a request head (default 10s; slower: 408)"),
    ("body_timeout", "--body-timeout", "SHOAL_BODY_TIMEOUT", "SECONDS",
     "time to send a request body (default 30s; slower: 408)"),
    ("keepalive_timeout", "--keepalive-timeout", "SHOAL_KEEPALIVE_TIMEOUT", "SECONDS",
     "how long an idle connection is kept open (default 75s)"),
    ("request_timeout", "--request-timeout", "SHOAL_REQUEST_TIMEOUT", "SECONDS",
     "how long the HTTP API waits for a cache answer (default 60s; then 504)"),
    ("drain", "--drain", "SHOAL_DRAIN", "SECONDS",
     "on SIGTERM: leave the cluster (/readyz 503), keep answering this long, then "
     "exit 0 (default 5s; 0: at once)"),
)  # fmt: skip

# Group settings set per group by a NAME=VALUE flag: (field, flag, metavar, help). The
# argparse dest of each flag is the field name, but for the first five (older flags).
_PER_GROUP_OPTIONS: Final = (
    ("query", "--query", "NAME=SQL", "the SQL of a sql: group, with a :key parameter"),
    ("capacity_bytes", "--capacity", "NAME=BYTES",
     "a group's byte budget: 64MiB, 1GB, 1048576"),
    ("ttl", "--ttl", "NAME=SECONDS", "a group's TTL"),
    ("mode", "--mode", "NAME=MODE",
     "partitioned (each key at its owner, the default) or replicated (every member "
     "keeps every key; writes reach all members)"),
    ("stale_while_revalidate", "--stale", "NAME=SECONDS",
     "serve an expired value this long while one background load replaces it"),
    ("capacity_entries", "--capacity-entries", "NAME=N",
     "a group's bound on its number of entries (default none)"),
    ("policy", "--policy", "NAME=POLICY",
     f"a group's eviction policy: {', '.join(POLICY_NAMES)} (default lru)"),
    ("negative_ttl", "--negative-ttl", "NAME=SECONDS",
     "remember a key the loader did not find this long (default: not at all)"),
    ("load_timeout", "--load-timeout", "NAME=SECONDS",
     "how long one load may take (default 30s)"),
    ("codec", "--codec", "NAME=CODEC",
     "how a group's values are encoded: bytes (the default), str, json, msgpack"),
    ("max_key_bytes", "--max-key-bytes", "NAME=BYTES",
     "a group's longest key (default 1KiB; longer: 400)"),
    ("max_value_bytes", "--max-value-bytes", "NAME=BYTES",
     "a group's largest value (default 16MiB; larger: refused)"),
    ("hot_fraction", "--hot-fraction", "NAME=FRACTION",
     "the share of the byte budget the hot cache may take (default 0.125)"),
    ("hot_rate_count", "--hot-rate-count", "NAME=N",
     "--hot-admission rate: keep a peer's value here after N fetches (default 2) ..."),
    ("hot_rate_window", "--hot-rate-window", "NAME=SECONDS",
     "... within this window (default 60s)"),
    ("tombstone_ttl", "--tombstone-ttl", "NAME=SECONDS",
     "replicated groups: how long a delete is remembered (default 1d)"),
    ("anti_entropy_interval", "--anti-entropy-interval", "NAME=SECONDS",
     "replicated groups: how often members compare their keys (default 5s)"),
)  # fmt: skip
_OLD_DESTS: Final[Mapping[str, str]] = {
    "capacity_bytes": "capacity",
    "stale_while_revalidate": "stale",
}

# Group settings with a flag and a variable that apply to every group.
_GROUP_WIDE_OPTIONS: Final = (
    ("peer_timeout", "--peer-timeout", "SHOAL_PEER_TIMEOUT"),
    ("hot_admission", "--hot-admission", "SHOAL_HOT_ADMISSION"),
)

_WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})


# --------------------------------------------------------------------------- the flags


def add_serve_arguments(
    parser: argparse.ArgumentParser, *, cluster: bool
) -> tuple[argparse.Action, ...]:
    """Add the flags of ``serve`` to ``parser``.

    Args:
        parser: the ``serve`` or the ``cluster`` subparser.
        cluster: for ``cluster``: ``--port`` and ``--api-port`` are the first node's
            (the others count from them), and there is no ``--self`` or ``--peers``
            (the supervisor gives each node its own).

    Returns:
        The flags added, for ``shoal cluster`` to pass on to its nodes.
    """
    flags = FlagSet()
    flags.add(parser, "--config", metavar="FILE", help="TOML config file (env SHOAL_CONFIG)")
    node = parser.add_argument_group("HTTP API")
    flags.add(
        node, "--api-host", metavar="HOST", help=f"HTTP API address (default {DEFAULT_API_HOST})"
    )
    if cluster:
        flags.add(
            node,
            "--api-port",
            metavar="PORT",
            type=int,
            default=DEFAULT_API_PORT,
            help=f"the first node's HTTP API port (default {DEFAULT_API_PORT}); "
            "node i listens on PORT-i",
        )
    else:
        api_port = node.add_mutually_exclusive_group()
        flags.add(
            api_port,
            "--api-port",
            metavar="PORT",
            help=f"HTTP API port (default {DEFAULT_API_PORT}; none: no HTTP API)",
        )
        flags.add(
            api_port,
            "--no-api",
            action="store_true",
            help="run without the HTTP API: the node serves its peers (and, with "
            "--transport grpc, the gRPC API) only; needs --port",
        )
        flags.add(
            node,
            "--api-unix",
            metavar="PATH",
            help="the HTTP API also listens on this Unix socket (owner-only, mode 0600; "
            "plain HTTP, same routes and tokens); env SHOAL_API_UNIX",
        )

    peers = parser.add_argument_group("cluster")
    flags.add(
        peers,
        "--host",
        metavar="HOST",
        help="address the peer server listens on (default 127.0.0.1)",
    )
    if cluster:
        flags.add(
            peers,
            "--port",
            metavar="PORT",
            type=int,
            default=DEFAULT_PEER_PORT,
            help=f"the first node's peer port (default {DEFAULT_PEER_PORT}); node i listens "
            "on PORT+i",
        )
    else:
        flags.add(
            peers,
            "--port",
            metavar="PORT",
            help="port of the peer server (the groupcache HTTP protocol); env SHOAL_PORT",
        )
        flags.add(
            peers,
            "--self",
            dest="self_url",
            metavar="URL",
            help="this node's URL as the other members know it "
            "(default http://HOST:PORT); env SHOAL_SELF",
        )
        flags.add(
            peers,
            "--peers",
            metavar="URL,URL,...",
            help="every member's URL, comma-separated, in the same order on every node "
            "(this node's may be included); env SHOAL_PEERS",
        )
    flags.add(
        peers,
        "--ring",
        choices=RINGS,
        help="consistent-hash flavour: shoal (default), golang (join golang/groupcache), "
        "groupcache-go (join mailgun/groupcache-go)",
    )
    flags.add(
        peers, "--replicas", metavar="N", help="virtual nodes per member (default: the ring's)"
    )
    flags.add(
        peers,
        "--base-path",
        metavar="PATH",
        help="path prefix of the peer protocol (/_groupcache/)",
    )
    flags.add(
        peers,
        "--transport",
        choices=TRANSPORTS,
        help="what the peer port speaks and how nodes talk to each other: http (groupcache's "
        "protocol, the default) or grpc (with the gRPC client API, health and reflection; "
        "extra shoal[grpc]); the same on every member",
    )
    flags.add(
        peers,
        "--peer-timeout",
        metavar="SECONDS",
        help="how long to wait for a key's owner before loading it here (default 2s)",
    )
    flags.add(
        peers,
        "--peer-backoff",
        metavar="SECONDS",
        help="how long a failing peer is skipped (default 1s)",
    )
    flags.add(
        peers,
        "--hot-admission",
        choices=HOT_ADMISSIONS,
        help="when a value fetched from its owner is also kept here: random (1 in 10, "
        "the default), always, rate, never",
    )

    security = parser.add_argument_group(
        "security",
        "TLS, API tokens and protected mode (a port bound to a network address needs "
        "its protection, or --insecure)",
    )
    flags.add(
        security,
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate: the API, peer and gRPC ports speak TLS and the node's URL is "
        "https://; env SHOAL_TLS_CERT",
    )
    flags.add(
        security,
        "--tls-key",
        metavar="FILE",
        help="PEM private key of --tls-cert; env SHOAL_TLS_KEY",
    )
    flags.add(
        security,
        "--tls-ca",
        metavar="FILE",
        help="PEM CA of the members: the peer port requires client certificates it signed "
        "and the node verifies its peers with it (mutual TLS); env SHOAL_TLS_CA",
    )
    flags.add(
        security,
        "--api-client-auth",
        choices=API_CLIENT_AUTH,
        help="client certificates on the HTTP API: none (default), optional, required "
        "(verified against --tls-ca); env SHOAL_API_CLIENT_AUTH",
    )
    flags.add(
        security,
        "--api-tokens",
        metavar="FILE",
        help="API tokens, one 'ROLE TOKEN' per line (read, write, admin): every API "
        "request then needs 'Authorization: Bearer TOKEN'; env SHOAL_API_TOKENS",
    )
    flags.add(
        security,
        "--insecure",
        action="store_true",
        default=None,
        help="start even with a port on a network address that lacks its protection "
        "(TLS and tokens for the API, mutual TLS for peers, a keyring for gossip); "
        "logged as a warning; env SHOAL_INSECURE=1",
    )

    telemetry = parser.add_argument_group("telemetry")
    flags.add(
        telemetry,
        "--otel",
        action="store_true",
        default=None,
        help="OpenTelemetry traces and metrics (shoal[otel]); OTEL_TRACES_EXPORTER and "
        "OTEL_METRICS_EXPORTER choose the exporters (default otlp; console, none), the "
        "other OTEL_* variables as usual; env SHOAL_OTEL=1",
    )
    flags.add(
        telemetry,
        "--otel-keys",
        action="store_true",
        default=None,
        help="put each key in its spans (shoal.key); keys may be sensitive; env SHOAL_OTEL_KEYS=1",
    )

    add_membership_arguments(parser, flags, cluster=cluster)

    groups = parser.add_argument_group("groups")
    flags.add(
        groups,
        "--group",
        metavar="NAME=SPEC",
        action="append",
        default=[],
        help="a group and its loader: module:function or sql:DSN (repeatable); "
        "NAME alone is a cache without a loader",
    )
    for key, flag, metavar, text in _PER_GROUP_OPTIONS:
        flags.add(
            groups,
            flag,
            dest=_OLD_DESTS.get(key, key),
            metavar=metavar,
            action="append",
            default=[],
            help=text,
        )

    server = parser.add_argument_group("server limits and tuning")
    for key, flag, env, metavar, text in _SERVER_OPTIONS:
        flags.add(server, flag, dest=key, metavar=metavar, help=f"{text}; env {env}")

    demo = parser.add_argument_group("demo")
    flags.add(
        demo,
        "--slowdb",
        action="store_true",
        help=f"serve the demo group {DEMO_GROUP!r} from a slow database of scores",
    )
    flags.add(
        demo, "--slowdb-delay", metavar="SECONDS", help="the demo database's delay (default 50ms)"
    )
    flags.add(
        demo,
        "--slowdb-file",
        metavar="FILE",
        help="the demo database's SQLite file, created if missing (default: a temporary "
        "file; `shoal cluster` gives its nodes one shared file)",
    )
    flags.add(
        parser,
        "--log-level",
        choices=LOG_LEVELS,
        help="log level (default info; env SHOAL_LOG_LEVEL)",
    )
    if not cluster:
        # Set by `shoal cluster` and `shoal demo` on the nodes they start: SIGINT is left
        # to the supervisor (a Ctrl-C reaches the whole process group, and a node must
        # stop once, on the supervisor's SIGTERM), and the node stops when its stdin
        # closes, so a supervisor that dies, even by SIGKILL, never leaves nodes behind.
        flags.add(parser, "--supervised", action="store_true", help=argparse.SUPPRESS)
    return tuple(flags.actions)


def serve_parser() -> argparse.ArgumentParser:
    """A parser of ``serve``'s flags alone (``shoal cluster`` checks its nodes' arguments
    with it before it starts them)."""
    parser = Parser(prog="shoal serve")
    add_serve_arguments(parser, cluster=False)
    return parser


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, kw_only=True)
class GroupPlan:
    """One group ``serve`` will create: its config and where its loader comes from."""

    config: GroupConfig
    """The group's settings."""
    loader: str | None = None
    """The loader spec (``module:function`` or ``sql:DSN``); None for a plain cache."""
    query: str | None = None
    """The SQL query of a ``sql:`` loader."""
    slowdb: bool = False
    """True for the ``--slowdb`` demo group (its loader is :class:`~shoal.cli.slowdb.SlowDB`)."""

    def describe(self) -> str:
        """A short, password-free description of the loader for the banner."""
        if self.slowdb:
            return "SlowDB demo"
        if self.loader is None:
            return "no loader: set keys with PUT"
        if self.loader.startswith("sql:"):
            return "sql:" + mask_password(self.loader.removeprefix("sql:"))
        return self.loader


@dataclass(frozen=True, kw_only=True)
class ServePlan:
    """Everything ``shoal serve`` needs, resolved from flags, environment and file."""

    node: NodeConfig
    """The node's settings."""
    groups: tuple[GroupPlan, ...]
    """The groups, in the order they were configured."""
    slowdb_delay: float | None = None
    """SlowDB's delay in seconds (None: its default)."""
    slowdb_file: str | None = None
    """SlowDB's SQLite file (None: a temporary one)."""
    log_level: str = "info"
    """The root log level."""
    supervised: bool = False
    """Started by ``shoal cluster`` or ``shoal demo``: SIGINT is ignored (the supervisor
    sends SIGTERM) and the node stops when its stdin closes."""

    @property
    def clustered(self) -> bool:
        """True when the node runs a peer server or has peers."""
        return self.node.port is not None or bool(self.node.peers)


@dataclass
class _GroupDraft:
    options: dict[str, Any] = field(default_factory=dict)
    slowdb: bool = False


def build_serve_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> ServePlan:
    """Resolve ``serve``'s flags, environment and config file into a :class:`ServePlan`.

    Raises:
        ConfigError: anything invalid, with a message fit for one line of stderr.
    """
    config_path = args.config or environ.get("SHOAL_CONFIG")
    document = _read_toml(config_path) if config_path else {}
    unknown = set(document) - {"api", "node", "groups", "tls"}
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown section(s) {sorted(unknown)}; expected api, node, groups, tls"
        )

    # -- the node
    api = _table(document, "api", config_path)
    unknown = set(api) - {"host", "port", "tokens_file", "unix"}
    if unknown:
        raise ConfigError(f"{config_path}: unknown key(s) in [api]: {sorted(unknown)}")
    host = _first(args.api_host, environ.get("SHOAL_API_HOST"), api.get("host"), DEFAULT_API_HOST)
    port = _first(args.api_port, environ.get("SHOAL_API_PORT"), api.get("port"), DEFAULT_API_PORT)
    node_options: dict[str, Any] = {}
    for key, value in _table(document, "node", config_path).items():
        parse = _NODE_FIELDS.get(key)
        if parse is None:
            raise ConfigError(
                f"{config_path}: unknown key {key!r} in [node]; expected one of "
                f"{sorted(_NODE_FIELDS)}"
            )
        node_options[key] = parse(value, what=f"[node] {key}")
    node_flags = [*_CLUSTER_OPTIONS, *((k, f, e) for k, f, e, _, _ in _SERVER_OPTIONS)]
    for key, flag, env in node_flags:
        value = given(getattr(args, key), environ.get(env))
        if value is not None:
            node_options[key] = _NODE_FIELDS[key](value, what=flag)
    for key, flag, env in (
        ("insecure", "--insecure", "SHOAL_INSECURE"),
        ("otel", "--otel", "SHOAL_OTEL"),
        ("otel_keys", "--otel-keys", "SHOAL_OTEL_KEYS"),
    ):
        switch = given(getattr(args, key, None), environ.get(env))
        if switch is not None:
            node_options[key] = parse_bool(switch, what=flag)
    tls = _tls_config(_table(document, "tls", config_path), args, environ, config_path)
    if tls is not None:
        node_options["tls"] = tls
    tokens = given(getattr(args, "api_tokens", None), environ.get("SHOAL_API_TOKENS"))
    tokens = given(tokens, api.get("tokens_file"))
    if tokens is not None:
        node_options["api_tokens"] = parse_str(tokens, what="--api-tokens")
    resolve_membership(node_options, args, environ)  # --etcd, --gossip-port, [node.etcd]...
    # Before NodeConfig, whose messages name fields rather than flags.
    _check_cluster(node_options)
    api_port = (
        None if getattr(args, "no_api", False) else optional(parse_port)(port, what="api port")
    )
    unix = given(
        given(getattr(args, "api_unix", None), environ.get("SHOAL_API_UNIX")), api.get("unix")
    )
    if unix is not None:
        node_options["api_unix"] = parse_str(unix, what="--api-unix")
    if api_port is None and node_options.get("port") is None and unix is None:
        raise ConfigError("a node without an HTTP API needs --port: it would serve nothing at all")
    node = NodeConfig(api_host=parse_str(host, what="api host"), api_port=api_port, **node_options)

    # -- the groups: file first, then flags on top
    drafts: dict[str, _GroupDraft] = {}
    for name, table in _table(document, "groups", config_path).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{config_path}: [groups.{name}] must be a table")
        unknown = set(table) - _GROUP_KEYS
        if unknown:
            raise ConfigError(
                f"{config_path}: unknown key(s) in [groups.{name}]: {sorted(unknown)}; "
                f"expected {sorted(_GROUP_KEYS)}"
            )
        drafts[name] = _GroupDraft(dict(table))
    for item in args.group:
        name, spec = split_assignment(item, "--group", value_required=False)
        draft = drafts.setdefault(name, _GroupDraft())
        if spec:
            draft.options["loader"] = spec
    if args.slowdb:
        draft = drafts.setdefault(DEMO_GROUP, _GroupDraft())
        if "loader" in draft.options:
            raise ConfigError(
                f"--slowdb serves group {DEMO_GROUP!r}, which already has the loader "
                f"{draft.options['loader']!r}"
            )
        draft.slowdb = True
    # Cluster-wide group settings: a flag or variable applies to every group and
    # beats a group's own value in the file (flags > environment > file).
    for key, flag, env in _GROUP_WIDE_OPTIONS:
        value = given(getattr(args, key), environ.get(env))
        if value is not None:
            value = _GROUP_FIELDS[key](value, what=flag)
            for draft in drafts.values():
                draft.options[key] = value
    for key, flag, _, _ in _PER_GROUP_OPTIONS:
        items = getattr(args, _OLD_DESTS.get(key, key))
        for item in items:
            name, value = split_assignment(item, flag)
            if name not in drafts:
                raise ConfigError(
                    f"{flag} {item!r}: no group {name!r} is configured "
                    "(define it with --group NAME=SPEC or in the config file)"
                )
            drafts[name].options[key] = value
    if not drafts:
        raise ConfigError(
            "no groups to serve: add --slowdb for the demo, --group NAME=SPEC, "
            "or [groups.NAME] in a --config file"
        )
    groups = tuple(_group_plan(name, draft) for name, draft in drafts.items())

    slowdb_delay = None
    if args.slowdb_delay is not None:
        slowdb_delay = parse_duration(args.slowdb_delay, what="--slowdb-delay", allow_zero=True)
    slowdb_file: str | None = args.slowdb_file
    if slowdb_file is not None and not args.slowdb:
        raise ConfigError("--slowdb-file is the demo database's file; it needs --slowdb")
    log_level = (args.log_level or environ.get("SHOAL_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    return ServePlan(
        node=node,
        groups=groups,
        slowdb_delay=slowdb_delay,
        slowdb_file=slowdb_file,
        log_level=log_level,
        supervised=bool(getattr(args, "supervised", False)),
    )


def _tls_config(
    table: Mapping[str, Any], args: argparse.Namespace, environ: Mapping[str, str], path: str | None
) -> TlsConfig | None:
    """The ``[tls]`` table with the TLS flags and variables over it; None without a
    certificate anywhere.

    Raises:
        ConfigError: an unknown key, a malformed value, or a key without a certificate.
    """
    keys = {key for key, _, _ in _TLS_OPTIONS}
    unknown = set(table) - keys
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) in [tls]: {sorted(unknown)}; expected {sorted(keys)}"
        )
    options = {key: parse_str(value, what=f"[tls] {key}") for key, value in table.items()}
    for key, flag, env in _TLS_OPTIONS:
        value = given(
            getattr(args, key if key == "api_client_auth" else f"tls_{key}", None), environ.get(env)
        )
        if value is not None:
            options[key] = parse_str(value, what=flag)
    if not options:
        return None
    if "cert" not in options or "key" not in options:
        raise ConfigError(
            "TLS needs both a certificate and its key: --tls-cert and --tls-key "
            "(or cert and key in [tls])"
        )
    return TlsConfig(**options)


def _check_cluster(options: Mapping[str, Any]) -> None:
    """Refuse cluster settings that would build a ring the other members cannot share."""
    if not options.get("peers"):
        return
    port = options.get("port")
    if port is None:
        raise ConfigError("--peers needs --port: the port this node serves the peer protocol on")
    if port == 0:
        raise ConfigError(
            "--port 0 picks a random port, which the other members cannot know; "
            "give a fixed port with --peers"
        )
    host = options.get("host", "127.0.0.1")
    if options.get("self_url") is None and host in _WILDCARD_HOSTS:
        raise ConfigError(
            f"--host {host or repr(host)} listens everywhere, so it is not an address "
            "the other members can use: give --self http://THIS-HOST:PORT"
        )


def _group_plan(name: str, draft: _GroupDraft) -> GroupPlan:
    options = dict(draft.options)
    loader = options.pop("loader", None)
    query = options.pop("query", None)
    if loader is not None:
        loader = parse_str(loader, what=f"group {name!r} loader").strip()
    if query is not None:
        query = parse_str(query, what=f"group {name!r} query")
    if query is not None and not (loader is not None and loader.startswith("sql:")):
        raise ConfigError(f"group {name!r}: a query needs a sql: loader")
    settings = {
        key: _GROUP_FIELDS[key](value, what=f"group {name!r} {key}")
        for key, value in options.items()
    }
    config = GroupConfig(name=name, **settings)
    if draft.slowdb and config.codec != "bytes":
        # The demo database returns bytes. (A sql: loader decodes with the group's codec.)
        raise ConfigError(
            f"group {name!r}: the --slowdb loader returns bytes, so the codec must be "
            f"'bytes', not {config.codec!r}"
        )
    return GroupPlan(config=config, loader=loader, query=query, slowdb=draft.slowdb)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _table(document: Mapping[str, Any], name: str, path: str | None) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name} must be a table ([{name}])")
    return table


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)
