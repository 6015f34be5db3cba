"""A TLS transport that drives an :class:`ssl.SSLObject` from the loop's callbacks.

The loop's own TLS transport (``connect_accepted_socket(..., ssl=...)``) stacks a
TLS protocol on a TCP transport: every read allocates a fresh buffer for the
plaintext, ends in an ``SSLWantReadError`` raised and caught, and goes through
two transports' bookkeeping. :class:`TlsTransport` is one layer: the loop's
reader callback reads the socket into one preallocated buffer (one ``recv`` per
wakeup), feeds it to OpenSSL's memory BIO, decrypts into the same buffer, and
calls the protocol's ``data_received`` itself; a write is encrypted and sent at
once, and only what the socket does not take is buffered.

What it keeps of the loop's transport contract:

* the handshake runs before the protocol exists and is bounded by a timeout
  (:func:`accept_tls` and :func:`connect_tls` raise when it fails, times out or
  is cancelled); a failed handshake sends OpenSSL's alert, best effort;
* what OpenSSL must send while reading (TLS 1.3 key updates, session tickets)
  goes out after each read;
* write buffering with ``pause_writing``/``resume_writing`` to the protocol at
  the high and low water marks;
* ``eof_received`` on the peer's ``close_notify`` or TCP end: when the protocol
  returns true the transport stays open for writing (TLS 1.3 allows it);
* ``close`` flushes what is buffered, sends ``close_notify`` (best effort: one
  non-blocking send, it never waits for the peer's) and closes; ``abort``
  closes at once; ``connection_lost`` is called exactly once, from the loop.

A peer that asks to renegotiate (TLS 1.2) is disconnected.
It needs a loop with ``add_reader``/``add_writer`` (any selector loop, uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("shoal.http")

READ_BUFFER = 65536
"""Bytes of the one buffer a connection reads into (ciphertext, then plaintext)."""
HIGH_WATER = 65536
"""Default write-buffer size above which the protocol is asked to pause writing."""

# Reads of unread input before closing after a failed handshake (at most 256 KiB).
_DRAIN_READS = 4

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


class TlsTransport(asyncio.Transport):
    """One TLS connection (made by :func:`accept_tls` or :func:`connect_tls`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_hostname: str | None,
        protocol_factory: Callable[[], asyncio.Protocol],
        waiter: asyncio.Future[None],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(extra=dict(extra) if extra else None)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
        )
        # The C object behind the SSLObject: its read, write and pending are the
        # same calls without the Python wrapper around each (one per request each
        # way; the stdlib keeps it in _sslobj since Python 3.7).
        self._raw: Any = getattr(self._ssl, "_sslobj", None) or self._ssl
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
        # Writing: ciphertext the socket has not taken yet.
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._writer = False
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        self._protocol_paused = False
        self._lost_scheduled = False

    # -- the handshake --------------------------------------------------------

    def _start(self, timeout: float) -> None:
        self._timer = self._loop.call_later(timeout, self._handshake_timeout)
        self._reader = True
        self._loop.add_reader(self._fd, self._handshake_readable)
        self._handshake()

    def _handshake_readable(self) -> None:
        try:
            n = self._sock.recv_into(self._view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._handshake_failed(exc)
            return
        if not n:
            self._handshake_failed(ConnectionResetError("the peer closed during the handshake"))
            return
        self._incoming.write(self._view[:n])
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._send_outgoing()
            return
        except Exception as exc:  # ssl.SSLError...
            self._send_outgoing()  # the alert, if OpenSSL made one
            self._handshake_failed(exc)
            return
        self._send_outgoing()
        self._handshake_done()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKE:
            self._handshake_failed(TimeoutError("TLS handshake timed out"))

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._state != _HANDSHAKE:
            return
        self._state = _CLOSED
        # What the peer sent and was not read (plain HTTP to a TLS port, say) would
        # make the close a reset: the peer could miss the alert or the end of the
        # connection. Read it away first (a bounded amount).
        with contextlib.suppress(OSError):
            for _ in range(_DRAIN_READS):
                if not self._sock.recv_into(self._view):
                    break
        self._stop_io()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _handshake_done(self) -> None:
        if self._state != _HANDSHAKE:
            return  # the alert could not be sent: already failed
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():  # cancelled meanwhile: nobody takes it
            self._state = _CLOSED
            self._stop_io()
            return
        self._state = _OPEN
        self._loop.add_reader(self._fd, self._read_ready)  # replaces the handshake's
        try:
            protocol = self._protocol = self._protocol_factory()
            protocol.connection_made(self)
        except BaseException as exc:
            self._state = _CLOSED
            self._stop_io()
            waiter.set_exception(exc)
            return
        waiter.set_result(None)
        if self._incoming.pending and self._state == _OPEN and not self._paused:
            self._read_ready(False)  # the first request came with the handshake's end

    # -- reading ------------------------------------------------------------------

    def _read_ready(self, receive: bool = True) -> None:
        """Read the socket once (unless ``receive`` is false: only what OpenSSL
        holds), then hand what decrypts to the protocol."""
        view = self._view
        incoming = self._incoming
        if receive:
            try:
                n = self._sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            if not n:
                self._end_of_input()
                return
            incoming.write(view[:n])
        raw = self._raw
        protocol = self._protocol
        assert protocol is not None
        while True:
            try:
                n = raw.read(READ_BUFFER, view)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                self._send_outgoing()
                self._end_of_input()
                return
            except ssl.SSLError as exc:
                self._send_outgoing()
                self._fatal(exc)
                return
            if not n:
                self._end_of_input()
                return
            protocol.data_received(bytes(view[:n]))
            if self._paused or self._state != _OPEN:
                break
            # Most reads carry one whole record: stop without the read that would
            # find nothing (it costs an exception).
            if not incoming.pending and not raw.pending():
                break
        if self._outgoing.pending:
            self._send_outgoing()  # a key update's answer, a session ticket...

    def _end_of_input(self) -> None:
        if self._eof or self._state not in (_OPEN, _CLOSING):
            return
        self._eof = True
        self._remove_reader()
        if self._state != _OPEN:
            return
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

    def _remove_reader(self) -> None:
        if self._reader:
            self._reader = False
            self._loop.remove_reader(self._fd)

    def pause_reading(self) -> None:
        """Stop calling the protocol's ``data_received`` until :meth:`resume_reading`."""
        if self._state != _OPEN or self._paused:
            return
        self._paused = True
        self._remove_reader()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if self._state != _OPEN or not self._paused:
            return
        self._paused = False
        if self._eof:
            return
        self._reader = True
        self._loop.add_reader(self._fd, self._read_ready)
        if self._incoming.pending or self._raw.pending():
            # Bytes read before the pause wait in OpenSSL: the socket will not say so.
            self._loop.call_soon(self._decrypt_again)

    def _decrypt_again(self) -> None:
        if self._state == _OPEN and not self._paused:
            self._read_ready(False)

    def is_reading(self) -> bool:
        """True unless reading is paused or over."""
        return self._state == _OPEN and not self._paused and not self._eof

    # -- writing ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it, buffering what the socket does not take."""
        if not data:
            return
        if self._state != _OPEN:
            if self._state == _HANDSHAKE:
                raise RuntimeError("write before the TLS handshake is done")
            return  # closing or closed: dropped, as the loop's transports do
        try:
            self._raw.write(data)
        except ssl.SSLError as exc:  # a renegotiation (want-read), a broken state
            self._fatal(exc)
            return
        self._send(self._outgoing.read())

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write the pieces as one (a single piece is not copied)."""
        pieces = list_of_data if isinstance(list_of_data, list) else list(list_of_data)
        if len(pieces) == 1:
            self.write(pieces[0])
        elif pieces:
            self.write(b"".join(pieces))

    def _send_outgoing(self) -> None:
        if self._outgoing.pending:
            self._send(self._outgoing.read())

    def _send(self, data: bytes) -> None:
        """Send ciphertext now, or after what is already buffered."""
        if self._pending:
            self._pending.append(data)
            self._pending_size += len(data)
            self._check_high_water()
            return
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(exc)
            return
        if n == len(data):
            return
        rest = memoryview(data)[n:]
        self._pending.append(rest)
        self._pending_size += len(rest)
        if not self._writer:
            self._writer = True
            self._loop.add_writer(self._fd, self._write_ready)
        self._check_high_water()

    def _fail(self, exc: BaseException) -> None:
        if self._state == _HANDSHAKE:
            self._handshake_failed(exc)
        else:
            self._fatal(exc)

    def _write_ready(self) -> None:
        """Send what is buffered; once it is all out, resume the protocol or finish
        closing."""
        pending = self._pending
        while pending:
            data = pending[0]
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(exc)
                return
            self._pending_size -= n
            if n < len(data):
                pending[0] = memoryview(data)[n:]
                return
            pending.pop(0)
            if self._protocol_paused and self._pending_size <= self._low:
                self._resume_protocol()
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)
        if self._protocol_paused:
            self._resume_protocol()
        if self._state == _CLOSING:
            self._shutdown()

    def _resume_protocol(self) -> None:
        self._protocol_paused = False
        protocol = self._protocol
        if protocol is None or self._state != _OPEN:
            return
        try:
            protocol.resume_writing()
        except Exception:
            log.exception("protocol.resume_writing() failed")

    def _check_high_water(self) -> None:
        if self._protocol_paused or self._pending_size <= self._high:
            return
        protocol = self._protocol
        if protocol is None or self._state != _OPEN:
            return
        self._protocol_paused = True
        try:
            protocol.pause_writing()
        except Exception:
            log.exception("protocol.pause_writing() failed")

    def get_write_buffer_size(self) -> int:
        """Bytes (encrypted) the socket has not taken yet."""
        return self._pending_size

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
        self._remove_reader()
        if not self._pending:
            self._shutdown()
        # Otherwise _write_ready calls _shutdown once the buffer is empty.

    def abort(self) -> None:
        """Close the socket at once, dropping what is buffered."""
        if self._state in (_OPEN, _CLOSING):
            self._fatal(None)

    def _shutdown(self) -> None:
        """Best-effort ``close_notify`` (one non-blocking send), then close."""
        if self._state == _CLOSED:
            return
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._ssl.unwrap()  # puts close_notify in the outgoing BIO
        data = self._outgoing.read()
        if data:
            with contextlib.suppress(OSError):
                self._sock.send(data)
        self._fatal(None)

    def _fatal(self, exc: BaseException | None) -> None:
        if self._state == _CLOSED:
            return
        if exc is not None and not isinstance(exc, OSError):
            log.error("TLS connection failed: %r", exc)
        self._state = _CLOSED
        self._pending = []
        self._pending_size = 0
        self._stop_io()
        if self._protocol is not None and not self._lost_scheduled:
            self._lost_scheduled = True
            self._loop.call_soon(self._connection_lost, exc)

    def _stop_io(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._remove_reader()
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _connection_lost(self, exc: BaseException | None) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.connection_lost(exc if isinstance(exc, Exception) else None)

    # -- the rest of the transport interface ----------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket``, ``ssl_object`` (the SSLObject),
        ``peercert``, ``cipher``, ``compression``, ``sslcontext``."""
        value = super().get_extra_info(name, None)
        if value is not None:
            return value
        sslobj = self._ssl
        try:
            if name == "socket":
                return self._sock
            if name == "ssl_object":
                return sslobj
            if name == "sslcontext":
                return sslobj.context
            if name == "peername":
                return self._sock.getpeername()
            if name == "sockname":
                return self._sock.getsockname()
            if name == "peercert":
                return sslobj.getpeercert()
            if name == "cipher":
                return sslobj.cipher()
            if name == "compression":
                return sslobj.compression()
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
        waiter: asyncio.Future[None] = loop.create_future()
        transport = TlsTransport(
            loop, conn, context, server_hostname, protocol_factory, waiter, extra
        )
    except BaseException:
        conn.close()
        raise
    transport._start(handshake_timeout)
    try:
        await waiter
    except BaseException:
        transport._handshake_failed(ConnectionAbortedError("TLS handshake abandoned"))
        raise
    return transport
