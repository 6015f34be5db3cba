"""Test kit for the gRPC transport: raw calls with exact request bytes, the status and
``shoal-code`` of the answer, and nodes of one process that talk gRPC to each other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2

from helpers.http_nodes import GROUP, Served, ValueLoader
from helpers.processes import free_ports
from shoal import Node, NodeConfig
from shoal.store import Clock


@dataclass(frozen=True)
class Answer:
    """What a raw call came back with."""

    status: grpc.StatusCode
    code: str
    """The ``shoal-code`` trailing metadata ('' if absent)."""
    details: str
    body: bytes | None
    """The answer's bytes on success."""


async def health_check(
    channel: grpc.aio.Channel, service: str, *, deadline: float = 30.0
) -> health_pb2.HealthCheckResponse:
    """``grpc.health.v1.Health/Check`` of ``service`` over ``channel``."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply: health_pb2.HealthCheckResponse = await check(
        health_pb2.HealthCheckRequest(service=service), timeout=deadline
    )
    return reply


async def raw_call(
    target: str | int, path: str, request: bytes, *, deadline: float = 10.0
) -> Answer:
    """Call ``path`` (``/service/Method``) on ``target`` (a port on 127.0.0.1, or
    ``host:port``) with exactly ``request`` as the message bytes."""
    address = f"127.0.0.1:{target}" if isinstance(target, int) else target
    async with grpc.aio.insecure_channel(address) as channel:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        try:
            body: bytes = await method(request, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            metadata = dict(exc.trailing_metadata() or ())
            code = metadata.get("shoal-code", "")
            return Answer(
                exc.code(),
                code if isinstance(code, str) else code.decode(),
                exc.details() or "",
                None,
            )
    return Answer(grpc.StatusCode.OK, "", "", body)


@asynccontextmanager
async def grpc_cluster(
    n: int = 3,
    *,
    clock: Clock | None = None,
    config: dict[str, Any] | None = None,
    **group_options: Any,
) -> AsyncIterator[list[Served]]:
    """``n`` started nodes talking gRPC on free ports of 127.0.0.1, each serving
    ``scores`` through a :class:`ValueLoader`, all listing all as static peers."""
    ports = free_ports(n)
    urls = tuple(f"http://127.0.0.1:{port}" for port in ports)
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    async with AsyncExitStack() as stack:
        nodes = []
        for port, url in zip(ports, urls, strict=True):
            cfg = NodeConfig(port=port, peers=urls, transport="grpc", **(config or {}))
            node = Node(cfg, **kwargs)
            loader = ValueLoader()
            group = node.group(GROUP, loader, **group_options)
            await stack.enter_async_context(node)
            nodes.append(Served(node, group, loader, url))
        yield nodes
