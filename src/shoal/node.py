"""Node: one cache process's composition root.

A node owns its groups, the thread pool that runs synchronous loaders (a
:class:`~shoal.loaderpool.LoaderPool`: a loader that outlives its
``load_timeout`` is abandoned and replaced, and shutdown never waits for it), the
HTTP API server and its background tasks (the expiry sweep; with a peer port,
its membership: the etcd keep-alive and watch, or the gossip protocol, and the
task that rebuilds the ring on every membership change). Every background
task runs supervised (:mod:`shoal.supervise`): a round that fails is counted
(:meth:`Node.background_errors`), logged once and retried after a bounded
pause, so only the node's owner stops the node. It is an async
context manager; nothing it starts outlives the ``async with`` block, and there
are no process globals, so several nodes can live in one process::

    async with Node(NodeConfig(api_port=9999)) as node:
        scores = node.group("scores", load_score, ttl=60)
        print(await scores.get("Tom"))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

from ._changes import ChangeLog
from .codec import Codec
from .config import GroupConfig, NodeConfig
from .errors import Closed, ConfigError, GroupNotFound
from .group import Group, Loader
from .loaderpool import LoaderPool
from .ring import Ring
from .stats import GroupStats
from .store import Clock
from .supervise import NODE_TASKS, REPLICA_TASKS, BackgroundErrors, supervised
from .tls import NodeTls

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._http import Handler
    from .api.http import ApiServer
    from .membership import BadInput, Member, MemberSet, Membership
    from .otel import Telemetry
    from .peers import PeerClient, PeerPicker, Transport
    from .tokens import ApiTokens
    from .transport.http import PeerServer

__all__ = ["Node", "new_event_loop", "default_transport"]

log = logging.getLogger("shoal.node")

_MAX_SKIPPED_LOGGED = 1024
"""Members with a bad URL remembered so each is logged once (then forgotten, bounded)."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def default_transport(
    config: NodeConfig, tls: NodeTls | None = None, *, telemetry: Telemetry | None = None
) -> Transport:
    """The peer transport ``config.transport`` names: HTTP (groupcache's protocol under
    ``config.base_path``) or gRPC.

    Args:
        config: the node's configuration.
        tls: the node's TLS contexts (``config.tls``): ``https://`` peers are verified
            with its CA and shown the node's certificate, read anew at each new
            connection (so a reload rotates them). Default: read from ``config.tls``
            when it is set.
        telemetry: the node's OpenTelemetry (:mod:`shoal.otel`): every request then
            carries the caller's trace context (``traceparent``). Default None.

    Raises:
        MissingExtra: gRPC without the ``shoal[grpc]`` extra installed.
        ConfigError: a TLS file that cannot be loaded.
    """
    if tls is None and config.tls is not None:
        tls = NodeTls(config.tls)
    if config.transport == "grpc":
        from .transport.grpc import GrpcTransport

        metadata = telemetry.grpc_metadata if telemetry is not None else None
        if tls is None:
            return GrpcTransport(request_metadata=metadata)
        from .transport.grpc import channel_credentials

        node_tls = tls
        return GrpcTransport(
            credentials=lambda: channel_credentials(node_tls.pem()), request_metadata=metadata
        )
    from .transport.http import HttpTransport

    return HttpTransport(
        base_path=config.base_path,
        ssl_context=tls.client if tls is not None else None,
        request_headers=telemetry.http_headers if telemetry is not None else None,
    )


def _ring_info(ring: Ring) -> dict[str, Any]:
    """The ``ring`` part of :meth:`Node.cluster_info`: what a client needs to build the same
    ring from the member list."""
    return {"flavour": ring.flavour, "replicas": ring.replicas, "probes": ring.probes}


class Node:
    """A cache node: groups, loader threads, HTTP API and housekeeping.

    Args:
        config: how the node runs; defaults to ``NodeConfig()`` (no API server).
        clock: time source for every group's TTLs (``time.time`` by default).
        transport: how to reach peers; default the groupcache-compatible HTTP
            transport (see :mod:`shoal.transport`).
        tls: the TLS contexts of ``config.tls``, when the caller made them already
            (to share them with a ``transport`` it built with
            :func:`default_transport`, so :meth:`reload` rotates both); default:
            read from ``config.tls`` at :meth:`start`.
        tracer_provider: an OpenTelemetry tracer provider for the node's spans
            (``shoal[otel]``, :mod:`shoal.otel`); giving one turns telemetry on, as
            ``config.otel`` does with the global providers. Default None.
        meter_provider: an OpenTelemetry meter provider for the node's instruments
            (groupcache-go's names); giving one turns telemetry on too. Default None.

    Raises:
        MissingExtra: telemetry without the ``shoal[otel]`` extra installed.
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        clock: Clock = time.time,
        transport: Transport | None = None,
        tls: NodeTls | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config if config is not None else NodeConfig()
        self._telemetry: Telemetry | None = None
        if self.config.otel or tracer_provider is not None or meter_provider is not None:
            from .otel import Telemetry

            self._telemetry = Telemetry(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                record_keys=self.config.otel_keys,
            )
        self._transport = transport
        self._given_tls = tls
        self._clock = clock
        self._groups: dict[str, Group[Any]] = {}
        self._changes = ChangeLog()
        self._executor = LoaderPool(self.config.loader_threads, thread_name_prefix="shoal-loader")
        self._loaders: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._background: list[asyncio.Task[None]] = []
        self._tasks: asyncio.TaskGroup | None = None
        self._api_address: tuple[str, int] | None = None
        self._peer_address: tuple[str, int] | None = None
        self._picker: PeerPicker | None = None
        self._membership: Membership | None = None
        self._members: dict[str, Member] = {}
        self._applied: MemberSet | None = None
        self._skipped: set[tuple[str, str]] = set()
        self._node_id: str | None = None
        self._started_at = time.time()
        self._closed = False
        self._api_server: ApiServer | None = None
        self._peer_server: PeerServer | None = None
        self._errors = BackgroundErrors((*NODE_TASKS, *REPLICA_TASKS))
        # What reload() reads again (certificates, tokens, keyrings): (what, reader),
        # registered by the parts that hold them as they start.
        self._reloaders: list[tuple[str, Callable[[], None]]] = []
        self._tokens: ApiTokens | None = None
        self._tls: NodeTls | None = None
        if self._telemetry is not None:
            self._telemetry.observe(self.statistics)

    def __repr__(self) -> str:
        return f"<Node groups={sorted(self._groups)} api={self._api_address}>"

    # -- groups --------------------------------------------------------------

    def add_group(
        self,
        config: GroupConfig,
        loader: Loader[Any] | None = None,
        *,
        codec: Codec[Any] | None = None,
    ) -> Group[Any]:
        """Create and register a group.

        Raises:
            ConfigError: a group of that name already exists.
            Closed: the node is closed.
        """
        if self._closed:
            raise Closed("the node is closed")
        if config.name in self._groups:
            raise ConfigError(f"group {config.name!r} already exists on this node")
        if loader is not None and self._telemetry is not None:
            loader = self._telemetry.loader(loader, config.name)
        group: Group[Any] = Group(
            config, loader, codec=codec, executor=self._executor, clock=self._clock
        )
        group.loop = self._loop
        group.peers = self._picker
        group.on_change(functools.partial(self._changes.publish, config.name))
        self._groups[config.name] = group
        if group.replica is not None:
            if self._node_id is not None:
                group.replica.node_id = self._node_id
            if self._tasks is not None:  # added to a running node
                self._start_replica(group)
        if loader is not None and callable(getattr(loader, "aclose", None)):
            self._loaders.append(loader)
        return group

    def group(
        self,
        name: str,
        loader: Loader[Any] | None = None,
        *,
        codec: str | Codec[Any] | None = None,
        **options: Any,
    ) -> Group[Any]:
        """Create and register a group; ``options`` are :class:`GroupConfig` fields.

        ``codec`` is a codec name (``"json"``) or a :class:`~shoal.codec.Codec` object.
        Example: ``node.group("scores", load_score, capacity_bytes=8 << 20, ttl=60)``.
        """
        if isinstance(codec, str):
            options["codec"], codec = codec, None
        try:
            config = GroupConfig(name=name, **options)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc
        return self.add_group(config, loader, codec=codec)

    def get_group(self, name: str) -> Group[Any]:
        """Return the group called ``name``.

        Raises:
            GroupNotFound: no such group on this node.
        """
        try:
            return self._groups[name]
        except KeyError:
            raise GroupNotFound(name) from None

    @property
    def changes(self) -> ChangeLog:
        """The log of keys changed on this node, that near caches follow
        (``GET /v1/invalidations``)."""
        return self._changes

    @property
    def groups(self) -> Mapping[str, Group[Any]]:
        """The node's groups by name (a read-only view)."""
        return MappingProxyType(self._groups)

    def statistics(self) -> dict[str, GroupStats]:
        """A snapshot of every group's statistics, by name."""
        return {name: group.statistics() for name, group in self._groups.items()}

    def loader_statistics(self) -> dict[str, int]:
        """The threads that run sync loaders: ``threads`` alive, ``busy``, ``queued``
        loads, ``abandoned`` (stuck in a loader that outlived its caller, no longer
        counted against ``loader_threads``) and ``abandoned_total``."""
        return self._executor.statistics()

    def accept_errors(self) -> dict[str, int]:
        """Per HTTP server of this node (``api``, ``peer``), the times accepting a
        connection failed because the process or the system was out of file
        descriptors (each logged at most every ten seconds; accepting resumes by
        itself once descriptors are free)."""
        found: dict[str, int] = {}
        for name, server in (("api", self._api_server), ("peer", self._peer_server)):
            if server is not None:
                found[name] = server.accept_errors
        return found

    def tls_handshake_failures(self) -> dict[str, int]:
        """Per HTTP server of this node that speaks TLS (``api``, ``peer``), the TLS
        handshakes that failed or timed out: plaintext to the port, a client
        certificate that is missing, expired or signed by another CA. Empty without
        TLS."""
        found: dict[str, int] = {}
        if self._tls is not None:
            for name, server in (("api", self._api_server), ("peer", self._peer_server)):
                if server is not None:
                    found[name] = server.tls_handshake_failures
        return found

    def background_errors(self) -> dict[str, int]:
        """Failed rounds of the node's background tasks, by task: ``sweep``,
        ``membership`` (the source's keep-alives, watches or gossip timers),
        ``members`` (applying its snapshots), and a replicated group's
        ``replica-push``, ``replica-probe`` and ``anti-entropy``. Each failed round
        was logged (once per distinct failure and minute) and retried."""
        return self._errors.counts()

    # -- lifecycle -----------------------------------------------------------

    @property
    def api_address(self) -> tuple[str, int] | None:
        """The (host, port) the HTTP API listens on, once started; None without one."""
        return self._api_address

    @property
    def peer_address(self) -> tuple[str, int] | None:
        """The (host, port) the peer server listens on, once started; None without one."""
        return self._peer_address

    @property
    def self_url(self) -> str | None:
        """This node's URL on the ring, once started with peers or a peer port."""
        return self._picker.self_url if self._picker is not None else None

    @property
    def node_id(self) -> str | None:
        """This node's stable id (``NodeConfig.node_id`` or derived from its URL),
        once started with peers or a peer port."""
        return self._node_id

    @property
    def membership(self) -> Membership | None:
        """Where the member list comes from (static, etcd, gossip, DNS), once started."""
        return self._membership

    @property
    def peers(self) -> PeerPicker | None:
        """Who owns which key (ring and peer clients); None for a node alone."""
        return self._picker

    def cluster_info(self, key: str | None = None) -> dict[str, Any]:
        """The cluster as this node sees it, as plain data (``GET /v1/cluster``).

        Args:
            key: also name the member that owns this key (``"owner"``).

        Returns:
            ``self`` (this node's URL, None for a node alone), ``peer_address``,
            ``base_path``, ``transport`` (``http`` or ``grpc``: what the members'
            peer ports speak), ``ring`` (``flavour``, ``replicas``) and ``members``:
            one ``{url, self, share, backing_off}`` per member in ring order,
            where ``share`` is the fraction of the key space it owns, and for a
            member reached over HTTP its client's counters (``client``: see
            :meth:`peer_statistics`). A node
            alone has no members and owns every key (``owner`` None). With a
            peer port or peers, also ``node_id``, ``membership`` (the source,
            ``static``/``etcd``/``gossip``/``dns``, and its state and counters) and, per
            member, its ``node_id`` and the ``source`` it was learned from.
        """
        cfg = self.config
        picker = self._picker
        address = self._peer_address
        info: dict[str, Any] = {
            "self": picker.self_url if picker is not None else None,
            "peer_address": f"{address[0]}:{address[1]}" if address is not None else None,
            "base_path": cfg.base_path,
            "transport": cfg.transport,
        }
        if picker is None:
            empty = Ring.build([], flavour=cfg.ring, replicas=cfg.replicas)
            info["ring"] = _ring_info(empty)
            info["members"] = []
            if key is not None:
                info["owner"] = None
            return info
        ring = picker.view.ring
        slow = set(picker.backing_off())
        known = self._members
        info["node_id"] = self._node_id
        if self._membership is not None:
            info["membership"] = self._membership.statistics()
        info["ring"] = _ring_info(ring)
        clients = self.peer_statistics()
        info["members"] = [
            {
                "url": url,
                "node_id": known[url].node_id if url in known else None,
                "source": known[url].source if url in known else None,
                "self": url == picker.self_url,
                "share": share,
                "backing_off": url in slow,
                **({"client": clients[url]} if url in clients else {}),
            }
            for url, share in ring.shares().items()
        ]
        if key is not None:
            info["owner"] = ring.owner(key)
        return info

    def peer_statistics(self) -> dict[str, dict[str, int]]:
        """Per peer URL, the counters of this node's client for it, where the
        transport keeps them (HTTP): ``requests`` sent, ``retries``, ``pipelined``
        GETs, ``batched`` keys (single fetches gathered into batch gets),
        ``connections_opened``, ``connections_open``, ``connections_idle`` and
        ``waiting`` (requests waiting for a connection)."""
        picker = self._picker
        if picker is None:
            return {}
        found: dict[str, dict[str, int]] = {}
        for url, client in picker.view.clients.items():
            statistics = getattr(client, "statistics", None)
            snapshot = statistics() if statistics is not None else None
            if dataclasses.is_dataclass(snapshot) and not isinstance(snapshot, type):
                fields = dataclasses.asdict(snapshot).items()
                found[url] = {k: v for k, v in fields if type(v) is int}
        return found

    def set_peers(self, urls: list[str] | tuple[str, ...]) -> None:
        """Replace the cluster's member list (this node is kept in it).

        The new ring and clients are built first and swapped in at once; clients of
        members that left are closed in the background. With etcd or gossip
        membership the next change the source reports replaces this list.

        Raises:
            RuntimeError: the node has no peer transport (start it with ``port`` or ``peers``).
        """
        if self._picker is None or self._tasks is None:
            raise RuntimeError("the node runs without peers; configure port or peers")
        for client in self._picker.set_peers(urls):
            self._tasks.create_task(self._close_client(client))
        log.info("members: %s", ", ".join(self._picker.view.ring.nodes))

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the node runs on, once started."""
        return self._loop

    async def start(self) -> None:
        """Start background tasks and, if configured, the HTTP API server.

        Prefer ``async with node:``, which also guarantees :meth:`aclose`.
        """
        if self._closed:
            raise Closed("the node is closed")
        if self._stack is not None:
            raise RuntimeError("the node is already started")
        self._loop = asyncio.get_running_loop()
        for group in self._groups.values():
            group.loop = self._loop
        if self.config.insecure:
            for exposed in self.config.unprotected():
                log.warning("INSECURE (--insecure): %s", exposed)
        if self.config.api_tokens is not None and self._tokens is None:
            from .tokens import ApiTokens

            # Read before any port opens: a bad file is a ConfigError at start.
            self._tokens = ApiTokens(self.config.api_tokens)
            self._reloaders.append(("API tokens", self._tokens.reload))
        tls = self._tls
        if self.config.tls is not None and tls is None:
            # ConfigError: a file that fails to load.
            tls = self._tls = self._given_tls or NodeTls(self.config.tls)
            # The servers and the peer clients rotate: both read the current contexts.
            self._reloaders.append(("TLS certificates", tls.reload))
        scheme = "https" if tls is not None else "http"
        async with contextlib.AsyncExitStack() as stack:
            if self.config.api_port is not None or self.config.api_unix is not None:
                from .api.http import ApiServer

                server = self._api_server = ApiServer(
                    self,
                    tokens=self._tokens,
                    tls=tls.api_server if tls is not None else None,
                    trace=self._api_trace(),
                )
                stack.push_async_callback(server.aclose)
                if self.config.api_port is not None:
                    self._api_address = await server.start(
                        self.config.api_host, self.config.api_port
                    )
                    log.info("HTTP API listening on %s://%s:%d", scheme, *self._api_address)
                if self.config.api_unix is not None:
                    await server.start_unix(self.config.api_unix)
                    log.info("HTTP API listening on unix:%s", self.config.api_unix)
            if (
                self.config.port is not None
                or self.config.peers
                or self.config.membership != "static"
            ):
                await self._start_peering(stack)
            # Entered last: an error raised inside a TaskGroup's block would come out
            # wrapped in an ExceptionGroup, so nothing that can fail follows it.
            self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self._background.append(
                self._tasks.create_task(self._sweep_forever(), name="shoal-sweep")
            )
            for group in self._groups.values():
                if group.replica is not None:
                    self._start_replica(group)
            if self._membership is not None:
                membership = self._membership
                source = f"{membership.source} membership"
                self._background += [
                    self._tasks.create_task(
                        supervised(
                            "membership",
                            membership.run,
                            self._errors,
                            context=source,
                            forever=False,
                        ),
                        name="shoal-membership",
                    ),
                    self._tasks.create_task(
                        supervised(
                            "members",
                            lambda: self._follow(membership),
                            self._errors,
                            context=source,
                            forever=False,
                        ),
                        name="shoal-members",
                    ),
                ]
            self._stack = stack.pop_all()

    def reload(self) -> bool:
        """Read the node's certificates, API tokens and gossip keyring again (what
        ``SIGHUP`` does to ``shoal serve``): new connections and datagrams use them,
        open connections keep theirs. A file that fails to load leaves the old one in
        use, and the failure is logged.

        Returns:
            True when everything reloaded; False when something kept its old files.
        """
        ok = True
        for what, reload in self._reloaders:
            try:
                reload()
            except Exception as exc:  # a bad file: keep the old one, say why
                ok = False
                log.error("reloading %s failed, still using the old one: %s", what, exc)
            else:
                log.info("reloaded %s", what)
        return ok

    def _api_trace(self) -> Callable[[Handler], Handler] | None:
        """What wraps the API server's handler in server spans (None: no telemetry)."""
        telemetry = self._telemetry
        if telemetry is None:
            return None
        from .otel import api_route

        return lambda handler: telemetry.http_handler(handler, api_route)

    def _peer_trace(self) -> Callable[[Handler], Handler] | None:
        """What wraps the peer server's handler in server spans (None: no telemetry)."""
        telemetry = self._telemetry
        if telemetry is None:
            return None
        from .otel import peer_route

        route = peer_route(self.config.base_path)
        return lambda handler: telemetry.http_handler(handler, route)

    @property
    def telemetry(self) -> Telemetry | None:
        """The node's OpenTelemetry wiring (:mod:`shoal.otel`), or None when off."""
        return self._telemetry

    async def _start_peering(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the peer server and the peer picker (the cluster read path)."""
        from .peers import PeerPicker

        cfg = self.config
        self_url = cfg.self_url
        tls = self._tls
        scheme = "https" if tls is not None else "http"
        telemetry = self._telemetry
        transport = self._transport
        if transport is None:
            transport = default_transport(cfg, tls, telemetry=telemetry)
        if telemetry is not None:
            transport = telemetry.transport(transport, protocol=cfg.transport)
        if cfg.port is not None and cfg.transport == "grpc":
            from .transport.grpc import GrpcServer

            grpc_server = GrpcServer(
                self,
                tokens=self._tokens,
                tls=tls,
                trace=telemetry.grpc_span if telemetry is not None else None,
            )
            stack.push_async_callback(grpc_server.aclose)
            self._peer_address = await grpc_server.start(cfg.host, cfg.port)
            log.info("gRPC server (peers and API) listening on %s:%d", *self._peer_address)
        elif cfg.port is not None:
            from .transport.http import PeerServer

            peer_server = self._peer_server = PeerServer(
                self, tls=tls.peer_server if tls is not None else None, trace=self._peer_trace()
            )
            stack.push_async_callback(peer_server.aclose)
            self._peer_address = await peer_server.start(cfg.host, cfg.port)
            log.info(
                "peer server listening on %s://%s:%d%s", scheme, *self._peer_address, cfg.base_path
            )
        if self_url is None and self._peer_address is not None:
            # https:// with TLS: every membership source advertises what the port speaks.
            self_url = "{}://{}:{}".format(scheme, *self._peer_address)
        assert self_url is not None  # NodeConfig requires a port or a self_url with peers
        picker = PeerPicker(
            self_url,
            transport,
            ring=cfg.ring,
            replicas=cfg.replicas,
            backoff=cfg.peer_backoff,
        )
        stack.push_async_callback(picker.aclose)
        self._picker = picker
        membership = self._make_membership(self_url)
        node_id = self._node_id
        assert node_id is not None  # set by _make_membership
        first = await membership.start()
        # Pushed after the servers and the picker, so it runs before they close: a
        # stopping node leaves the cluster first, and the others stop asking it.
        stack.push_async_callback(membership.aclose)
        self._membership = membership
        for client in self._apply_members(first):
            await client.aclose()
        for group in self._groups.values():
            group.peers = picker
            if group.replica is not None:
                group.replica.node_id = node_id
        log.info(
            "node %s (%s, %s membership); members: %s",
            self_url,
            self._node_id,
            membership.source,
            ", ".join(picker.view.ring.nodes),
        )

    def _make_membership(self, self_url: str) -> Membership:
        """The membership source the config names, for this node."""
        from .config import default_node_id

        cfg = self.config
        node_id = self._node_id = cfg.node_id or default_node_id(self_url)
        # With the gRPC transport the peer port speaks gRPC: advertise it as such.
        grpc = default_node_id(self_url) if cfg.transport == "grpc" else None
        if cfg.etcd is not None:
            from .membership.etcd import EtcdMembership

            etcd = EtcdMembership(
                cfg.etcd, node_id=node_id, url=self_url, grpc=grpc, started_at=self._started_at
            )
            if cfg.etcd.tls or cfg.etcd.user is not None:
                self._reloaders.append(("etcd credentials", etcd.reload))
            return etcd
        if cfg.gossip is not None:
            from urllib.parse import urlsplit

            from .membership.gossip import GossipMembership

            gossip = GossipMembership(
                cfg.gossip,
                node_id=node_id,
                url=self_url,
                host=cfg.host,
                url_host=urlsplit(self_url).hostname,
                grpc=grpc,
                started_at=self._started_at,
            )
            if cfg.gossip.keyring is not None:
                self._reloaders.append(("gossip keyring", gossip.reload_keyring))
            return gossip
        if cfg.dns is not None:
            from .membership.dns import DnsMembership

            return DnsMembership(
                cfg.dns,
                node_id=node_id,
                url=self_url,
                host=cfg.host,
                grpc=grpc is not None,
                started_at=self._started_at,
            )
        from .membership.static import StaticMembership

        return StaticMembership(cfg.peers, self_url=self_url, node_id=node_id)

    def _apply_members(self, members: MemberSet) -> list[PeerClient]:
        """Make ``members`` the cluster: a new ring and clients, swapped in at once.

        A member whose URL :func:`~shoal.membership.check_member_url` refuses is left
        out (and logged once); it never keeps the others from being applied.

        Returns:
            The clients of members that left, for the caller to close.
        """
        from .membership import BadInput, Member, check_member_url

        picker, membership = self._picker, self._membership
        assert picker is not None
        assert membership is not None
        assert self._node_id is not None
        grpc = self.config.transport == "grpc"
        by_url: dict[str, Member] = {}
        for member in sorted(members, key=lambda m: (m.url, m.node_id)):
            if member.url != picker.self_url:
                try:
                    check_member_url(member.url, grpc=grpc)
                except BadInput as exc:
                    self._skip_member(member, exc)
                    continue
            by_url.setdefault(member.url, member)  # one entry per URL, whatever the ids
        if picker.self_url not in by_url:
            # Not (yet, or no longer) registered: this node still serves its share.
            by_url[picker.self_url] = Member(
                node_id=self._node_id, url=picker.self_url, source=membership.source
            )
        # The order settles hash collisions: the source says the one every node uses.
        urls = membership.ring_order(by_url)
        before = set(picker.view.ring.nodes)
        gone = picker.set_peers(urls)
        self._members = by_url
        self._applied = members
        after = set(picker.view.ring.nodes)
        if before != after and self._tasks is not None:
            joined, left = sorted(after - before), sorted(before - after)
            log.info(
                "members changed (%s):%s%s; now %d",
                membership.source,
                f" joined {', '.join(joined)}" if joined else "",
                f" left {', '.join(left)}" if left else "",
                len(after),
            )
        return gone

    def _skip_member(self, member: Member, error: BadInput) -> None:
        """Log, once per member and URL, that a member with an unusable URL is left out."""
        seen = (member.node_id, member.url)
        if seen in self._skipped:
            return
        if len(self._skipped) >= _MAX_SKIPPED_LOGGED:
            self._skipped.clear()  # bounded: a flood of bad members is logged again, not kept
        self._skipped.add(seen)
        log.warning(
            "leaving member %r (%s) out of the ring: %s", member.node_id, member.source, error
        )

    async def _follow(self, membership: Membership) -> None:
        """Rebuild the ring and peer clients on every membership snapshot.

        A snapshot that fails to apply ends this follow with the last view kept; the
        supervisor follows again after a pause, from the latest snapshot, so the
        change is retried rather than lost.
        """
        assert self._tasks is not None
        async for members in membership.snapshots():
            if members == self._applied:
                continue  # the view start() applied (or a repeat): keep set_peers' changes
            gone = self._apply_members(members)
            for client in gone:
                self._tasks.create_task(self._close_client(client))

    async def _close_client(self, client: PeerClient) -> None:
        """Close the client of a member that left, in the background: a client that
        fails to close is counted (task ``members``), never fatal to the node."""
        try:
            await client.aclose()
        except Exception as exc:
            self._errors.record("members", exc, f"closing the client of {client.url}")

    async def aclose(self) -> None:
        """Stop the servers and background tasks, cancel loads, close loaders and threads.

        Idempotent. Waiters of cancelled loads get :class:`~shoal.errors.Closed`.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for task in self._background:
                task.cancel()
            if self._stack is not None:
                await self._stack.aclose()  # joins the task group, then closes the servers
        finally:
            self._stack = self._tasks = None
            self._background.clear()
            for group in self._groups.values():
                await group.aclose()
            for loader in self._loaders:
                try:
                    await loader.aclose()
                except Exception:
                    log.exception("closing the loader %r failed", loader)
            # Threads stuck in a hung sync loader are daemon threads, never joined.
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # __aexit__ will not run: release loaders and threads here
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start_replica(self, group: Group[Any]) -> None:
        """Run a replicated group's pushes and anti-entropy in the node's task group."""
        assert self._tasks is not None
        assert group.replica is not None
        self._background.append(group.replica.start(self._tasks, self._errors))

    async def serve_replica(self, request: bytes, *, group: str | None = None) -> bytes:
        """Answer a peer's message for a replicated group (what the peer transports
        call with a serialized ``shoal.v1.ReplicaRequest``).

        Args:
            request: the serialized request.
            group: the group the transport's path names, if any.

        Raises:
            BadRequest: an undecodable request, or one for a group that is not replicated.
            GroupNotFound: no such group.
        """
        from .replication import serve_replica

        return await serve_replica(self._groups, request, group=group)

    async def _sweep_forever(self) -> None:
        await supervised("sweep", self._sweep_round, self._errors)

    async def _sweep_round(self) -> None:
        """Wait ``sweep_interval``, then reclaim every group's expired entries; a group
        whose sweep fails is counted and skipped, the others are still swept."""
        await asyncio.sleep(self.config.sweep_interval)
        for group in list(self._groups.values()):
            try:
                group.sweep()
            except Exception as exc:
                self._errors.record("sweep", exc, f"group {group.name!r}")
