"""Raw gRPC calls for tests: exact request bytes, the status and ``shoal-code`` of the
answer, and the standard health check. The in-process gRPC clusters are
:func:`helpers.peer_nodes.grpc_cluster`."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2


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
