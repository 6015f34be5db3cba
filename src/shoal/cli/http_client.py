"""The one HTTP client of the command line and its tools: client commands, the
supervisor's readiness probes, the demo's requests and the local etcd's health check.

Rules: standard library only (``urllib``), so every command works wherever shoal is
installed, without extras. One timeout policy: every call names its ``timeout``, in
seconds, which bounds the connection and each wait for the answer (urllib's rule).
An answer with any status is a :class:`Reply`; no answer at all (refused, cut, timed
out, not HTTP) is a :class:`RequestFailed` whose message names the server, never a
traceback. The async form runs the same call in a worker thread, so the event loop
of a supervisor never blocks on a node.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Final

from .._version import __version__
from .common import CommandError

__all__ = ["Reply", "RequestFailed", "request", "request_async", "origin", "USER_AGENT"]

USER_AGENT: Final = f"shoal-cli/{__version__}"
"""The ``User-Agent`` of every request."""


@dataclass(frozen=True)
class Reply:
    """An answer: its status and its whole body (chunked bodies already joined)."""

    status: int
    """The HTTP status code."""
    body: bytes
    """The body."""


class RequestFailed(CommandError):
    """No answer: the server could not be reached, cut the connection, did not answer
    in time, or did not speak HTTP. The message names the server."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, for messages."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """Send one request and read the whole answer.

    Args:
        method: the HTTP method.
        url: the full URL.
        body: the request body (sent as ``application/octet-stream``), or None.
        timeout: seconds for the connection and for each wait for the answer.
        context: TLS settings for an ``https://`` URL (default: the system's CAs).

    Raises:
        RequestFailed: no answer (any status, 4xx and 5xx too, is a :class:`Reply`).
    """
    req = urllib.request.Request(
        url, data=body, method=method, headers={"User-Agent": USER_AGENT, "Accept": "*/*"}
    )
    if body is not None:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return Reply(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read())
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise RequestFailed(f"{origin(url)} did not answer within {timeout:g}s") from exc
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise RequestFailed(f"cannot reach {origin(url)}: {text}") from exc
    except TimeoutError as exc:
        raise RequestFailed(f"{origin(url)} did not answer within {timeout:g}s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise RequestFailed(f"cannot talk to {origin(url)}: {exc}") from exc


async def request_async(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    timeout: float,  # noqa: ASYNC109 - the socket timeout of the call, as in request()
    context: ssl.SSLContext | None = None,
) -> Reply:
    """:func:`request` in a worker thread, for code that runs an event loop.

    Raises:
        RequestFailed: as :func:`request`.
    """
    return await asyncio.to_thread(
        request, method, url, body=body, timeout=timeout, context=context
    )
