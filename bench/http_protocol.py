"""The HTTP server's own cost per hit: one connection fed requests in a loop, no sockets.

What a ``GET /api?key=`` hit costs in shoal's HTTP server outside the kernel
and the event loop: each candidate is a connection object (an asyncio
``Protocol``) whose ``data_received`` is called with one whole request at a
time, as the event loop would call it for a read, and which writes its answer
to a transport that only keeps it. The requests are those wrk sends in
``bench/server.py`` (10,000 keys, 100-byte values, every one a hit):

* shoal: the ``HttpProtocol`` of a node's API server (an ``ApiServer`` on a
  node whose group holds every key), with the compiled recognizer of simple
  GETs (``shoal._speedups``), and again with only the httptools parser
  (what ``SHOAL_NO_SPEEDUPS=1`` gives);
* reference: ``bench/server.py``'s bare httptools + dict protocol, which
  checks nothing and counts nothing: the least a Python server does here.

With ``--token``, four more candidates in the same run: the same API server on
a node with API tokens (a tokens file of three, one per role), fed the same
requests with ``Authorization: Bearer TOKEN`` (a read token), and the server
without tokens fed those same requests, each with and without the compiled
recognizer; the extra table is the cost of checking the token, the per-round
ratio (median) of the server with tokens to the one without, fed the same
requests (the check alone) and fed the requests without the header.

With ``--otel`` (needs ``shoal[otel]``), one more: the same API server with
OpenTelemetry on (an SDK tracer provider whose exporter drops every span, so what
is timed is shoal's part and the SDK's span, not an export): every request then
goes through the handler with a server span.

Every round times each candidate once over one pass of the requests, in a
rotating order, with the garbage collector off; the table shows the median
round in ns per request and the median of the per-round ratios to the
reference. Every answer is checked to be the right value.

Run: ``python bench/http_protocol.py [--quick] [--token] [--otel]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import BenchError, environment, markdown_table, median, run
from server import GROUP, KEYS, VALUE_SIZE, MinimalProtocol, value_of
from shoal import Node, NodeConfig
from shoal._http import HttpLimits
from shoal._http import server as _http
from shoal.api.http import ApiServer
from shoal.tokens import ApiTokens

REFERENCE = "reference: bare httptools + dict protocol"
WITH_TOKEN = "shoal, API tokens"
WITH_TOKEN_PARSER = "shoal, API tokens, httptools only"
SENT = "shoal, token sent, no tokens"
SENT_PARSER = "shoal, token sent, no tokens, httptools only"
TRACED = "shoal, OpenTelemetry on"


class Transport:
    """Keeps the last answer written; what a protocol needs of a transport here."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def writelines(self, data: Sequence[bytes]) -> None:
        self.last = b"".join(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass


@dataclass
class Candidate:
    """A connection to feed; ``samples`` are ns per request, one per round."""

    name: str
    protocol: asyncio.Protocol
    transport: Transport = field(default_factory=Transport)
    samples: list[float] = field(default_factory=list)
    requests: Sequence[bytes] = ()

    def __post_init__(self) -> None:
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def check(self, requests: Sequence[bytes], keys: Sequence[str]) -> None:
        for request, key in zip(requests, keys, strict=True):
            self.protocol.data_received(request)
            if not self.transport.last.endswith(b"\r\n\r\n" + value_of(key)):
                raise BenchError(f"{self.name} answered {self.transport.last[:200]!r} for {key}")

    def time(self, requests: Sequence[bytes]) -> None:
        feed: Callable[[bytes], None] = self.protocol.data_received
        start = time.perf_counter_ns()
        for request in requests:
            feed(request)
        self.samples.append((time.perf_counter_ns() - start) / len(requests))


def _traced_api(node: Node) -> tuple[ApiServer, Any]:
    """An API server of ``node`` with OpenTelemetry on, and its tracer provider."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from shoal.otel import Telemetry, api_route

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    telemetry = Telemetry(tracer_provider=provider)
    api = ApiServer(node, trace=lambda handler: telemetry.http_handler(handler, api_route))
    return api, provider


async def measure(rounds: int, token: bool = False, otel: bool = False) -> list[Candidate]:
    """Build the candidates on a running loop and time them."""
    node = Node(NodeConfig())
    group = node.group(GROUP, value_of)
    keys = [f"k{i}" for i in range(KEYS)]
    await asyncio.gather(*(group.get(key) for key in keys))
    api = ApiServer(node)
    # The API server's handler and fast path on an HttpServer of this script's own.
    server = _http.HttpServer(api.handle, HttpLimits.of(node.config), fast_get=api.fast_get)
    await server.start("127.0.0.1", 0)
    candidates: list[Candidate] = []
    secured: _http.HttpServer | None = None
    traced: _http.HttpServer | None = None
    provider: Any = None
    if otel:
        traced_api, provider = _traced_api(node)
        traced = traced_api._server
        await traced.start("127.0.0.1", 0)
    read_token = secrets.token_urlsafe(32)
    if token:
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as file:
            file.write(f"admin {secrets.token_urlsafe(32)}\nwrite {secrets.token_urlsafe(32)}\n")
            file.write(f"read {read_token}\n")
        try:
            tokens = ApiTokens(file.name)
        finally:
            os.unlink(file.name)
        secure_api = ApiServer(node, tokens=tokens)
        secured = _http.HttpServer(
            secure_api.handle,
            HttpLimits.of(node.config),
            fast_get=secure_api.fast_get,
            fast_guard=tokens,
        )
        await secured.start("127.0.0.1", 0)
    try:
        compiled = _http.SIMPLE_GET
        if compiled is None:
            raise BenchError("shoal._speedups is not built (or SHOAL_NO_SPEEDUPS is set)")
        candidates.append(Candidate("shoal", _http.HttpProtocol(server)))
        _http.SIMPLE_GET = None  # read by each connection when it is made
        try:
            candidates.append(Candidate("shoal, httptools only", _http.HttpProtocol(server)))
        finally:
            _http.SIMPLE_GET = compiled
        if secured is not None:
            candidates.append(Candidate(WITH_TOKEN, _http.HttpProtocol(secured)))
            candidates.append(Candidate(SENT, _http.HttpProtocol(server)))
            _http.SIMPLE_GET = None
            try:
                candidates.append(Candidate(WITH_TOKEN_PARSER, _http.HttpProtocol(secured)))
                candidates.append(Candidate(SENT_PARSER, _http.HttpProtocol(server)))
            finally:
                _http.SIMPLE_GET = compiled
        if traced is not None:
            candidates.append(Candidate(TRACED, _http.HttpProtocol(traced)))
        data = {key: value_of(key) for key in keys}
        candidates.append(Candidate(REFERENCE, MinimalProtocol(data)))
        order = keys[:]
        requests = [
            b"GET /api?key=%s HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n" % key.encode()
            for key in order
        ]
        authorized = [
            b"GET /api?key=%s HTTP/1.1\r\nHost: 127.0.0.1:9999\r\nAuthorization: Bearer %s\r\n\r\n"
            % (key.encode(), read_token.encode())
            for key in order
        ]
        for candidate in candidates:
            with_header = candidate.name.startswith((WITH_TOKEN, SENT))
            candidate.requests = authorized if with_header else requests
            candidate.check(candidate.requests, order)
        gc.disable()
        try:
            for r in range(rounds):
                shift = r % len(candidates)
                for candidate in candidates[shift:] + candidates[:shift]:
                    candidate.time(candidate.requests)
        finally:
            gc.enable()
        return candidates
    finally:
        for candidate in candidates:
            candidate.protocol.connection_lost(None)
        await server.aclose()
        if secured is not None:
            await secured.aclose()
        if traced is not None:
            await traced.aclose()
            provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 rounds instead of 200")
    parser.add_argument(
        "--token",
        action="store_true",
        help="also a node with API tokens, fed requests with a token (same run)",
    )
    parser.add_argument(
        "--otel", action="store_true", help="also the API server with OpenTelemetry on"
    )
    args = parser.parse_args(argv)
    rounds = 20 if args.quick else 200
    from shoal.node import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        candidates = runner.run(measure(rounds, args.token, args.otel))
    reference = candidates[-1]
    rows = []
    for candidate in candidates:
        pairs = zip(candidate.samples, reference.samples, strict=True)
        rows.append(
            [
                candidate.name,
                f"{median(candidate.samples):.0f}",
                f"{median([a / b for a, b in pairs]):.2f}x",
            ]
        )
    print(
        f"HTTP server cost per hit: GET /api?key= over {KEYS:,} keys ({VALUE_SIZE}-byte "
        f"values), one connection fed one request per read, {rounds} rounds, uvloop\n"
    )
    print(markdown_table(["connection", "ns/request (median)", "this ÷ reference"], rows))
    if args.token:
        by_name = {candidate.name: candidate for candidate in candidates}
        cost = []
        for with_token, sent, without in (
            (WITH_TOKEN, SENT, "shoal"),
            (WITH_TOKEN_PARSER, SENT_PARSER, "shoal, httptools only"),
        ):
            row = [with_token]
            for other in (sent, without):
                pairs = zip(by_name[with_token].samples, by_name[other].samples, strict=True)
                row.append(f"{median([a / b for a, b in pairs]):.3f}x")
            cost.append(row)
        print(
            "\nThe token check's cost per hit (same run): against a node without tokens fed "
            "the same requests (the check alone), and fed them without the header "
            "(the check and the header's bytes):\n"
        )
        print(
            markdown_table(
                ["with API tokens", "÷ no tokens, same requests", "÷ no tokens, no header"],
                cost,
            )
        )
    flags = " --quick" * args.quick + " --token" * args.token + " --otel" * args.otel
    print(f"\n{environment()}; command: `python bench/http_protocol.py{flags}`")
    return 0


if __name__ == "__main__":
    run(main)
