"""The ``shoal`` command: ``serve`` runs a node; ``get``, ``set``, ``del``, ``stats`` talk to one.

This is the only code in shoal that reads files or environment variables.
Everything it reads becomes the frozen config objects the rest of the package
takes (:class:`~shoal.config.NodeConfig`, :class:`~shoal.config.GroupConfig`).

Precedence for ``serve``: command-line flags, then ``SHOAL_*`` environment
variables, then the TOML file, then the documented defaults. The environment
variables are:

=====================  =====================================================
``SHOAL_CONFIG``       ``serve``: the TOML file (as ``--config``)
``SHOAL_API_HOST``     ``serve``: address of the HTTP API (as ``--api-host``)
``SHOAL_API_PORT``     ``serve``: port of the HTTP API (as ``--api-port``)
``SHOAL_LOG_LEVEL``    ``serve``: log level (as ``--log-level``)
``SHOAL_URL``          client commands: the node's URL (as ``--url``)
``SHOAL_GROUP``        client commands: the group (as ``--group``)
=====================  =====================================================

Exit codes: 0 success; 1 a runtime failure (the server answered with an error,
could not be reached, or could not listen); 2 a usage or configuration error.

The client commands use only the standard library (``urllib``), so they work
wherever shoal is installed, without extras.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from typing import Any, Final, NoReturn

from .._version import __version__
from ..config import GroupConfig, NodeConfig
from ..errors import ConfigError, MissingExtra
from ..loaders.sql import mask_password

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
}
_NODE_FIELDS: Final[Mapping[str, Callable[..., Any]]] = {
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
    log_level: str = "info"
    """The root log level."""


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
    for flag, key, items in (
        ("--query", "query", args.query),
        ("--capacity", "capacity_bytes", args.capacity),
        ("--ttl", "ttl", args.ttl),
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
    log_level = (args.log_level or environ.get("SHOAL_LOG_LEVEL") or "info").lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(_LOG_LEVELS)}, got {log_level!r}")
    return ServePlan(node=node, groups=groups, slowdb_delay=slowdb_delay, log_level=log_level)


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
    logging.basicConfig(
        level=plan.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from ..node import new_event_loop

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(plan))
    except (ConfigError, MissingExtra) as exc:
        return _error("serve", exc, EXIT_USAGE)
    except OSError as exc:
        return _error("serve", f"cannot start: {exc}", EXIT_FAILURE)
    except asyncio.CancelledError:
        return _error("serve", "stopped by a second signal before a clean shutdown", EXIT_FAILURE)


async def _serve(plan: ServePlan) -> int:
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
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    node = Node(plan.node)
    try:
        for group in plan.groups:
            if group.slowdb:
                loader: Any = (
                    SlowDB() if plan.slowdb_delay is None else SlowDB(delay=plan.slowdb_delay)
                )
            elif group.loader is not None:
                loader = load_spec(group.loader, query=group.query)
            else:
                loader = None
            # Registered at once, so node.aclose() closes it whatever fails next.
            node.add_group(group.config, loader)
        await node.start()
        address = node.api_address
        if address is not None:
            for line in _banner(plan, address):
                print(line, flush=True)
        await stop.wait()
    finally:
        try:
            # The handlers stay while closing: a second signal cancels this task.
            await node.aclose()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    log.info("stopped")
    return EXIT_OK


def _banner(plan: ServePlan, address: tuple[str, int]) -> list[str]:
    host, port = address
    # A wildcard address is not something to curl; the loopback of its family is.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    several = len(plan.groups) > 1
    lines = []
    for group in plan.groups:
        key = "Tom" if group.slowdb else "KEY"
        url = f"{base}/api?key={key}"
        if several:
            url += "&group=" + urllib.parse.quote(group.config.name, safe="")
        lines.append(f"shoal: group {group.config.name!r} ready ({group.describe()}): curl '{url}'")
    return lines


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
    serve.add_argument("--config", metavar="FILE", help="TOML config file (env SHOAL_CONFIG)")
    serve.add_argument(
        "--api-host", metavar="HOST", help=f"HTTP API address (default {DEFAULT_API_HOST})"
    )
    serve.add_argument(
        "--api-port", metavar="PORT", help=f"HTTP API port (default {DEFAULT_API_PORT})"
    )
    serve.add_argument(
        "--group",
        metavar="NAME=SPEC",
        action="append",
        default=[],
        help="a group and its loader: module:function or sql:DSN (repeatable); "
        "NAME alone is a cache without a loader",
    )
    serve.add_argument(
        "--query",
        metavar="NAME=SQL",
        action="append",
        default=[],
        help="the SQL of a sql: group, with a :key parameter",
    )
    serve.add_argument(
        "--slowdb",
        action="store_true",
        help=f"serve the demo group {DEMO_GROUP!r} from a slow database of scores",
    )
    serve.add_argument(
        "--slowdb-delay", metavar="SECONDS", help="the demo database's delay (default 50ms)"
    )
    serve.add_argument(
        "--capacity",
        metavar="NAME=BYTES",
        action="append",
        default=[],
        help="a group's byte budget: 64MiB, 1GB, 1048576",
    )
    serve.add_argument(
        "--ttl", metavar="NAME=SECONDS", action="append", default=[], help="a group's TTL"
    )
    serve.add_argument(
        "--log-level", choices=_LOG_LEVELS, help="log level (default info; env SHOAL_LOG_LEVEL)"
    )
    serve.set_defaults(handler=_cmd_serve)

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

    stats = client("stats", "show statistics per group")
    stats.add_argument("--json", action="store_true", help="print the raw JSON")
    stats.set_defaults(handler=_cmd_stats)
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
