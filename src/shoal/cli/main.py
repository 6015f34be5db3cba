"""The ``shoal`` command: ``serve`` runs a node, ``cluster`` several, ``demo`` tours a
cluster; ``get``, ``set``, ``del``, ``stats`` talk to a node.

This is the only code in shoal that reads files or environment variables.
Everything it reads becomes the frozen config objects the rest of the package
takes (:class:`~shoal.config.NodeConfig`, :class:`~shoal.config.GroupConfig`).

Precedence for ``serve``: command-line flags, then ``SHOAL_*`` environment
variables, then the TOML file, then the documented defaults. The environment
variables are:

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
``SHOAL_URL``            client commands: the node's URL (as ``--url``)
``SHOAL_GROUP``          client commands: the group (as ``--group``)
=======================  =====================================================================

The membership settings (``SHOAL_NODE_ID``, ``SHOAL_ETCD``, ``SHOAL_CLUSTER``,
``SHOAL_ETCD_TTL``, ``SHOAL_GOSSIP_PORT``, ``SHOAL_JOIN``, ``SHOAL_GOSSIP_ADVERTISE``,
``SHOAL_GOSSIP_TIMERS``) are listed in :mod:`shoal.cli.membership`.

Exit codes: 0 success; 1 a runtime failure (the server answered with an error,
could not be reached, or could not listen); 2 a usage or configuration error.

The client commands use only the standard library (``urllib``), so they work
wherever shoal is installed, without extras.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import re
import signal
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NoReturn

from .._version import __version__
from ..config import HOT_ADMISSIONS, RINGS, TRANSPORTS, GroupConfig, NodeConfig
from ..errors import ConfigError, MissingExtra
from ..loaders.sql import mask_password
from .hitratio import add_bench_parser
from .membership import (
    add_membership_arguments,
    parse_etcd_table,
    parse_gossip_table,
    parse_node_id,
    resolve_membership,
)
from .tracing import NodeLabel, TracingTransport, node_label, traced_loader

if TYPE_CHECKING:
    from ..node import Node

__all__ = [
    "main",
    "build_parser",
    "ServePlan",
    "GroupPlan",
    "build_serve_plan",
    "parse_size",
    "parse_duration",
    "DEFAULT_API_HOST",
    "DEFAULT_API_PORT",
    "DEFAULT_URL",
]

log = logging.getLogger("shoal.cli")

DEFAULT_API_HOST: Final = "127.0.0.1"
"""Where ``shoal serve`` listens unless told otherwise (loopback: nothing is exposed by default)."""

DEFAULT_API_PORT: Final = 9999
"""The HTTP API port of ``shoal serve``, as in the geecache demo."""

DEFAULT_URL: Final = f"http://{DEFAULT_API_HOST}:{DEFAULT_API_PORT}"
"""The node the client commands talk to by default."""

DEFAULT_PEER_PORT: Final = 8001
"""The first peer port of ``shoal cluster``, as in the groupcache demo."""

DEMO_GROUP: Final = "scores"
"""The group ``--slowdb`` adds."""

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

_LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


# --------------------------------------------------------------------------- value parsing

_SIZE: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)")
_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_DURATION: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d|)")
_DURATION_UNITS: Final[Mapping[str, float]] = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_size(value: object, *, what: str = "size") -> int:
    """Parse a byte count: an integer, or a number with a unit.

    Units (case-insensitive): ``B``; ``KB``, ``MB``, ``GB``, ``TB`` (powers of
    1000); ``KiB``, ``MiB``, ``GiB``, ``TiB`` and the short ``K``, ``M``, ``G``,
    ``T`` (powers of 1024). Examples: ``64MiB``, ``1GB``, ``1.5G``, ``4096``.

    Raises:
        ConfigError: not a size, or not a positive whole number of bytes.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size like 64MiB or 1GB, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value.strip().lower())):
        unit = _SIZE_UNITS.get(m["unit"])
        if unit is None:
            raise ConfigError(
                f"{what}: unknown unit {m['unit']!r} in {value!r}; use B, KiB, MiB, GiB, KB, MB, GB"
            )
        exact = Decimal(m["number"]) * unit
        if exact != exact.to_integral_value():
            raise ConfigError(f"{what} must be a whole number of bytes, got {value!r}")
        size = int(exact)
    else:
        raise ConfigError(f"{what} must be a size like 64MiB or 1GB, got {value!r}")
    if size <= 0:
        raise ConfigError(f"{what} must be at least one byte, got {value!r}")
    return size


def parse_duration(value: object, *, what: str = "duration", allow_zero: bool = False) -> float:
    """Parse a duration in seconds: a number, or a number with ``ms``, ``s``, ``m``, ``h``, ``d``.

    Examples: ``60``, ``1.5``, ``"500ms"``, ``"10m"``.

    Args:
        value: the text or number to parse.
        what: what the value is, for the error message.
        allow_zero: accept 0 (a delay may be zero; a timeout may not).

    Raises:
        ConfigError: not a duration, or not positive (or zero, if allowed) and finite.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(m["number"]) * _DURATION_UNITS[m["unit"]]
    else:
        raise ConfigError(f"{what} must be a number of seconds (or 500ms, 10m, 1h), got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return seconds


def _parse_int(value: object, *, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ConfigError(f"{what} must be a whole number, got {value!r}")


def _parse_str(value: object, *, what: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{what} must be a string, got {value!r}")


def _parse_port(value: object, *, what: str) -> int:
    port = _parse_int(value, what=what)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} must be 0-65535, got {value!r}")
    return port


def _parse_float(value: object, *, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what} must be a number, got {value!r}")


def parse_url(value: object, *, what: str = "URL") -> str:
    """Parse a node URL: ``http://host:port`` (or ``https://``), nothing after the port.

    A node's URL is its identity on the ring, compared as a string by every
    member, so anything that would make two spellings of one node differ is
    refused rather than guessed at. Only a lone trailing ``/`` is dropped.

    Raises:
        ConfigError: not an http(s) URL of a host, or one with a path, query or fragment.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a URL like http://10.0.0.1:8001, got {value!r}")
    url = value.strip()
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{what}: bad port in {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be a URL like http://10.0.0.1:8001, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"{what} must be scheme://host:port with nothing after it "
            f"(the peer protocol adds its base path), got {url!r}"
        )
    return url.removesuffix("/")


def parse_peers(value: object, *, what: str = "peers") -> tuple[str, ...]:
    """Parse a member list: comma-separated URLs (flags, environment) or a TOML list.

    Duplicates are dropped (the first spelling is kept, and order matters: it
    settles hash collisions on the ring, so every node must list the members in
    the same order).

    Raises:
        ConfigError: an empty entry or a malformed URL.
    """
    if isinstance(value, str):
        items: list[object] = [item.strip() for item in value.split(",")] if value.strip() else []
    elif isinstance(value, list):
        items = list(value)
    else:
        raise ConfigError(f"{what} must be comma-separated URLs or a list, got {value!r}")
    urls = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            raise ConfigError(f"{what}: empty entry in {value!r}")
        urls.append(parse_url(item, what=f"{what} entry"))
    return tuple(dict.fromkeys(urls))


def _optional(parse: Callable[..., Any]) -> Callable[..., Any]:
    """Accept ``"none"`` as None (TOML has no null) for bounds that may be switched off."""

    def parse_optional(value: object, *, what: str) -> Any:
        if isinstance(value, str) and value.strip().lower() == "none":
            return None
        return parse(value, what=what)

    return parse_optional


# How each settable GroupConfig / NodeConfig field is read from text or TOML
# (a test checks that these tables cover every field of the config classes).
_GROUP_FIELDS: Final[Mapping[str, Callable[..., Any]]] = {
    "capacity_bytes": _optional(parse_size),
    "capacity_entries": _optional(_parse_int),
    "policy": _parse_str,
    "ttl": _optional(parse_duration),
    "negative_ttl": _optional(parse_duration),
    "load_timeout": parse_duration,
    "codec": _parse_str,
    "max_key_bytes": parse_size,
    "max_value_bytes": parse_size,
    "peer_timeout": parse_duration,
    "hot_admission": _parse_str,
    "hot_fraction": _parse_float,
    "hot_rate_count": _parse_int,
    "hot_rate_window": parse_duration,
    "stale_while_revalidate": _optional(parse_duration),
    "mode": _parse_str,
    "tombstone_ttl": parse_duration,
    "anti_entropy_interval": parse_duration,
}
_NODE_FIELDS: Final[Mapping[str, Callable[..., Any]]] = {
    "host": _parse_str,
    "port": _optional(_parse_port),
    "self_url": parse_url,
    "peers": parse_peers,
    "node_id": parse_node_id,
    "etcd": parse_etcd_table,
    "gossip": parse_gossip_table,
    "ring": _parse_str,
    "replicas": _optional(_parse_int),
    "base_path": _parse_str,
    "transport": _parse_str,
    "peer_backoff": parse_duration,
    "loader_threads": _parse_int,
    "sweep_interval": parse_duration,
    "max_header_bytes": parse_size,
    "max_body_bytes": parse_size,
    "header_timeout": parse_duration,
    "body_timeout": parse_duration,
    "keepalive_timeout": parse_duration,
    "request_timeout": parse_duration,
}
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

# Group settings with a flag and a variable that apply to every group.
_GROUP_WIDE_OPTIONS: Final = (
    ("peer_timeout", "--peer-timeout", "SHOAL_PEER_TIMEOUT"),
    ("hot_admission", "--hot-admission", "SHOAL_HOT_ADMISSION"),
)

_WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})


# --------------------------------------------------------------------------- serve: the plan


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
    """True for the ``--slowdb`` demo group (its loader is :class:`~shoal.demo.SlowDB`)."""

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
    unknown = set(document) - {"api", "node", "groups"}
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown section(s) {sorted(unknown)}; expected api, node, groups"
        )

    # -- the node
    api = _table(document, "api", config_path)
    unknown = set(api) - {"host", "port"}
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
    for key, flag, env in _CLUSTER_OPTIONS:
        value = _given(getattr(args, key), environ.get(env))
        if value is not None:
            node_options[key] = _NODE_FIELDS[key](value, what=flag)
    resolve_membership(node_options, args, environ)  # --etcd, --gossip-port, [node.etcd]...
    # Before NodeConfig, whose messages name fields rather than flags.
    _check_cluster(node_options)
    node = NodeConfig(
        api_host=_parse_str(host, what="api host"),
        api_port=_parse_port(port, what="api port"),
        **node_options,
    )

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
        name, spec = _split_assignment(item, "--group", value_required=False)
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
        value = _given(getattr(args, key), environ.get(env))
        if value is not None:
            value = _GROUP_FIELDS[key](value, what=flag)
            for draft in drafts.values():
                draft.options[key] = value
    for flag, key, items in (
        ("--query", "query", args.query),
        ("--capacity", "capacity_bytes", args.capacity),
        ("--ttl", "ttl", args.ttl),
        ("--mode", "mode", args.mode),
        ("--stale", "stale_while_revalidate", args.stale),
    ):
        for item in items:
            name, value = _split_assignment(item, flag)
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
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(_LOG_LEVELS)}, got {log_level!r}")
    return ServePlan(
        node=node,
        groups=groups,
        slowdb_delay=slowdb_delay,
        slowdb_file=slowdb_file,
        log_level=log_level,
        supervised=bool(getattr(args, "supervised", False)),
    )


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
        loader = _parse_str(loader, what=f"group {name!r} loader").strip()
    if query is not None:
        query = _parse_str(query, what=f"group {name!r} query")
    is_sql = draft.slowdb or (loader is not None and loader.startswith("sql:"))
    if query is not None and not (loader is not None and loader.startswith("sql:")):
        raise ConfigError(f"group {name!r}: a query needs a sql: loader")
    settings = {
        key: _GROUP_FIELDS[key](value, what=f"group {name!r} {key}")
        for key, value in options.items()
    }
    config = GroupConfig(name=name, **settings)
    if is_sql and config.codec != "bytes":
        # A SQL loader returns bytes; another codec would have to re-encode them.
        raise ConfigError(
            f"group {name!r}: SQL loaders return bytes, so the codec must be 'bytes', "
            f"not {config.codec!r}"
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


def _given(*values: Any) -> Any:
    """The first value that is not None, or None."""
    return next((v for v in values if v is not None), None)


def _split_assignment(text: str, flag: str, *, value_required: bool = True) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not name or (value_required and not sep):
        raise ConfigError(f"{flag} expects NAME=VALUE, got {text!r}")
    return name, value


# --------------------------------------------------------------------------- serve: running


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        plan = build_serve_plan(args, os.environ)
    except ConfigError as exc:
        return _error("serve", exc, EXIT_USAGE)
    if plan.supervised:
        # Before anything slow: a Ctrl-C meant for the supervisor reaches this
        # process too (same process group) and must not stop it on its own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    label = NodeLabel(_planned_label(plan))
    configure_logging(plan.log_level, label)
    from ..node import new_event_loop

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(plan, label))
    except (ConfigError, MissingExtra) as exc:
        return _error("serve", exc, EXIT_USAGE)
    except OSError as exc:
        return _error("serve", f"cannot start: {exc}", EXIT_FAILURE)
    except asyncio.CancelledError:
        return _error("serve", "stopped by a second signal before a clean shutdown", EXIT_FAILURE)


LOG_FORMAT: Final = "%(asctime)s %(node)s%(levelname)-7s %(name)s: %(message)s"
"""How ``serve`` and ``cluster`` log: ``%(node)s`` is ``[node 8001] `` in a cluster."""


def configure_logging(level: str, label: NodeLabel) -> None:
    """Log to stderr at ``level``, every line prefixed by ``label``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(label)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _planned_label(plan: ServePlan) -> str:
    """The node's log label before it starts: from its URL, if that is known yet."""
    node = plan.node
    if node.self_url is not None:
        return node_label(node.self_url)
    if node.port:  # 0 is known only once bound
        return node_label(f"http://{node.host}:{node.port}")
    return ""


async def _serve(plan: ServePlan, label: NodeLabel) -> int:
    from ..demo import SlowDB
    from ..loaders import load_spec
    from ..node import Node

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("received %s, shutting down", sig.name)
            stop.set()
        elif main_task is not None:
            # A second Ctrl-C while closing: the user wants out now.
            log.warning("received %s again, exiting without waiting", sig.name)
            main_task.cancel()

    # Handlers first: a signal during start-up must also end in a clean close.
    signals = (signal.SIGTERM,) if plan.supervised else (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    if plan.supervised:
        _stop_when_stdin_closes(loop, stop)
    transport = None
    if plan.clustered:
        from ..node import default_transport

        transport = default_transport(plan.node)
        if plan.log_level in ("debug", "info"):  # the lines it writes are INFO lines
            transport = TracingTransport(transport)
    node = Node(plan.node, transport=transport)
    try:
        for group in plan.groups:
            if group.slowdb:
                options: dict[str, Any] = {}
                if plan.slowdb_delay is not None:
                    options["delay"] = plan.slowdb_delay
                loader: Any = SlowDB(plan.slowdb_file, **options)
            elif group.loader is not None:
                loader = load_spec(group.loader, query=group.query)
            else:
                loader = None
            if loader is not None and plan.clustered:
                loader = traced_loader(loader, node)
            # Registered at once, so node.aclose() closes it whatever fails next.
            node.add_group(group.config, loader)
        await node.start()
        _tune_gc()
        if node.self_url is not None:
            label.set(node_label(node.self_url))
        address = node.api_address
        lines = _banner(plan, node, address)
        if plan.supervised:
            # The supervisor prints one banner for the whole cluster; the node has
            # already logged its members.
            for line in lines[1 if node.peers is not None else 0 :]:
                log.info("%s", line.removeprefix("shoal: "))
        else:
            for line in lines:
                print(line, flush=True)
        await stop.wait()
    finally:
        try:
            # The handlers stay while closing: a second signal cancels this task.
            await node.aclose()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if plan.supervised:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sys.stdin.fileno())
    log.info("stopped")
    return EXIT_OK


GC_GEN0_THRESHOLD: Final = 10_000
"""Allocations between two collections of the youngest generation in a ``serve``
process (Python's default: 700)."""


def _tune_gc() -> None:
    """Tune the cyclic garbage collector for a serving process (this process is the
    node's alone; an embedding application keeps its own settings).

    Every request allocates short-lived tasks, futures and coroutines, and with
    the defaults the collector ran every few dozen requests and, now and then,
    re-scanned every object of the process: about a fifth of a busy node's time
    when it fetches from peers. So: collect once, freeze what is alive now
    (modules, classes, the node itself: they live as long as the process and
    need no scanning), and collect the youngest generation less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file: the supervisor holds the other end of
    the pipe, and the kernel closes it when the supervisor exits, however it exits."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # nothing is ever sent; only the end of the pipe matters
        # End of file stays readable: stop watching, or this would spin.
        loop.remove_reader(fd)
        if not stop.is_set():
            log.info("the supervisor is gone (stdin closed), shutting down")
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (ValueError, OSError, NotImplementedError):
        # A regular file or a terminal cannot be watched: then only signals stop the node.
        log.debug("stdin cannot be watched; only SIGTERM stops this node")


def _banner(plan: ServePlan, node: Node, address: tuple[str, int] | None) -> list[str]:
    lines = []
    picker = node.peers
    if picker is not None:
        members = [
            f"{url} (this node)" if url == picker.self_url else url
            for url in picker.view.ring.nodes
        ]
        peer_address = node.peer_address
        if peer_address is None:
            listening = "no peer server"
        elif plan.node.transport == "grpc":
            listening = f"gRPC on {host_port(*peer_address)}"
        else:
            listening = f"peers on http://{host_port(*peer_address)}{plan.node.base_path}"
        lines.append(
            f"shoal: {node_label(picker.self_url)} is {picker.self_url} ({listening}, "
            f"ring {plan.node.ring}); members: {', '.join(members)}"
        )
    if address is not None:
        base = f"http://{host_port(*address)}"
        for group, url in curl_urls(plan, base):
            lines.append(
                f"shoal: group {group.config.name!r} ready ({group.describe()}): curl '{url}'"
            )
    if plan.node.transport == "grpc" and node.peer_address is not None:
        target = host_port(*node.peer_address)
        for group in plan.groups:
            request = json.dumps(
                {"group": group.config.name, "key": "Tom" if group.slowdb else "KEY"},
                separators=(",", ":"),
            )
            lines.append(
                f"shoal: group {group.config.name!r} over gRPC: grpcurl -plaintext "
                f"-d '{request}' {target} pb.GroupCache/Get"
            )
    return lines


def curl_urls(plan: ServePlan, base: str) -> list[tuple[GroupPlan, str]]:
    """A URL to try for each group of ``plan`` on the HTTP API at ``base``."""
    several = len(plan.groups) > 1
    urls = []
    for group in plan.groups:
        url = f"{base}/api?key={'Tom' if group.slowdb else 'KEY'}"
        if several:
            url += "&group=" + urllib.parse.quote(group.config.name, safe="")
        urls.append((group, url))
    return urls


def host_port(host: str, port: int) -> str:
    """``host:port`` to paste into a URL: a wildcard address becomes its family's loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cmd_cluster(args: argparse.Namespace) -> int:
    from .cluster import run_cluster

    return run_cluster(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


# --------------------------------------------------------------------------- client commands


class _ClientError(Exception):
    """A client command failed; the message is printed as is."""


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes


def _request(method: str, url: str, *, body: bytes | None = None, timeout: float) -> _Reply:
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"User-Agent": f"shoal-cli/{__version__}", "Accept": "*/*"},
    )
    if body is not None:
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _Reply(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return _Reply(exc.code, exc.read())
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise _ClientError(f"cannot reach {_origin(url)}: {text}") from exc
    except TimeoutError as exc:
        raise _ClientError(f"{_origin(url)} did not answer within {timeout:g}s") from exc
    except OSError as exc:
        raise _ClientError(f"cannot talk to {_origin(url)}: {exc}") from exc


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check(reply: _Reply) -> _Reply:
    if 200 <= reply.status < 300:
        return reply
    try:
        document = json.loads(reply.body)
        message = f"{document['error']} ({document['code']}, HTTP {reply.status})"
    except (ValueError, KeyError, TypeError):
        text = reply.body.decode("utf-8", "replace").strip().splitlines()
        message = f"HTTP {reply.status}" + (f": {text[0][:200]}" if text else "")
    raise _ClientError(message)


def _base_url(args: argparse.Namespace) -> str:
    url: str = (args.url or os.environ.get("SHOAL_URL") or DEFAULT_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url must be an http:// URL, got {url!r}")
    return url


def _group(args: argparse.Namespace, *, required: bool) -> str | None:
    group: str | None = args.group or os.environ.get("SHOAL_GROUP") or None
    if group is None and required:
        raise ConfigError(f"{args.command} needs a group: pass --group NAME (or set SHOAL_GROUP)")
    return group


def _key_url(base: str, group: str, key: str) -> str:
    # RFC 3986 path segments: "/" inside a key or group name must be %2F.
    quote = urllib.parse.quote
    return f"{base}/v1/groups/{quote(group, safe='')}/keys/{quote(key, safe='')}"


def _cmd_get(args: argparse.Namespace) -> int:
    base = _base_url(args)
    group = _group(args, required=False)
    if group is None:
        # The seeds' form: the node picks its only group.
        url = f"{base}/api?key={urllib.parse.quote(args.key, safe='')}"
    else:
        url = _key_url(base, group, args.key)
    data = _check(_request("GET", url, timeout=args.timeout)).body
    sys.stdout.buffer.write(data)
    # Keep a shell prompt off the end of a value, but never alter piped bytes.
    if sys.stdout.isatty() and not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _cmd_set(args: argparse.Namespace) -> int:
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    value: bytes = sys.stdin.buffer.read() if args.value == "-" else os.fsencode(args.value)
    url = _key_url(base, group, args.key)
    if args.ttl is not None:
        ttl = parse_duration(args.ttl, what="--ttl")
        url += f"?ttl={ttl:g}"
    _check(_request("PUT", url, body=value, timeout=args.timeout))
    return EXIT_OK


def _cmd_del(args: argparse.Namespace) -> int:
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    reply = _check(_request("DELETE", _key_url(base, group, args.key), timeout=args.timeout))
    with contextlib.suppress(ValueError, TypeError, KeyError):
        if not json.loads(reply.body)["deleted"]:
            # Not an error: the key is gone either way. Say so for the curious.
            print(f"shoal del: {args.key!r} was not cached", file=sys.stderr)
    return EXIT_OK


def _cmd_invalidate(args: argparse.Namespace) -> int:
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    url = f"{base}/v1/groups/{urllib.parse.quote(group, safe='')}/invalidate"
    reply = _check(_request("POST", url, timeout=args.timeout))
    with contextlib.suppress(ValueError, TypeError, KeyError):
        print(
            f"shoal invalidate: dropped group {group!r} ({json.loads(reply.body)['removed']} "
            "keys on this node)",
            file=sys.stderr,
        )
    return EXIT_OK


_STATS_COLUMNS: Final = (
    ("group", None),
    ("gets", "gets"),
    ("hits", "hits"),
    ("hit%", None),
    ("loads", "loads"),
    ("deduped", "loads_deduped"),
    ("loaded", "local_loads"),
    ("errors", "local_load_errors"),
    ("served", "server_requests"),
    ("items", None),
    ("bytes", None),
    ("evicted", None),
)


def _cmd_stats(args: argparse.Namespace) -> int:
    reply = _check(_request("GET", f"{_base_url(args)}/v1/stats", timeout=args.timeout))
    try:
        groups: dict[str, dict[str, Any]] = json.loads(reply.body)["groups"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _ClientError(f"unexpected answer from /v1/stats: {reply.body[:200]!r}") from exc
    if args.json:
        print(json.dumps({"groups": groups}, indent=2, sort_keys=True))
        return EXIT_OK
    rows = [[title for title, _ in _STATS_COLUMNS]]
    for name, stats in sorted(groups.items()):
        main, hot = stats.get("main", {}), stats.get("hot", {})
        gets = stats.get("gets", 0)
        row = []
        for title, key in _STATS_COLUMNS:
            if title == "group":
                row.append(name)
            elif title == "hit%":
                row.append(f"{100 * stats.get('hits', 0) / gets:.1f}" if gets else "-")
            elif title == "items":
                row.append(str(main.get("items", 0) + hot.get("items", 0)))
            elif title == "bytes":
                row.append(_human_bytes(main.get("bytes", 0) + hot.get("bytes", 0)))
            elif title == "evicted":
                row.append(str(main.get("evictions", 0) + hot.get("evictions", 0)))
            else:
                row.append(str(stats.get(key or title, 0)))
        rows.append(row)
    if len(rows) == 1:
        print("no groups")
        return EXIT_OK
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        # Names left-aligned, numbers right-aligned.
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())
    return EXIT_OK


def _cmd_members(args: argparse.Namespace) -> int:
    from .membership import run_members

    return run_members(args)


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in shoal's format (exit code 2, as argparse)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_serve_arguments(parser: argparse.ArgumentParser, *, cluster: bool) -> None:
    """Add the flags of ``serve`` to ``parser``.

    Args:
        parser: the ``serve`` or the ``cluster`` subparser.
        cluster: for ``cluster``: ``--port`` and ``--api-port`` are the first node's
            (the others count from them), and there is no ``--self`` or ``--peers``
            (the supervisor gives each node its own).
    """
    parser.add_argument("--config", metavar="FILE", help="TOML config file (env SHOAL_CONFIG)")
    node = parser.add_argument_group("HTTP API")
    node.add_argument(
        "--api-host", metavar="HOST", help=f"HTTP API address (default {DEFAULT_API_HOST})"
    )
    if cluster:
        node.add_argument(
            "--api-port",
            metavar="PORT",
            type=int,
            default=DEFAULT_API_PORT,
            help=f"the first node's HTTP API port (default {DEFAULT_API_PORT}); "
            "node i listens on PORT-i",
        )
    else:
        node.add_argument(
            "--api-port", metavar="PORT", help=f"HTTP API port (default {DEFAULT_API_PORT})"
        )

    peers = parser.add_argument_group("cluster")
    peers.add_argument(
        "--host", metavar="HOST", help="address the peer server listens on (default 127.0.0.1)"
    )
    if cluster:
        peers.add_argument(
            "--port",
            metavar="PORT",
            type=int,
            default=DEFAULT_PEER_PORT,
            help=f"the first node's peer port (default {DEFAULT_PEER_PORT}); node i listens "
            "on PORT+i",
        )
    else:
        peers.add_argument(
            "--port",
            metavar="PORT",
            help="port of the peer server (the groupcache HTTP protocol); env SHOAL_PORT",
        )
        peers.add_argument(
            "--self",
            dest="self_url",
            metavar="URL",
            help="this node's URL as the other members know it "
            "(default http://HOST:PORT); env SHOAL_SELF",
        )
        peers.add_argument(
            "--peers",
            metavar="URL,URL,...",
            help="every member's URL, comma-separated, in the same order on every node "
            "(this node's may be included); env SHOAL_PEERS",
        )
    peers.add_argument(
        "--ring",
        choices=RINGS,
        help="consistent-hash flavour: shoal (default), golang (join golang/groupcache), "
        "groupcache-go (join mailgun/groupcache-go)",
    )
    peers.add_argument(
        "--replicas", metavar="N", help="virtual nodes per member (default: the ring's)"
    )
    peers.add_argument(
        "--base-path", metavar="PATH", help="path prefix of the peer protocol (/_groupcache/)"
    )
    peers.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="what the peer port speaks and how nodes talk to each other: http (groupcache's "
        "protocol, the default) or grpc (with the gRPC client API, health and reflection; "
        "extra shoal[grpc]); the same on every member",
    )
    peers.add_argument(
        "--peer-timeout",
        metavar="SECONDS",
        help="how long to wait for a key's owner before loading it here (default 2s)",
    )
    peers.add_argument(
        "--peer-backoff",
        metavar="SECONDS",
        help="how long a failing peer is skipped (default 1s)",
    )
    peers.add_argument(
        "--hot-admission",
        choices=HOT_ADMISSIONS,
        help="when a value fetched from its owner is also kept here: random (1 in 10, "
        "the default), always, rate, never",
    )

    add_membership_arguments(parser, cluster=cluster)

    groups = parser.add_argument_group("groups")
    groups.add_argument(
        "--group",
        metavar="NAME=SPEC",
        action="append",
        default=[],
        help="a group and its loader: module:function or sql:DSN (repeatable); "
        "NAME alone is a cache without a loader",
    )
    groups.add_argument(
        "--query",
        metavar="NAME=SQL",
        action="append",
        default=[],
        help="the SQL of a sql: group, with a :key parameter",
    )
    groups.add_argument(
        "--capacity",
        metavar="NAME=BYTES",
        action="append",
        default=[],
        help="a group's byte budget: 64MiB, 1GB, 1048576",
    )
    groups.add_argument(
        "--ttl", metavar="NAME=SECONDS", action="append", default=[], help="a group's TTL"
    )
    groups.add_argument(
        "--mode",
        metavar="NAME=MODE",
        action="append",
        default=[],
        help="partitioned (each key at its owner, the default) or replicated (every "
        "member keeps every key; writes reach all members)",
    )
    groups.add_argument(
        "--stale",
        metavar="NAME=SECONDS",
        action="append",
        default=[],
        help="serve an expired value this long while one background load replaces it",
    )

    demo = parser.add_argument_group("demo")
    demo.add_argument(
        "--slowdb",
        action="store_true",
        help=f"serve the demo group {DEMO_GROUP!r} from a slow database of scores",
    )
    demo.add_argument(
        "--slowdb-delay", metavar="SECONDS", help="the demo database's delay (default 50ms)"
    )
    demo.add_argument(
        "--slowdb-file",
        metavar="FILE",
        help="the demo database's SQLite file, created if missing (default: a temporary "
        "file; `shoal cluster` gives its nodes one shared file)",
    )
    parser.add_argument(
        "--log-level", choices=_LOG_LEVELS, help="log level (default info; env SHOAL_LOG_LEVEL)"
    )
    if not cluster:
        # Set by `shoal cluster` and `shoal demo` on the nodes they start: SIGINT is left
        # to the supervisor (a Ctrl-C reaches the whole process group, and a node must
        # stop once, on the supervisor's SIGTERM), and the node stops when its stdin
        # closes, so a supervisor that dies, even by SIGKILL, never leaves nodes behind.
        parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The ``shoal`` argument parser with its subcommands."""
    parser = _Parser(
        prog="shoal",
        description="shoal: a distributed read-through cache. Run a node, or talk to one.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    serve = commands.add_parser(
        "serve",
        help="run a cache node in the foreground",
        description="Run a cache node with an HTTP API until SIGINT or SIGTERM. "
        "Flags override SHOAL_* environment variables, which override the config file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shoal serve --slowdb\n"
        "  shoal serve --group scores=sql:sqlite:///var/db/scores.db \\\n"
        "              --query 'scores=SELECT score FROM scores WHERE name = :key'\n"
        "  shoal serve --group users=myapp.cache:load_user --capacity users=256MiB --ttl users=60\n"
        "  shoal serve --config shoal.toml",
    )
    add_serve_arguments(serve, cluster=False)
    serve.set_defaults(handler=_cmd_serve)

    cluster = commands.add_parser(
        "cluster",
        help="run a local cluster: several serve processes, supervised",
        description="Run NODES `shoal serve` processes on this machine as one cluster:\n"
        "node i takes peer port PORT+i and HTTP API port API-PORT-i, and every node\n"
        "lists all of them as peers. With --slowdb they share one demo database.\n"
        "Ctrl-C or SIGTERM stops them all; a node that dies is reported and the\n"
        "others keep serving. Every other flag is passed to each node as is.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  shoal cluster --slowdb                 # peers 8001-8003, API 9999, 9998, 9997\n"
        "  shoal cluster --nodes 5 --port 7001 --api-port 7101 --group users=myapp:load",
    )
    cluster.add_argument(
        "--nodes", metavar="N", type=int, default=3, help="how many nodes (default 3)"
    )
    add_serve_arguments(cluster, cluster=True)
    cluster.set_defaults(handler=_cmd_cluster, serve_actions=tuple(cluster._actions))

    demo = commands.add_parser(
        "demo",
        help="a scripted, self-checking tour of a 3-node cluster",
        description="Start a 3-node cluster in front of the SlowDB demo database, ask "
        "every node for the same keys, show that the database was asked once per key "
        "in the whole cluster, show the hits, SIGKILL one node and show that the "
        "survivors still answer. Exits 0 when every check passed.",
    )
    demo.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        help="first peer port; the nodes use PORT..PORT+2 and PORT+3..PORT+5 for their "
        "HTTP APIs (default: free ports)",
    )
    demo.add_argument(
        "--slowdb-delay",
        metavar="SECONDS",
        default="50ms",
        help="the database's delay (default 50ms)",
    )
    demo.add_argument(
        "--show-logs", action="store_true", help="print every node's whole log at the end"
    )
    demo.set_defaults(handler=_cmd_demo)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--url",
            metavar="URL",
            help=f"the node's HTTP API (env SHOAL_URL; default {DEFAULT_URL})",
        )
        sub.add_argument(
            "--timeout",
            metavar="SECONDS",
            type=float,
            default=30.0,
            help="how long to wait for the answer (default 30)",
        )
        return sub

    get = client("get", "print a key's value")
    get.add_argument("key", metavar="KEY")
    get.add_argument(
        "--group", metavar="NAME", help="the group (env SHOAL_GROUP; optional with one group)"
    )
    get.set_defaults(handler=_cmd_get)

    set_ = client("set", "store a value")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE", help="the value; '-' reads it from stdin")
    set_.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    set_.add_argument("--ttl", metavar="SECONDS", help="time to live (default: the group's)")
    set_.set_defaults(handler=_cmd_set)

    delete = client("del", "delete a key")
    delete.add_argument("key", metavar="KEY")
    delete.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    delete.set_defaults(handler=_cmd_del)

    invalidate = client("invalidate", "drop every key of a group on every member")
    invalidate.add_argument("--group", metavar="NAME", help="the group (env SHOAL_GROUP)")
    invalidate.set_defaults(handler=_cmd_invalidate)

    stats = client("stats", "show statistics per group")
    stats.add_argument("--json", action="store_true", help="print the raw JSON")
    stats.set_defaults(handler=_cmd_stats)

    members = client(
        "members", "show the cluster as a node sees it: members, ids, sources, ring shares"
    )
    members.add_argument("--json", action="store_true", help="print the raw JSON")
    members.set_defaults(handler=_cmd_members)

    add_bench_parser(commands)  # `shoal bench hitratio`: see cli/hitratio.py
    return parser


def _error(command: str, exc: BaseException | str, code: int) -> int:
    print(f"shoal {command}: error: {exc}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shoal`` command line; return the exit code.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        return _error(args.command, exc, EXIT_USAGE)
    except _ClientError as exc:
        return _error(args.command, exc, EXIT_FAILURE)
    except KeyboardInterrupt:
        # Ctrl-C in a client command (serve handles its own signals).
        return 130
    except BrokenPipeError:
        # `shoal get big | head -c 10`: the reader left; not an error worth a traceback.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit flush cannot fail
        return EXIT_OK
