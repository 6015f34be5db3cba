"""API tokens with roles: the file, the HTTP API (fast path included), gRPC
``shoal.v1.Cache``, the counters, SIGHUP reload, the client and the CLI.

Real servers on 127.0.0.1 (port 0), real sockets, a real ``shoal serve`` process."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.processes import clean_env, run_shoal, shoal_serve
from shoal import Client, Node, NodeConfig
from shoal.errors import ConfigError, Forbidden, Unauthorized
from shoal.tokens import ApiTokens, parse_tokens

grpc = pytest.importorskip("grpc")

READ, WRITE, ADMIN = (f"{role}-{secrets.token_urlsafe(24)}" for role in ("read", "write", "admin"))
UNKNOWN = secrets.token_urlsafe(24)
REALM = 'Bearer realm="shoal"'


def write_tokens(path: Path, *lines: str) -> Path:
    path.write_text("# role token\n\n" + "".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens", f"read {READ}", f"write {WRITE}", f"admin {ADMIN}")


# -- the file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read\n", "line 1: expected 'ROLE TOKEN'"),
        ("# c\nread a b\n", "line 2: expected 'ROLE TOKEN'"),
        (f"\nreader {READ}\n", "line 2: unknown role"),
        (f"{READ} read\n", "line 1: unknown role"),
        ("read short\n", "line 1: the token is shorter than 16"),
        ("read abcdefghijklmnop!\n", "line 1: the token may hold only"),
        ("read abcdéfghijklmnopq\n", "line 1: the token may hold only"),
        (f"read {READ}\nadmin {READ}\n", "line 2: the same token as line 1"),
        ("# nothing\n\n", "no tokens"),
    ],
)
def test_a_bad_file_names_the_line_never_the_token(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_tokens(text, source="tokens.txt")
    assert READ not in str(caught.value)
    assert "abcd" not in str(caught.value)
    assert str(caught.value).startswith("tokens.txt")


def test_the_file_is_read_once_and_compared_by_digest(tokens_file: Path) -> None:
    tokens = ApiTokens(str(tokens_file))
    assert tokens.count == 3
    assert READ.encode() not in repr(vars(tokens)).encode()  # only digests are kept
    assert tokens.identify(f"Bearer {READ}").role == "read"
    assert tokens.identify(f"bearer   {ADMIN} ").role == "admin"
    assert tokens.identify(f"Bearer {UNKNOWN}").reason == "unknown"
    assert tokens.identify(None).reason == "missing"
    for bad in (f"Basic {READ}", "Bearer", "Bearer ", f"Bearer {READ} x", "Bearer a,b", READ):
        assert tokens.identify(bad).reason == "malformed", bad


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the API tokens file"):
        ApiTokens(str(tmp_path / "absent"))


# -- a node with tokens, in process ----------------------------------------------------


class Api:
    """One keep-alive HTTP connection to a node's API."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(
        self, method: str, path: str, token: str | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.raw(method, path, headers, body)

    def raw(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self.connection.close()


async def call(api: Api, *args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(api.call, *args, **kwargs)


@pytest.fixture
async def node(tokens_file: Path) -> AsyncIterator[Node]:
    config = NodeConfig(api_port=0, port=0, transport="grpc", api_tokens=str(tokens_file))
    node = Node(config)
    node.group("scores", lambda key: f"v-{key}".encode())
    async with node:
        yield node


@pytest.fixture
def api(node: Node) -> Iterator[Api]:
    assert node.api_address is not None
    client = Api(node.api_address[1])
    yield client
    client.close()


# Operation -> (method, path, body, the least role it needs).
OPERATIONS: dict[str, tuple[str, str, bytes | None, str]] = {
    "get": ("GET", "/v1/groups/scores/keys/Tom", None, "read"),
    "get-api": ("GET", "/api?key=Tom", None, "read"),
    "head": ("HEAD", "/v1/groups/scores/keys/Tom", None, "read"),
    "stats": ("GET", "/v1/stats", None, "read"),
    "cluster": ("GET", "/v1/cluster", None, "read"),
    "metrics": ("GET", "/metrics", None, "read"),
    "unknown-path": ("GET", "/nowhere", None, "read"),
    "set": ("PUT", "/v1/groups/scores/keys/Tom", b"700", "write"),
    "delete": ("DELETE", "/v1/groups/scores/keys/Tom", None, "write"),
    "invalidate": ("POST", "/v1/groups/scores/invalidate", None, "admin"),
}
ROLE_TOKENS = {"read": READ, "write": WRITE, "admin": ADMIN}
RANK = {"read": 0, "write": 1, "admin": 2}
SUCCESS = {
    "get": 200,
    "get-api": 200,
    "head": 200,
    "stats": 200,
    "cluster": 200,
    "metrics": 200,
    "unknown-path": 404,
    "set": 204,
    "delete": 200,
    "invalidate": 200,
}


async def test_http_each_role_against_each_operation(api: Api) -> None:
    for operation, (method, path, body, needed) in OPERATIONS.items():
        for role, token in ROLE_TOKENS.items():
            status, headers, data = await call(api, method, path, token, body)
            if RANK[role] >= RANK[needed]:
                assert status == SUCCESS[operation], (operation, role, data)
                assert "www-authenticate" not in headers
            else:
                assert status == 403, (operation, role, data)
                assert headers["www-authenticate"] == REALM + ', error="insufficient_scope"'
                assert json.loads(data)["code"] == "forbidden"


async def test_cluster_internals_are_for_admin_tokens(api: Api) -> None:
    """Below ``admin``, ``/v1/cluster`` is the routing view a client needs (the ring,
    the members' URLs and shares); an admin token also sees the internals
    (membership state and counters, node ids, the peer address)."""
    views = {}
    for role, token in ROLE_TOKENS.items():
        status, _, data = await call(api, "GET", "/v1/cluster?key=Tom", token)
        assert status == 200
        views[role] = json.loads(data)
    admin = views["admin"]
    assert {"membership", "node_id", "peer_address"} <= set(admin)
    for role in ("read", "write"):
        view = views[role]
        assert set(view) == {"self", "base_path", "transport", "ring", "owner", "members"}
        assert view["ring"] == admin["ring"]
        assert view["owner"] == admin["owner"]
        assert [m["url"] for m in view["members"]] == [m["url"] for m in admin["members"]]
        assert all(set(m) == {"url", "self", "share", "backing_off"} for m in view["members"])


async def test_http_no_token_wrong_token_malformed(api: Api) -> None:
    for operation, (method, path, body, _) in OPERATIONS.items():
        status, headers, data = await call(api, method, path, None, body)
        assert status == 401, operation
        assert headers["www-authenticate"] == REALM
        if method != "HEAD":
            assert json.loads(data)["code"] == "unauthorized"
        status, headers, _ = await call(api, method, path, UNKNOWN, body)
        assert (status, headers["www-authenticate"]) == (401, REALM + ', error="invalid_token"')
    for value in (f"Basic {READ}", "Bearer", f"Bearer {READ} extra", f"Token {READ}"):
        status, headers, data = await asyncio.to_thread(
            api.raw, "GET", "/v1/groups/scores/keys/Tom", {"Authorization": value}
        )
        assert status == 400, value
        assert headers["www-authenticate"] == REALM + ', error="invalid_request"'
        assert READ not in data.decode()


async def test_two_authorization_headers_are_malformed(api: Api) -> None:
    def twice() -> int:
        conn = api.connection
        conn.putrequest("GET", "/v1/groups/scores/keys/Tom")
        conn.putheader("Authorization", f"Bearer {READ}")
        conn.putheader("authorization", f"Bearer {UNKNOWN}")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status

    assert await asyncio.to_thread(twice) == 400


async def test_healthz_stays_open(api: Api) -> None:
    assert (await call(api, "GET", "/healthz"))[0] == 200
    assert (await call(api, "GET", "/healthz", UNKNOWN))[0] == 200


async def test_refusals_are_counted(node: Node, api: Api) -> None:
    await call(api, "GET", "/api?key=a")  # missing
    await call(api, "GET", "/api?key=a", UNKNOWN)  # unknown
    await call(api, "GET", "/api?key=a", UNKNOWN)
    await asyncio.to_thread(api.raw, "GET", "/api?key=a", {"Authorization": "Basic x"})
    await call(api, "POST", "/v1/groups/scores/invalidate", READ)  # forbidden
    assert node.peer_address is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.peer_address[1]}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/shoal.v1.Cache/Stats")(b"")
    _, _, body = await call(api, "GET", "/metrics", READ)
    text = body.decode()
    for port, reason, count in [
        ("api", "missing", 1),
        ("api", "unknown", 2),
        ("api", "malformed", 1),
        ("api", "forbidden", 1),
        ("grpc", "missing", 1),
        ("grpc", "forbidden", 0),
    ]:
        assert f'shoal_auth_failures_total{{port="{port}",reason="{reason}"}} {count}' in text


@pytest.mark.parametrize("speedups", [True, False], ids=["speedups", "parser-only"])
async def test_the_fast_path_checks_every_request(
    node: Node, tokens_file: Path, monkeypatch: pytest.MonkeyPatch, speedups: bool
) -> None:
    """A verified token is remembered per connection (and not verified again, with
    or without the compiled recognizer); another token on the same connection is checked
    anew, and a reload forgets what was verified."""
    from shoal._http import server as http_server

    if not speedups:
        monkeypatch.setattr(http_server, "SIMPLE_GET", None)
    verified: list[bytes] = []
    accepts = ApiTokens.accepts

    def counting(self: ApiTokens, authorization: bytes) -> bool:
        verified.append(authorization)
        return accepts(self, authorization)

    monkeypatch.setattr(ApiTokens, "accepts", counting)
    assert node.api_address is not None
    api = Api(node.api_address[1])  # a connection made now sees SIMPLE_GET as patched
    try:
        await _fast_path_checks(node, api, tokens_file, verified)
    finally:
        api.close()


async def _fast_path_checks(node: Node, api: Api, tokens_file: Path, verified: list[bytes]) -> None:
    for _ in range(5):
        assert (await call(api, "GET", "/api?key=k", READ))[0] == 200
    assert len(verified) == 1  # then the connection compares with what it verified
    assert (await call(api, "GET", "/api?key=k", UNKNOWN))[0] == 401
    assert (await call(api, "GET", "/api?key=k"))[0] == 401
    assert (await call(api, "GET", "/api?key=k", f"{READ}x"))[0] == 401
    assert (await call(api, "GET", "/api?key=k", READ))[0] == 200
    await asyncio.to_thread(write_tokens, tokens_file, f"write {WRITE}")
    assert node.reload()
    assert (await call(api, "GET", "/api?key=k", READ))[0] == 401  # removed: at once
    assert (await call(api, "GET", "/api?key=k", WRITE))[0] == 200


async def test_a_bad_reload_keeps_the_old_tokens(
    node: Node, api: Api, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(tokens_file.write_text, f"read {READ}\nsuper {ADMIN}\n")
    assert not node.reload()
    assert "line 2: unknown role" in caplog.text
    assert ADMIN not in caplog.text
    assert (await call(api, "POST", "/v1/groups/scores/invalidate", ADMIN))[0] == 200


# -- gRPC shoal.v1.Cache --------------------------------------------------------------


def _grpc_requests() -> dict[str, tuple[bytes, str]]:
    from shoal.wire.generated import shoal_pb2 as pb

    return {
        "Get": (pb.GetRequest(group="scores", key="Tom").SerializeToString(), "read"),
        "GetMany": (pb.GetManyRequest(group="scores", keys=["a"]).SerializeToString(), "read"),
        "Stats": (pb.StatsRequest().SerializeToString(), "read"),
        "Cluster": (pb.ClusterRequest().SerializeToString(), "read"),
        "Set": (pb.SetRequest(group="scores", key="Tom", value=b"1").SerializeToString(), "write"),
        "Delete": (pb.DeleteRequest(group="scores", key="Tom").SerializeToString(), "write"),
        "RemoveKeys": (
            pb.RemoveKeysRequest(group="scores", keys=["a"]).SerializeToString(),
            "write",
        ),
        "Invalidate": (pb.InvalidateRequest(group="scores").SerializeToString(), "admin"),
    }


async def test_grpc_each_role_against_each_call(node: Node) -> None:
    assert node.peer_address is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.peer_address[1]}") as channel:

        async def code(method: str, raw: bytes, value: str | None) -> Any:
            metadata = None if value is None else (("authorization", value),)
            try:
                await channel.unary_unary(f"/shoal.v1.Cache/{method}")(raw, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        for method, (raw, needed) in _grpc_requests().items():
            assert await code(method, raw, None) == grpc.StatusCode.UNAUTHENTICATED
            assert await code(method, raw, f"Bearer {UNKNOWN}") == grpc.StatusCode.UNAUTHENTICATED
            assert await code(method, raw, f"Basic {READ}") == grpc.StatusCode.UNAUTHENTICATED
            for role, token in ROLE_TOKENS.items():
                expected = (
                    grpc.StatusCode.OK
                    if RANK[role] >= RANK[needed]
                    else grpc.StatusCode.PERMISSION_DENIED
                )
                assert await code(method, raw, f"Bearer {token}") == expected, (method, role)
        # The peer service takes no token (mutual TLS protects the peer port).
        from shoal.wire.generated import shoal_pb2 as pb

        raw = pb.GetRequest(group="scores", key="Tom").SerializeToString()
        await channel.unary_unary("/shoal.v1.Peer/Get")(raw)


async def test_grpc_sees_a_reload_at_once(node: Node, tokens_file: Path) -> None:
    from shoal.wire.generated import shoal_pb2 as pb

    assert node.peer_address is not None
    raw = pb.GetRequest(group="scores", key="Tom").SerializeToString()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.peer_address[1]}") as channel:
        get = channel.unary_unary("/shoal.v1.Cache/Get")
        await get(raw, metadata=(("authorization", f"Bearer {READ}"),))
        await asyncio.to_thread(write_tokens, tokens_file, f"admin {ADMIN}")
        assert node.reload()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get(raw, metadata=(("authorization", f"Bearer {READ}"),))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await get(raw, metadata=(("authorization", f"Bearer {ADMIN}"),))


async def test_client_presents_its_token(node: Node) -> None:
    assert node.api_address is not None
    assert node.peer_address is not None
    seeds = {
        "http": f"http://127.0.0.1:{node.api_address[1]}",
        "grpc": f"grpc://127.0.0.1:{node.peer_address[1]}",
    }
    for kind, seed in seeds.items():
        async with Client(seed, token=WRITE) as client:
            await client.set("scores", "Ann", b"1")
            assert await client.get("scores", "Ann") == b"1", kind
        async with Client(seed, token=READ) as client:
            assert await client.get("scores", "Ann") == b"1", kind
            if kind == "grpc":
                with pytest.raises(Forbidden):
                    await client.set("scores", "Ann", b"2")
        with pytest.raises(Unauthorized):
            async with Client(seed, token=UNKNOWN) as client:
                await client.get("scores", "Ann")
    with pytest.raises(ConfigError):
        Client(seeds["http"], token="two words")


# -- a shoal serve process --------------------------------------------------------------


def _api_get(port: int, key: str, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/api?key={key}", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_serve_with_tokens_and_the_cli(tmp_path: Path, tokens_file: Path) -> None:
    """``shoal serve --api-tokens`` and ``shoal get --token / --token-file / SHOAL_TOKEN``;
    SIGHUP reloads the file under load: no request with a token that stays fails, a
    removed token fails at once, a new one works."""
    with shoal_serve("--api-tokens", str(tokens_file), "--group", "scores") as server:
        url = server.url
        token_file = tmp_path / "token"
        token_file.write_text(WRITE + "\n")
        done = run_shoal(
            "set", "Tom", "7", "--group", "scores", "--url", url, "--token-file", str(token_file)
        )
        assert done.returncode == 0, done.stderr
        done = run_shoal("get", "Tom", "--url", url, "--token", READ)
        assert (done.returncode, done.stdout) == (0, b"7"), done.stderr
        done = run_shoal("get", "Tom", "--url", url, env=clean_env(SHOAL_TOKEN=READ))
        assert (done.returncode, done.stdout) == (0, b"7")
        done = run_shoal("get", "Tom", "--url", url)
        assert done.returncode == 1
        assert b"HTTP 401" in done.stderr
        done = run_shoal("invalidate", "--group", "scores", "--url", url, "--token", READ)
        assert done.returncode == 1
        assert b"HTTP 403" in done.stderr
        assert READ.encode() not in done.stderr + done.stdout

        # SIGHUP under load.
        import threading

        failures: list[int] = []
        counted = [0]
        stop = threading.Event()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                while not stop.is_set():
                    conn.request("GET", "/api?key=Tom", headers={"Authorization": f"Bearer {READ}"})
                    response = conn.getresponse()
                    response.read()
                    counted[0] += 1
                    if response.status != 200:
                        failures.append(response.status)
            finally:
                conn.close()

        workers = [threading.Thread(target=load) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            new = f"new-{secrets.token_urlsafe(24)}"
            write_tokens(tokens_file, f"read {READ}", f"admin {new}")
            os.kill(server.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            while _api_get(server.port, "Tom", new) != 200:
                assert time.monotonic() < deadline, server.stderr()
                time.sleep(0.05)
            assert _api_get(server.port, "Tom", WRITE) == 401  # removed
            tokens_file.write_text("read nope\n")  # bad: the old tokens stay
            os.kill(server.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "still using the old one" not in server.stderr():
                assert time.monotonic() < deadline, server.stderr()
                time.sleep(0.05)
            assert _api_get(server.port, "Tom", new) == 200
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert counted[0] > 0
        assert failures == []
        assert "nope" not in server.stderr()


def test_the_compiled_recognizer_requires_the_verified_value() -> None:
    speedups = pytest.importorskip("shoal._speedups")
    head = b"GET /api?key=k HTTP/1.1\r\nHost: h\r\n"
    value = f"Bearer {READ}".encode()
    one = head + b"authorization: \t" + value + b" \r\n\r\n"
    assert speedups.simple_get(one, 8192) == b"/api?key=k"  # no credential: not checked
    assert speedups.simple_get(one, 8192, None) == b"/api?key=k"
    assert speedups.simple_get(one, 8192, value) == b"/api?key=k"
    assert speedups.simple_get(one, 8192, value[:-1]) is None
    assert speedups.simple_get(one, 8192, value + b"x") is None
    assert speedups.simple_get(one, 8192, b"") is None
    assert speedups.simple_get(head + b"\r\n", 8192, value) is None
    twice = head + b"Authorization: " + value + b"\r\nAUTHORIZATION: " + value + b"\r\n\r\n"
    assert speedups.simple_get(twice, 8192, value) is None
    with pytest.raises(TypeError):
        speedups.simple_get(one, 8192, "text")


def test_a_file_others_can_read_is_warned_about(
    tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens_file.chmod(0o644)
    ApiTokens(str(tokens_file))
    assert "can be read by other users (mode 644); chmod 600" in caplog.text
    caplog.clear()
    tokens_file.chmod(0o600)
    ApiTokens(str(tokens_file))
    assert "other users" not in caplog.text


def test_serve_refuses_a_bad_file_with_exit_code_2(tmp_path: Path) -> None:
    bad = write_tokens(tmp_path / "tokens", f"read {READ}", f"raed {WRITE}")
    done = run_shoal("serve", "--api-port", "0", "--api-tokens", str(bad), "--group", "scores")
    assert done.returncode == 2, done.stderr
    assert b"line 4: unknown role" in done.stderr
    assert READ.encode() not in done.stderr
    assert WRITE.encode() not in done.stderr


def test_cluster_passes_the_tokens_to_every_node(tokens_file: Path) -> None:
    """``shoal cluster --api-tokens FILE``: every node checks tokens; the supervisor's
    readiness probe (``/healthz``) needs none."""
    from helpers.processes import free_port_range, process_group, shoal_cmd

    peer_port, api_port = free_port_range(2), free_port_range(2) + 1
    command = shoal_cmd(
        "cluster",
        "--nodes",
        "2",
        "--port",
        str(peer_port),
        "--api-port",
        str(api_port),
        "--api-tokens",
        str(tokens_file),
        "--group",
        "scores",
    )
    with process_group(command) as group:
        group.wait_for_output("Ctrl-C stops the cluster")
        for port in (api_port, api_port - 1):
            assert _api_get(port, "Tom", UNKNOWN) == 401
            assert _api_get(port, "Tom", READ) not in (400, 401, 403)  # admitted
