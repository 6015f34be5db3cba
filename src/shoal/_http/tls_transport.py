"""A TLS transport that drives a non-blocking :class:`ssl.SSLSocket` from the loop.

The loop's own TLS transport (``connect_accepted_socket(..., ssl=...)``) runs a
memory-BIO state machine between the socket and the protocol: every read goes
socket → BIO → ``SSLObject`` → a fresh buffer → the protocol, through several
layers of Python or Cython bookkeeping. :class:`TlsTransport` lets OpenSSL read
and write the socket itself (``SSLSocket.read`` decrypts straight into one
preallocated buffer, ``SSLSocket.write`` encrypts straight onto the socket) and
calls the protocol's ``data_received`` directly from the loop's reader callback.

What it keeps of the loop's transport contract:

* the handshake runs before the protocol exists and is bounded by a timeout
  (:func:`accept_tls` raises when it fails, times out or is cancelled);
* ``SSLWantReadError`` and ``SSLWantWriteError`` in both directions: a read may
  need the socket writable (a post-handshake message to answer), a write may
  need it readable, and a write OpenSSL could not finish is retried with the
  same bytes (OpenSSL's rule without partial writes);
* write buffering with ``pause_writing``/``resume_writing`` to the protocol at
  the high and low water marks;
* ``eof_received`` on the peer's ``close_notify`` or TCP end: when the protocol
  returns true the transport stays open for writing (TLS 1.3 allows it);
* ``close`` flushes what is buffered, sends ``close_notify`` (best effort: one
  non-blocking attempt, it never waits for the peer's) and closes; ``abort``
  closes at once; ``connection_lost`` is called exactly once, from the loop.

It needs a loop with ``add_reader``/``add_writer`` (any selector loop, uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("shoal.http")

READ_BUFFER = 65536
"""Bytes of the one read buffer of a connection (a TLS record holds at most 16 KiB)."""
HIGH_WATER = 65536
"""Default write-buffer size above which the protocol is asked to pause writing."""

# Errors a read, a write or a shutdown may raise on a connection that went away.
_GONE = (OSError, ValueError)

# Reads of unread input before closing after a failed handshake (at most 256 KiB).
_DRAIN_READS = 4

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


class TlsTransport(asyncio.Transport):
    """One server-side TLS connection (made by :func:`accept_tls`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        protocol_factory: Callable[[], asyncio.Protocol],
        waiter: asyncio.Future[None],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(extra=dict(extra) if extra else None)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol_factory = protocol_factory
        self._protocol: asyncio.Protocol | None = None
        self._waiter: asyncio.Future[None] | None = waiter
        self._state = _HANDSHAKE
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = bytearray(READ_BUFFER)
        self._view = memoryview(self._buffer)
        # Reading: whether the reader callback is registered, whether the protocol
        # asked for a pause, whether the peer ended its side.
        self._reader = False
        self._paused = False
        self._eof = False
        # Writing: bytes not yet handed to OpenSSL, and the piece OpenSSL refused
        # with a want-error (it must be offered again, the same bytes).
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._retry: bytes | None = None
        self._writer = False
        # A read that needs the socket writable, a write that needs it readable.
        self._read_wants_write = False
        self._write_wants_read = False
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        self._protocol_paused = False
        self._lost_scheduled = False

    # -- the handshake --------------------------------------------------------

    def _start(self, timeout: float) -> None:
        self._timer = self._loop.call_later(timeout, self._handshake_timeout)
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(read=True, write=False, callback=self._handshake)
            return
        except ssl.SSLWantWriteError:
            self._want(read=False, write=True, callback=self._handshake)
            return
        except Exception as exc:  # ssl.SSLError, a reset...
            self._handshake_failed(exc)
            return
        self._handshake_done()

    def _want(self, *, read: bool, write: bool, callback: Callable[[], None]) -> None:
        """Register ``callback`` for exactly the readiness asked for (handshake only)."""
        loop, fd = self._loop, self._fd
        if read:
            loop.add_reader(fd, callback)
        elif self._reader:
            loop.remove_reader(fd)
        self._reader = read
        if write:
            loop.add_writer(fd, callback)
        elif self._writer:
            loop.remove_writer(fd)
        self._writer = write

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKE:
            self._handshake_failed(TimeoutError("TLS handshake timed out"))

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._state != _HANDSHAKE:
            return
        self._state = _CLOSED
        # What the client sent and OpenSSL left unread (plain HTTP to a TLS port,
        # say) would make the close a reset: the client could miss the alert or
        # the end of the connection. Read it away first (a bounded amount).
        with contextlib.suppress(OSError):
            for _ in range(_DRAIN_READS):
                if not os.read(self._fd, READ_BUFFER):
                    break
        self._stop_io()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _handshake_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._want(read=False, write=False, callback=self._handshake)
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():  # cancelled meanwhile: nobody takes it
            self._state = _CLOSED
            self._stop_io()
            return
        self._state = _OPEN
        try:
            protocol = self._protocol = self._protocol_factory()
            protocol.connection_made(self)
        except BaseException as exc:
            self._state = _CLOSED
            self._stop_io()
            waiter.set_exception(exc)
            return
        waiter.set_result(None)
        if self._state == _OPEN and not self._paused:
            self._add_reader()
            self._read_ready()  # the first request often came with the Finished

    # -- reading ------------------------------------------------------------------

    def _add_reader(self) -> None:
        if not self._reader:
            self._reader = True
            self._loop.add_reader(self._fd, self._read_ready)

    def _remove_reader(self) -> None:
        if self._reader:
            self._reader = False
            self._loop.remove_reader(self._fd)

    def _read_ready(self) -> None:
        """Decrypt what the socket holds into the buffer and hand it to the protocol."""
        if self._write_wants_read:
            self._write_wants_read = False
            self._flush()
            if self._state == _CLOSED:
                return
            if self._paused or self._state != _OPEN or self._eof:
                self._update_reader()
                return
        sock = self._sock
        view = self._view
        protocol = self._protocol
        assert protocol is not None
        while True:
            try:
                n = sock.read(READ_BUFFER, view)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                # OpenSSL must send something (a post-handshake answer) before it
                # can read again: wait for the socket to become writable.
                self._read_wants_write = True
                self._remove_reader()
                self._add_writer()
                return
            except _GONE as exc:
                self._fatal(exc)
                return
            if not n:
                self._end_of_input()
                return
            protocol.data_received(bytes(view[:n]))
            if self._paused or self._state != _OPEN:
                return
            if not sock.pending():
                # The socket stays readable if the next record is there: the loop
                # calls again, and a read that would find nothing costs an exception.
                return

    def _end_of_input(self) -> None:
        self._eof = True
        self._remove_reader()
        protocol = self._protocol
        assert protocol is not None
        try:
            keep_open = protocol.eof_received()
        except BaseException as exc:
            self._fatal(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not keep_open:
            self.close()

    def _update_reader(self) -> None:
        if self._write_wants_read or (
            self._state == _OPEN
            and not self._paused
            and not self._eof
            and not self._read_wants_write
        ):
            self._add_reader()
        else:
            self._remove_reader()

    def pause_reading(self) -> None:
        """Stop calling the protocol's ``data_received`` until :meth:`resume_reading`."""
        if self._state != _OPEN or self._paused:
            return
        self._paused = True
        self._update_reader()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if self._state != _OPEN or not self._paused:
            return
        self._paused = False
        self._update_reader()
        if self._reader and self._sock.pending():
            # Decrypted bytes wait inside OpenSSL: the socket will not say so.
            self._loop.call_soon(self._read_again)

    def _read_again(self) -> None:
        if self._state == _OPEN and self._reader and not self._paused:
            self._read_ready()

    def is_reading(self) -> bool:
        """True unless reading is paused or over."""
        return self._state == _OPEN and not self._paused and not self._eof

    # -- writing ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` onto the socket, or buffer it until the socket takes it."""
        if not data:
            return
        if self._state != _OPEN:
            if self._state == _HANDSHAKE:
                raise RuntimeError("write before the TLS handshake is done")
            return  # closing or closed: dropped, as the loop's transports do
        chunk = bytes(data) if not isinstance(data, bytes) else data
        if self._writer or self._retry is not None or self._pending or self._write_wants_read:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            self._check_high_water()
            return
        try:
            self._sock.write(chunk)
        except ssl.SSLWantWriteError:
            self._retry = chunk
            self._add_writer()
            self._check_high_water()
        except ssl.SSLWantReadError:
            self._retry = chunk
            self._write_wants_read = True
            self._update_reader()
            self._check_high_water()
        except _GONE as exc:
            self._fatal(exc)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write the pieces as one (a single piece is not copied)."""
        pieces = list_of_data if isinstance(list_of_data, list) else list(list_of_data)
        if len(pieces) == 1:
            self.write(pieces[0])
        elif pieces:
            self.write(b"".join(pieces))

    def _add_writer(self) -> None:
        if not self._writer:
            self._writer = True
            self._loop.add_writer(self._fd, self._write_ready)

    def _remove_writer(self) -> None:
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)

    def _write_ready(self) -> None:
        if self._read_wants_write:
            self._read_wants_write = False
            self._remove_writer()
            self._update_reader()
            if self._state == _OPEN and self._reader:
                self._read_ready()
            if self._state == _CLOSED:
                return
        self._flush()

    def _flush(self) -> None:
        """Hand OpenSSL what is buffered until it is empty or the socket is full."""
        sock = self._sock
        while True:
            chunk = self._retry
            if chunk is None:
                if not self._pending:
                    break
                pending = self._pending
                chunk = pending[0] if len(pending) == 1 else b"".join(pending)
                self._pending = []
                self._pending_size = 0
                self._retry = chunk
            try:
                sock.write(chunk)
            except ssl.SSLWantWriteError:
                self._add_writer()
                return
            except ssl.SSLWantReadError:
                self._write_wants_read = True
                self._remove_writer()
                self._update_reader()
                return
            except _GONE as exc:
                self._fatal(exc)
                return
            self._retry = None
        if not self._read_wants_write:
            self._remove_writer()
        if self._protocol_paused and self._state == _OPEN:
            self._protocol_paused = False
            protocol = self._protocol
            assert protocol is not None
            try:
                protocol.resume_writing()
            except Exception:
                log.exception("protocol.resume_writing() failed")
        if self._state == _CLOSING:
            self._shutdown(None)

    def _check_high_water(self) -> None:
        if self._protocol_paused or self.get_write_buffer_size() <= self._high:
            return
        self._protocol_paused = True
        protocol = self._protocol
        assert protocol is not None
        try:
            protocol.pause_writing()
        except Exception:
            log.exception("protocol.pause_writing() failed")

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by OpenSSL."""
        retry = self._retry
        return self._pending_size + (len(retry) if retry is not None else 0)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The (low, high) water marks of the write buffer."""
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the write buffer's water marks (default 64 KiB and a quarter of it)."""
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high_water()

    def can_write_eof(self) -> bool:
        """False: TLS has no half-close the protocol could ask for."""
        return False

    def write_eof(self) -> None:
        """Not supported over TLS (see :meth:`can_write_eof`)."""
        raise NotImplementedError("TLS transports cannot write EOF")

    # -- closing ------------------------------------------------------------------

    def is_closing(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the connection ended."""
        return self._state != _OPEN

    def close(self) -> None:
        """Send what is buffered, then ``close_notify``, then close the socket."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._read_wants_write = False
        self._update_reader()
        if self._retry is None and not self._pending and not self._write_wants_read:
            self._shutdown(None)
        # Otherwise _flush calls _shutdown once the buffer is empty.

    def abort(self) -> None:
        """Close the socket at once, dropping what is buffered."""
        if self._state in (_OPEN, _CLOSING):
            self._fatal(None)

    def _shutdown(self, exc: BaseException | None) -> None:
        """Best-effort ``close_notify`` (one non-blocking try), then close."""
        if self._state == _CLOSED:
            return
        with contextlib.suppress(ssl.SSLError, *_GONE):
            self._sock.unwrap()  # sends close_notify; never waits for the peer's
        self._fatal(exc)

    def _fatal(self, exc: BaseException | None) -> None:
        if self._state == _CLOSED:
            return
        if exc is not None and not isinstance(exc, OSError | ssl.SSLError):
            log.error("TLS connection failed: %r", exc)
        self._state = _CLOSED
        self._pending = []
        self._pending_size = 0
        self._retry = None
        self._stop_io()
        if self._protocol is not None and not self._lost_scheduled:
            self._lost_scheduled = True
            self._loop.call_soon(self._connection_lost, exc)

    def _stop_io(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._remove_reader()
        self._remove_writer()
        with contextlib.suppress(OSError):
            self._sock.close()

    def _connection_lost(self, exc: BaseException | None) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.connection_lost(exc if isinstance(exc, Exception) or exc is None else None)

    # -- the rest of the transport interface ----------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket``, ``ssl_object`` (the SSLSocket),
        ``peercert``, ``cipher``, ``compression``, ``sslcontext``."""
        value = super().get_extra_info(name, None)
        if value is not None:
            return value
        sock = self._sock
        try:
            if name == "socket":
                return sock
            if name == "ssl_object":
                return sock
            if name == "sslcontext":
                return sock.context
            if name == "peername":
                return sock.getpeername()
            if name == "sockname":
                return sock.getsockname()
            if name == "peercert":
                return sock.getpeercert()
            if name == "cipher":
                return sock.cipher()
            if name == "compression":
                return sock.compression()
        except (OSError, ValueError):
            return default
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the connection to another protocol."""
        if not isinstance(protocol, asyncio.Protocol):
            raise TypeError("a TLS transport needs an asyncio.Protocol")
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol the transport feeds."""
        assert self._protocol is not None
        return self._protocol


async def accept_tls(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    context: ssl.SSLContext,
    protocol_factory: Callable[[], asyncio.Protocol],
    handshake_timeout: float,
) -> TlsTransport:
    """Run the server side of a TLS handshake on the accepted ``conn`` (non-blocking),
    then connect a protocol from ``protocol_factory`` to it.

    Raises:
        TimeoutError: the handshake took longer than ``handshake_timeout`` seconds.
        ssl.SSLError, OSError: the handshake failed (the socket is closed).
    """
    return await _start(loop, conn, context, protocol_factory, handshake_timeout, None)


async def connect_tls(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    context: ssl.SSLContext,
    protocol_factory: Callable[[], asyncio.Protocol],
    handshake_timeout: float,
) -> TlsTransport:
    """Connect to ``host``:``port`` over TCP (each address ``host`` resolves to, in
    turn), run the client side of a TLS handshake (checking ``host`` against the
    server's certificate when the context asks for it), then connect a protocol from
    ``protocol_factory``. The caller bounds the TCP connect; ``handshake_timeout``
    bounds the handshake.

    Raises:
        OSError: no address could be connected, or the handshake failed
            (ssl.SSLError, ssl.SSLCertVerificationError).
        TimeoutError: the handshake took longer than ``handshake_timeout`` seconds.
    """
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no address")
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return await _start(loop, sock, context, protocol_factory, handshake_timeout, host)
    assert error is not None
    raise error


async def _start(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    context: ssl.SSLContext,
    protocol_factory: Callable[[], asyncio.Protocol],
    handshake_timeout: float,
    server_hostname: str | None,
) -> TlsTransport:
    extra = {}
    with contextlib.suppress(OSError):
        extra["peername"] = conn.getpeername()
        extra["sockname"] = conn.getsockname()
    try:
        sock = context.wrap_socket(
            conn,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
            do_handshake_on_connect=False,
        )
    except BaseException:
        conn.close()
        raise
    waiter: asyncio.Future[None] = loop.create_future()
    transport = TlsTransport(loop, sock, protocol_factory, waiter, extra)
    transport._start(handshake_timeout)
    try:
        await waiter
    except BaseException:
        transport._handshake_failed(ConnectionAbortedError("TLS handshake abandoned"))
        raise
    return transport
