"""The client commands: ``get``, ``set``, ``del``, ``invalidate``, ``stats``, ``members``.

Each talks to one node's HTTP API (``--url``, env ``SHOAL_URL``) through
:mod:`shoal.cli.http_client` and prints what it got, with the API token of
``--token``, ``--token-file`` or ``SHOAL_TOKEN`` when one is given (never
printed). Rules: the value bytes of
``get`` reach stdout unaltered; an error answer becomes one line on stderr and
exit code 1 (:class:`~shoal.cli.common.CommandError`); a usage error exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from ..errors import ConfigError
from ..tls import client_context
from ..tokens import bearer
from .common import DEFAULT_URL, EXIT_OK, CommandError
from .http_client import Reply, request
from .parse import parse_duration

__all__ = [
    "run_get",
    "run_set",
    "run_del",
    "run_invalidate",
    "run_stats",
    "run_members",
    "describe_view",
    "check_reply",
    "auth_headers",
]

# The TLS flags of every client command (cli/main.py adds them): (attribute, variable).
_TLS_FLAGS: Final = (
    ("tls_ca", "SHOAL_TLS_CA"),
    ("tls_cert", "SHOAL_TLS_CERT"),
    ("tls_key", "SHOAL_TLS_KEY"),
)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS client context ``--tls-ca``/``--tls-cert``/``--tls-key`` (or their
    variables) ask for; None without any (an ``https://`` URL is then checked against
    the system's CAs).

    Raises:
        ConfigError: a file that cannot be loaded, or a certificate without its key.
    """
    files = {
        attr: getattr(args, attr, None) or os.environ.get(env) or None for attr, env in _TLS_FLAGS
    }
    if not any(files.values()):
        return None
    return client_context(ca=files["tls_ca"], cert=files["tls_cert"], key=files["tls_key"])


def check_reply(reply: Reply) -> Reply:
    """Return a 2xx ``reply``; raise the node's error message for any other.

    Raises:
        CommandError: the status is not 2xx; the message is the node's JSON error
            (``error`` and ``code``), or the first line of its body.
    """
    if 200 <= reply.status < 300:
        return reply
    try:
        document = json.loads(reply.body)
        message = f"{document['error']} ({document['code']}, HTTP {reply.status})"
    except (ValueError, KeyError, TypeError):
        text = reply.body.decode("utf-8", "replace").strip().splitlines()
        message = f"HTTP {reply.status}" + (f": {text[0][:200]}" if text else "")
    raise CommandError(message)


def _base_url(args: argparse.Namespace) -> str:
    url: str = (args.url or os.environ.get("SHOAL_URL") or DEFAULT_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url must be an http:// URL, got {url!r}")
    return url


def auth_headers(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``Authorization`` header of the token ``--token``, ``--token-file`` (its
    first line) or ``SHOAL_TOKEN`` names, in that order; empty without one.

    Raises:
        ConfigError: both ``--token`` and ``--token-file``, an unreadable file, or a
            malformed token (the token is never part of the message).
    """
    environ = os.environ if environ is None else environ
    token: str | None = getattr(args, "token", None)
    path: str | None = getattr(args, "token_file", None)
    if token is not None and path is not None:
        raise ConfigError("give --token or --token-file, not both")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                token = file.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ConfigError(f"cannot read --token-file {path}: {detail}") from None
        if not token:
            raise ConfigError(f"--token-file {path}: the first line holds no token")
    if token is None:
        token = environ.get("SHOAL_TOKEN") or None
    return {} if token is None else {"Authorization": bearer(token)}


def _group(args: argparse.Namespace, *, required: bool) -> str | None:
    group: str | None = args.group or os.environ.get("SHOAL_GROUP") or None
    if group is None and required:
        raise ConfigError(f"{args.command} needs a group: pass --group NAME (or set SHOAL_GROUP)")
    return group


def _key_url(base: str, group: str, key: str) -> str:
    # RFC 3986 path segments: "/" inside a key or group name must be %2F.
    quote = urllib.parse.quote
    return f"{base}/v1/groups/{quote(group, safe='')}/keys/{quote(key, safe='')}"


def _call(args: argparse.Namespace, method: str, url: str, body: bytes | None = None) -> Reply:
    """One request of a client command, with its timeout, token and TLS settings;
    the answer if it is a success (see :func:`check_reply`)."""
    return check_reply(
        request(
            method,
            url,
            body=body,
            timeout=args.timeout,
            headers=auth_headers(args),
            context=_tls(args),
        )
    )


def run_get(args: argparse.Namespace) -> int:
    """``shoal get``: see its ``--help``."""
    base = _base_url(args)
    group = _group(args, required=False)
    if group is None:
        # The seeds' form: the node picks its only group.
        url = f"{base}/api?key={urllib.parse.quote(args.key, safe='')}"
    else:
        url = _key_url(base, group, args.key)
    data = _call(args, "GET", url).body
    sys.stdout.buffer.write(data)
    # Keep a shell prompt off the end of a value, but never alter piped bytes.
    if sys.stdout.isatty() and not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return EXIT_OK


def run_set(args: argparse.Namespace) -> int:
    """``shoal set``: see its ``--help``."""
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    value: bytes = sys.stdin.buffer.read() if args.value == "-" else os.fsencode(args.value)
    url = _key_url(base, group, args.key)
    if args.ttl is not None:
        ttl = parse_duration(args.ttl, what="--ttl")
        url += f"?ttl={ttl:g}"
    _call(args, "PUT", url, value)
    return EXIT_OK


def run_del(args: argparse.Namespace) -> int:
    """``shoal del``: see its ``--help``."""
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    reply = _call(args, "DELETE", _key_url(base, group, args.key))
    with contextlib.suppress(ValueError, TypeError, KeyError):
        if not json.loads(reply.body)["deleted"]:
            # Not an error: the key is gone either way. Say so for the curious.
            print(f"shoal del: {args.key!r} was not cached", file=sys.stderr)
    return EXIT_OK


def run_invalidate(args: argparse.Namespace) -> int:
    """``shoal invalidate``: see its ``--help``."""
    base = _base_url(args)
    group = _group(args, required=True)
    assert group is not None
    url = f"{base}/v1/groups/{urllib.parse.quote(group, safe='')}/invalidate"
    reply = _call(args, "POST", url)
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
    ("run", "loads_run"),
    ("loaded", "local_loads"),
    ("errors", "local_load_errors"),
    ("served", "server_requests"),
    ("items", None),
    ("bytes", None),
    ("evicted", None),
)


def run_stats(args: argparse.Namespace) -> int:
    """``shoal stats``: see its ``--help``."""
    reply = _call(args, "GET", f"{_base_url(args)}/v1/stats")
    try:
        groups: dict[str, dict[str, Any]] = json.loads(reply.body)["groups"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"unexpected answer from /v1/stats: {reply.body[:200]!r}") from exc
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


def run_members(args: argparse.Namespace) -> int:
    """``shoal members``: print the cluster as the node at ``--url`` sees it."""
    base = _base_url(args)
    reply = _call(args, "GET", f"{base}/v1/cluster")
    try:
        view: dict[str, Any] = json.loads(reply.body)
        members: list[dict[str, Any]] = view["members"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"unexpected answer from /v1/cluster: {reply.body[:200]!r}") from exc
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return EXIT_OK
    print(describe_view(view))
    if not members:
        return EXIT_OK
    rows = [["node id", "url", "source", "share", ""]]
    for m in sorted(members, key=lambda m: str(m.get("url"))):
        notes = []
        if m.get("self"):
            notes.append("this node")
        if m.get("backing_off"):
            notes.append("backing off")
        rows.append(
            [
                str(m.get("node_id") or "-"),
                str(m.get("url")),
                str(m.get("source") or "-"),
                f"{100 * float(m.get('share', 0.0)):.1f}%",
                ", ".join(notes),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(w) if i != 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    sys.stdout.flush()
    return EXIT_OK


def describe_view(view: Mapping[str, Any]) -> str:
    """One line about the node and its membership source, from ``GET /v1/cluster``."""
    members = view.get("members") or []
    if view.get("self") is None:
        return "a node alone: no peer port, no members"
    source: dict[str, Any] = view.get("membership") or {}
    kind = source.get("source", "static")
    details = []
    if kind == "etcd":
        details.append(f"cluster {source.get('cluster')!r} at {source.get('endpoint')}")
        details.append("connected" if source.get("connected") else "etcd UNREACHABLE: last view")
    elif kind == "gossip":
        states = source.get("states") or {}
        details.append(f"gossip on {source.get('address')}")
        details.append(", ".join(f"{n} {s}" for s, n in states.items() if n))
    elif kind == "dns":
        details.append(f"{source.get('type')} of {source.get('name')} via {source.get('server')}")
        state = source.get("state")
        if state in ("failing", "empty"):
            details.append(f"DNS {str(state).upper()}: last view ({source.get('last_error')})")
        else:
            details.append(str(state))
    ring = view.get("ring") or {}
    probes = ring.get("probes")
    lookup = f", {probes} probes" if isinstance(probes, int) and probes > 1 else ""
    extra = f" ({'; '.join(d for d in details if d)})" if details else ""
    return (
        f"{len(members)} members by {kind}{extra}, as seen by {view.get('node_id')} "
        f"({view.get('self')}); ring {ring.get('flavour')} x{ring.get('replicas')}{lookup}"
    )
