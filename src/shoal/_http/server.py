"""A small, strict HTTP/1.1 server on ``asyncio.Protocol`` and ``httptools``.

This is the data path of the HTTP API and of the HTTP peer port, so it is built
for a high request rate and for hostile input. The connection
(:class:`HttpProtocol`, with the cache-hit path), the server that owns the
connections and the encoding of answers stay in this one module on purpose:
the hit path reads their module constants and shared state directly, and
splitting them would add lookups to every hit.

Rules of this module:

- Bytes in, bytes out. A handler receives a :class:`Request` whose path and
  query are the *raw* bytes of the request target (nothing is decoded here), and
  returns a :class:`Response`, or an awaitable of one.
- A handler that returns a ready :class:`Response` (a cache hit) is answered
  inside ``data_received``: no task, no coroutine, one ``write`` per batch of
  requests. Only an awaitable result becomes a task, owned by the server.
- An optional ``fast_get`` hook sees the raw target of a plain GET (HTTP/1.1,
  keep-alive, nothing queued ahead on the connection) before any
  :class:`Request` is built. When it returns bare bytes, the answer is a
  prebuilt ``200`` header plus those bytes, exactly what the general path
  would send for ``Response(200, data, fast_content_type, fast_headers)``
  (``application/octet-stream`` and no extra header unless the server is told
  otherwise); this is the cache-hit path of the API and of the peer protocol,
  and the reason for most of the shortcuts below. A read that is exactly one
  such GET with no connection-level header (the usual read of a client asking
  for hits) reaches ``fast_get`` without the parser: the C recognizer
  :data:`SIMPLE_GET` accepts a strict subset of what httptools accepts and
  gives the target.
- A server with a ``fast_guard`` (API tokens) takes the fast path only for a
  request whose one ``Authorization`` value the guard accepts. A connection
  keeps the value last accepted, and the compiled recognizer compares the next
  request's value with it (in constant time): a client that keeps its token is
  checked once per connection, not once per request. Everything else goes to
  the handler, which checks the request itself.
- Responses leave in request order (pipelining). While an earlier answer is
  pending, later ones queue behind it. Pipelined requests with safe methods
  (GET, HEAD) run in parallel, at most ``max_pipeline`` tasks per connection;
  a request with any other method runs alone, after those before it. Reading
  pauses while the queue is full or the transport's write buffer is.
- One timer per connection, re-armed lazily: the header, body and keep-alive
  timeouts only move a deadline; the timer callback re-schedules itself when it
  fires early. Inside ``data_received`` the deadline is only recorded (from one
  clock reading per read) and the timer is re-armed at most once, after the
  parser is done with the data, so a request costs no timer operation. Handler
  time is bounded separately by ``request_timeout``.
- The ``Date`` header is formatted by a one-second timer of the server, not
  per answer.
- The server accepts its connections itself (a reader on each listening
  socket, on asyncio's loop and on uvloop alike), so running out of file
  descriptors (``EMFILE``/``ENFILE``) is seen: each failed ``accept`` is counted
  (:attr:`HttpServer.accept_errors`), logged at most every ten seconds, and
  accepting pauses briefly (growing to a second) while it lasts; the pending
  connections wait in the backlog meanwhile.
- No input crashes the server. Malformed requests get a JSON 4xx and the
  connection closes (after a short lingering drain, so the client can read the
  answer); a failing handler gets a JSON 500 and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import functools
import hmac
import http
import inspect
import logging
import math
import os
import socket
import ssl
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NoReturn, cast

import httptools

from .._deadlines import Deadlines, Watch
from .._native import load_speedups
from .limits import HttpLimits
from .messages import (
    OCTET_STREAM,
    Deferred,
    FastGet,
    FastGuard,
    Handler,
    Request,
    Response,
    error_response,
)
from .tls_transport import accept_tls

__all__ = [
    "HttpServer",
    "ServerFront",
    "HttpProtocol",
    "SIMPLE_GET",
    "MAX_PIPELINE",
    "SHUTDOWN_TIMEOUT",
]

log = logging.getLogger("shoal.api")

_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""``accept`` errnos that mean the process or the system is out of descriptors or memory."""
ACCEPT_PAUSE: Final = (0.05, 1.0)
"""First and longest pause of accepting, in seconds, while accept runs out of resources."""
ACCEPT_LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about accept running out of resources."""


MAX_PIPELINE: Final = 32
"""Default bound on handler tasks running per connection, and on queued answers
before the connection stops reading."""
SHUTDOWN_TIMEOUT: Final = 5.0
"""Default seconds :meth:`HttpServer.aclose` lets in-flight requests finish."""

# After an error answer the server shuts its side down and keeps reading (and
# discarding) for a while: closing a socket with unread input makes the kernel
# send a reset, which can destroy the answer before the client has read it.
_LINGER_SECONDS: Final = 2.0
# A connection that will not be parsed any more (closing, or lingering) may
# still send this much before it is aborted.
_DISCARD_LIMIT: Final = 1 << 20
# Bodies above this size are written separately instead of being copied into
# the header bytes.
_JOIN_LIMIT: Final = 64 << 10
# Fast-path heads kept per second (one per body length; most caches hold values of
# a few sizes, and the set starts again when it is full).
_OK_HEADS_KEPT: Final = 1024

_IDLE: Final = 0  # between requests (or before the first one)
_HEADERS: Final = 1  # a request has begun; its headers are not complete
_BODY: Final = 2  # headers complete; the body is arriving

_METHODS: Final[dict[bytes, str]] = {
    m.encode(): m for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE")
}
# Pipelined requests with these methods may run in parallel (RFC 9112 §9.3.2);
# any other request waits for the ones before it, and the ones after wait for it,
# so a pipelined GET after a PUT sees the PUT.
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# The header names (lower case) on_header looks at: the body's framing, Expect,
# and those the parser reads keep-alive from. And the lengths of these names.
_SPECIAL_HEADERS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"connection", b"proxy-connection"}
)
_SPECIAL_SIZES: Final = frozenset(len(name) for name in _SPECIAL_HEADERS)
_SERVER_AND_DATE: Final = b"Server: shoal\r\nDate: "
_NO_BODY_STATUSES: Final = frozenset({204, 304})

SimpleGet = Callable[[bytes, int, "bytes | None"], "bytes | None"]
"""``simple_get(data, limit, credential)``: the target of a read that is one simple
GET (whose one ``Authorization`` value is ``credential``, unless that is None), else None."""


def _load_simple_get() -> SimpleGet | None:
    """The compiled recognizer of simple GETs, or None (not built, or ``SHOAL_NO_SPEEDUPS`` set)."""
    speedups = load_speedups()
    if speedups is None:  # the parser does it all
        return None
    simple_get: SimpleGet = speedups.simple_get
    try:
        simple_get(b"", 0, None)
    except TypeError:  # an extension built from an older source: the parser does it all
        return None
    return simple_get


SIMPLE_GET: SimpleGet | None = _load_simple_get()
"""The parser-free shortcut of :class:`HttpProtocol`: a read that is exactly one
keep-alive HTTP/1.1 GET with no body and no connection-level header (most reads
of a client asking for cache hits) goes straight to ``fast_get`` without the
httptools callbacks. None when the C extension ``shoal._speedups`` is not
built or ``SHOAL_NO_SPEEDUPS`` is set; answers are the same either way."""


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


_STATUS_LINES: Final[dict[int, bytes]] = {s.value: _status_line(s.value) for s in http.HTTPStatus}


def _internal_error() -> Response:
    return error_response(500, "internal", "internal server error")


@functools.lru_cache(maxsize=64)
def _content_type_line(content_type: str) -> bytes:
    """``Content-Type: <type>\\r\\nContent-Length: `` (memoized: a handful of types recur)."""
    return b"Content-Type: " + content_type.encode("latin-1") + b"\r\nContent-Length: "


def _encode(
    response: Response, date: bytes, *, head: bool, close: bool, keep_alive_header: bool
) -> tuple[bytes, bytes]:
    """Serialize ``response``: (header bytes, body bytes to send after them)."""
    status = response.status
    body = response.body
    parts = [
        _STATUS_LINES.get(status) or _status_line(status),
        _SERVER_AND_DATE,
        date,
        b"\r\n",
    ]
    if status in _NO_BODY_STATUSES:
        body = b""
    else:
        parts += (
            _content_type_line(response.content_type),
            str(len(body)).encode("ascii"),
            b"\r\n",
        )
    for name, value in response.headers:
        parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
    if close:
        parts.append(b"Connection: close\r\n\r\n")
    elif keep_alive_header:
        parts.append(b"Connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    if head or not body:
        return b"".join(parts), b""
    if len(body) <= _JOIN_LIMIT:
        parts.append(body)
        return b"".join(parts), b""
    return b"".join(parts), body


def _fast_head(date: bytes, content_type: str = OCTET_STREAM) -> bytes:
    """The start of a fast-path ``200`` answer, up to the Content-Length value.

    The fast path appends ``<length>``, the tail (:func:`_fast_tail`) and the
    body; the pieces are those of :func:`_encode`, so both paths send the same bytes.
    """
    return b"".join(
        (_STATUS_LINES[200], _SERVER_AND_DATE, date, b"\r\n", _content_type_line(content_type))
    )


def _fast_tail(headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """What follows the Content-Length value of a fast-path answer, up to the body."""
    parts = [b"\r\n"]
    for name, value in headers:
        parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a raw request target into (path, query), both still encoded."""
    if target[:1] != b"/" and target != b"*":
        # absolute-form ("GET http://host/p?q HTTP/1.1"), which servers must accept
        try:
            # Any: httptools' stubs say bytes, but absent parts are None.
            url: Any = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            return target, b""
        return url.path or b"/", url.query or b""
    fragment = target.find(b"#")
    if fragment >= 0:
        target = target[:fragment]
    path, _, query = target.partition(b"?")
    return path, query


class _Rejected(Exception):
    """Raised inside a parser callback to stop parsing; the reason is on the protocol."""


_FAST_GET: Final = Request("GET", b"")
"""The request of every answer the fast path leaves for later (a keep-alive
HTTP/1.1 GET whose handler has already run): what the answer needs of it."""


class _Slot:
    """A place in a connection's answer queue: one request, or a raw interim answer."""

    __slots__ = ("close", "deferred", "request", "response", "task", "timer")

    def __init__(
        self, request: Request | None, response: Response | bytes | None = None, close: bool = False
    ) -> None:
        self.request = request
        self.response = response
        self.task: asyncio.Task[Response] | None = None
        self.deferred: Deferred | None = None
        self.timer: Watch | asyncio.TimerHandle | None = None
        self.close = close


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection of an :class:`HttpServer` (created by the server).

    The httptools parser calls the ``on_*`` methods while ``data_received``
    feeds it; they are not meant to be called otherwise.
    """

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._handler = server.handler
        self._fast_get = server.fast_get
        self._loop = server.loop
        limits = server.limits
        self._max_head = limits.max_header_bytes
        self._max_body = limits.max_body_bytes
        self._header_timeout = limits.header_timeout
        self._body_timeout = limits.body_timeout
        self._keepalive_timeout = limits.keepalive_timeout
        self._max_pipeline = server.max_pipeline
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # The parser-free shortcut for a read that is one simple GET (only with fast_get).
        self._simple_get = SIMPLE_GET if self._fast_get is not None else None
        # With a guard: the Authorization value last accepted on this connection,
        # which the recognizer requires (b"": none yet, the recognizer takes nothing).
        self._guard = server.fast_guard
        self._credential: bytes | None = None if self._guard is None else b""

        # The request being received.
        self._state = _IDLE
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._stall_bytes = 0
        self._progress = False
        # Whether the request has one of the headers that change how it is read
        # (_SPECIAL_HEADERS); the four fields after it are valid only then, and
        # reset by the first such header (most requests have none).
        self._special = False
        self._content_length: int | None = None
        self._chunked = False
        self._expect: bytes | None = None
        self._connection_header = False
        self._body: list[bytes] | None = None  # None until a piece arrives
        self._body_bytes = 0  # reset by on_headers_complete when a body follows
        self._method = "GET"
        self._version = "1.1"
        self._keep_alive = True
        self._fast = False  # a GET on_message_complete may answer through fast_get
        self._rejection: tuple[int, str, str] | None = None

        # Answers, in request order. _unstarted holds the queued requests whose
        # handler has not been called yet (a subset of _pending, in order).
        self._pending: deque[_Slot] = deque()
        self._unstarted: deque[_Slot] = deque()
        self._running = 0
        self._unsafe_running = False
        # While data_received feeds the parser (_feeding), answers collect in
        # _out and leave in one write when the feed is done.
        self._feeding = False
        self._out: list[bytes] = []

        # Connection state.
        self._accepting = True  # False once no further request will be parsed
        self._error = False  # the connection ends on a protocol error: linger
        self._close_requested = False
        self._close_deferred = False
        self._lingering = False
        self._discarded = 0
        self._reading_paused = False
        self._writing_paused = False

        # The one timer: _deadline is what counts; the handle may fire early.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when _timer fires; infinity while there is none
        # The loop's clock when the current data_received began: deadlines set
        # while feeding count from it (a read is parsed within microseconds).
        self._now = 0.0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start a connection: arm the first-request timeout."""
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Answers are written whole; Nagle would only add latency.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._connection_made(self)
        if self._server.closing:
            self._accepting = False
            self._begin_close()
            return
        self._set_deadline(self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: cancel its timer and its handler tasks."""
        self._transport = None
        self._accepting = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        for slot in self._pending:
            if slot.task is not None:
                slot.task.cancel()
            deferred = slot.deferred
            if deferred is not None:
                self._deferred_finished(slot)
                deferred.future.cancel()
        self._pending.clear()
        self._unstarted.clear()
        self._server._connection_lost(self)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; answers produced meanwhile go out in one write."""
        if not self._accepting:
            self._discard(len(data))
            return
        self._progress = False
        self._now = self._loop.time()
        self._feeding = True
        try:
            # The usual read, one whole simple GET, needs no parser (see _speedups).
            if (
                self._state != _IDLE
                or self._pending
                or self._simple_get is None
                or (url := self._simple_get(data, self._max_head, self._credential)) is None
                or not self._fast_answer(url)
            ):
                self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._parse_stopped(exc)
        except httptools.HttpParserUpgrade:
            # Normally refused in on_headers_complete; kept as a safety net.
            if self._accepting:
                self._protocol_error(
                    400, "upgrade_not_supported", "protocol upgrades are not supported"
                )
        except httptools.HttpParserError as exc:
            if self._accepting:
                self._protocol_error(400, "bad_request", f"malformed HTTP request: {exc}")
        except Exception:
            log.exception("unexpected error while parsing an HTTP request")
            if self._accepting:
                self._protocol_error(500, "internal", "internal server error")
        else:
            if self._state == _HEADERS and self._accepting:
                self._check_stalled_headers(len(data))
        finally:
            self._feeding = False
            out = self._out
            if out:
                self._out = []  # before writing: a failed write is not sent again
                transport = self._transport
                if transport is not None and not transport.is_closing():
                    transport.writelines(out)  # a single piece is not copied
            if self._close_deferred:
                self._close_deferred = False
                self._finish_close()
        # Both checks are inlined: they run on every read and rarely have work.
        if self._pending or self._reading_paused or self._writing_paused:
            self._update_flow()
        deadline = self._deadline
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)

    def eof_received(self) -> bool | None:
        """The client shut its side: answer what is queued, then close."""
        self._accepting = False
        if self._pending and not self._close_requested:
            return True  # keep the transport open to write the answers
        return None

    def pause_writing(self) -> None:
        """The transport's write buffer is full: stop reading more requests."""
        self._writing_paused = True
        self._update_flow()

    def resume_writing(self) -> None:
        """The transport's write buffer drained: read again if the queue allows."""
        self._writing_paused = False
        self._update_flow()

    # -- httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        """A request starts: reset the per-request state, start the header timeout."""
        if not self._accepting:
            # A request pipelined after "Connection: close" (or during shutdown):
            # stop the parser here; the connection closes after the earlier answers.
            raise _Rejected
        self._state = _HEADERS
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._stall_bytes = 0
        self._special = False
        self._body = None
        # Always inside data_received, which arms the timer when it is done (see
        # _set_deadline); usually the whole request is in this read and the
        # keep-alive deadline replaces this one before then.
        self._deadline = self._now + self._header_timeout

    def on_url(self, url: bytes) -> None:
        """A piece of the request target (several if it spans reads)."""
        self._head_bytes += len(url)
        url = self._url + url
        self._url = url
        self._progress = True
        if len(url) > self._max_head:
            self._reject(414, "uri_too_long", f"request target longer than {self._max_head} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One complete header field."""
        self._headers.append((name, value))
        size = len(name)
        head_bytes = self._head_bytes + size + len(value) + 4
        self._head_bytes = head_bytes
        self._progress = True
        if head_bytes > self._max_head:
            self._reject(
                431,
                "headers_too_large",
                f"request line and headers longer than {self._max_head} bytes",
            )
        if size not in _SPECIAL_SIZES:
            return  # most headers: cheaper than lower-casing every name
        name = name.lower()
        if name not in _SPECIAL_HEADERS:
            return
        if not self._special:
            self._special = True
            self._content_length = None
            self._chunked = False
            self._expect = None
            self._connection_header = False
        if name == b"content-length":
            try:
                self._content_length = int(value)
            except ValueError:
                self._reject(400, "bad_request", "malformed Content-Length")
        elif name == b"expect":
            self._expect = value
        elif name == b"transfer-encoding":
            self._chunked = True  # httptools validates it; any value means a body may follow
        else:  # connection, proxy-connection
            self._connection_header = True  # see on_headers_complete

    def on_headers_complete(self) -> None:
        """Headers done: check limits and expectations before any body is read."""
        parser = self._parser
        self._state = _BODY
        if parser.should_upgrade():  # "Connection: upgrade" or CONNECT
            self._reject(400, "upgrade_not_supported", "protocol upgrades are not supported")
        method = parser.get_method()
        self._method = _METHODS.get(method) or method.decode("ascii", "replace")
        self._keep_alive = keep_alive = parser.should_keep_alive()
        # get_http_version() formats a new string on every call, a good part of
        # the parsing cost of a small request. The parser (llhttp) takes the
        # versions 0.9, 1.0, 1.1 and 2.0, and keeps a connection alive for any of
        # them but 1.1 only when a Connection (or Proxy-Connection) header says
        # so: a keep-alive request without such a header is HTTP/1.1.
        if not self._special:
            # No body, no expectation, and no Connection header (see above).
            if keep_alive:
                self._version = "1.1"
                self._fast = self._method == "GET"
            else:
                self._version = parser.get_http_version()
                self._fast = False
            return  # on_message_complete follows at once, in this same feed
        if keep_alive and not self._connection_header:
            self._version = "1.1"
        else:
            self._version = parser.get_http_version()
        self._fast = keep_alive and self._version == "1.1" and self._method == "GET"
        length = self._content_length
        if length is not None and length > self._max_body:
            # Answered before reading a byte of the body.
            self._reject(413, "body_too_large", f"request body larger than {self._max_body} bytes")
        if self._expect is not None and self._version != "1.0":  # HTTP/1.0 ignores Expect
            if self._expect.lower() != b"100-continue":
                self._reject(417, "expectation_failed", "only 'Expect: 100-continue' is supported")
            if length != 0:
                self._interim(_CONTINUE)
        if length or self._chunked:
            self._body_bytes = 0
            self._set_deadline(self._body_timeout)
        # else on_message_complete follows at once, in this same feed

    def on_body(self, body: bytes) -> None:
        """A piece of the body (de-chunked)."""
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            self._reject(413, "body_too_large", f"request body larger than {self._max_body} bytes")
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        """A whole request arrived: answer it (fast path) or hand it to the handler."""
        self._state = _IDLE
        if (
            self._fast
            and self._fast_get is not None
            and self._accepting
            and not self._pending
            and (self._guard is None or self._vouched())
            and self._fast_answer(self._url)
        ):
            return
        self._dispatch(self._take_request())

    def _vouched(self) -> bool:
        """Whether the guard accepts the one ``Authorization`` value of the request
        just parsed; an accepted value is remembered for the next requests."""
        assert self._guard is not None
        value: bytes | None = None
        for name, field in self._headers:
            if len(name) == 13 and name.lower() == b"authorization":
                if value is not None:
                    return False  # two of them: the handler refuses the request
                value = field
        if value is None:
            return False
        value = value.strip(b" \t")
        credential = self._credential
        if credential and hmac.compare_digest(value, credential):
            return True  # the value verified last on this connection
        if not self._guard.accepts(value):
            return False
        self._credential = value
        return True

    def forget_credential(self) -> None:
        """Check the next request's credentials again (the accepted ones changed)."""
        if self._guard is not None:
            self._credential = b""

    def _fast_answer(self, url: bytes) -> bool:
        """Answer a keep-alive HTTP/1.1 GET through ``fast_get``, if it will.

        Only with nothing queued ahead: the general path would then send the
        answer at once, with no Connection header, and wait for the next request
        under the keep-alive timeout; this does just that. False (nothing done)
        when ``fast_get`` leaves the request to the general path.
        """
        assert self._fast_get is not None
        try:
            result = self._fast_get(url)
        except Exception:
            log.exception("HTTP fast path failed on GET %r", url[:128])
            result = _internal_error()
        if type(result) is bytes:
            # 200: what _send(request, Response(200, result, fast_content_type,
            # fast_headers)) writes, from the header the server keeps ready.
            server = self._server
            size = len(result)
            # ok_head(size), its lookup inlined: a hit saves the call.
            head = server.ok_heads.get(size) or server.ok_head(size)
            if size <= _JOIN_LIMIT:
                self._out.append(head + result)
            else:
                self._out += (head, result)
            self._deadline = self._now + self._keepalive_timeout  # as _after_answer
            return True
        if result is None:
            return False
        # The handler has run: all the answer needs of the request is that it is a
        # keep-alive HTTP/1.1 GET, so no Request is built.
        self._answer(_FAST_GET, cast("Response | Awaitable[Response]", result))
        return True

    # -- requests and answers ---------------------------------------------------

    def _take_request(self) -> Request:
        """The :class:`Request` just parsed (stop accepting more if it closes the connection)."""
        body = self._body
        path, query = _split_target(self._url)
        request = Request(
            self._method,
            path,
            query,
            self._headers,
            b"" if body is None else body[0] if len(body) == 1 else b"".join(body),
            keep_alive=self._keep_alive,
            http_version=self._version,
        )
        if not request.keep_alive:
            self._accepting = False
        return request

    def _dispatch(self, request: Request) -> None:
        if not self._pending:
            # The common case: nothing queued ahead, so a ready answer goes out now.
            self._answer(request, self._invoke(request))
            return
        slot = _Slot(request)
        self._pending.append(slot)
        if self._unstarted or not self._may_start(request):
            self._unstarted.append(slot)
            self._after_answer()
            return
        self._start(slot)
        self._advance()

    def _answer(self, request: Request, result: Response | Awaitable[Response]) -> None:
        """Answer a request with nothing queued ahead of it: now, or when its task is done."""
        if isinstance(result, Response):
            self._send(request, result)
            self._after_answer()
            return
        slot = _Slot(request)
        self._pending.append(slot)
        self._run(slot, result)
        self._advance()

    def _may_start(self, queued: Request | _Slot) -> bool:
        """Whether a request queued behind others may have its handler called now."""
        if self._unsafe_running or self._running >= self._max_pipeline:
            return False
        request = queued.request if isinstance(queued, _Slot) else queued
        return request is None or request.method in _SAFE_METHODS or self._running == 0

    def _invoke(self, request: Request) -> Response | Awaitable[Response]:
        try:
            return self._handler(request)
        except Exception:
            log.exception("HTTP handler failed on %s %r", request.method, request.path)
            return _internal_error()

    def _start(self, slot: _Slot) -> None:
        assert slot.request is not None
        result = self._invoke(slot.request)
        if isinstance(result, Response):
            slot.response = result
        else:
            self._run(slot, result)

    def _run(self, slot: _Slot, result: Awaitable[Response]) -> None:
        if type(result) is Deferred:
            self._defer(slot, result)
            return
        if not inspect.isawaitable(result):
            log.error("HTTP handler returned %r, not a Response or an awaitable", result)
            slot.response = _internal_error()
            return
        task = self._loop.create_task(self._server._respond(result))
        slot.task = task
        self._running += 1
        if slot.request is not None and slot.request.method not in _SAFE_METHODS:
            self._unsafe_running = True
        self._server._track(task)
        task.add_done_callback(functools.partial(self._task_done, slot, result))

    def _task_done(
        self, slot: _Slot, result: Awaitable[Response], task: asyncio.Task[Response]
    ) -> None:
        self._running -= 1
        if slot.request is not None and slot.request.method not in _SAFE_METHODS:
            self._unsafe_running = False
        slot.task = None
        if task.cancelled():
            if inspect.iscoroutine(result):
                # Cancelled before it ever ran: close it so it is not reported as
                # "never awaited" (a no-op if it did run).
                result.close()
            if self._transport is None or self._close_requested:
                return
            slot.response = error_response(503, "shutting_down", "the server is shutting down")
            slot.close = True
        else:
            slot.response = task.result()  # _respond never raises
        self._advance()

    def _defer(self, slot: _Slot, deferred: Deferred) -> None:
        """Answer ``slot`` when ``deferred``'s future is done, or 504 at ``request_timeout``."""
        slot.deferred = deferred
        self._running += 1
        if slot.request is not None and slot.request.method not in _SAFE_METHODS:
            self._unsafe_running = True
        on_expire = functools.partial(self._deferred_timeout, slot)
        deadlines = self._server._deadlines
        if deadlines is not None:  # the server's one timer for every request
            slot.timer = deadlines.watch(on_expire)
        else:  # a server used without start() (tests)
            slot.timer = self._loop.call_later(self._server.limits.request_timeout, on_expire)
        deferred.future.add_done_callback(functools.partial(self._deferred_done, slot))

    def _deferred_finished(self, slot: _Slot) -> Deferred | None:
        """Take ``slot``'s deferred answer off it (None if it was already settled)."""
        deferred = slot.deferred
        if deferred is None:
            return None
        slot.deferred = None
        self._running -= 1
        if slot.request is not None and slot.request.method not in _SAFE_METHODS:
            self._unsafe_running = False
        timer = slot.timer
        if timer is not None:
            slot.timer = None
            if type(timer) is Watch:
                timer.done = True  # the shared timer drops it
            else:
                timer.cancel()
        return deferred

    def _deferred_done(self, slot: _Slot, future: asyncio.Future[Any]) -> None:
        deferred = self._deferred_finished(slot)
        if deferred is None:
            return  # timed out (or the connection went) before
        if future.cancelled():
            if self._transport is None or self._close_requested:
                return
            slot.response = error_response(503, "shutting_down", "the server is shutting down")
            slot.close = True
        else:
            try:
                slot.response = deferred.convert(future)
            except Exception:
                log.exception("HTTP handler failed")
                slot.response = _internal_error()
        self._advance()

    def _deferred_timeout(self, slot: _Slot) -> None:
        slot.timer = None
        deferred = self._deferred_finished(slot)
        if deferred is None:
            return
        timeout = self._server.limits.request_timeout
        slot.response = error_response(
            504, "request_timeout", f"no answer within {timeout} seconds"
        )
        deferred.future.cancel()  # this request's wait only; the work goes on
        self._advance()

    def _advance(self) -> None:
        """Write every answer that is ready at the head of the queue; start queued requests."""
        pending = self._pending
        while self._transport is not None and not self._close_requested:
            while pending:
                slot = pending[0]
                response = slot.response
                if response is None:
                    break
                pending.popleft()
                if isinstance(response, bytes):  # an interim answer (100 Continue)
                    self._write(response)
                    continue
                self._send(slot.request, response, slot.close)
                if self._close_requested:
                    return
            unstarted = self._unstarted
            if unstarted and self._may_start(unstarted[0]):
                self._start(unstarted.popleft())
                continue
            break
        self._after_answer()
        # Else data_received adjusts reading when it is done; the check is inlined, as
        # there: with nothing queued and nothing paused there is nothing to adjust.
        if not self._feeding and (self._pending or self._reading_paused or self._writing_paused):
            self._update_flow()

    def _after_answer(self) -> None:
        """Re-arm the timer or close a finished connection."""
        if self._transport is None or self._close_requested:
            return
        if not self._pending:
            if not self._accepting:
                self._begin_close()
                return
            if self._state == _IDLE:
                self._set_deadline(self._keepalive_timeout)
        elif self._state == _IDLE:
            self._deadline = None  # waiting on handlers; request_timeout bounds them

    def _send(self, request: Request | None, response: Response, close: bool = False) -> None:
        if request is not None and not request.keep_alive:
            close = True
        elif not self._accepting and not self._pending:
            close = True  # the last answer of a connection that is closing
        server = self._server
        if (
            request is _FAST_GET
            and not close
            and response.status == 200
            and response.content_type == server.fast_content_type
            and response.headers == server.fast_headers
            and len(response.body) <= _JOIN_LIMIT
        ):
            # A fast-path GET answered later (a miss): the fast path's bytes.
            body = response.body
            self._write(server.ok_head(len(body)) + body)
            return
        head = request is not None and request.method == "HEAD"
        keep_alive_header = request is not None and request.http_version == "1.0" and not close
        date = self._server.date
        try:
            header, body = _encode(
                response, date, head=head, close=close, keep_alive_header=keep_alive_header
            )
        except (UnicodeEncodeError, ValueError):
            log.exception("cannot serialize %r", response)
            header, body = _encode(
                _internal_error(), date, head=head, close=close, keep_alive_header=False
            )
        self._write(header)
        if body:
            self._write(body)
        if close:
            self._accepting = False
            self._begin_close()

    def _interim(self, data: bytes) -> None:
        """Send an interim (1xx) answer, after any answers still due."""
        if self._pending:
            self._pending.append(_Slot(None, data))
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._feeding:
            self._out.append(data)
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- errors, limits and closing ---------------------------------------------

    def _reject(self, status: int, code: str, message: str) -> NoReturn:
        """Stop the parser from inside a callback; data_received answers with this."""
        self._rejection = (status, code, message)
        raise _Rejected

    def _parse_stopped(self, exc: httptools.HttpParserCallbackError) -> None:
        rejection = self._rejection
        if rejection is not None:
            self._rejection = None
            self._protocol_error(*rejection)
        elif self._accepting:
            log.error("HTTP parser callback failed", exc_info=exc.__context__ or exc)
            self._protocol_error(500, "internal", "internal server error")
        # else: the parser was stopped on purpose because the connection is closing

    def _check_stalled_headers(self, size: int) -> None:
        # httptools holds a header field until it is complete, so a single huge
        # field is invisible to on_header. A read that made no visible progress
        # inside the headers is all header bytes: count it against the limit.
        if self._progress:
            self._stall_bytes = 0
        else:
            self._stall_bytes += size
        if self._head_bytes + self._stall_bytes > self._max_head:
            self._protocol_error(
                431,
                "headers_too_large",
                f"request line and headers longer than {self._max_head} bytes",
            )

    def _protocol_error(self, status: int, code: str, message: str) -> None:
        """Answer a bad request (after the answers still due) and close the connection."""
        self._accepting = False
        self._error = True
        self._state = _IDLE
        self._deadline = None
        response = error_response(status, code, message)
        if self._pending:
            self._pending.append(_Slot(None, response, close=True))
            self._update_flow()  # keep reading (and discarding) to notice the client leave
        else:
            self._send(None, response, close=True)

    def _begin_close(self) -> None:
        if self._close_requested:
            return
        self._close_requested = True
        self._accepting = False
        for slot in self._pending:
            if slot.task is not None:
                slot.task.cancel()
            deferred = slot.deferred
            if deferred is not None:
                self._deferred_finished(slot)
                deferred.future.cancel()
        self._pending.clear()
        self._unstarted.clear()
        if self._feeding:
            self._close_deferred = True  # data_received writes the answers first
            return
        self._finish_close()

    def _finish_close(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._error and transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.close()
                return
            self._lingering = True
            self._set_deadline(_LINGER_SECONDS)
            self._update_flow()
        else:
            transport.close()

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > _DISCARD_LIMIT and self._transport is not None:
            self._transport.abort()

    def _update_flow(self) -> None:
        pause = self._accepting and (
            self._writing_paused or len(self._pending) > self._max_pipeline
        )
        if pause is self._reading_paused:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # -- the timer ----------------------------------------------------------------

    def _set_deadline(self, timeout: float) -> None:
        """Let the connection live ``timeout`` more seconds in its current state."""
        if self._feeding:
            # data_received arms the timer once, after the parser is done with
            # the data: a read with a whole request moves the deadline twice
            # (header timeout, then keep-alive) and neither needs a timer call.
            self._deadline = self._now + timeout
            return
        deadline = self._loop.time() + timeout
        self._deadline = deadline
        if deadline < self._timer_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        """Make the timer fire at ``deadline`` (a later deadline never re-arms it:
        _on_timer then finds the deadline not reached and re-schedules itself)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        deadline = self._deadline
        transport = self._transport
        if deadline is None or transport is None:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
            return
        self._deadline = None
        if self._lingering or self._close_requested:
            transport.close()
        elif self._state == _HEADERS:
            self._protocol_error(408, "header_timeout", "request headers took too long")
        elif self._state == _BODY:
            self._protocol_error(408, "body_timeout", "request body took too long")
        elif not self._pending:
            transport.close()  # idle keep-alive connection (or one that never sent a byte)

    # -- server shutdown ----------------------------------------------------------

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the answers due."""
        self._accepting = False
        if self._lingering:
            if self._transport is not None:
                self._transport.close()
        elif not self._pending:
            self._begin_close()
        else:
            self._update_flow()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()


class HttpServer:
    """An HTTP/1.1 server: listening sockets, connections and handler tasks.

    Args:
        handler: called with each :class:`Request`; see :data:`Handler`.
        fast_get: an optional shortcut for plain GET requests; see :data:`FastGet`.
        fast_content_type: the ``Content-Type`` of the answers ``fast_get`` gives
            as bare bytes; default ``application/octet-stream``.
        fast_headers: extra header fields of those answers (validated as
            :class:`Response` validates its own).
        fast_guard: when set, ``fast_get`` sees only requests whose credentials
            the guard accepts; see :class:`~shoal._http.messages.FastGuard`.
        limits: limits and timeouts (:class:`~shoal._http.limits.HttpLimits`);
            default ``HttpLimits()``.
        max_pipeline: handler tasks that may run at once per connection, and
            answers that may queue before the connection stops reading.
        shutdown_timeout: seconds :meth:`aclose` lets in-flight requests finish.
        backlog: the listen backlog.
        tls: called at each accepted connection for the server context to wrap it
            in (TLS); None serves plain HTTP. The handshake is bounded by the
            header timeout; a failed one closes the connection and is counted
            (:attr:`tls_handshake_failures`).
    """

    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits | None = None,
        *,
        fast_get: FastGet | None = None,
        fast_content_type: str = OCTET_STREAM,
        fast_headers: Sequence[tuple[str, str]] = (),
        fast_guard: FastGuard | None = None,
        max_pipeline: int = MAX_PIPELINE,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        backlog: int = 1024,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        if max_pipeline < 1:
            raise ValueError(f"max_pipeline must be at least 1, got {max_pipeline}")
        self.handler = handler
        self.fast_get = fast_get
        Response(200, b"", fast_content_type, fast_headers)  # the same checks
        self.fast_content_type = fast_content_type
        """The ``Content-Type`` of the fast path's ``200`` answers."""
        self.fast_headers = tuple(fast_headers)
        """Their extra header fields."""
        self.fast_tail = _fast_tail(fast_headers)
        """What follows the Content-Length value of a fast-path answer, up to the body."""
        self.fast_guard = fast_guard
        """What a request's credentials must satisfy before ``fast_get`` (or None)."""
        self.limits = limits if limits is not None else HttpLimits()
        """The server's limits and timeouts."""
        self.max_pipeline = max_pipeline
        self._shutdown_timeout = shutdown_timeout
        self._backlog = backlog
        self._sockets: list[socket.socket] = []
        self._unix_paths: list[tuple[str, int]] = []
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._accept_pause = ACCEPT_PAUSE[0]
        self._accept_retry: asyncio.TimerHandle | None = None
        self._accept_logged = -math.inf
        self._accept_unlogged = 0
        self.accept_errors = 0
        """Times ``accept`` failed for lack of file descriptors (or memory)."""
        self._tls = tls
        self.tls_handshake_failures = 0
        """TLS handshakes that failed or timed out (plaintext to a TLS port, an
        untrusted, expired or missing client certificate...)."""
        self._address: tuple[str, int] | None = None
        self._connections: set[HttpProtocol] = set()
        self._tasks: set[asyncio.Task[Response]] = set()
        self._closing = False
        self._drained: asyncio.Event | None = None
        # Refreshed every second by _update_date while the server runs.
        self.date = b""
        """The ``Date`` header value of answers."""
        self.octet_stream_head = b""
        """The head of a fast-path answer (octet-stream unless ``fast_content_type``
        says otherwise), up to the Content-Length value; see :func:`_fast_head`."""
        self.ok_heads: dict[int, bytes] = {}
        """Whole heads of fast-path answers by body length, for the current ``Date``
        (see :meth:`ok_head`)."""
        self._date_timer: asyncio.TimerHandle | None = None
        self._deadlines: Deadlines | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on (once started)."""
        if self._loop is None:
            raise RuntimeError("the server is not started")
        return self._loop

    @property
    def address(self) -> tuple[str, int] | None:
        """The (host, port) of the first listening socket, once started."""
        return self._address

    @property
    def closing(self) -> bool:
        """True once :meth:`aclose` has begun."""
        return self._closing

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` and serve until :meth:`aclose`.

        Returns:
            The bound (host, port) of the first socket; with ``port=0`` the port
            the system picked. (A host name that resolves to several addresses
            gets one socket each; with port 0 each may get a different port.)

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the server was already started.
        """
        if self._started or self._closing:
            raise RuntimeError("the server was already started")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        self._sockets = await _listen(loop, host, port, self._backlog)
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)
        name = self._sockets[0].getsockname()
        self._address = (str(name[0]), int(name[1]))
        # request_timeout for every handler task, on one shared timer.
        self._deadlines = Deadlines(self.limits.request_timeout, self._loop)
        self._update_date()
        return self._address

    async def start_unix(self, path: str) -> str:
        """Listen on the Unix socket ``path`` too (or only, if :meth:`start` was not
        called): created owner-only (mode 0600), removed by :meth:`aclose`. A stale
        socket file (nobody listening) is replaced.

        Connections on it are plain HTTP, even on a server with TLS.

        Raises:
            OSError: the path cannot be bound (another server listens there, or a file
                that is not a socket is in the way).
            RuntimeError: the server is closing.
        """
        if self._closing:
            raise RuntimeError("the server is closing")
        sock = _listen_unix(path, self._backlog)
        if not self._started:
            self._started = True
            self._loop = asyncio.get_running_loop()
            self._deadlines = Deadlines(self.limits.request_timeout, self._loop)
            self._update_date()
        self._sockets.append(sock)
        self._unix_paths.append((path, os.stat(path).st_ino))
        self.loop.add_reader(sock.fileno(), self._accept, sock)
        return path

    async def aclose(self) -> None:
        """Stop serving.

        Closes the listening sockets, then idle connections; connections with
        requests in flight get up to ``shutdown_timeout`` seconds to answer
        them (with ``Connection: close``); then the remaining handler tasks are
        cancelled and the remaining connections dropped. Idempotent.
        """
        if not self._started or self._closing:
            self._closing = True
            return
        self._closing = True
        try:
            self._stop_accepting()
            for sock in self._sockets:
                sock.close()
            for path, inode in self._unix_paths:
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == inode:  # still ours, not a successor's
                        os.unlink(path)
            for connecting in list(self._connecting):
                connecting.cancel()
            for connection in list(self._connections):
                connection.shutdown()
            await self._wait_drained(within=self._shutdown_timeout)
            for task in list(self._tasks):
                task.cancel()
            for connection in list(self._connections):
                connection.abort()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._connecting:
                await asyncio.gather(*self._connecting, return_exceptions=True)
            # connection_lost follows an abort within a loop iteration or two.
            await self._wait_drained(within=1.0)
        finally:
            if self._date_timer is not None:
                self._date_timer.cancel()
                self._date_timer = None

    async def _wait_drained(self, *, within: float) -> None:
        if not self._connections:
            return
        self._drained = asyncio.Event()
        try:
            async with asyncio.timeout(within):
                await self._drained.wait()
        except TimeoutError:
            pass
        finally:
            self._drained = None

    # -- accepting ----------------------------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        """Accept what waits on ``sock`` (at most a backlog's worth per wakeup)."""
        loop = self.loop
        for _ in range(self._backlog):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while it waited
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._out_of_resources(exc)
                else:
                    log.warning("accepting on %s failed: %s", _name(sock), exc)
                return
            self._accept_pause = ACCEPT_PAUSE[0]
            conn.setblocking(False)
            task = loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        if self._tls is not None and conn.family != socket.AF_UNIX:
            await self._connect_tls(conn, self._tls())
            return
        try:
            await self.loop.connect_accepted_socket(lambda: HttpProtocol(self), conn)
        except OSError:
            conn.close()  # the client left before its transport was made
        except BaseException:
            conn.close()
            raise

    async def _connect_tls(self, conn: socket.socket, context: ssl.SSLContext) -> None:
        """Wrap ``conn`` in TLS (the protocol sees the connection once the handshake
        is done); a handshake that fails or outlasts the header timeout closes it."""
        try:
            await accept_tls(
                self.loop, conn, context, lambda: HttpProtocol(self), self.limits.header_timeout
            )
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:  # ssl.SSLError, a reset, the handshake timeout...
            conn.close()
            self.tls_handshake_failures += 1
            log.debug("TLS handshake failed: %s", exc)

    def _out_of_resources(self, exc: OSError) -> None:
        """Count a failed accept, log it (rate-limited), and pause accepting."""
        self.accept_errors += 1
        now = time.monotonic()
        if now - self._accept_logged >= ACCEPT_LOG_INTERVAL:
            since = f" ({self._accept_unlogged} more since the last report)"
            log.error(
                "cannot accept connections on %s: %s; pausing accepts%s",
                ", ".join(_name(s) for s in self._sockets),
                exc.strerror or exc,
                since if self._accept_unlogged else "",
            )
            self._accept_logged, self._accept_unlogged = now, 0
        else:
            self._accept_unlogged += 1
        self._stop_accepting()
        pause = self._accept_pause
        self._accept_pause = min(pause * 2, ACCEPT_PAUSE[1])
        self._accept_retry = self.loop.call_later(pause, self._resume_accepting)

    def _stop_accepting(self) -> None:
        if self._accept_retry is not None:
            self._accept_retry.cancel()
            self._accept_retry = None
        loop = self._loop
        if loop is not None:
            for sock in self._sockets:
                loop.remove_reader(sock.fileno())

    def _resume_accepting(self) -> None:
        self._accept_retry = None
        if self._closing:
            return
        for sock in self._sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def forget_credentials(self) -> None:
        """Make every open connection check its next request's credentials again
        (call it when the values the ``fast_guard`` accepts have changed)."""
        for connection in self._connections:
            connection.forget_credential()

    # -- called by the connections ------------------------------------------------

    def _connection_made(self, connection: HttpProtocol) -> None:
        self._connections.add(connection)

    def _connection_lost(self, connection: HttpProtocol) -> None:
        self._connections.discard(connection)
        if not self._connections and self._drained is not None:
            self._drained.set()

    def _track(self, task: asyncio.Task[Response]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _update_date(self) -> None:
        """Format the ``Date`` header now, and again just after the next whole second.

        A timer instead of a clock reading per answer: the header has a
        resolution of one second anyway. (If the loop is blocked, the value lags
        by as long; answers are late by as much then.)
        """
        now = time.time()
        self.date = email.utils.formatdate(now, usegmt=True).encode("ascii")
        self.octet_stream_head = _fast_head(self.date, self.fast_content_type)
        self.ok_heads = {}
        # A millisecond past the second: the loop's timers may fire up to a
        # millisecond early, and the value must have changed when this runs.
        self._date_timer = self.loop.call_later(1.001 - now % 1.0, self._update_date)

    def ok_head(self, length: int) -> bytes:
        """The head of a fast-path ``200`` answer whose body has ``length`` bytes, up
        to the body; kept in :attr:`ok_heads` until the ``Date`` changes (values of
        one size share it: formatting it is a good part of a hit's cost)."""
        heads = self.ok_heads
        head = heads.get(length)
        if head is None:
            head = b"%s%d%s" % (self.octet_stream_head, length, self.fast_tail)
            if len(heads) >= _OK_HEADS_KEPT:
                heads.clear()
            heads[length] = head
        return head

    async def _respond(self, awaitable: Awaitable[Response]) -> Response:
        """Await a handler's answer within ``request_timeout``; never raises but CancelledError."""
        deadlines = self._deadlines
        scope = deadlines.scope() if deadlines is not None else None
        if scope is None:  # not started: no shared timer (a handler awaited by hand)
            deadlines = Deadlines(self.limits.request_timeout, asyncio.get_running_loop())
            scope = deadlines.scope()
            assert scope is not None  # a coroutine of the running loop's task
        try:
            with scope:
                response = await awaitable
        except TimeoutError:
            if scope.expired:
                return error_response(
                    504,
                    "request_timeout",
                    f"no answer within {self.limits.request_timeout} seconds",
                )
            log.exception("HTTP handler failed")
            return _internal_error()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled (shutdown, connection lost)
            # The handler awaited something that was cancelled under it.
            log.error("HTTP handler was cancelled")
            return _internal_error()
        except Exception:
            log.exception("HTTP handler failed")
            return _internal_error()
        if not isinstance(response, Response):
            log.error("HTTP handler produced %r, not a Response", response)
            return _internal_error()
        return response


async def _listen(
    loop: asyncio.AbstractEventLoop, host: str, port: int, backlog: int
) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (all interfaces for
    ``""``), as :meth:`asyncio.loop.create_server` makes them.

    Raises:
        OSError: an address cannot be bound.
    """
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                # One socket per family, as create_server does.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"{host!r} resolves to no address")
    return sockets


def _listen_unix(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from its creation on.

    Raises:
        OSError: a server listens at ``path``, or a file that is not a socket is there.
    """
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: left by a server that died
        else:
            raise OSError(errno.EADDRINUSE, f"a server already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The mode at creation (umask), not after: no moment when others may connect.
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _name(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "a closed socket"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class ServerFront:
    """What a server built on an :class:`HttpServer` (the HTTP API, the peer port)
    hands to it: its address, its counters, start and close. The subclass sets
    ``_server`` in its ``__init__``."""

    _server: HttpServer

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started."""
        return self._server.address

    @property
    def accept_errors(self) -> int:
        """Times accepting a connection failed for lack of file descriptors."""
        return self._server.accept_errors

    @property
    def tls_handshake_failures(self) -> int:
        """TLS handshakes on this server that failed or timed out."""
        return self._server.tls_handshake_failures

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0 picks a free port); return the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        return await self._server.start(host, port)

    async def start_unix(self, path: str) -> str:
        """Listen on the Unix socket ``path`` too (mode 0600); see
        :meth:`HttpServer.start_unix`.

        Raises:
            OSError: the path cannot be bound.
        """
        return await self._server.start_unix(path)

    async def aclose(self) -> None:
        """Stop listening, let in-flight requests finish briefly, then drop the rest."""
        await self._server.aclose()
