"""What a handler of the HTTP/1.1 server sees and answers: requests, responses, deferred answers.

Rules of this module:

- Bytes in: a :class:`Request` holds the *raw* path and query of the request
  target; nothing is decoded here.
- A :class:`Response` checks its status and header fields when it is built, so
  the server never writes a malformed head; how it becomes bytes is the
  server's business (:mod:`shoal._http.server`).
- A handler answers with a :class:`Response`, an awaitable of one, or a
  :class:`Deferred` on a future that already runs (see :data:`Handler` and
  :data:`FastGet` for the whole contract).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Final, Protocol

__all__ = [
    "Request",
    "Response",
    "Deferred",
    "Handler",
    "FastGet",
    "FastGuard",
    "json_response",
    "error_response",
    "JSON",
    "OCTET_STREAM",
    "TEXT",
]

JSON: Final = "application/json"
"""Content type of JSON answers."""
OCTET_STREAM: Final = "application/octet-stream"
"""Content type of raw value bytes."""
TEXT: Final = "text/plain; charset=utf-8"
"""Default content type of a :class:`Response`."""


class Request:
    """One parsed HTTP request, as a handler sees it.

    Args:
        method: the method, e.g. ``"GET"``.
        path: the raw path of the request target, not percent-decoded.
        query: the raw query string (without ``?``), not decoded; ``b""`` if none.
        headers: the header fields as received (name case preserved), in order.
        body: the whole body (chunked bodies are already de-chunked).
        keep_alive: whether the connection stays open after the answer.
        http_version: ``"1.1"`` or ``"1.0"``.
    """

    __slots__ = ("body", "headers", "http_version", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: bytes,
        query: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        keep_alive: bool = True,
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http_version = http_version

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path!r} query={self.query!r} body={len(self.body)}B>"

    def header(self, name: bytes | str) -> bytes | None:
        """The first value of header ``name`` (case-insensitive), or None if absent."""
        wanted = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


class Response:
    """An answer to a :class:`Request`.

    ``Content-Length``, ``Content-Type``, ``Date``, ``Server`` and ``Connection``
    are added by the server; ``headers`` holds any others. A 204 or 304 answer
    is sent without a body, and a HEAD request gets the headers only.

    Args:
        status: the status code, 200-599.
        body: the body bytes.
        content_type: the ``Content-Type``; default ``text/plain; charset=utf-8``.
        headers: extra ``(name, value)`` header fields.

    Raises:
        ValueError: a status out of range, or a header containing CR, LF or NUL.
    """

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        content_type: str = TEXT,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not 200 <= status <= 599:
            raise ValueError(f"a final response status is 200-599, got {status}")
        if headers:
            for field in headers:
                for part in field:
                    if "\r" in part or "\n" in part or "\0" in part:
                        raise ValueError(f"invalid character in header field {field!r}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.content_type} {len(self.body)}B>"


class Deferred:
    """An answer a running future will give: what a handler returns, instead of a
    coroutine, when the work already runs elsewhere (a load in its flight).

    The server answers from a callback on ``future``, with no task per request:
    ``convert(future)`` turns the finished future into the :class:`Response` (it
    is called only for a future that was not cancelled). The server cancels the
    future (the caller's own) if the request times out or its connection goes.
    Awaiting a ``Deferred`` gives the same answer, for callers other than the server.
    """

    __slots__ = ("convert", "future")

    def __init__(
        self, future: asyncio.Future[Any], convert: Callable[[asyncio.Future[Any]], Response]
    ) -> None:
        self.future = future
        self.convert = convert

    def __await__(self) -> Generator[Any, None, Response]:
        return self._wait().__await__()

    async def _wait(self) -> Response:
        await asyncio.wait((self.future,))
        return self.convert(self.future)


Handler = Callable[[Request], "Response | Awaitable[Response]"]
"""What an :class:`HttpServer` calls for each request: return a :class:`Response`
right away when the answer is at hand, or an awaitable of one (run as a task; a
:class:`Deferred` is answered from a callback instead)."""

FastGet = Callable[[bytes], "bytes | Response | Awaitable[Response] | None"]
"""An optional shortcut of an :class:`HttpServer` for the most frequent request.

It is called with the raw request target (``b"/api?key=k1"``, nothing decoded)
of a GET request when the answer could go out at once: HTTP/1.1, keep-alive,
no earlier answer pending on the connection. It returns:

- ``bytes``: the body of a ``200`` answer with ``Content-Type:
  application/octet-stream``, sent from a prebuilt header;
- a :class:`Response` or an awaitable of one: the answer, handled exactly as
  if the handler had returned it;
- ``None``: "not mine", and the request goes to the handler as usual. It must
  return None only before it has changed anything (statistics included), as
  the handler then sees the same request again.

Whatever it answers must be what the handler would answer for the request; the
hook exists only to skip building :class:`Request` and :class:`Response`
objects on the hot path.
"""


class FastGuard(Protocol):
    """What an :class:`HttpServer` with credentials asks before its ``fast_get``.

    With a guard, ``fast_get`` sees only a GET with exactly one ``Authorization``
    field whose value (without the spaces and tabs around it) the guard accepts;
    any other request goes to the handler, which decides (and answers a refusal).
    A connection remembers the last value accepted and, while the client sends
    that same value, is not asked again (:meth:`HttpServer.forget_credentials`
    makes every connection ask again, after the accepted values changed).
    """

    def accepts(self, authorization: bytes) -> bool:
        """Whether a request with this ``Authorization`` value may take the fast path."""
        ...


def json_response(
    data: Any, status: int = 200, *, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """A JSON :class:`Response` of ``data``."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, body, JSON, headers)


def error_response(
    status: int, code: str, message: str, *, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """The JSON error answer ``{"error": message, "code": code}`` with ``status``."""
    return json_response({"error": message, "code": code}, status, headers=headers)
