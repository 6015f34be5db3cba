"""Sealed gossip on live clusters: real ``shoal serve`` processes gossiping over UDP on
127.0.0.1-3, keyrings written at test time, datagrams forged and sealed by the test.

- the forged ``alive`` datagram of the attack (plain JSON, a made-up member whose URL
  points at the attacker) leaves every ring unchanged and is counted;
- tampered, replayed, wrong-key, other-cluster and stale datagrams are dropped and
  counted, while a sealed ping is answered;
- key rotation (add, make primary, remove: SIGHUP each time) on a live 3-node cluster
  never loses a member, and a keyring that is bad on SIGHUP keeps the old keys;
- the rolling upgrade from plain to sealed gossip on a live 3-node cluster never
  loses a member;
- protected mode starts gossip on 0.0.0.0 with a keyring, and only with one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from helpers.cluster_views import cluster_view, member_urls, wait_for
from helpers.processes import ShoalServer, clean_env, free_ports, shoal_serve
from shoal.config import GossipConfig
from shoal.membership.gossip.keyring import Keyring, Sealer, fingerprint
from shoal.membership.gossip.messages import Ack, Gossip, Ping, Update, decode, encode

LOCAL = GossipConfig.profile("local")
NODES = 3
DETECTION = LOCAL.detection_bound(NODES)
"""Within this long a member that cannot be heard from is declared dead everywhere."""
CONVERGE_WITHIN = 15.0
REASONS = ("unsealed", "auth", "replay", "stale")


def new_key() -> bytes:
    return os.urandom(32)


def write_keyring(path: Path, *keys: bytes, extra: str = "") -> None:
    """Write a keyring file at once (a reader never sees half of it)."""
    text = "# gossip keys, the primary first\n"
    text += "".join(base64.b64encode(k).decode() + "\n" for k in keys) + extra
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def host(i: int) -> str:
    return f"127.0.0.{i + 1}"


def node_args(i: int, ports: Sequence[int], *extra: str) -> list[str]:
    """Node ``i`` on 127.0.0.(i+1): peer TCP port and gossip UDP port ``ports[i]``,
    joining through the others (so any of them can be restarted)."""
    joins = ",".join(f"{host(j)}:{p}" for j, p in enumerate(ports))
    return [
        *("--group", "data", "--host", host(i), "--port", str(ports[i])),
        *("--gossip-port", str(ports[i]), "--join", joins),
        *("--gossip-timers", "local", *extra),
    ]


def peer_url(i: int, ports: Sequence[int]) -> str:
    return f"http://{host(i)}:{ports[i]}"


def peer_urls(ports: Sequence[int]) -> set[str]:
    return {peer_url(i, ports) for i in range(len(ports))}


def dropped(node: ShoalServer) -> dict[str, int]:
    """``shoal_gossip_dropped_total`` by reason, read from ``/metrics``."""
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^shoal_gossip_dropped_total\{reason="(\w+)"\} (\d+)$', text, re.M)
    return {reason: int(count) for reason, count in found}


def keys_of(node: ShoalServer) -> list[str]:
    keyring = cluster_view(node)["membership"].get("keyring")
    return list(keyring["keys"]) if keyring else []


@contextlib.contextmanager
def udp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


def replies(sock: socket.socket, within: float) -> list[bytes]:
    """Every datagram that reaches ``sock`` within ``within`` seconds."""
    got: list[bytes] = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(65_535))
        except TimeoutError:
            break
    return got


class RingWatch:
    """Polls every node's ``/v1/cluster`` in a thread and records any moment a node's
    view lacked a member that should be there (every member but those ``restarting``)."""

    def __init__(self, nodes: Callable[[], Sequence[ShoalServer]], ports: Sequence[int]) -> None:
        self._nodes, self._ports = nodes, ports
        self.urls = peer_urls(ports)
        self.restarting: set[str] = set()
        self.polls = 0
        self.losses: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                nodes = list(self._nodes())
                expected = self.urls - self.restarting
            for i, node in enumerate(nodes):
                url = peer_url(i, self._ports)
                if url in self.restarting:
                    continue
                try:
                    seen = member_urls(node)
                except OSError:
                    continue  # a node stopping for its restart
                with self._lock:
                    if url in self.restarting:
                        continue
                    lost = (expected - self.restarting) - seen
                if lost:
                    self.losses.append(f"{url} lost {sorted(lost)}")
            self.polls += 1
            self._stop.wait(0.05)

    @contextlib.contextmanager
    def restart(self, url: str) -> Iterator[None]:
        """``url`` may be missing while the block runs (it is being restarted)."""
        with self._lock:
            self.restarting.add(url)
        try:
            yield
        finally:
            with self._lock:
                self.restarting.discard(url)


@contextlib.contextmanager
def cluster(
    ports: Sequence[int], api_ports: Sequence[int], extra: Callable[[int], list[str]]
) -> Iterator[list[ShoalServer]]:
    """Three ``shoal serve`` nodes on 127.0.0.1-3, node 0 first (the others join it)."""
    with contextlib.ExitStack() as stack:
        nodes = []
        for i in range(len(ports)):
            node = stack.enter_context(
                shoal_serve(*node_args(i, ports, *extra(i)), port=api_ports[i])
            )
            nodes.append(node)
        wait_for(
            lambda: all(member_urls(n) == peer_urls(ports) for n in nodes),
            "3 members on every node",
            CONVERGE_WITHIN,
        )
        yield nodes


# --------------------------------------------------------------------------- the attack


def forged_alive(port: int, sender: str = "evil") -> bytes:
    """The attack: plain JSON, an alive update for a made-up member at the attacker."""
    return encode(
        Gossip(
            sender,
            (
                Update(
                    "alive",
                    "evil",
                    0,
                    ("127.0.0.66", port),
                    (("url", f"http://127.0.0.66:{port}"), ("started_at", "1.0")),
                ),
            ),
        )
    )


def test_the_forged_alive_datagram_leaves_every_ring_unchanged(tmp_path: Path) -> None:
    """Three keyring'd nodes; the attacker's forged datagram (plain, then sealed under a
    wrong key) reaches each of them several times: every ring keeps its three members,
    and each node counts exactly what it refused. The same datagram sealed with the
    cluster's key does get in: the refusal is the keyring's doing."""
    key = new_key()
    keyring = tmp_path / "keys"
    write_keyring(keyring, key)
    *ports, attacker = free_ports(NODES + 1)
    api_ports = free_ports(NODES)
    urls = peer_urls(ports)
    wrong = Sealer(Keyring([new_key()]), cluster="default", window=30.0)
    with (
        cluster(ports, api_ports, lambda i: ["--gossip-keyring", str(keyring)]) as nodes,
        udp_socket() as sock,
    ):
        before = [dropped(n) for n in nodes]
        for _ in range(5):
            for i, port in enumerate(ports):
                sock.sendto(forged_alive(attacker), (host(i), port))
                sock.sendto(wrong.seal(forged_alive(attacker), time.time()), (host(i), port))
        time.sleep(20 * LOCAL.gossip_interval + LOCAL.probe_interval)
        for node, was in zip(nodes, before, strict=True):
            assert member_urls(node) == urls
            now = dropped(node)
            assert now["unsealed"] - was["unsealed"] == 5
            assert now["auth"] - was["auth"] == 5
            assert now["replay"] == now["stale"] == 0
            assert "127.0.0.66" not in json.dumps(cluster_view(node))
        # The control: sealed with the cluster's key, the same news is taken.
        right = Sealer(Keyring([key]), cluster="default", window=30.0)
        sock.sendto(right.seal(forged_alive(attacker), time.time()), (host(1), ports[1]))
        evil = f"http://127.0.0.66:{attacker}"
        wait_for(lambda: evil in member_urls(nodes[1]), "the sealed forgery taken", 5.0)


# --------------------------------------------------------------------------- one node


def test_tampered_replayed_wrong_key_other_cluster_and_stale_datagrams_are_dropped(
    tmp_path: Path,
) -> None:
    """A node with a keyring answers a ping sealed with its key, and drops (and counts
    by reason) the same ping replayed, tampered with, sealed under another key or for
    another cluster, stamped too old or too new, sent plain, or cut short."""
    key = new_key()
    keyring = tmp_path / "keys"
    write_keyring(keyring, key)
    (port,) = free_ports(1)
    args = [
        *("--group", "data", "--host", host(1), "--port", str(port)),
        *("--gossip-port", str(port), "--gossip-timers", "local"),
        *("--gossip-keyring", str(keyring), "--gossip-cluster", "blue"),
    ]
    ours = Sealer(Keyring([key]), cluster="blue", window=30.0)
    with shoal_serve(*args) as node, udp_socket() as sock:
        wait_for(lambda: "membership" in cluster_view(node), "gossip started", 10)
        node_id = cluster_view(node)["node_id"]
        target = (host(1), port)

        def ping(seq: int) -> bytes:
            return encode(Ping(seq, "tester", node_id))

        good = ours.seal(ping(1), time.time())
        sock.sendto(good, target)
        sock.sendto(good, target)  # replayed
        tampered = bytearray(ours.seal(ping(2), time.time()))
        tampered[-20] ^= 0x40
        sock.sendto(bytes(tampered), target)
        other_key = Sealer(Keyring([new_key()]), cluster="blue", window=30.0)
        sock.sendto(other_key.seal(ping(3), time.time()), target)
        other_cluster = Sealer(Keyring([key]), cluster="green", window=30.0)
        sock.sendto(other_cluster.seal(ping(4), time.time()), target)
        sock.sendto(ours.seal(ping(5), time.time() - 120), target)  # stale
        sock.sendto(ours.seal(ping(6), time.time() + 120), target)  # from the future
        sock.sendto(ping(7), target)  # plain
        sock.sendto(good[:30], target)  # cut short
        sock.sendto(ours.seal(ping(8), time.time()), target)
        acks = []
        for datagram in replies(sock, 1.5):
            message = decode(ours.open(datagram, time.time()))
            assert isinstance(message, Ack)
            acks.append(message.seq)
        assert sorted(acks) == [1, 8]
        counts = dropped(node)
        assert {r: counts[r] for r in REASONS} == {
            "unsealed": 1,
            "auth": 4,
            "replay": 1,
            "stale": 2,
        }
        membership = cluster_view(node)["membership"]
        assert membership["keyring"] == {
            "keys": [fingerprint(key)],
            "sends": "sealed",
            "accepts_plain": False,
            "cluster": "blue",
        }
        assert base64.b64encode(key).decode() not in node.stderr()
        assert "can be read by other users" not in node.stderr()


# --------------------------------------------------------------------------- rotation


def test_key_rotation_on_a_live_cluster_loses_no_member(tmp_path: Path) -> None:
    """memberlist's rotation with SIGHUP: install the new key everywhere, make it the
    primary everywhere, remove the old one. Polled throughout, no node ever misses a
    member, and no datagram is refused. Then a keyring that is bad on SIGHUP keeps the
    old keys (and says why), and a datagram sealed with the removed key is refused."""
    old, new = new_key(), new_key()
    files = [tmp_path / f"keys{i}" for i in range(NODES)]
    for file in files:
        write_keyring(file, old)
    ports, api_ports = free_ports(NODES), free_ports(NODES)
    urls = peer_urls(ports)
    with cluster(ports, api_ports, lambda i: ["--gossip-keyring", str(files[i])]) as nodes:

        def rotate(keys: Sequence[bytes]) -> None:
            for node, file in zip(nodes, files, strict=True):
                write_keyring(file, *keys)
                node.proc.send_signal(signal.SIGHUP)
            names = [fingerprint(k) for k in keys]
            wait_for(lambda: all(keys_of(n) == names for n in nodes), f"keys {names}", 10)
            time.sleep(4 * LOCAL.probe_interval)  # probes, acks and gossip under the new keys

        with RingWatch(lambda: nodes, ports) as watch:
            assert all(keys_of(n) == [fingerprint(old)] for n in nodes)
            rotate([old, new])  # 1. install the new key
            rotate([new, old])  # 2. make it the primary
            rotate([new])  # 3. remove the old one
            time.sleep(DETECTION)  # long enough for a member nobody can read to die
        assert watch.polls > 20
        assert watch.losses == []
        for node in nodes:
            assert member_urls(node) == urls
            counts = dropped(node)
            assert {r: counts[r] for r in REASONS} == dict.fromkeys(REASONS, 0)
            assert "reloaded gossip keyring" in node.stderr()

        # A bad keyring on SIGHUP: the old keys stay, the log says why (never the line).
        bad_line = base64.b64encode(os.urandom(20)).decode()
        write_keyring(files[0], new, extra=bad_line + "\n")
        nodes[0].proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloading gossip keyring failed" in nodes[0].stderr(), "the refusal", 5)
        assert "line 3: a key must be 16, 24 or 32 bytes" in nodes[0].stderr()
        assert bad_line not in nodes[0].stderr()
        assert keys_of(nodes[0]) == [fingerprint(new)]
        time.sleep(4 * LOCAL.probe_interval)
        assert all(member_urls(n) == urls for n in nodes)

        # The old key is gone for real: a ping sealed with it is refused.
        with udp_socket() as sock:
            node_id = cluster_view(nodes[2])["node_id"]
            for key in (old, new):
                sealer = Sealer(Keyring([key]), cluster="default", window=30.0)
                sock.sendto(
                    sealer.seal(encode(Ping(5, "tester", node_id)), time.time()),
                    (host(2), ports[2]),
                )
            answers = replies(sock, 1.0)
        assert len(answers) == 1
        assert dropped(nodes[2])["auth"] == 1


# --------------------------------------------------------------------------- upgrade


UPGRADE: list[tuple[str, list[str]]] = [
    ("keyring, sending and accepting plain", ["--gossip-accept-plain", "--gossip-send-plain"]),
    ("keyring, sending sealed, accepting plain", ["--gossip-accept-plain"]),
    ("keyring only: sealed", []),
]
"""The rolling upgrade from plain to sealed gossip, one restart of every node per step
(memberlist's verify_outgoing, then verify_incoming)."""


def test_the_rolling_upgrade_from_plain_to_sealed_gossip_loses_no_member(
    tmp_path: Path,
) -> None:
    """A plain 3-node cluster is restarted node by node three times: keyring but still
    plain; then sealed but accepting plain; then sealed only. Polled throughout, no
    node ever misses a member that is not restarting, every restarted node is back
    everywhere, and once done no plain datagram was needed (none refused) and a plain
    one is refused."""
    key = new_key()
    keyring = tmp_path / "keys"
    write_keyring(keyring, key)
    ports, api_ports = free_ports(NODES), free_ports(NODES)
    urls = peer_urls(ports)
    with contextlib.ExitStack() as stack:
        running: list[contextlib.ExitStack] = []
        nodes: list[ShoalServer] = []

        def start(i: int, extra: list[str]) -> None:
            own = contextlib.ExitStack()
            node = own.enter_context(shoal_serve(*node_args(i, ports, *extra), port=api_ports[i]))
            if i < len(nodes):
                nodes[i], running[i] = node, own
            else:
                nodes.append(node)
                running.append(own)

        for i in range(NODES):
            start(i, [])

        def stop_all() -> None:
            for own in running:
                own.close()

        stack.callback(stop_all)
        wait_for(lambda: all(member_urls(n) == urls for n in nodes), "plain cluster", 15)
        with RingWatch(lambda: list(nodes), ports) as watch:
            for what, flags in UPGRADE:
                for i in range(NODES):
                    with watch.restart(peer_url(i, ports)):
                        assert nodes[i].stop(signal.SIGTERM) == 0
                        running[i].close()
                        start(i, ["--gossip-keyring", str(keyring), *flags])
                        wait_for(
                            lambda: all(member_urls(n) == urls for n in nodes),
                            f"node {i} back everywhere ({what})",
                            CONVERGE_WITHIN,
                        )
            time.sleep(DETECTION)
        assert watch.polls > 20
        assert watch.losses == []
        for node in nodes:
            assert member_urls(node) == urls
            counts = dropped(node)
            assert {r: counts[r] for r in REASONS} == dict.fromkeys(REASONS, 0)
        with udp_socket() as sock:
            sock.sendto(forged_alive(9), (host(0), ports[0]))
            time.sleep(0.3)
        assert dropped(nodes[0])["unsealed"] == 1


# --------------------------------------------------------------------------- protected


def _serve_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--group", "data", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )


def test_protected_mode_starts_gossip_on_a_network_address_with_a_keyring(
    tmp_path: Path,
) -> None:
    """Gossip on 0.0.0.0 (API and peer port on loopback): refused without a keyring or
    while accepting plain datagrams (exit 2, naming what is missing), started with a
    keyring; a bad keyring refuses to start, naming the line and not echoing it."""
    keyring = tmp_path / "keys"
    write_keyring(keyring, new_key())
    port, api_port = free_ports(2)
    wide = ["--port", str(port), "--gossip-port", str(port), "--gossip-option", "host=0.0.0.0"]
    refused = _serve_exit("--api-port", "0", *wide)
    assert refused.returncode == 2
    assert "gossip on 0.0.0.0 is reachable from the network without a keyring" in refused.stderr
    plain = _serve_exit(
        "--api-port", "0", *wide, "--gossip-keyring", str(keyring), "--gossip-accept-plain"
    )
    assert plain.returncode == 2
    assert "accepts plain datagrams" in plain.stderr
    bad = tmp_path / "bad"
    bad.write_text("# keys\nc2hvcnQ=\n")
    broken = _serve_exit("--api-port", "0", *wide, "--gossip-keyring", str(bad))
    assert broken.returncode == 2
    assert "line 2: a key must be 16, 24 or 32 bytes" in broken.stderr
    assert "c2hvcnQ=" not in broken.stderr
    with shoal_serve(
        "--group", "data", *wide, "--gossip-keyring", str(keyring), port=api_port
    ) as node:
        # /healthz answers as soon as the API listens; the membership starts after it.
        wait_for(lambda: "membership" in cluster_view(node), "gossip started", 10)
        view = cluster_view(node)
        assert view["membership"]["address"] == f"127.0.0.1:{port}"
        assert view["membership"]["keyring"]["sends"] == "sealed"
        assert "can be read by other users" not in node.stderr()
    keyring.chmod(0o644)  # readable by anyone on the machine: started, with a warning
    with shoal_serve(
        "--group", "data", *wide, "--gossip-keyring", str(keyring), port=api_port
    ) as node:
        wait_for(lambda: "membership" in cluster_view(node), "gossip started", 10)
        assert "can be read by other users (mode 0644): chmod 600 it" in node.stderr()
