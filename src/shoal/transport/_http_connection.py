"""One keep-alive HTTP/1.1 connection of the peer client's pool, and what waits on it.

Rules of this module:

- A :class:`Connection` carries one batch at a time: one request, or several
  written together (pipelined) and answered in order, each answer filling the
  next :class:`Waiter`; it knows nothing of groups, keys or the client's pool.
- An answer that breaks HTTP or a limit raises :class:`Broken` in the parser
  callbacks; a connection that closes before an answer is complete fails its
  waiters with :class:`Dropped`, which says whether the request may go again.
- Only the few headers a client reads are looked at (:data:`CLIENT_HEADER_SIZES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol, cast

import httptools

from ..wire.batch import EXTENSIONS_HEADER

__all__ = [
    "Answer",
    "Broken",
    "Connection",
    "Dropped",
    "OVER",
    "Queued",
    "Waiter",
    "CLIENT_HEADER_SIZES",
]

CLIENT_HEADER_SIZES: Final = frozenset(
    len(name) for name in ("content-length", "transfer-encoding", "content-type", EXTENSIONS_HEADER)
)
"""The lengths of the answer headers a client reads (see :meth:`Connection.on_header`)."""


class Dropped(Exception):
    """The connection closed (or could not be written) before an answer was complete."""

    def __init__(self, message: str, *, received: bool, retry: bool = False) -> None:
        super().__init__(message)
        self.received = received
        """Whether any byte of this answer had arrived."""
        self.retry = retry
        """Whether the request may go out once more: no byte of its answer arrived, and
        the connection had answered before (a peer that closes a connection that
        worked is not a failed peer; see "The client" in docs/protocol.md)."""


class Broken(Exception):
    """The answer broke HTTP or a limit; the connection is unusable."""


class Answer:
    """A complete HTTP answer, as the client needs it."""

    __slots__ = ("body", "content_type", "extensions", "keep_alive", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        keep_alive: bool,
        content_type: bytes,
        extensions: bytes | None,
    ) -> None:
        self.status = status
        self.body = body
        self.keep_alive = keep_alive
        self.content_type = content_type
        self.extensions = extensions


class Waiter(Protocol):
    """What waits for an answer on a connection: a future, or a :class:`_Sink`."""

    def done(self) -> bool: ...

    def set_result(self, answer: Answer, /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


class Queued:
    """A GET waiting for the next flush, then for its answer (pipelining)."""

    __slots__ = ("connection", "request", "waiter")

    def __init__(self, request: bytes, waiter: Waiter) -> None:
        self.request = request
        self.waiter = waiter
        self.connection: Connection | None = None
        """The connection it was written on, once written."""


class Over:
    """The waiter of a request whose batch is over: answers nothing more."""

    __slots__ = ()

    def done(self) -> bool:
        return True

    def set_result(self, answer: Answer) -> None:
        pass

    def set_exception(self, exc: BaseException) -> None:
        pass


OVER: Final = Over()


class Connection(asyncio.Protocol):
    """One keep-alive connection of a client's pool: one batch of requests at a time.

    A batch is one request, or several written together (pipelined) and answered
    in order; each answer fills the next waiter. When the last answer of a batch
    is in, ``on_idle(connection, keep_alive)`` hands the connection back to the
    client. The ``on_*`` methods are the response parser's callbacks.
    """

    def __init__(
        self,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        on_idle: Callable[[Connection, bool], None],
    ) -> None:
        self._limit = limit
        self._loop = loop
        self._on_idle = on_idle
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiters: deque[Waiter] = deque()
        self.closed = False
        self.answers = 0
        """Complete answers read on this connection."""
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._body: list[bytes] = []
        self._size = 0
        self._received = False
        self._headers_done = False
        self._framed = False
        self._content_type = b""
        self._extensions: bytes | None = None

    # -- used by the client --------------------------------------------------------

    def send(self, requests: list[bytes], waiters: list[Waiter]) -> None:
        """Write ``requests`` at once; their answers fill ``waiters``, in order.

        Raises:
            Dropped: the connection is already closing (nothing was sent).
        """
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise Dropped("the connection was closed", received=False, retry=self.answers > 0)
        self._waiters.extend(waiters)
        transport.write(requests[0] if len(requests) == 1 else b"".join(requests))

    def exchange(self, request: bytes) -> asyncio.Future[Answer]:
        """Send one request; the future resolves to its answer.

        Raises:
            Dropped: the connection is already closing (nothing was sent).
        """
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self.send([request], [waiter])
        return waiter

    def abort(self) -> None:
        """Drop the connection now (no lingering: nothing more is expected from it).

        Exchanges still waiting on it (pipelined behind one whose caller gave up)
        may be sent again: the peer did nothing wrong.
        """
        self.closed = True
        self._fail_all("the connection was dropped by this client", None, retry=True)
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; requests go out whole, so Nagle would only add latency."""
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the exchanges in progress, or complete an answer delimited by the close."""
        self.closed = True
        self._transport = None
        waiters = self._waiters
        if waiters and self._headers_done and not self._framed:
            # No Content-Length and not chunked: the body ended with the connection.
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._answer(keep_alive=False))
            self.answers += 1
            self._received = False
        what = "the peer closed the connection" if exc is None else f"connection lost: {exc}"
        self._fail_all(what, exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed or unexpected answer breaks the connection."""
        if not self._waiters:
            # Bytes nobody asked for.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(Broken(str(exc.__context__ or exc)), exc)
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"malformed HTTP answer: {exc}"), exc)

    def eof_received(self) -> bool | None:
        """The peer shut its side: let the transport close (connection_lost follows)."""
        return None

    def _fail(self, error: Exception, cause: BaseException) -> None:
        """The answer being read is unusable: fail it, and the connection with it."""
        error.__cause__ = cause
        if self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self._received = False
        self._fail_all("the connection broke on an earlier answer", cause)
        self.abort()

    def _fail_all(
        self, what: str, cause: BaseException | None, *, retry: bool | None = None
    ) -> None:
        """Fail every exchange still waiting (the first may have part of its answer).

        ``retry`` None: each may be sent again if no byte of its answer arrived and
        the connection had answered before (see :class:`Dropped`).
        """
        received = self._received
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                again = not received and self.answers > 0 if retry is None else retry
                dropped = Dropped(what, received=received, retry=again)
                dropped.__cause__ = cause
                waiter.set_exception(dropped)
            received = False

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._waiters:
            raise Broken("the peer sent an answer nobody asked for")
        self._reset()
        self._received = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) not in CLIENT_HEADER_SIZES:
            return  # most headers (Date, Server): cheaper than lower-casing every name
        lowered = name.lower()
        if lowered == b"content-length":
            self._framed = True
            with contextlib.suppress(ValueError):  # the parser rejects a bad length itself
                if int(value) > self._limit:
                    raise Broken(f"an answer of {int(value)} bytes exceeds {self._limit}")
        elif lowered == b"transfer-encoding":
            self._framed = True
        elif lowered == b"content-type":
            self._content_type = value
        elif lowered == b"shoal-extensions":
            self._extensions = value

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            raise Broken(f"an answer of more than {self._limit} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        answer = self._answer(keep_alive)
        self._received = False
        self.answers += 1
        waiters = self._waiters
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(answer)
        if not waiters:
            self._on_idle(self, keep_alive)

    def _answer(self, keep_alive: bool) -> Answer:
        body = self._body
        return Answer(
            self._parser.get_status_code(),
            body[0] if len(body) == 1 else b"".join(body),
            keep_alive,
            self._content_type,
            self._extensions,
        )
