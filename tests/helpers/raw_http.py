"""A raw-socket HTTP/1.1 client for tests: exact bytes out, parsed answers in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self


@dataclass
class RawResponse:
    """One parsed answer."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> RawResponse:
    """Read one answer (status line, headers, Content-Length body)."""
    line = await reader.readuntil(b"\r\n")
    version, status, reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    assert version == "HTTP/1.1", line
    headers: dict[str, str] = {}
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    code = int(status)
    body = b""
    if not head and code >= 200 and code not in (204, 304):
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(code, reason, headers, body)


def build_request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request (Content-Length added when there is a body)."""
    fields = {"Host": "test"}
    if body:
        fields["Content-Length"] = str(len(body))
    fields.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


class Client:
    """One TCP connection to a test server."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> Self:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False) -> RawResponse:
        """Read the next answer."""
        return await read_response(self.reader, head=head)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        """Send one request and read its answer."""
        await self.send(build_request(method, target, body, headers))
        return await self.response(head=method == "HEAD")

    async def rest(self) -> bytes:
        """Everything until the server closes the connection (a reset counts as a close)."""
        try:
            return await self.reader.read()
        except ConnectionResetError:
            return b""


async def call(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """One request on a fresh connection."""
    async with Client(port) as client:
        return await client.request(method, target, body, headers)
