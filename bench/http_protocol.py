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

Every round times each candidate once over one pass of the requests, in a
rotating order, with the garbage collector off; the table shows the median
round in ns per request and the median of the per-round ratios to the
reference. Every answer is checked to be the right value.

Run: ``python bench/http_protocol.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

REFERENCE = "reference: bare httptools + dict protocol"


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


async def measure(rounds: int) -> list[Candidate]:
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
        data = {key: value_of(key) for key in keys}
        candidates.append(Candidate(REFERENCE, MinimalProtocol(data)))
        order = keys[:]
        requests = [
            b"GET /api?key=%s HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n" % key.encode()
            for key in order
        ]
        for candidate in candidates:
            candidate.check(requests, order)
        gc.disable()
        try:
            for r in range(rounds):
                shift = r % len(candidates)
                for candidate in candidates[shift:] + candidates[:shift]:
                    candidate.time(requests)
        finally:
            gc.enable()
        return candidates
    finally:
        for candidate in candidates:
            candidate.protocol.connection_lost(None)
        await server.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 rounds instead of 200")
    args = parser.parse_args(argv)
    rounds = 20 if args.quick else 200
    from shoal.node import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        candidates = runner.run(measure(rounds))
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
    print(f"\n{environment()}; command: `python bench/http_protocol.py{' --quick' * args.quick}`")
    return 0


if __name__ == "__main__":
    run(main)
