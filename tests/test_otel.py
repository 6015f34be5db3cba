"""OpenTelemetry across nodes: spans and trace context over HTTP and gRPC, and the
groupcache-go counters, with the SDK's in-memory exporters.

Each node gets its own tracer and meter providers (so a span's node is known);
the nodes run in this process on real sockets of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from helpers.peer_nodes import GROUP, Served, owned_by, serving, value
from helpers.raw_http import call
from shoal import Node, NodeConfig, NotFound
from shoal.otel import GROUP_METRICS, Telemetry

pytestmark = pytest.mark.asyncio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass
class Observed:
    """A node with its own span exporter and metric reader."""

    served: Served
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if kind is None or s.kind == kind]

    def points(self) -> list[tuple[str, dict[str, Any], float]]:
        """Every data point collected now: (instrument, attributes, value)."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        found = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        found.append((metric.name, dict(point.attributes or {}), point.value))
        return found

    def counters(self) -> dict[str, int]:
        """The value of every groupcache.group.* instrument for the group ``scores``."""
        return {
            name: int(value)
            for name, attributes, value in self.points()
            if attributes.get("group.name") == GROUP and "cache.type" not in attributes
        }


def _providers() -> tuple[dict[str, Any], InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    options = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    return options, spans, metrics


@asynccontextmanager
async def observed_cluster(
    transport: str = "http", config: dict[str, Any] | None = None
) -> AsyncIterator[list[Observed]]:
    """Two nodes over ``transport`` that know each other, each with its exporters."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            options, spans, metrics = _providers()
            served = await stack.enter_async_context(
                serving(transport=transport, config=config, node_options=options)
            )
            stack.callback(options["tracer_provider"].shutdown)
            stack.callback(options["meter_provider"].shutdown)
            nodes.append(Observed(served, spans, metrics))
        urls = [o.served.url for o in nodes]
        for o in nodes:
            o.served.node.set_peers(urls)
        yield nodes


def _one(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _assert_owner_continues(asker: ReadableSpan, server: ReadableSpan, load: ReadableSpan) -> None:
    """The owner's server span is the asker's client span's child, its load the server's."""
    assert asker.context is not None
    assert server.context is not None
    assert load.context is not None
    assert server.context.trace_id == asker.context.trace_id
    assert server.parent is not None
    assert server.parent.is_remote
    assert _parent_id(server) == asker.context.span_id
    assert load.context.trace_id == asker.context.trace_id
    assert _parent_id(load) == server.context.span_id


async def test_http_peer_fetch_is_one_trace_from_api_to_owner() -> None:
    async with observed_cluster(config={"api_port": 0}) as (a, b):
        key = owned_by([a.served, b.served], 1)
        assert await a.served.group.get(key) == value(key)

        client = _one(a.finished(SpanKind.CLIENT))
        server = _one(b.finished(SpanKind.SERVER))
        load = _one(b.finished(SpanKind.INTERNAL))
        assert client.name == "GET"
        assert client.attributes is not None
        assert client.attributes["shoal.group"] == GROUP
        assert client.attributes["server.port"] == b.served.port
        assert "shoal.key" not in client.attributes  # keys stay out by default
        assert server.name == "GET /_groupcache/{group}/{key}"
        assert server.attributes is not None
        assert server.attributes["http.response.status_code"] == 200
        assert load.name == "shoal.load"
        _assert_owner_continues(client, server, load)
        assert not a.finished(SpanKind.SERVER)
        assert not a.finished(SpanKind.INTERNAL)

        # Through A's HTTP API, with the trace of the caller: one trace, three spans deep.
        for o in (a, b):
            o.spans.clear()
        other = owned_by([a.served, b.served], 1, prefix="api")
        api = a.served.node.api_address
        assert api is not None
        answer = await call(
            api[1], "GET", f"/api?key={other}&group={GROUP}", headers={"traceparent": TRACEPARENT}
        )
        assert answer.status == 200
        assert answer.body == value(other)
        api_span = _one(a.finished(SpanKind.SERVER))
        assert api_span.name == "GET /api"
        assert api_span.context is not None
        assert format(api_span.context.trace_id, "032x") == TRACE_ID
        assert api_span.parent is not None
        assert format(api_span.parent.span_id, "016x") == PARENT_ID
        client = _one(a.finished(SpanKind.CLIENT))
        assert _parent_id(client) == api_span.context.span_id
        _assert_owner_continues(
            client, _one(b.finished(SpanKind.SERVER)), _one(b.finished(SpanKind.INTERNAL))
        )

        # A missing key: the owner's load span says so, and no span is an error.
        for o in (a, b):
            o.spans.clear()
        missing = owned_by([a.served, b.served], 1, prefix="missing:")
        with pytest.raises(NotFound):
            await a.served.group.get(missing)
        load = _one(b.finished(SpanKind.INTERNAL))
        assert load.attributes is not None
        assert load.attributes["shoal.found"] is False
        assert load.status.status_code is StatusCode.UNSET


async def test_grpc_peer_fetch_carries_the_trace_in_metadata() -> None:
    async with observed_cluster("grpc", config={"otel_keys": True}) as (a, b):
        key = owned_by([a.served, b.served], 1)
        assert await a.served.group.get(key) == value(key)
        client = _one(a.finished(SpanKind.CLIENT))
        server = _one(b.finished(SpanKind.SERVER))
        assert client.name == server.name == "shoal.v1.Peer/Get"
        assert server.attributes is not None
        assert server.attributes["rpc.system"] == "grpc"
        assert client.attributes is not None
        assert client.attributes["shoal.key"] == key
        load = _one(b.finished(SpanKind.INTERNAL))
        assert load.attributes is not None
        assert load.attributes["shoal.key"] == key
        _assert_owner_continues(client, server, load)
        assert server.attributes["rpc.grpc.status_code"] == 0

        # NOT_FOUND is the caller's answer, not the server's fault; a failing loader is.
        for o in (a, b):
            o.spans.clear()
        with pytest.raises(NotFound):
            await a.served.group.get(owned_by([a.served, b.served], 1, prefix="missing:"))
        with pytest.raises(Exception, match="database down"):
            await a.served.group.get(owned_by([a.served, b.served], 1, prefix="fail:"))
        missing, failed = b.finished(SpanKind.SERVER)
        assert missing.attributes is not None
        assert missing.attributes["rpc.grpc.status_code"] == 5
        assert missing.status.status_code is StatusCode.UNSET
        assert failed.attributes is not None
        assert failed.attributes["rpc.grpc.status_code"] == 14  # UNAVAILABLE: load failed
        assert failed.status.status_code is StatusCode.ERROR


async def test_loader_failure_marks_the_spans() -> None:
    async with observed_cluster() as (a, b):
        key = owned_by([a.served, b.served], 1, prefix="fail:")
        with pytest.raises(Exception, match="database down"):
            await a.served.group.get(key)
        load = _one(b.finished(SpanKind.INTERNAL))
        assert load.status.status_code is StatusCode.ERROR
        assert load.attributes is not None
        assert load.attributes["error.type"] == "RuntimeError"
        server = _one(b.finished(SpanKind.SERVER))
        assert server.attributes is not None
        status = server.attributes["http.response.status_code"]
        assert isinstance(status, int)
        assert status >= 500
        assert server.status.status_code is StatusCode.ERROR
        assert _one(a.finished(SpanKind.CLIENT)).status.status_code is StatusCode.ERROR


async def test_counters_follow_a_scripted_workload() -> None:
    async with observed_cluster() as (a, b):
        nodes = [a.served, b.served]
        group = a.served.group
        mine = [owned_by(nodes, 0, prefix=f"m{i}-") for i in range(3)]
        theirs = owned_by(nodes, 1)
        missing = owned_by(nodes, 0, prefix="missing:")
        for key in mine:  # 3 local loads
            await group.get(key)
        for key in mine[:2]:  # 2 hits
            await group.get(key)
        await group.get(theirs)  # 1 peer load (B loads it)
        with pytest.raises(NotFound):  # 1 failed local load
            await group.get(missing)
        # 5 concurrent gets of one new key: 5 loads, 1 of them run.
        together = owned_by(nodes, 0, prefix="t")
        assert (
            await asyncio.gather(*(group.get(together) for _ in range(5))) == [value(together)] * 5
        )

        expected = {
            "groupcache.group.gets": 3 + 2 + 1 + 1 + 5,
            "groupcache.group.cache_hits": 2,
            "groupcache.group.loads": 3 + 1 + 1 + 5,
            "groupcache.group.loads.deduped": 3 + 1 + 1 + 1,
            "groupcache.group.local.loads": 3 + 1,
            "groupcache.group.local.load_errors": 1,
            "groupcache.group.peer.loads": 1,
            "groupcache.group.peer.errors": 0,
            "groupcache.group.server_requests": 0,
        }
        assert a.counters() == expected
        assert set(expected) == {name for name, _, _ in GROUP_METRICS}
        # B: one get arrived over the peer protocol and was loaded there.
        on_b = b.counters()
        assert on_b["groupcache.group.server_requests"] == 1
        assert on_b["groupcache.group.local.loads"] == 1

        caches = {
            (name, attributes["cache.type"]): value
            for name, attributes, value in a.points()
            if name.startswith("groupcache.cache.")
        }
        stats = a.served.node.statistics()[GROUP]
        assert caches[("groupcache.cache.items", "main")] == stats.main.items == 3 + 1
        assert caches[("groupcache.cache.bytes", "main")] == stats.main.bytes


def _sync_loader(key: str) -> bytes:
    return f"v:{key}".encode()


async def test_api_server_span_is_parent_of_a_sync_load_in_the_loader_threads() -> None:
    options, spans, _ = _providers()
    node = Node(NodeConfig(api_port=0), **options)
    node.group("words", _sync_loader)
    try:
        async with node:
            api = node.api_address
            assert api is not None
            answer = await call(
                api[1], "GET", "/v1/groups/words/keys/k1", headers={"traceparent": TRACEPARENT}
            )
            assert answer.status == 200
            assert answer.body == b"v:k1"
            # A hit: a server span too, through the same handler.
            answer = await call(api[1], "GET", "/v1/groups/words/keys/k1")
            assert answer.status == 200
            # A malformed trace context is ignored: the request is served, its span a root.
            for bad in ("00-zz-yy-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 4000):
                answer = await call(
                    api[1], "GET", "/v1/groups/words/keys/k1", headers={"traceparent": bad}
                )
                assert answer.status == 200
                assert answer.body == b"v:k1"
    finally:
        options["tracer_provider"].shutdown()
        options["meter_provider"].shutdown()
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /v1/groups/{group}/keys/{key}"] * 5
    assert all(s.parent is None for s in servers[1:])
    first = servers[0]
    assert first.context is not None
    assert format(first.context.trace_id, "032x") == TRACE_ID
    load = _one([s for s in finished if s.kind == SpanKind.INTERNAL])
    assert _parent_id(load) == first.context.span_id
    assert servers[1].context is not None
    assert servers[1].context.trace_id != first.context.trace_id
    assert servers[1].parent is None


async def test_off_by_default_and_the_fast_paths_stay() -> None:
    async with serving(config={"api_port": 0}) as plain:
        assert plain.node.telemetry is None
        peer, api = plain.node._peer_server, plain.node._api_server
        assert peer is not None
        assert api is not None
        assert peer._server.fast_get is not None
        assert api._server.fast_get is not None
    options, _, _ = _providers()
    async with serving(config={"api_port": 0}, node_options=options) as traced:
        assert isinstance(traced.node.telemetry, Telemetry)
        peer, api = traced.node._peer_server, traced.node._api_server
        assert peer is not None
        assert api is not None
        assert peer._server.fast_get is None
        assert api._server.fast_get is None
    options["tracer_provider"].shutdown()
    options["meter_provider"].shutdown()


async def test_a_write_in_the_callers_span_reaches_the_owner_in_its_trace() -> None:
    options, _, _ = _providers()
    async with observed_cluster() as (a, b):
        key = owned_by([a.served, b.served], 1, prefix="w")
        tracer = options["tracer_provider"].get_tracer("app")
        with tracer.start_as_current_span("app.save") as span:
            await a.served.group.set(key, b"written")
        put = _one(b.finished(SpanKind.SERVER))
        assert put.name == "PUT /_groupcache/{group}/{key}"
        assert put.context is not None
        assert put.context.trace_id == span.get_span_context().trace_id
        assert _parent_id(put) == span.get_span_context().span_id
        assert await b.served.group.get(key) == b"written"
    options["tracer_provider"].shutdown()
    options["meter_provider"].shutdown()


async def test_batch_get_and_probes() -> None:
    async with observed_cluster(config={"api_port": 0}) as (a, b):
        nodes = [a.served, b.served]
        first = owned_by(nodes, 1)
        await a.served.group.get(first)  # B's first answer says it serves batch gets
        keys = [owned_by(nodes, 1, prefix=f"b{i}-") for i in range(3)]
        for o in (a, b):
            o.spans.clear()
        assert await a.served.group.get_many(keys) == {key: value(key) for key in keys}
        client = _one(a.finished(SpanKind.CLIENT))
        assert client.name == "shoal.peer.get_many"
        server = _one(b.finished(SpanKind.SERVER))
        assert server.name == "POST /_groupcache/{group}/_get-many/"
        assert client.context is not None
        assert _parent_id(server) == client.context.span_id
        assert len(b.finished(SpanKind.INTERNAL)) == 3

        # Health and readiness probes get no span; the others do.
        a.spans.clear()
        api = a.served.node.api_address
        assert api is not None
        assert (await call(api[1], "GET", "/healthz")).status == 200
        assert (await call(api[1], "GET", "/v1/stats")).status == 200
        assert [s.name for s in a.finished()] == ["GET /v1/stats"]
