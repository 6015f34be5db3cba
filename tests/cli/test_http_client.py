"""The command line's one HTTP client against real sockets: answers of every status,
chunked bodies, and no answer at all (refused, silent, not HTTP) as RequestFailed."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from helpers.processes import free_port
from shoal.cli.http_client import Reply, RequestFailed, request, request_async


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello, ", b"chunked ", b"world"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b'{"error":"no such key","code":"not_found"}'
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP/1.1 server on 127.0.0.1; its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_answers_of_every_status_are_replies(server: str) -> None:
    """A 404 is a Reply with its body, not an exception; a body goes out and comes back."""
    assert request("GET", f"{server}/missing", timeout=5).status == 404
    assert request("PUT", f"{server}/k", body=b"abc", timeout=5) == Reply(200, b"cba")


def test_chunked_body_is_joined(server: str) -> None:
    """A chunked answer arrives as one body."""
    assert request("GET", f"{server}/chunked", timeout=5) == Reply(200, b"hello, chunked world")


def test_async_form(server: str) -> None:
    """request_async gives the same answers from an event loop."""

    async def both() -> list[Reply]:
        return list(
            await asyncio.gather(
                request_async("GET", f"{server}/chunked", timeout=5),
                request_async("GET", f"{server}/missing", timeout=5),
            )
        )

    assert [r.status for r in asyncio.run(both())] == [200, 404]


def test_refused_is_request_failed_naming_the_server() -> None:
    """Nothing listening: RequestFailed whose message names the origin."""
    port = free_port()
    with pytest.raises(RequestFailed, match=f"cannot reach http://127.0.0.1:{port}"):
        request("GET", f"http://127.0.0.1:{port}/x", timeout=5)


def test_silent_server_times_out() -> None:
    """A server that accepts and never answers: RequestFailed after the timeout."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RequestFailed, match=r"did not answer within 0\.3s"):
            request("GET", f"http://127.0.0.1:{port}/", timeout=0.3)
        assert time.monotonic() - started < 5


def test_not_http_is_request_failed() -> None:
    """A server that answers garbage and closes: RequestFailed, not a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        thread = threading.Thread(target=garbage)
        thread.start()
        try:
            with pytest.raises(RequestFailed):
                request("GET", f"http://127.0.0.1:{port}/", timeout=5)
        finally:
            thread.join()
