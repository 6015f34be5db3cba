"""Fuzzing live nodes: no message from the network may stop a node.

Two real ``shoal serve`` processes (per peer transport: HTTP, then gRPC) serve a
partitioned group and a replicated one, with short background intervals
(anti-entropy every 0.3 s, the expiry sweep every 0.2 s, tombstones kept 5 s).
Hypothesis sends one of them arbitrary, and arbitrarily out-of-range, instances
of every protobuf message on every peer route and gRPC method, and bodies and
TTLs on the HTTP API. Every answer must be a 2xx or a 4xx (gRPC: OK or a client
error status), never a 5xx, INTERNAL or UNKNOWN. Then the nodes run their
background work on what they accepted: both stay up, serve, and their
replicated state converges (anti-entropy rounds find them in sync).

``SHOAL_FUZZ_EXAMPLES`` sets the number of examples per transport (default 250,
two requests each, some 10 s in all; ``make fuzz`` runs thousands).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import protobuf_strategies as pbfuzz
from helpers.processes import LoadLog, ShoalCluster, group_stats, http_request, shoal_cluster
from shoal.hlc import HLC_MAX, hlc_from_seconds
from shoal.wire import DEFAULT_BASE_PATH, build_peer_path
from shoal.wire._pb import geekcache_pb2, groupcache_pb2
from shoal.wire._pb import shoal_pb2 as pb
from shoal.wire.batch import GET_MANY_SEGMENT, INVALIDATE_SEGMENT, REPLICA_SEGMENT

DATA, MIRROR = "data", "mirror"
EXAMPLES = pbfuzz.examples(250)
CONFIG = f"""\
[node]
sweep_interval = 0.2

# A generous peer_timeout: on a loaded machine a fuzzed call may keep the other node
# busy past the 2 s default, and the owner would then be backed off (503), which is
# the right answer to a slow owner but not what this test looks for.
[groups.{DATA}]
loader = "helpers.loadlog:load"
peer_timeout = 15

[groups.{MIRROR}]
loader = "helpers.loadlog:load"
peer_timeout = 15
mode = "replicated"
anti_entropy_interval = 0.3
tombstone_ttl = 5
"""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pbfuzz.GROUPS[:] = [DATA, MIRROR]


@dataclass(frozen=True)
class Request:
    """One HTTP request: to the peer port or the API port."""

    port: str  # "peer" or "api"
    method: str
    target: str
    body: bytes = b""

    def __repr__(self) -> str:
        return f"{self.method} {self.port} {self.target[:120]} ({len(self.body)} bytes)"


@pytest.fixture(scope="module", params=["http", "grpc"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShoalCluster]:
    if request.param == "grpc":
        pytest.importorskip("grpc", reason="needs the shoal[grpc] extra")
    workdir = tmp_path_factory.mktemp("fuzz")
    config = workdir / "shoal.toml"
    config.write_text(CONFIG)
    loads = LoadLog(workdir / "loads")
    args = ["--config", str(config), "--transport", request.param, "--log-level", "warning"]
    with shoal_cluster(2, *args, env=loads.env()) as running:
        yield running


# --------------------------------------------------------------------- requests

BASE = DEFAULT_BASE_PATH


def _peer_path(group: str, key: str) -> str:
    return build_peer_path(BASE, group, key)


def _group_path(group: str, segment: str) -> str:
    return BASE + quote(group, safe="") + "/" + segment


def _set_request(message: Any) -> bytes:
    return bytes(message.SerializePartialToString())


_groups = pbfuzz.mostly(st.sampled_from([DATA, MIRROR]), st.text(max_size=8))
_bodies = st.one_of(st.binary(max_size=64), st.just(b""))


def _for_mirror(message: Any) -> bytes:
    """A replica request naming the replicated group (so it gets past that check)."""
    message.group = MIRROR
    return _set_request(message)


_replica = st.one_of(
    pbfuzz.messages(pb.ReplicaRequest.DESCRIPTOR).map(_set_request),
    pbfuzz.messages(pb.ReplicaRequest.DESCRIPTOR).map(_for_mirror),
    _bodies,
)

PEER_REQUESTS = st.one_of(
    st.builds(lambda g, k: Request("peer", "GET", _peer_path(g, k)), _groups, pbfuzz.KEYS),
    st.builds(lambda g, k: Request("peer", "DELETE", _peer_path(g, k)), _groups, pbfuzz.KEYS),
    st.builds(
        lambda g, m: Request("peer", "PUT", _peer_path(g, m.key or "k"), _set_request(m)),
        _groups,
        pbfuzz.messages(groupcache_pb2.SetRequest.DESCRIPTOR),
    ),
    st.builds(lambda g, b: Request("peer", "PUT", _peer_path(g, "k"), b), _groups, _bodies),
    st.builds(
        lambda g, b: Request("peer", "POST", _group_path(g, "_remove-keys/"), b),
        _groups,
        pbfuzz.remove_keys_bodies(),
    ),
    st.builds(
        lambda g, b: Request("peer", "POST", _group_path(g, GET_MANY_SEGMENT), b),
        _groups,
        pbfuzz.get_many_bodies(),
    ),
    st.builds(lambda g: Request("peer", "POST", _group_path(g, INVALIDATE_SEGMENT)), _groups),
    st.builds(
        lambda g, b: Request("peer", "POST", _group_path(g, REPLICA_SEGMENT), b),
        st.sampled_from([MIRROR, MIRROR, DATA]),
        _replica,
    ),
    st.sampled_from(
        [
            Request("peer", "GET", BASE + "data/%zz"),
            Request("peer", "GET", BASE + "data"),
            Request("peer", "PATCH", BASE + "data/k"),
        ]
    ),
)

API_REQUESTS = st.one_of(
    st.builds(
        lambda g, k, t, b: Request(
            "api",
            "PUT",
            f"/v1/groups/{quote(g, safe='')}/keys/{quote(k, safe='')}?ttl={quote(t)}",
            b,
        ),
        _groups,
        pbfuzz.KEYS,
        pbfuzz.ttl_texts(),
        _bodies,
    ),
    st.builds(
        lambda g, k: Request(
            "api", "GET", f"/v1/groups/{quote(g, safe='')}/keys/{quote(k, safe='')}"
        ),
        _groups,
        pbfuzz.KEYS,
    ),
    st.builds(
        lambda g, k: Request(
            "api", "DELETE", f"/v1/groups/{quote(g, safe='')}/keys/{quote(k, safe='')}"
        ),
        _groups,
        pbfuzz.KEYS,
    ),
    st.builds(lambda k: Request("api", "GET", f"/api?key={quote(k)}&group={MIRROR}"), pbfuzz.KEYS),
)


def send(node_port: int, request: Request) -> tuple[int, bytes]:
    """The status and body of ``request`` (a fresh connection: an error may close it)."""
    conn = http.client.HTTPConnection("127.0.0.1", node_port, timeout=30)
    try:
        conn.request(request.method, request.target, body=request.body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _grpc_methods() -> list[tuple[str, Any]]:
    methods = []
    for file in (pb.DESCRIPTOR, geekcache_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                methods.append((path, method.input_type))
    return methods


GRPC_CALLS = st.one_of(
    *(
        st.tuples(st.just(path), pbfuzz.messages(descriptor).map(_set_request) | _bodies)
        for path, descriptor in _grpc_methods()
    )
)


# ------------------------------------------------------------------------ checks


def alive(cluster: ShoalCluster) -> None:
    for node in cluster.nodes:
        assert node.proc.poll() is None, f"a node exited:\n{node.stderr()[-4000:]}"


def replication(cluster: ShoalCluster) -> list[dict[str, int]]:
    return [group_stats(node, MIRROR)["replication"] for node in cluster.nodes]


def converges(cluster: ShoalCluster, within: float = 20.0) -> None:
    """Both nodes' anti-entropy rounds find them in sync (each at least twice from now)
    and they hold as many entries. The counts are compared until they agree: each node
    forgets expired entries and tombstones (``tombstone_ttl`` 5 s) on its own schedule,
    so between two rounds one may have forgotten an entry the other still holds."""
    start = [r["sync_rounds_in_sync"] for r in replication(cluster)]
    deadline = time.monotonic() + within
    while True:
        now = replication(cluster)
        rounds = all(r["sync_rounds_in_sync"] >= s + 2 for r, s in zip(now, start, strict=True))
        if rounds and now[0]["entries"] == now[1]["entries"]:
            return
        assert time.monotonic() < deadline, f"no convergence: {now}\n{cluster.stderr()[-4000:]}"
        time.sleep(0.1)


def still_serves(cluster: ShoalCluster) -> None:
    """Writes and reads through the API work on both nodes and reach the other."""
    first, second = cluster.nodes
    key = f"after-{time.monotonic_ns()}"
    status, body = http_request("PUT", f"{first.url}/v1/groups/{MIRROR}/keys/{key}?ttl=600", b"v")
    assert status == 204, body
    deadline = time.monotonic() + 10
    while http_request("GET", f"{second.url}/v1/groups/{MIRROR}/keys/{key}") != (200, b"v"):
        assert time.monotonic() < deadline, "a write did not reach the other node"
        time.sleep(0.05)
    for node in cluster.nodes:
        assert http_request("GET", f"{node.url}/v1/groups/{DATA}/keys/{key}")[0] == 200
        status, text = http_request("GET", f"{node.url}/metrics")
        assert status == 200, text


def after_fuzzing(cluster: ShoalCluster) -> None:
    time.sleep(1.5)  # a few anti-entropy rounds, sweeps and pushes on what was accepted
    alive(cluster)
    converges(cluster)
    still_serves(cluster)
    alive(cluster)


def _check_http(cluster: ShoalCluster) -> Callable[[Request], None]:
    node = cluster.nodes[0]
    ports = {"peer": node.peer_port, "api": node.port}

    def check(request: Request) -> None:
        port = ports[request.port]
        assert port is not None
        try:
            status, body = send(port, request)
        except ConnectionError as exc:
            alive(cluster)  # fails with the node's log if it exited
            raise AssertionError(f"{request}: {exc}") from exc
        event(f"{request.port} {request.method} {status}")
        assert 200 <= status < 500, (request, status, body[:300])

    return check


# ------------------------------------------------------------------------- tests


def test_live_node_survives_fuzzed_requests(cluster: ShoalCluster) -> None:
    """Arbitrary messages on every route of one transport, then the background work."""
    check_http = _check_http(cluster)
    if _is_grpc(cluster):
        import grpc

        client_errors = {
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
        channel = grpc.insecure_channel(f"127.0.0.1:{cluster.nodes[0].peer_port}")

        @FUZZ
        @given(GRPC_CALLS, API_REQUESTS)
        def fuzz_grpc(call: tuple[str, bytes], api: Request) -> None:
            path, body = call
            method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            code, details = grpc.StatusCode.OK, ""
            try:
                method(body, timeout=30)
            except grpc.RpcError as exc:
                code, details = exc.code(), str(exc)
            event(f"{path.rsplit('/', 2)[-2]} {code.name}")
            assert code in client_errors, (path, body[:200], code, details)
            check_http(api)

        try:
            fuzz_grpc()
        finally:
            channel.close()
    else:

        @FUZZ
        @given(PEER_REQUESTS, API_REQUESTS)
        def fuzz_http(peer: Request, api: Request) -> None:
            check_http(peer)
            check_http(api)

        fuzz_http()
    after_fuzzing(cluster)


def test_the_reproductions_leave_the_nodes_up(cluster: ShoalCluster) -> None:
    """What took a node down: an API PUT with ttl=1e10 or 1e300 on the replicated group
    (204, then the push raised), a replica push expiring past int64 or stamped
    2**64-1, a peer PUT expiring at int64 max. Each is a 400 now; the nodes run
    their background work on and answer."""
    node = cluster.nodes[0]
    for ttl in ("1e10", "1e300"):
        status, body = http_request("PUT", f"{node.url}/v1/groups/{MIRROR}/keys/r?ttl={ttl}", b"x")
        assert status == 400, body
        assert json.loads(body)["code"] == "invalid_ttl"
    if not _is_grpc(cluster):
        now = hlc_from_seconds(time.time())
        for fields in ({"expire": (1 << 63) - 1, "hlc": now}, {"hlc": HLC_MAX}):
            entry = pb.ReplicaEntry(key="r", node="elsewhere", value=b"x", **fields)
            push = pb.ReplicaRequest(group=MIRROR, push=pb.ReplicaPush(entries=[entry]))
            target = f"{node.peer_url}{_group_path(MIRROR, REPLICA_SEGMENT)}"
            status, body = http_request("POST", target, push.SerializeToString())
            assert status == 400, body
        poison = groupcache_pb2.SetRequest(group=DATA, key="r", value=b"x", expire=(1 << 63) - 1)
        target = f"{node.peer_url}{_peer_path(DATA, 'r')}"
        status, _ = http_request("PUT", target, poison.SerializeToString())
        assert status == 400
    time.sleep(1.5)  # several pushes, anti-entropy rounds and sweeps
    alive(cluster)
    for other in cluster.nodes:
        status, _ = http_request("GET", f"{other.url}/v1/groups/{MIRROR}/keys/r")
        assert status == 200  # loaded: nothing was stored
    still_serves(cluster)


def _is_grpc(cluster: ShoalCluster) -> bool:
    info = json.loads(http_request("GET", f"{cluster.nodes[0].url}/v1/cluster")[1])
    return bool(info.get("transport") == "grpc")


def test_config_is_read(cluster: ShoalCluster) -> None:
    """The short intervals the fuzz test relies on are in effect (the rounds run)."""
    deadline = time.monotonic() + 10
    while replication(cluster)[0]["sync_rounds"] < 2:
        assert time.monotonic() < deadline, "anti-entropy does not run"
        time.sleep(0.1)
