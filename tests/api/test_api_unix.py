"""``shoal serve --api-unix PATH``: the HTTP API on a Unix socket, owner-only, with the
same routes and tokens; both clients take ``unix:/path`` as a seed."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import stat
from pathlib import Path

import pytest

from helpers.processes import LoadLog, free_ports, loaded_value, shoal_serve
from shoal import Client, ConfigError, NodeConfig, SyncClient


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def unix_get(path: Path, target: str, token: str | None = None) -> tuple[int, bytes]:
    connection = _Unix(str(path))
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_the_api_on_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    sock.touch()  # a file that is not a socket is refused...
    loads = LoadLog(tmp_path / "calls")
    env = loads.env()(0, "node")
    peer = free_ports(1)[0]
    with pytest.raises(Exception, match="not a socket"), shoal_serve(
        "--api-unix", str(sock), "--group", "data=helpers.loadlog:load", env=env,
        ready_timeout=5,
    ):  # fmt: skip
        pass
    sock.unlink()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # ...a stale socket replaced
    stale.bind(str(sock))
    stale.close()
    args = ["--api-unix", str(sock), "--port", str(peer), "--peers", f"http://127.0.0.1:{peer}"]
    with shoal_serve(*args, "--group", "data=helpers.loadlog:load", env=env) as node:
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert unix_get(sock, "/api?group=data&key=u1") == (200, loaded_value("u1"))
        status, body = unix_get(sock, "/v1/cluster")
        assert status == 200
        assert json.loads(body)["members"][0]["url"].endswith(str(peer))
        with SyncClient(f"unix:{sock}") as client:
            assert client.get("data", "u2") == loaded_value("u2")
        async with Client(f"unix://{sock}") as async_client:
            assert await async_client.get("data", "u3") == loaded_value("u3")
        assert node.stop() == 0
    assert not sock.exists()  # removed at exit


def test_the_unix_socket_takes_the_same_tokens(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    token = secrets.token_urlsafe(32)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {token}\n")
    tokens.chmod(0o600)
    env = LoadLog(tmp_path / "calls").env()(0, "node")
    with shoal_serve(
        "--api-unix", str(sock), "--api-tokens", str(tokens),
        "--group", "g=helpers.loadlog:load", env=env,
    ):  # fmt: skip
        assert unix_get(sock, "/api?group=g&key=k")[0] == 401
        assert unix_get(sock, "/api?group=g&key=k", token) == (200, loaded_value("k"))


def test_api_unix_is_an_absolute_path() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        NodeConfig(api_unix="relative.sock")
