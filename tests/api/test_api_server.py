"""The HTTP/1.1 server (shoal._http) over real loopback sockets, with test handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from helpers.raw_http import Client, build_request, call, read_response
from shoal._http import Deferred, HttpLimits, HttpServer, Request, Response
from shoal.config import NodeConfig

Handler = Callable[[Request], "Response | Awaitable[Response]"]
Serve = Callable[..., Awaitable[tuple[HttpServer, int]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start HttpServers on free ports; close them all at the end of the test."""
    servers: list[HttpServer] = []

    async def start(handler: Handler, **options: Any) -> tuple[HttpServer, int]:
        server_options = {
            k: options.pop(k) for k in ("max_pipeline", "shutdown_timeout") if k in options
        }
        server = HttpServer(handler, HttpLimits(**options), **server_options)
        servers.append(server)
        host, port = await server.start("127.0.0.1", 0)
        assert host == "127.0.0.1"
        assert port > 0
        return server, port

    yield start
    for server in servers:
        await server.aclose()


def hello(request: Request) -> Response:
    """Answer synchronously with the method and the raw path and query."""
    return Response(200, f"{request.method} {request.path!r} {request.query!r}".encode())


def echo(request: Request) -> Response:
    """Answer with the request body."""
    return Response(200, request.body, "application/octet-stream")


class TestKeepAliveAndPipelining:
    async def test_several_requests_on_one_connection(self, serve: Serve) -> None:
        """A keep-alive connection answers request after request."""
        _, port = await serve(hello)
        async with Client(port) as client:
            for i in range(5):
                r = await client.request("GET", f"/n/{i}?x=1")
                assert r.status == 200
                assert r.body == f"GET b'/n/{i}' b'x=1'".encode()
                assert r.headers["content-type"] == "text/plain; charset=utf-8"
                assert r.headers["server"] == "shoal"
                assert r.headers["date"].endswith(" GMT")
                assert "connection" not in r.headers

    async def test_pipelined_answers_keep_request_order(self, serve: Serve) -> None:
        """A slow async answer holds back the ready answers pipelined after it."""
        release = asyncio.Event()
        calls: list[str] = []
        third_called = asyncio.Event()

        async def slow() -> Response:
            await release.wait()
            calls.append("slow done")
            return Response(200, b"slow")

        def handler(request: Request) -> Response | Awaitable[Response]:
            name = request.path.decode()
            calls.append(name)
            if name == "/slow":
                return slow()
            if name == "/b":
                third_called.set()
            return Response(200, name.encode())

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(b"".join(build_request("GET", p) for p in ("/slow", "/a", "/b")))
            await third_called.wait()
            # The sync answers are ready before the slow one...
            assert calls == ["/slow", "/a", "/b"]
            release.set()
            # ...but they leave after it.
            bodies = [(await client.response()).body for _ in range(3)]
        assert bodies == [b"slow", b"/a", b"/b"]
        assert calls == ["/slow", "/a", "/b", "slow done"]

    async def test_unsafe_request_runs_after_earlier_and_before_later_ones(
        self, serve: Serve
    ) -> None:
        """A pipelined PUT waits for the GET before it; the GET after it sees the PUT."""
        store = {"k": b"old"}
        release = asyncio.Event()
        slow_started = asyncio.Event()

        async def slow_get() -> Response:
            slow_started.set()
            await release.wait()
            return Response(200, store["k"])

        async def put(body: bytes) -> Response:
            store["k"] = body
            return Response(204)

        def handler(request: Request) -> Response | Awaitable[Response]:
            if request.method == "PUT":
                return put(request.body)
            if request.path == b"/slow":
                return slow_get()
            return Response(200, store["k"])

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(
                build_request("GET", "/slow")
                + build_request("PUT", "/k", b"new")
                + build_request("GET", "/k")
            )
            await slow_started.wait()
            release.set()
            first = await client.response()
            second = await client.response()
            third = await client.response()
        assert (first.status, first.body) == (200, b"old")
        assert (second.status, second.body) == (204, b"")
        assert "content-length" not in second.headers
        assert (third.status, third.body) == (200, b"new")

    async def test_deep_pipeline_is_bounded_and_answered_in_order(self, serve: Serve) -> None:
        """Beyond max_pipeline, requests wait their turn; all are answered, in order."""
        running = 0
        peak = 0

        async def work(n: int) -> Response:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)  # let other handlers start if the server allows it
            running -= 1
            return Response(200, str(n).encode())

        def handler(request: Request) -> Awaitable[Response]:
            return work(int(request.path[1:]))

        _, port = await serve(handler, max_pipeline=4)
        async with Client(port) as client:
            await client.send(b"".join(build_request("GET", f"/{i}") for i in range(100)))
            bodies = [(await client.response()).body for _ in range(100)]
        assert bodies == [str(i).encode() for i in range(100)]
        assert 1 <= peak <= 4

    async def test_connection_close_is_honoured(self, serve: Serve) -> None:
        """'Connection: close' gets the header back and the server closes the connection."""
        _, port = await serve(hello)
        async with Client(port) as client:
            r = await client.request("GET", "/", headers={"Connection": "close"})
            assert r.status == 200
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""

    async def test_requests_pipelined_after_close_are_ignored(self, serve: Serve) -> None:
        """Nothing after a 'Connection: close' request is handled."""
        seen: list[bytes] = []

        def handler(request: Request) -> Response:
            seen.append(request.path)
            return Response(200, b"ok")

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(
                build_request("GET", "/1", headers={"Connection": "close"})
                + build_request("GET", "/2")
            )
            r = await client.response()
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""
        assert seen == [b"/1"]

    async def test_http10(self, serve: Serve) -> None:
        """HTTP/1.0 closes by default and stays open with 'Connection: keep-alive'."""
        _, port = await serve(hello)
        async with Client(port) as client:
            await client.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = await client.response()
            assert r.headers["connection"] == "keep-alive"
            await client.send(b"GET /b HTTP/1.0\r\n\r\n")
            r = await client.response()
            assert r.status == 200
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""


class TestRequests:
    async def test_head_has_headers_only(self, serve: Serve) -> None:
        """HEAD gets GET's headers (Content-Length included) and no body."""
        _, port = await serve(lambda request: Response(200, b"0123456789"))
        async with Client(port) as client:
            r = await client.request("HEAD", "/")
            assert r.status == 200
            assert r.headers["content-length"] == "10"
            assert r.body == b""
            # No stray body bytes: the next answer parses cleanly.
            r = await client.request("GET", "/")
            assert r.body == b"0123456789"

    async def test_bodies_plain_and_chunked(self, serve: Serve) -> None:
        """Content-Length and chunked bodies reach the handler whole."""
        _, port = await serve(echo)
        async with Client(port) as client:
            r = await client.request("POST", "/", b"x" * 100_000)
            assert r.body == b"x" * 100_000
            await client.send(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            r = await client.response()
            assert r.body == b"hello world"

    async def test_expect_100_continue(self, serve: Serve) -> None:
        """'Expect: 100-continue' gets the interim answer before the body is sent."""
        _, port = await serve(echo)
        async with Client(port) as client:
            await client.send(
                b"PUT /k HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await client.reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await client.send(b"hello")
            r = await client.response()
            assert (r.status, r.body) == (200, b"hello")

    async def test_continue_waits_for_earlier_answers(self, serve: Serve) -> None:
        """A pipelined request's 100 Continue does not overtake the answer before it."""
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow() -> Response:
            started.set()
            await release.wait()
            return Response(200, b"slow")

        def handler(request: Request) -> Response | Awaitable[Response]:
            return slow() if request.path == b"/slow" else echo(request)

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(
                build_request("GET", "/slow")
                + b"PUT /k HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            await started.wait()
            release.set()
            assert (await client.response()).body == b"slow"
            interim = await client.reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await client.send(b"ok")
            assert (await client.response()).body == b"ok"

    async def test_half_closed_client_still_gets_its_answers(self, serve: Serve) -> None:
        """A client that shuts its sending side after the requests is answered, then closed."""
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow() -> Response:
            started.set()
            await release.wait()
            return Response(200, b"slow")

        def handler(request: Request) -> Response | Awaitable[Response]:
            return slow() if request.path == b"/slow" else Response(200, b"fast")

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(build_request("GET", "/slow") + build_request("GET", "/fast"))
            client.writer.write_eof()
            await started.wait()
            release.set()
            assert (await client.response()).body == b"slow"
            last = await client.response()
            assert last.body == b"fast"
            assert last.headers["connection"] == "close"
            assert await client.rest() == b""

    async def test_expect_with_too_large_body_gets_413_without_continue(self, serve: Serve) -> None:
        """An unacceptable body is refused instead of invited."""
        _, port = await serve(echo, max_body_bytes=10)
        async with Client(port) as client:
            await client.send(
                b"PUT /k HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
            )
            r = await client.response()
            assert r.status == 413
            assert r.json()["code"] == "body_too_large"

    async def test_unknown_expectation_gets_417(self, serve: Serve) -> None:
        """Only 100-continue is a known expectation."""
        _, port = await serve(echo)
        r = await call(port, "PUT", "/k", b"abc", headers={"Expect": "something"})
        assert r.status == 417

    async def test_absolute_form_target(self, serve: Serve) -> None:
        """'GET http://host/p?q' reaches the handler as path /p and query q."""
        _, port = await serve(hello)
        r = await call(port, "GET", "http://example.com/p%20q?a=b")
        assert r.body == b"GET b'/p%20q' b'a=b'"

    async def test_large_answer(self, serve: Serve) -> None:
        """A body larger than a socket buffer arrives intact."""
        big = bytes(range(256)) * 8192  # 2 MiB
        _, port = await serve(lambda request: Response(200, big))
        r = await call(port, "GET", "/")
        assert r.body == big


class TestLimits:
    async def test_headers_too_large(self, serve: Serve) -> None:
        """Request line plus headers over max_header_bytes: 431 and close."""
        _, port = await serve(hello, max_header_bytes=1024)
        async with Client(port) as client:
            r = await client.request("GET", "/", headers={"X-Big": "a" * 2000})
            assert r.status == 431
            assert r.json() == {
                "error": "request line and headers longer than 1024 bytes",
                "code": "headers_too_large",
            }
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""

    async def test_many_headers_too_large(self, serve: Serve) -> None:
        """Many small headers count too."""
        _, port = await serve(hello, max_header_bytes=1024)
        headers = {f"X-H{i}": "v" * 20 for i in range(100)}
        r = await call(port, "GET", "/", headers=headers)
        assert r.status == 431

    async def test_one_endless_header_is_cut_off(self, serve: Serve) -> None:
        """A header that never ends is refused once it passes the limit."""
        _, port = await serve(hello, max_header_bytes=4096)
        async with Client(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nX-Endless: ")

            async def feed() -> None:
                # Far more than the limit, a piece at a time, until the server stops us.
                try:
                    for _ in range(512):
                        await client.send(b"a" * 1024)
                except (ConnectionError, OSError):
                    pass

            feeder = asyncio.create_task(feed())
            try:
                r = await client.response()
            finally:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            assert r.status == 431

    async def test_url_too_long(self, serve: Serve) -> None:
        """A request target alone over the limit: 414."""
        _, port = await serve(hello, max_header_bytes=1024)
        async with Client(port) as client:
            r = await client.request("GET", "/" + "a" * 2000)
            assert r.status == 414
            assert r.json()["code"] == "uri_too_long"
            assert await client.rest() == b""

    async def test_content_length_too_large_is_refused_unread(self, serve: Serve) -> None:
        """413 comes right after the headers, without waiting for the body."""
        called: list[Request] = []

        def handler(request: Request) -> Response:
            called.append(request)
            return Response(200)

        _, port = await serve(handler, max_body_bytes=100)
        async with Client(port) as client:
            await client.send(b"PUT /k HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n")
            r = await client.response()
            assert r.status == 413
            assert r.json()["code"] == "body_too_large"
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""
        assert called == []

    async def test_chunked_body_too_large(self, serve: Serve) -> None:
        """A chunked body is counted as it arrives."""
        _, port = await serve(echo, max_body_bytes=100)
        async with Client(port) as client:
            await client.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            await client.send(b"64\r\n" + b"a" * 100 + b"\r\n" + b"1\r\nb\r\n")
            r = await client.response()
            assert r.status == 413

    @pytest.mark.parametrize(
        "garbage",
        [
            b"\x00\x01\x02\xff garbage\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ],
    )
    async def test_malformed_request_gets_400_and_server_lives_on(
        self, serve: Serve, garbage: bytes
    ) -> None:
        """Malformed HTTP: 400 JSON, connection closed, the next connection is served."""
        _, port = await serve(hello)
        async with Client(port) as client:
            await client.send(garbage)
            r = await client.response()
            assert r.status == 400
            assert r.json()["code"] == "bad_request"
            assert await client.rest() == b""
        r = await call(port, "GET", "/after")
        assert r.status == 200

    async def test_upgrade_is_refused(self, serve: Serve) -> None:
        """Protocol upgrades are not supported."""
        _, port = await serve(hello)
        r = await call(port, "GET", "/", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
        assert r.status == 400
        assert r.json()["code"] == "upgrade_not_supported"


class TestTimeouts:
    async def test_slow_headers_get_408(self, serve: Serve) -> None:
        """Headers not complete within header_timeout: 408 and close (slowloris)."""
        _, port = await serve(hello, header_timeout=0.05)
        async with Client(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            r = await client.response()
            assert r.status == 408
            assert r.json()["code"] == "header_timeout"
            assert await client.rest() == b""

    async def test_slow_body_gets_408(self, serve: Serve) -> None:
        """Body not complete within body_timeout: 408 and close."""
        _, port = await serve(echo, body_timeout=0.05)
        async with Client(port) as client:
            await client.send(b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            r = await client.response()
            assert r.status == 408
            assert r.json()["code"] == "body_timeout"

    async def test_silent_connection_is_closed(self, serve: Serve) -> None:
        """A connection that never sends a byte is closed without an answer."""
        _, port = await serve(hello, header_timeout=0.05)
        async with Client(port) as client:
            assert await client.rest() == b""

    async def test_idle_keepalive_connection_is_closed(self, serve: Serve) -> None:
        """After keepalive_timeout without a request, the connection closes silently."""
        _, port = await serve(hello, keepalive_timeout=0.05)
        async with Client(port) as client:
            r = await client.request("GET", "/")
            assert r.status == 200
            assert await client.rest() == b""

    async def test_slow_handler_gets_504(self, serve: Serve) -> None:
        """A handler slower than request_timeout is cancelled and answered 504."""
        cancelled = asyncio.Event()

        async def never() -> Response:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            raise AssertionError("unreachable")

        _, port = await serve(lambda request: never(), request_timeout=0.05)
        async with Client(port) as client:
            r = await client.request("GET", "/")
            assert r.status == 504
            assert r.json()["code"] == "request_timeout"
            assert cancelled.is_set()
            # The connection is still usable.
            r = await client.request("GET", "/")
            assert r.status == 504


class TestHandlerFailures:
    async def test_handler_exception_gets_500_and_server_keeps_serving(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A raising handler (sync or async) is logged and answered 500."""

        async def async_boom() -> Response:
            raise RuntimeError("async boom")

        def handler(request: Request) -> Response | Awaitable[Response]:
            if request.path == b"/sync":
                raise RuntimeError("sync boom")
            if request.path == b"/async":
                return async_boom()
            if request.path == b"/wrong":
                return "not a response"  # type: ignore[return-value]
            return Response(200, b"fine")

        _, port = await serve(handler)
        with caplog.at_level(logging.ERROR, logger="shoal.api"):
            async with Client(port) as client:
                for path in ("/sync", "/async", "/wrong"):
                    r = await client.request("GET", path)
                    assert r.status == 500
                    assert r.json() == {"error": "internal server error", "code": "internal"}
                    r = await client.request("GET", "/ok")
                    assert (r.status, r.body) == (200, b"fine")
        messages = caplog.text
        assert "sync boom" in messages
        assert "async boom" in messages


class TestShutdown:
    async def test_aclose_with_idle_connections_returns_promptly(self, serve: Serve) -> None:
        """Idle connections are closed at once, not after shutdown_timeout."""
        server, port = await serve(hello, shutdown_timeout=3600)
        async with Client(port) as used, Client(port) as silent:
            assert (await used.request("GET", "/")).status == 200
            # A generous bound that only a wait for shutdown_timeout would exceed.
            await asyncio.wait_for(server.aclose(), 60)
            assert await used.rest() == b""
            assert await silent.rest() == b""
        with pytest.raises(ConnectionRefusedError):
            await call(port, "GET", "/")

    async def test_aclose_lets_in_flight_requests_finish(self, serve: Serve) -> None:
        """A request in flight at aclose is answered (with Connection: close)."""
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow() -> Response:
            started.set()
            await release.wait()
            return Response(200, b"done")

        server, port = await serve(lambda request: slow(), shutdown_timeout=3600)
        async with Client(port) as client:
            await client.send(build_request("GET", "/"))
            await started.wait()
            closing = asyncio.create_task(server.aclose())
            await asyncio.sleep(0)  # one loop turn: aclose stops listening, then waits
            assert server.closing
            release.set()
            r = await client.response()
            assert (r.status, r.body) == (200, b"done")
            assert r.headers["connection"] == "close"
            assert await client.rest() == b""
            await closing

    async def test_aclose_cancels_leftovers(self, serve: Serve) -> None:
        """Handlers still running after shutdown_timeout are cancelled."""
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def stuck() -> Response:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()
            raise AssertionError("unreachable")

        server, port = await serve(lambda request: stuck(), shutdown_timeout=0.05)
        async with Client(port) as client:
            await client.send(build_request("GET", "/"))
            await started.wait()
            await server.aclose()
            assert cancelled.is_set()
            await client.rest()  # closed (or reset) without hanging

    async def test_aclose_is_idempotent(self, serve: Serve) -> None:
        """A second aclose does nothing."""
        server, _ = await serve(hello)
        await server.aclose()
        await server.aclose()


def test_runs_on_uvloop() -> None:
    """The same server works on uvloop: keep-alive, pipelining, limits, shutdown."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow() -> Response:
            await release.wait()
            return Response(200, b"slow")

        def handler(request: Request) -> Response | Awaitable[Response]:
            if request.path == b"/slow":
                return slow()
            return Response(200, request.path)

        server = HttpServer(handler, HttpLimits(max_header_bytes=1024))
        _, port = await server.start("127.0.0.1", 0)
        try:
            async with Client(port) as client:
                assert (await client.request("GET", "/one")).body == b"/one"
                await client.send(build_request("GET", "/slow") + build_request("GET", "/two"))
                release.set()
                assert (await read_response(client.reader)).body == b"slow"
                assert (await read_response(client.reader)).body == b"/two"
                r = await client.request("GET", "/", headers={"X-Big": "a" * 2000})
                assert r.status == 431
                assert await client.rest() == b""
        finally:
            await server.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


class TestDeferredAnswers:
    """A handler may return a Deferred: the answer comes from a callback on a future
    that runs elsewhere, with no task per request."""

    async def test_answered_when_the_future_is_done_in_request_order(self, serve: Serve) -> None:
        futures: dict[str, asyncio.Future[bytes]] = {}
        both = asyncio.Event()

        def handler(request: Request) -> Response | Deferred:
            future = asyncio.get_running_loop().create_future()
            futures[request.path.decode()] = future
            if len(futures) == 2:
                both.set()
            return Deferred(future, lambda f: Response(200, f.result()))

        _, port = await serve(handler)
        async with Client(port) as client:
            await client.send(build_request("GET", "/a") + build_request("GET", "/b"))
            await both.wait()
            futures["/b"].set_result(b"second")  # done first, sent second
            await asyncio.sleep(0.01)
            futures["/a"].set_result(b"first")
            first, second = await client.response(), await client.response()
            assert (first.status, first.body) == (200, b"first")
            assert (second.status, second.body) == (200, b"second")

    async def test_a_timeout_is_504_and_cancels_only_the_wait(self, serve: Serve) -> None:
        futures: list[asyncio.Future[bytes]] = []

        def handler(request: Request) -> Deferred:
            futures.append(asyncio.get_running_loop().create_future())
            return Deferred(futures[-1], lambda f: Response(200, f.result()))

        _, port = await serve(handler, request_timeout=0.05)
        async with Client(port) as client:
            r = await client.request("GET", "/")
            assert (r.status, r.json()["code"]) == (504, "request_timeout")
            assert futures[0].cancelled()
            r = await client.request("GET", "/")  # the connection is still usable
            assert r.status == 504

    async def test_a_server_shutdown_cancels_the_wait(self, serve: Serve) -> None:
        futures: list[asyncio.Future[bytes]] = []
        asked = asyncio.Event()

        def handler(request: Request) -> Deferred:
            futures.append(asyncio.get_running_loop().create_future())
            asked.set()
            return Deferred(futures[-1], lambda f: Response(200, f.result()))

        server, port = await serve(handler, shutdown_timeout=0.05)
        async with Client(port) as client:
            await client.send(build_request("GET", "/"))
            await asked.wait()
            await server.aclose()  # the answer never came: the connection is dropped
            assert futures[0].cancelled()

    async def test_a_failing_conversion_is_500(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        def convert(future: asyncio.Future[bytes]) -> Response:
            raise RuntimeError("convert failed")

        def handler(request: Request) -> Deferred:
            future = asyncio.get_running_loop().create_future()
            future.set_result(b"x")
            return Deferred(future, convert)

        _, port = await serve(handler)
        with caplog.at_level(logging.ERROR, logger="shoal.api"):
            async with Client(port) as client:
                r = await client.request("GET", "/")
                assert r.status == 500
                r = await client.request("GET", "/")
                assert r.status == 500
        assert "HTTP handler failed" in caplog.text


def test_the_server_limits_default_to_the_node_defaults() -> None:
    """A server built without limits enforces what a node with a default config would."""
    assert HttpServer(lambda request: Response(200)).limits == HttpLimits.of(NodeConfig())
    custom = NodeConfig(max_header_bytes=1024, request_timeout=2.5)
    assert HttpLimits.of(custom) == HttpLimits(max_header_bytes=1024, request_timeout=2.5)
