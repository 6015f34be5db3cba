"""OpenTelemetry: spans for gets, loads and peer fetches, and the groups' counters.

Needs the ``shoal[otel]`` extra. A node makes a :class:`Telemetry` when
``NodeConfig.otel`` is set or when it is given a tracer or meter provider, and
wires it in where the work happens, so that the hot paths stay as they are when
telemetry is off:

- **server spans** (kind ``SERVER``) for the requests of the HTTP API and of the
  HTTP peer port (:meth:`Telemetry.http_handler`) and for the calls of the gRPC
  port (:meth:`Telemetry.grpc_span`); each continues the trace of the W3C
  ``traceparent`` the request carries (header or metadata). A server with
  telemetry sends every request through its handler, never through the
  parser-free cache-hit shortcut, which therefore gains no branch;
- **client spans** (kind ``CLIENT``) for each fetch from a peer
  (:class:`TracedTransport`), whose context the peer transport writes into
  the request (:meth:`Telemetry.http_headers`, :meth:`Telemetry.grpc_metadata`),
  so that the owner's server span is a child of the asker's client span;
- **load spans** (kind ``INTERNAL``, ``shoal.load``) around each loader call
  (:func:`Telemetry.loader`);
- **metrics**: observable instruments with groupcache-go's names
  (``groupcache.group.gets``, ``groupcache.group.cache_hits``,
  ``groupcache.group.peer.loads``, ``groupcache.group.loads.deduped``...), read
  from :meth:`shoal.Node.statistics` when the meter provider collects
  (:meth:`Telemetry.observe`).

Span attributes follow the OpenTelemetry semantic conventions where they have a
name for the thing (``http.request.method``, ``http.route``,
``http.response.status_code``, ``server.address``, ``rpc.system``...), and
``shoal.group`` otherwise; the key (``shoal.key``) only with
``NodeConfig.otel_keys``, since keys may be personal data.
"""

from __future__ import annotations

import inspect
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from ._http import Deferred, Handler, Request, Response
from ._version import __version__
from .errors import ConfigError, MissingExtra, NotFound
from .wire import REMOVE_KEYS_SEGMENT
from .wire.batch import GET_MANY_SEGMENT, INVALIDATE_SEGMENT, REPLICA_SEGMENT

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import propagate
    from opentelemetry import trace as otel_trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is in the dev install
    raise MissingExtra("opentelemetry", "otel") from exc

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .peers import FetchDone, Fetched, PeerClient, Transport
    from .stats import GroupStats

__all__ = [
    "Telemetry",
    "GrpcCall",
    "TracedTransport",
    "TracedClient",
    "GROUP_METRICS",
    "CACHE_METRICS",
    "api_route",
    "peer_route",
    "providers_from_environment",
]

INSTRUMENTATION: Final = "shoal"
"""The instrumentation scope of shoal's tracer and meter."""

# (instrument name, GroupStats field, description): groupcache-go's names and meanings.
GROUP_METRICS: Final = (
    ("groupcache.group.gets", "gets", "Total get requests for the group"),
    ("groupcache.group.cache_hits", "hits", "Total successful cache hits"),
    ("groupcache.group.peer.loads", "peer_loads", "Total successful loads from peers"),
    ("groupcache.group.peer.errors", "peer_errors", "Total failed loads from peers"),
    ("groupcache.group.loads", "loads", "Total loads after cache miss"),
    (
        "groupcache.group.loads.deduped",
        "loads_run",
        "Total loads after de-duplication by singleflight (loads actually run)",
    ),
    ("groupcache.group.local.loads", "local_loads", "Total successful local loads"),
    ("groupcache.group.local.load_errors", "local_load_errors", "Total failed local loads"),
    (
        "groupcache.group.server_requests",
        "server_requests",
        "Total gets that came over the network (HTTP API, peer protocol, gRPC)",
    ),
)
"""The per-group counters: ``(name, GroupStats field, description)``; attribute ``group.name``."""

# (instrument name, StoreStats field, counter or gauge, description).
CACHE_METRICS: Final = (
    ("groupcache.cache.bytes", "bytes", False, "Number of bytes in cache"),
    ("groupcache.cache.items", "items", False, "Number of items in cache"),
    ("groupcache.cache.gets", "gets", True, "Total get requests"),
    ("groupcache.cache.hits", "hits", True, "Total successful cache hits"),
    ("groupcache.cache.evictions", "evictions", True, "Total number of evictions"),
)
"""The per-cache instruments; attributes ``group.name`` and ``cache.type`` (main, hot)."""

_CACHES: Final = ("main", "hot")


def _header_lines(carrier: Mapping[str, str]) -> bytes:
    """HTTP header lines of a propagator's carrier (fields with CR, LF or NUL are left out)."""
    lines = []
    for name, value in carrier.items():
        line = f"{name}: {value}\r\n"
        if "\0" in line or line.count("\r") != 1 or line.count("\n") != 1 or not line.isascii():
            continue
        lines.append(line)
    return "".join(lines).encode("ascii")


def _http_carrier(request: Request) -> dict[str, str]:
    """The request's headers as the propagator reads them (lower-case names)."""
    carrier: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        if key in carrier:  # a repeated field: as the combined value HTTP gives it
            carrier[key] += "," + value.decode("latin-1")
        else:
            carrier[key] = value.decode("latin-1")
    return carrier


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


class Telemetry:
    """A node's tracer, meter and propagator (see the module docstring).

    Args:
        tracer_provider: where spans go; default the global provider (which is a
            no-op one until the application installs an SDK provider).
        meter_provider: where the instruments are registered; default the global one.
        record_keys: put keys in spans (``shoal.key``). Default False.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_keys: bool = False,
    ) -> None:
        self.tracer = otel_trace.get_tracer(
            INSTRUMENTATION, __version__, tracer_provider=tracer_provider
        )
        """The tracer of every span the node starts."""
        self.meter = otel_metrics.get_meter(
            INSTRUMENTATION, __version__, meter_provider=meter_provider
        )
        """The meter the node's instruments belong to."""
        self.record_keys = record_keys
        """Whether spans carry the key."""
        self._observed = False

    # -- propagation -----------------------------------------------------------

    def http_headers(self) -> bytes:
        """Header lines for a peer request: the current span's ``traceparent`` (and
        whatever else the configured propagators write), or ``b""`` outside a span."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return _header_lines(carrier) if carrier else b""

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        """The same as gRPC metadata (lower-case keys)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return tuple((name.lower(), value) for name, value in carrier.items())

    # -- attributes ------------------------------------------------------------

    def _key_attributes(self, group: str, key: str | None = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {"shoal.group": group}
        if key is not None and self.record_keys:
            attributes["shoal.key"] = key
        return attributes

    # -- server spans ----------------------------------------------------------

    def http_handler(
        self,
        handler: Handler,
        route: Callable[[Request], str | None],
        *,
        port: int | None = None,
    ) -> Handler:
        """``handler`` with a server span around each request, child of the
        request's ``traceparent`` (if any), current while the handler runs.

        Args:
            handler: the server's own handler.
            route: the request's route template (``/v1/groups/{group}/keys/{key}``):
                the span's name after the method, and ``http.route``; None for a
                request that gets no span (probes, anti-entropy rounds).
            port: the server's port (``server.port``), if known.
        """
        tracer = self.tracer

        def traced(request: Request) -> Response | Awaitable[Response]:
            template = route(request)
            if template is None:
                return handler(request)
            parent = propagate.extract(_http_carrier(request))
            attributes: dict[str, Any] = {
                "http.request.method": request.method,
                "http.route": template,
                "network.protocol.version": request.http_version,
                "url.scheme": "http",
            }
            if self.record_keys:
                attributes["url.path"] = request.path.decode("latin-1")
            if port is not None:
                attributes["server.port"] = port
            span = tracer.start_span(
                f"{request.method} {template}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
            )
            token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
            try:
                result = handler(request)
            except BaseException as exc:
                _failed(span, exc)
                span.end()
                raise
            finally:
                otel_context.detach(token)
            if isinstance(result, Response):
                _answered(span, result)
                return result
            if isinstance(result, Deferred):
                return _deferred(span, result)
            return _awaited(span, result)

        return traced

    @contextmanager
    def grpc_span(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> Generator[GrpcCall, None, None]:
        """A server span for one gRPC call of ``method`` (``/service/Method``), child of
        the ``traceparent`` in the call's ``metadata``, current inside the block.

        The block reports the call's status code through :meth:`GrpcCall.finished`
        (``rpc.grpc.status_code``); as the conventions say, only the codes of server
        faults make the span an error (``NOT_FOUND`` or ``INVALID_ARGUMENT`` do not).
        """
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        parent = propagate.extract(carrier)
        service, _, name = method.strip("/").partition("/")
        with self.tracer.start_as_current_span(
            f"{service}/{name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = GrpcCall(span)
            try:
                yield call
            except BaseException as exc:
                if call.code is None:  # not an answered call: a fault of its own
                    _failed(span, exc)
                raise

    # -- client spans and loads ------------------------------------------------

    def transport(self, inner: Transport, *, protocol: str = "http") -> TracedTransport:
        """``inner`` with a client span around each fetch (``protocol``: ``http``
        or ``grpc``, for the span's name and attributes)."""
        return TracedTransport(inner, self, protocol)

    def loader(self, loader: Callable[[str], Any], group: str) -> Callable[[str], Any]:
        """``loader`` with a ``shoal.load`` span around each call (async exactly when
        ``loader`` is, and forwarding ``aclose``)."""
        if inspect.iscoroutinefunction(loader) or inspect.iscoroutinefunction(
            getattr(loader, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            return _AsyncLoad(loader, self, group)
        return _SyncLoad(loader, self, group)

    # -- metrics ---------------------------------------------------------------

    def observe(self, statistics: Callable[[], Mapping[str, GroupStats]]) -> None:
        """Register the observable instruments (:data:`GROUP_METRICS`,
        :data:`CACHE_METRICS`), read from ``statistics()`` at each collection. Once."""
        if self._observed:
            return
        self._observed = True
        meter = self.meter
        for name, field, description in GROUP_METRICS:
            meter.create_observable_counter(
                name, callbacks=[_group_reader(statistics, field)], description=description
            )
        for name, field, monotonic, description in CACHE_METRICS:
            make = meter.create_observable_counter if monotonic else meter.create_observable_gauge
            make(name, callbacks=[_cache_reader(statistics, field)], description=description)


# The gRPC codes that are the server's fault (the semantic conventions' list).
_GRPC_SERVER_ERRORS: Final = frozenset(
    ("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS")
)


class GrpcCall:
    """The span of one gRPC call, told its status code when the call ends."""

    def __init__(self, span: Span) -> None:
        self.span = span
        """The call's server span."""
        self.code: Any = None
        """The status code the call ended with (a ``grpc.StatusCode``), once known."""

    def finished(self, code: Any) -> None:
        """The call ended with ``code`` (a ``grpc.StatusCode``; None: ``OK``)."""
        if code is None:
            self.span.set_attribute("rpc.grpc.status_code", 0)
            return
        self.code = code
        value, _ = code.value
        self.span.set_attribute("rpc.grpc.status_code", value)
        if code.name in _GRPC_SERVER_ERRORS:
            self.span.set_attribute("error.type", code.name)
            self.span.set_status(Status(StatusCode.ERROR))


def _group_reader(
    statistics: Callable[[], Mapping[str, GroupStats]], field: str
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def read(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(getattr(stats, field), {"group.name": name})
            for name, stats in statistics().items()
        ]

    return read


def _cache_reader(
    statistics: Callable[[], Mapping[str, GroupStats]], field: str
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def read(options: CallbackOptions) -> Iterable[Observation]:
        found = []
        for name, stats in statistics().items():
            for cache in _CACHES:
                value = getattr(getattr(stats, cache), field)
                found.append(Observation(value, {"group.name": name, "cache.type": cache}))
        return found

    return read


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", _error_type(exc))
    span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))


@contextmanager
def _outcome(span: Span) -> Generator[None, None, None]:
    """Record how the block ended on ``span``: a ``NotFound`` as ``shoal.found``
    false (not an error), any other exception as the span's error."""
    try:
        yield
    except NotFound:
        span.set_attribute("shoal.found", False)
        raise
    except BaseException as exc:
        _failed(span, exc)
        raise


def _answered(span: Span, response: Response) -> None:
    """Record the answer's status (a 5xx is an error of a server span) and end the span."""
    span.set_attribute("http.response.status_code", response.status)
    if response.status >= 500:
        span.set_attribute("error.type", str(response.status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _deferred(span: Span, deferred: Deferred) -> Deferred:
    """``deferred``, whose conversion also ends ``span`` (as does a cancellation)."""
    convert = deferred.convert

    def finish(future: asyncio.Future[Any]) -> Response:
        response = convert(future)
        _answered(span, response)
        return response

    def cancelled(future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            span.set_attribute("error.type", "cancelled")
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            span.end()

    deferred.future.add_done_callback(cancelled)
    return Deferred(deferred.future, finish)


async def _awaited(span: Span, result: Awaitable[Response]) -> Response:
    """The awaited answer, under ``span`` (the handler's work runs inside it)."""
    token = otel_context.attach(otel_trace.set_span_in_context(span))
    try:
        response = await result
    except BaseException as exc:
        _failed(span, exc)
        span.end()
        raise
    finally:
        otel_context.detach(token)
    _answered(span, response)
    return response


class TracedClient:
    """A :class:`~shoal.peers.PeerClient` with a client span around each fetch.

    The span is current while the wrapped client writes its request, so the
    transport's ``request_headers`` / ``request_metadata`` carry it to the peer.
    """

    def __init__(self, inner: PeerClient, telemetry: Telemetry, protocol: str) -> None:
        self._inner = inner
        self._telemetry = telemetry
        self._grpc = protocol == "grpc"
        parts = urllib.parse.urlsplit(inner.url)
        self._server: dict[str, Any] = {"server.address": parts.hostname or inner.url}
        if parts.port is not None:
            self._server["server.port"] = parts.port
        self._server["shoal.peer"] = inner.url

    @property
    def url(self) -> str:
        """The peer's URL."""
        return self._inner.url

    def fetch(self, group: str, key: str, done: FetchDone) -> Callable[[], None] | None:
        """Always None: every fetch goes through :meth:`get`, which has its span."""
        return None

    def statistics(self) -> Any:
        """The wrapped client's counters, if it keeps any (else None)."""
        statistics = getattr(self._inner, "statistics", None)
        return statistics() if statistics is not None else None

    @contextmanager
    def _span(self, method: str, group: str, key: str | None) -> Generator[Span, None, None]:
        attributes = {**self._server, **self._telemetry._key_attributes(group, key)}
        if self._grpc:
            name = f"shoal.v1.Peer/{method}"
            attributes |= {
                "rpc.system": "grpc",
                "rpc.service": "shoal.v1.Peer",
                "rpc.method": method,
            }
        elif method == "GetMany":
            # One batch request, or one GET per key to a peer without batches.
            name = "shoal.peer.get_many"
        else:
            name = "GET"
            attributes["http.request.method"] = name
        with (
            self._telemetry.tracer.start_as_current_span(
                name,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            _outcome(span),
        ):
            yield span

    async def get(self, group: str, key: str) -> Fetched:
        """Fetch from the owner under a client span."""
        with self._span("Get", group, key) as span:
            fetched = await self._inner.get(group, key)
            span.set_attribute("shoal.value_bytes", len(fetched.value))
            return fetched

    async def get_many(self, group: str, keys: list[str]) -> dict[str, Fetched]:
        """Fetch a batch from the owner under one client span."""
        with self._span("GetMany", group, None) as span:
            span.set_attribute("shoal.keys", len(keys))
            return await self._inner.get_many(group, keys)

    async def set(
        self, group: str, key: str, value: bytes, expires_at: float | None = None
    ) -> None:
        """Store at the peer (the trace context goes along)."""
        await self._inner.set(group, key, value, expires_at)

    async def remove_keys(self, group: str, keys: list[str]) -> int | None:
        """Drop keys at the peer."""
        return await self._inner.remove_keys(group, keys)

    async def invalidate(self, group: str) -> int | None:
        """Drop the group at the peer."""
        return await self._inner.invalidate(group)

    async def replica(self, group: str, request: bytes) -> bytes:
        """A replicated group's message (no span: anti-entropy is periodic)."""
        return await self._inner.replica(group, request)

    async def op(self, group: str, request: bytes) -> bytes:
        """An atomic operation at the owner, under a client span."""
        with self._span("Op", group, None):
            return await self._inner.op(group, request)

    async def aclose(self) -> None:
        """Close the wrapped client."""
        await self._inner.aclose()


class TracedTransport:
    """A :class:`~shoal.peers.Transport` whose clients trace (see :class:`TracedClient`)."""

    def __init__(self, inner: Transport, telemetry: Telemetry, protocol: str = "http") -> None:
        self._inner = inner
        self._telemetry = telemetry
        self._protocol = protocol

    def client(self, url: str) -> TracedClient:
        """A tracing client for the peer at ``url``."""
        return TracedClient(self._inner.client(url), self._telemetry, self._protocol)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class _Load:
    """What both loader wrappers share: the loader, the telemetry, and closing."""

    def __init__(self, inner: Callable[[str], Any], telemetry: Telemetry, group: str) -> None:
        self._inner = inner
        self._telemetry = telemetry
        self._group = group

    @contextmanager
    def _span(self, key: str) -> Generator[Span, None, None]:
        with (
            self._telemetry.tracer.start_as_current_span(
                "shoal.load",
                kind=SpanKind.INTERNAL,
                attributes=self._telemetry._key_attributes(self._group, key),
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            _outcome(span),
        ):
            yield span

    async def aclose(self) -> None:
        """Close the wrapped loader, if it has anything to close (the node calls this)."""
        close = getattr(self._inner, "aclose", None)
        if callable(close):
            await close()


class _AsyncLoad(_Load):
    async def __call__(self, key: str) -> Any:
        with self._span(key):
            return await self._inner(key)


class _SyncLoad(_Load):
    def __call__(self, key: str) -> Any:
        # In a loader thread, with the context of the flight that asked (the group
        # runs sync loaders in a copy of it).
        with self._span(key):
            return self._inner(key)


def api_route(request: Request) -> str | None:
    """The route template of an HTTP API request (its span's name); None for the
    health and readiness probes, which get no span."""
    path = request.path
    if path in _PROBES:
        return None
    if path.startswith(b"/ui/"):
        return "/ui/{asset}"
    if path.startswith(b"/v1/groups/"):
        return "/v1/groups/{group}/keys/{key}" if b"/keys/" in path else "/v1/groups/{group}"
    return path.decode("latin-1") if path in _API_PATHS else "/*"


_PROBES: Final = frozenset((b"/healthz", b"/readyz"))
_API_PATHS: Final = frozenset((b"/api", b"/v1/stats", b"/v1/cluster", b"/metrics", b"/ui"))
# The shoal extensions of the peer protocol, by the last segment of their path.
_PEER_SEGMENTS: Final = (
    GET_MANY_SEGMENT.encode(),
    INVALIDATE_SEGMENT.encode(),
    REMOVE_KEYS_SEGMENT.encode(),
)


def peer_route(base_path: str) -> Callable[[Request], str | None]:
    """The route template of a peer request under ``base_path``; None for a
    replicated group's messages (periodic anti-entropy rounds get no span)."""
    template = f"{base_path}{{group}}/{{key}}"
    extensions = {segment: f"{base_path}{{group}}/{segment.decode()}" for segment in _PEER_SEGMENTS}
    replica = REPLICA_SEGMENT.encode()

    def route(request: Request) -> str | None:
        path = request.path
        if path.endswith(b"/"):
            if path.endswith(replica):
                return None
            for segment, extension in extensions.items():
                if path.endswith(segment):
                    return extension
        return template

    return route


# -- ``shoal serve --otel``: providers from the standard environment ------------------

_EXPORTER_GROUPS: Final = {
    "traces": "opentelemetry_traces_exporter",
    "metrics": "opentelemetry_metrics_exporter",
}


def _exporter(signal: str, name: str) -> Any:
    """The exporter ``name`` of ``signal``, found as the SDK finds it: by the entry
    points that exporter packages register (``console`` is the SDK's, ``otlp``
    comes with ``opentelemetry-exporter-otlp``)."""
    from importlib.metadata import entry_points

    group = _EXPORTER_GROUPS[signal]
    found = entry_points(group=group, name=name)
    if not found:
        known = sorted({point.name for point in entry_points(group=group)})
        hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
        raise ConfigError(
            f"OTEL_{signal.upper()}_EXPORTER={name!r}: no such exporter installed{hint}; "
            f"installed: {', '.join(known) or 'none'}, or 'none'"
        )
    return next(iter(found)).load()()


def providers_from_environment(
    environ: Mapping[str, str],
) -> tuple[TracerProvider | None, MeterProvider | None]:
    """Tracer and meter providers as the OpenTelemetry environment variables describe.

    ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER`` name the exporter of each
    signal (default ``otlp``, as the specification says; ``console``; ``none`` for no
    provider); the SDK itself reads the rest (``OTEL_SERVICE_NAME``, default
    ``shoal``; ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_METRIC_EXPORT_INTERVAL``...). Only the
    first exporter of a comma-separated list is used.

    Raises:
        ConfigError: an exporter that is not installed.
        MissingExtra: the OpenTelemetry SDK is not installed.
    """
    try:
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise MissingExtra("opentelemetry-sdk", "otel") from exc

    defaults = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "shoal"}
    resource = Resource.create(defaults)

    def chosen(signal: str) -> str:
        names = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp")
        return names.split(",")[0].strip().lower() or "otlp"

    tracer_provider: SdkTracerProvider | None = None
    meter_provider: SdkMeterProvider | None = None
    if (name := chosen("traces")) != "none":
        tracer_provider = SdkTracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(_exporter("traces", name)))
    if (name := chosen("metrics")) != "none":
        reader = PeriodicExportingMetricReader(_exporter("metrics", name))
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=[reader])
    return tracer_provider, meter_provider
