"""shoal's own server-side TLS transport (:mod:`shoal._http.tls_transport`), on real
sockets on 127.0.0.1 with certificates made at test time, on asyncio's loop and on
uvloop: pipelined and large data both ways, flow control under a slow reader, a
client's close_notify, a client's reset, a close that flushes, a stalled handshake,
and ``connection_lost`` exactly once; then HTTP over it (pipelined requests, a body
of many records)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop

from helpers.tls_nodes import Pki, make_pki
from shoal._http import HttpLimits, HttpServer, Request, Response
from shoal._http.tls_transport import TlsTransport, accept_tls, connect_tls


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    policy: asyncio.AbstractEventLoopPolicy = (
        uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()
    )
    return policy


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), nodes=1)


@pytest.fixture(scope="module")
def server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.node(0))
    return context


class Recorder(asyncio.Protocol):
    """Records what the transport calls; ``on_data`` decides what a read does."""

    def __init__(
        self,
        on_data: Callable[[Recorder, bytes], None] | None = None,
        on_eof: Callable[[Recorder], bool] | None = None,
    ) -> None:
        self.transport: TlsTransport | None = None
        self.received = bytearray()
        self.calls: list[str] = []
        self.lost: list[Exception | None] = []
        self.done = asyncio.get_running_loop().create_future()
        self.on_data = on_data
        self.on_eof = on_eof

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TlsTransport)
        self.transport = transport
        self.calls.append("made")

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return self.on_eof(self) if self.on_eof is not None else False

    def pause_writing(self) -> None:
        self.calls.append("pause")

    def resume_writing(self) -> None:
        self.calls.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.done.done():
            self.done.set_result(None)


Serve = Callable[..., Awaitable[tuple[int, asyncio.Future[Recorder]]]]


@pytest.fixture
async def serve(server_context: ssl.SSLContext) -> AsyncIterator[Serve]:
    """Listen on 127.0.0.1:0; the first accepted connection gets a :class:`Recorder`
    over a :class:`TlsTransport` (the future fails with what the handshake raises)."""
    loop = asyncio.get_running_loop()
    listeners: list[socket.socket] = []
    tasks: list[asyncio.Task[None]] = []
    transports: list[TlsTransport] = []

    async def start(
        on_data: Callable[[Recorder, bytes], None] | None = None,
        on_eof: Callable[[Recorder], bool] | None = None,
        handshake_timeout: float = 5.0,
    ) -> tuple[int, asyncio.Future[Recorder]]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        listeners.append(listener)
        made: asyncio.Future[Recorder] = loop.create_future()

        async def accept() -> None:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            recorders: list[Recorder] = []

            def factory() -> Recorder:
                recorders.append(Recorder(on_data, on_eof))
                return recorders[0]

            try:
                transport = await accept_tls(loop, conn, server_context, factory, handshake_timeout)
            except Exception as exc:
                made.set_exception(exc)
                return
            transports.append(transport)
            made.set_result(recorders[0])

        tasks.append(loop.create_task(accept()))
        return listener.getsockname()[1], made

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for transport in transports:
        transport.abort()
    await asyncio.sleep(0)
    for listener in listeners:
        listener.close()


async def connect(
    pki: Pki, port: int, *, tls12: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = pki.context(None)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, limit=1 << 24)


def echo(recorder: Recorder, data: bytes) -> None:
    assert recorder.transport is not None
    recorder.transport.write(data)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
async def test_pipelined_writes_are_echoed_in_order_and_close_notify_ends_it_once(
    pki: Pki, serve: Serve, tls12: bool
) -> None:
    port, made = await serve(echo)
    reader, writer = await connect(pki, port, tls12=tls12)
    recorder = await asyncio.wait_for(made, 5)
    messages = [struct.pack(">I", i) * 100 for i in range(200)]
    for message in messages:
        writer.write(message)  # many small records, sent back to back
    expected = b"".join(messages)
    async with asyncio.timeout(5):
        assert await reader.readexactly(len(expected)) == expected
    assert recorder.transport is not None
    assert recorder.transport.get_extra_info("peername") == writer.get_extra_info("sockname")
    assert recorder.transport.get_extra_info("ssl_object").version() == (
        "TLSv1.2" if tls12 else "TLSv1.3"
    )
    writer.close()  # sends close_notify
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    await asyncio.wait_for(recorder.done, 5)
    await asyncio.sleep(0.05)
    assert recorder.calls == ["made", "eof"]
    assert recorder.lost == [None]


async def test_a_large_body_crosses_many_records_both_ways(pki: Pki, serve: Serve) -> None:
    port, made = await serve(echo)
    reader, writer = await connect(pki, port)
    recorder = await asyncio.wait_for(made, 5)
    body = hashlib.shake_256(b"body").digest(3 << 20)  # 3 MiB: ~200 records each way
    writer.write(body)
    async with asyncio.timeout(10):
        assert await reader.readexactly(len(body)) == body
    assert bytes(recorder.received) == body
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    await asyncio.wait_for(recorder.done, 5)


async def test_a_slow_reader_pauses_the_writer_and_gets_every_byte(pki: Pki, serve: Serve) -> None:
    total = 8 << 20
    chunk = hashlib.shake_256(b"chunk").digest(64 << 10)
    sent = 0

    def produce(recorder: Recorder) -> None:
        nonlocal sent
        transport = recorder.transport
        assert transport is not None
        while sent < total and recorder.calls[-1] != "pause":
            transport.write(chunk)
            sent += len(chunk)
            assert transport.get_write_buffer_size() <= sent
        if sent >= total:
            transport.close()

    def start(recorder: Recorder, data: bytes) -> None:
        if data == b"go":
            produce(recorder)

    port, made = await serve(start)
    reader, writer = await connect(pki, port)
    recorder = await asyncio.wait_for(made, 5)
    original = recorder.resume_writing

    def resumed() -> None:
        original()
        produce(recorder)

    recorder.resume_writing = resumed  # type: ignore[method-assign]
    writer.write(b"go")
    got = 0
    digest = hashlib.sha256()
    async with asyncio.timeout(30):
        while got < 1 << 20:  # the first MiB slowly: the server's buffer fills
            data = await reader.read(16384)
            assert data
            got += len(data)
            digest.update(data)
            await asyncio.sleep(0.002)
        while data := await reader.read(1 << 20):
            got += len(data)
            digest.update(data)
    assert got == total
    assert digest.digest() == hashlib.sha256(chunk * (total // len(chunk))).digest()
    assert recorder.calls.count("pause") >= 1
    assert recorder.calls.count("resume") == recorder.calls.count("pause")
    await asyncio.wait_for(recorder.done, 5)
    assert recorder.lost == [None]
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_close_flushes_what_is_buffered_then_sends_close_notify(
    pki: Pki, serve: Serve
) -> None:
    body = hashlib.shake_256(b"flush").digest(2 << 20)

    def answer_and_close(recorder: Recorder, data: bytes) -> None:
        assert recorder.transport is not None
        recorder.transport.write(body)  # far more than the socket takes at once
        recorder.transport.close()
        assert recorder.transport.is_closing()
        recorder.transport.write(b"dropped")  # after close: ignored

    port, made = await serve(answer_and_close)
    reader, writer = await connect(pki, port)
    writer.write(b"x")
    recorder = await asyncio.wait_for(made, 5)
    async with asyncio.timeout(10):
        assert await reader.readexactly(len(body)) == body
        assert await reader.read() == b""  # close_notify: a clean end, not a reset
    await asyncio.wait_for(recorder.done, 5)
    assert recorder.lost == [None]
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_a_client_reset_is_connection_lost_with_the_error_once(
    pki: Pki, serve: Serve
) -> None:
    port, made = await serve(echo)
    reader, writer = await connect(pki, port)
    writer.write(b"ping")
    async with asyncio.timeout(5):
        assert await reader.readexactly(4) == b"ping"
    recorder = await asyncio.wait_for(made, 5)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST
    await asyncio.wait_for(recorder.done, 5)
    await asyncio.sleep(0.05)
    assert len(recorder.lost) == 1
    assert recorder.lost[0] is None or isinstance(recorder.lost[0], OSError)
    assert "eof" not in recorder.calls or recorder.lost[0] is None


async def test_abort_drops_the_connection_and_connection_lost_comes_once(
    pki: Pki, serve: Serve
) -> None:
    def abort(recorder: Recorder, data: bytes) -> None:
        assert recorder.transport is not None
        recorder.transport.write(b"never sent" * 100000)
        recorder.transport.abort()
        recorder.transport.abort()
        recorder.transport.close()

    port, made = await serve(abort)
    reader, writer = await connect(pki, port)
    writer.write(b"x")
    recorder = await asyncio.wait_for(made, 5)
    await asyncio.wait_for(recorder.done, 5)
    await asyncio.sleep(0.05)
    assert recorder.lost == [None]
    with contextlib.suppress(OSError, ssl.SSLError):
        async with asyncio.timeout(5):
            while await reader.read(1 << 20):
                pass
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def half_closing_client(pki: Pki, port: int, message: bytes) -> bytes:
    """Send ``message`` then close_notify (the client's side ends), then read the
    answer until the server's close_notify (a blocking client, over a memory BIO)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = pki.context(None).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:

        def pump(step: Callable[[], Any]) -> Any:
            while True:
                try:
                    result = step()
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    data = raw.recv(65536)
                    if not data:
                        raise ConnectionError("the server closed") from None
                    incoming.write(data)
                    continue
                raw.sendall(outgoing.read())
                return result

        pump(tls.do_handshake)
        tls.write(message)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # queues close_notify
        raw.sendall(outgoing.read())
        answer = b""
        with contextlib.suppress(ssl.SSLZeroReturnError):
            while chunk := pump(lambda: tls.read(65536)):
                answer += chunk
        return answer


async def test_after_the_clients_close_notify_the_protocol_may_still_answer(
    pki: Pki, serve: Serve
) -> None:
    """eof_received returning true keeps the transport open for writing (TLS allows
    it): the answer arrives, then the server's close_notify."""

    def answer(recorder: Recorder) -> None:
        assert recorder.transport is not None
        recorder.transport.write(b"answer to " + bytes(recorder.received))
        recorder.transport.close()

    def eof_then_answer(recorder: Recorder) -> bool:
        asyncio.get_running_loop().call_later(0.05, answer, recorder)
        return True

    port, made = await serve(on_eof=eof_then_answer)
    answered = asyncio.get_running_loop().run_in_executor(
        None, half_closing_client, pki, port, b"question"
    )
    recorder = await asyncio.wait_for(made, 5)
    assert await asyncio.wait_for(answered, 5) == b"answer to question"
    await asyncio.wait_for(recorder.done, 5)
    assert recorder.calls == ["made", "eof"]
    assert recorder.lost == [None]


@pytest.mark.parametrize("send", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
async def test_a_stalled_handshake_times_out_and_closes(
    pki: Pki, serve: Serve, send: bytes
) -> None:
    """Nothing, or half a ClientHello: the handshake fails at its timeout."""
    port, made = await serve(handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(made, 5)
    assert asyncio.get_running_loop().time() - started < 2
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed, not reset
    writer.close()


async def test_plaintext_fails_the_handshake_and_is_not_answered(pki: Pki, serve: Serve) -> None:
    port, made = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    with pytest.raises(ssl.SSLError):
        await asyncio.wait_for(made, 5)
    async with asyncio.timeout(5):
        assert b"HTTP" not in await reader.read()
    writer.close()


# -- the client side ------------------------------------------------------------


async def test_connect_tls_speaks_to_the_server_side(pki: Pki, serve: Serve) -> None:
    """Both ends are TlsTransports: data both ways, then the client closes cleanly."""
    port, made = await serve(echo)
    loop = asyncio.get_running_loop()
    message = hashlib.shake_256(b"client").digest(1 << 20)
    echoed = asyncio.Event()

    def collect(recorder: Recorder, data: bytes) -> None:
        if len(recorder.received) >= len(message):
            echoed.set()

    client = await connect_tls(
        loop, "localhost", port, pki.context(None), lambda: Recorder(collect), 5
    )
    recorder = client.get_protocol()
    assert isinstance(recorder, Recorder)
    assert client.get_extra_info("peercert")["subject"]  # the server's, verified
    server = await asyncio.wait_for(made, 5)
    client.write(message)
    await asyncio.wait_for(echoed.wait(), 10)
    assert bytes(recorder.received) == message
    client.close()
    await asyncio.wait_for(server.done, 5)
    await asyncio.wait_for(recorder.done, 5)
    assert server.lost == [None]
    assert recorder.lost == [None]


async def test_connect_tls_checks_the_servers_certificate(pki: Pki, serve: Serve) -> None:
    port, made = await serve()
    loop = asyncio.get_running_loop()
    foreign = pki.context(None, ca=str(pki.root / "foreign-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_tls(loop, "127.0.0.1", port, foreign, Recorder, 5)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(made, 5)


async def test_connect_tls_bounds_a_stalled_handshake() -> None:
    """A server that accepts and never answers: the handshake times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await connect_tls(loop, "127.0.0.1", listener.getsockname()[1], context, Recorder, 0.3)
        assert loop.time() - started < 2
    finally:
        listener.close()


async def test_connect_tls_reports_a_refused_connection() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    loop = asyncio.get_running_loop()
    with pytest.raises(ConnectionRefusedError):
        await connect_tls(loop, "127.0.0.1", port, ssl.create_default_context(), Recorder, 5)


# -- HTTP over it ------------------------------------------------------------------


def content_length(head: bytes) -> int:
    assert head.startswith(b"HTTP/1.1 200 "), head
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


@pytest.fixture
async def https(server_context: ssl.SSLContext) -> AsyncIterator[HttpServer]:
    async def handler(request: Request) -> Response:
        if request.method == "POST":
            digest = hashlib.sha256(request.body).hexdigest()
            return Response(200, f"{len(request.body)} {digest}".encode())
        size = int(request.query.decode().partition("=")[2] or 0)
        return Response(200, request.path + b" " + b"z" * size)

    server = HttpServer(
        handler, HttpLimits(max_body_bytes=8 << 20, header_timeout=0.5), tls=lambda: server_context
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.aclose()


async def test_pipelined_http_requests_are_answered_in_order(pki: Pki, https: HttpServer) -> None:
    assert https.address is not None
    reader, writer = await connect(pki, https.address[1])
    writer.write(b"".join(f"GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(50)))
    async with asyncio.timeout(10):
        for i in range(50):
            head = await reader.readuntil(b"\r\n\r\n")
            length = content_length(head)
            assert await reader.readexactly(length) == f"/r{i} ".encode()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_a_large_http_body_in_and_out(pki: Pki, https: HttpServer) -> None:
    assert https.address is not None
    reader, writer = await connect(pki, https.address[1])
    body = hashlib.shake_256(b"post").digest(5 << 20)
    writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body)
    writer.write(b"GET /big?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    expected = [f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode(), b"/big z"]
    async with asyncio.timeout(20):
        head = await reader.readuntil(b"\r\n\r\n")
        length = content_length(head)
        assert await reader.readexactly(length) == expected[0]
        head = await reader.readuntil(b"\r\n\r\n")
        length = content_length(head)
        answer = await reader.readexactly(length)
    assert answer == b"/big " + b"z" * 3000000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_a_stalled_handshake_is_counted_by_the_server(https: HttpServer) -> None:
    assert https.address is not None
    reader, writer = await asyncio.open_connection(*https.address)
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # cut at the header timeout (0.5 s)
    writer.close()
    assert https.tls_handshake_failures == 1
