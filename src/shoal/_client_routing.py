"""What :class:`shoal.Client` and :class:`shoal.SyncClient` share: seed URLs, the
cluster view a node answers on ``GET /v1/cluster``, and the routing of a key to its
owner (or, while the owner is skipped after a failure, to its stand-in).

Rules of this module: no event loop and no per-request I/O; the one blocking call
is :func:`fetch_http_view` (rare: a start or a refresh), which the async client runs
in a thread.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._version import __version__
from .errors import ConfigError, Forbidden, PeerError, PeerUnavailable, Unauthorized
from .ring import Ring

__all__ = [
    "ClusterInfo",
    "Router",
    "check_seed",
    "fetch_http_view",
    "parse_cluster",
]


def check_seed(url: str, *, grpc: bool = True) -> str:
    """Check a seed URL; return it without a trailing ``/``.

    ``http://host:port`` and ``https://host:port`` (a node's HTTP API),
    ``grpc://host:port`` (a node's gRPC port; only with ``grpc``), or ``unix:/path``
    (a node's HTTP API on a Unix socket, ``--api-unix``).

    Raises:
        ConfigError: anything else.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a seed must be a URL string, got {url!r}")
    url = url.strip()
    if url.startswith("unix:"):
        path = url.removeprefix("unix:")
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ConfigError(f"a unix: seed names an absolute socket path, got {url!r}")
        return "unix:" + path
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in the seed {url!r}") from None
    schemes = ("http", "https", "grpc") if grpc else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            "a seed is http://host:port (a node's HTTP API), unix:/path (its Unix socket)"
            + (" or grpc://host:port (a node's gRPC port)" if grpc else "")
            + f", got {url!r}"
        )
    if parts.scheme == "grpc" and port is None:
        raise ConfigError(f"a grpc:// seed needs a port, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"a seed URL has nothing after host:port, got {url!r}")
    return url.removesuffix("/")


def fetch_http_view(
    seed: str,
    *,
    authorization: str | None,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
) -> dict[str, Any]:
    """``GET {seed}/v1/cluster``, blocking: the node's members and ring.

    Raises:
        Unauthorized, Forbidden: the node refused the token.
        PeerError: any other answer but 200.
        PeerUnavailable: the node could not be reached.
        ValueError: the body is not JSON.
    """
    import http.client  # here: a start or a refresh, not every import of shoal

    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self._path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    headers = {"Accept": "application/json", "User-Agent": f"shoal/{__version__}"}
    if authorization is not None:
        headers["Authorization"] = authorization
    connection: http.client.HTTPConnection
    if seed.startswith("unix:"):
        connection = UnixHTTPConnection(seed.removeprefix("unix:"), timeout)
    else:
        parts = urllib.parse.urlsplit(seed)
        host = parts.hostname or ""
        if parts.scheme == "https":
            context = ssl_context or ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                host, parts.port, timeout=timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    url = f"{seed}/v1/cluster"
    try:
        try:
            connection.request("GET", "/v1/cluster", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise PeerUnavailable(f"GET {url}: {exc}") from exc
    finally:
        connection.close()
    if response.status in (401, 403):  # the token: refused, or its role
        refused = Unauthorized if response.status == 401 else Forbidden
        raise refused(f"GET {url} answered {response.status}")
    if response.status != 200:
        raise PeerError(f"GET {url} answered {response.status}")
    info = json.loads(body)
    if not isinstance(info, dict):
        raise ValueError("the cluster view is not a JSON object")
    return info


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The parts of a ``/v1/cluster`` answer a client builds its view from."""

    members: tuple[str, ...]
    transport: str
    base_path: str
    ring: Ring


def parse_cluster(info: dict[str, Any], source: str) -> ClusterInfo:
    """Read a cluster view (``GET /v1/cluster``'s JSON, or the gRPC call's dict).

    Raises:
        ConfigError: the node runs without a peer port (no cluster).
        ValueError, KeyError, TypeError: a malformed view.
    """
    members = tuple(str(member["url"]) for member in info["members"])
    if not members:
        raise ConfigError(
            f"{source} runs without a peer port, so there is no cluster to talk to "
            "(start it with --port)"
        )
    transport = str(info.get("transport") or "http")
    if transport not in ("http", "grpc"):
        raise ValueError(f"unknown transport {transport!r}")
    ring_info = info["ring"]
    ring = Ring.build(
        list(members),
        flavour=ring_info["flavour"],
        replicas=ring_info["replicas"],
        # A node that does not say (0 over gRPC) uses its flavour's default.
        probes=ring_info.get("probes") or None,
    )
    base_path = str(info.get("base_path") or "/_groupcache/")
    return ClusterInfo(members, transport, base_path, ring)


class Router:
    """Which member to ask for a key: its owner, or while the owner is skipped (it
    failed less than ``backoff`` seconds ago), the owner on a ring of the members
    that are not. The same stand-in for every client with the same view.

    Not locked: its state is a dict of skipped members and one cached ring, each
    replaced whole; two threads racing on it at worst build the stand-in ring twice.
    """

    __slots__ = ("_backoff", "_clock", "_down", "_fallback")

    def __init__(self, backoff: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._backoff = backoff
        self._clock = clock
        self._down: dict[str, float] = {}
        self._fallback: tuple[Ring, frozenset[str], Ring] | None = None

    def is_down(self, url: str) -> bool:
        """Whether ``url`` failed less than ``backoff`` seconds ago."""
        until = self._down.get(url)
        if until is None:
            return False
        if until > self._clock():
            return True
        self._down.pop(url, None)
        return False

    def failed(self, url: str) -> None:
        """Skip ``url`` for ``backoff`` seconds."""
        self._down[url] = self._clock() + self._backoff

    def forget_except(self, members: Sequence[str]) -> None:
        """A new view: forget the failures of members that left, and the stand-in ring."""
        self._fallback = None
        kept = set(members)
        for url in list(self._down):
            if url not in kept:
                self._down.pop(url, None)

    def clear(self) -> None:
        """Forget every failure (a forked child starts afresh)."""
        self._down = {}
        self._fallback = None

    def route(self, ring: Ring, key: str) -> str:
        """The member to ask for ``key`` on ``ring``."""
        owner = ring.owner(key)
        if not self._down or not self.is_down(owner):
            return owner
        down = frozenset(url for url in ring.nodes if self.is_down(url))
        cached = self._fallback
        if cached is not None and cached[0] is ring and cached[1] == down:
            stand_in = cached[2]
        else:
            live = [url for url in ring.nodes if url not in down]
            if not live:
                return owner  # everyone is skipped: try the owner anyway
            stand_in = ring.with_nodes(live)
            self._fallback = (ring, down, stand_in)
        return stand_in.owner(key)

    def batches(self, ring: Ring, keys: Sequence[str]) -> dict[str, list[str]]:
        """``keys`` grouped by the member to ask for them."""
        batches: dict[str, list[str]] = {}
        for key in keys:
            batches.setdefault(self.route(ring, key), []).append(key)
        return batches
