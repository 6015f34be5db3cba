"""The gossip keyring and envelope alone: parsing keyring files, sealing and opening,
tampering, wrong keys and clusters, replays and stale datagrams, the bounded nonce
memory, and a SWIM node that keeps sealed datagrams within ``max_packet``.

Pure logic: no sockets, a clock passed in (the live clusters are in
tests/security/test_gossip_keyring.py).
"""

from __future__ import annotations

import base64
import itertools
import os
import random

import pytest

from shoal.cli.main import build_parser
from shoal.cli.membership_flags import parse_gossip_table
from shoal.cli.plan import build_serve_plan
from shoal.config import GossipConfig
from shoal.errors import ConfigError
from shoal.membership.gossip.keyring import (
    MAX_NONCES,
    OVERHEAD,
    VERSION,
    Keyring,
    Sealer,
    SealError,
    fingerprint,
    load_keyring,
    parse_keyring,
)
from shoal.membership.gossip.messages import Sync, Update, decode, encode
from shoal.membership.gossip.swim import Swim

NOW = 1_800_000_000.0
K1, K2, K3 = os.urandom(16), os.urandom(24), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def sealer(
    *keys: bytes, cluster: str = "default", window: float = 30.0, max_nonces: int = MAX_NONCES
) -> Sealer:
    return Sealer(Keyring(keys), cluster=cluster, window=window, max_nonces=max_nonces)


def refused(s: Sealer, datagram: bytes, now: float = NOW) -> str:
    with pytest.raises(SealError) as caught:
        s.open(datagram, now)
    return caught.value.reason


# --------------------------------------------------------------------------- keyring files


def test_a_keyring_file_lists_keys_primary_first() -> None:
    """Blank lines and comments are skipped; the first key is the primary; 16, 24 and 32
    bytes are all AES keys; a key given twice counts once."""
    text = f"# rotation step 1\n\n  {b64(K2)}  \n{b64(K1)}\n# old\n{b64(K3)}\n{b64(K1)}\n"
    assert parse_keyring(text) == (K2, K1, K3)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not base64 at all!", "not a base64 key"),
        (b64(K1)[:-2] + "*=", "not a base64 key"),
        (b64(os.urandom(20)), "this one is 20"),
        (b64(K1) + " " + b64(K2), "not a base64 key"),
        (b64(os.urandom(64)), "this one is 64"),
    ],
)
def test_a_bad_line_is_named_and_never_echoed(line: str, says: str) -> None:
    """The error names the file and the line number and never shows the line (it may be
    a key with a typo)."""
    text = f"# keys\n{b64(K1)}\n{line}\n"
    with pytest.raises(ConfigError) as caught:
        parse_keyring(text, source="gossip keyring k.txt")
    message = str(caught.value)
    assert says in message
    assert "gossip keyring k.txt, line 3" in message
    assert line not in message
    assert b64(K1) not in message
    assert b64(K2) not in message


def test_an_empty_or_missing_keyring_is_refused(tmp_path: os.PathLike[str]) -> None:
    """No key at all, or no file: a clear error naming the file."""
    with pytest.raises(ConfigError, match="holds no key"):
        parse_keyring("# nothing yet\n\n")
    missing = os.path.join(tmp_path, "absent")
    with pytest.raises(ConfigError, match=r"cannot read the gossip keyring .*absent"):
        load_keyring(missing)
    present = os.path.join(tmp_path, "keys")
    with open(present, "w") as file:
        file.write(b64(K3) + "\n")
    assert load_keyring(present) == (K3,)


# --------------------------------------------------------------------------- sealing


def test_a_sealed_datagram_opens_to_the_message_and_costs_overhead_bytes() -> None:
    """Version byte first, a fresh 96-bit nonce each time, exactly OVERHEAD bytes more."""
    s = sealer(K1)
    message = encode(Sync("a", (Update("alive", "a", 3, ("127.0.0.1", 7000)),)))
    one, two = s.seal(message, NOW), s.seal(message, NOW)
    assert one[0] == VERSION
    assert len(one) == len(message) + OVERHEAD == len(two)
    assert one[1:13] != two[1:13]  # random nonces
    assert message not in one  # encrypted, not only signed
    receiver = sealer(K1)
    assert receiver.open(one, NOW + 1) == message
    assert receiver.open(two, NOW - 1) == message
    assert decode(receiver.open(s.seal(b'{"t":"gossip","f":"x"}', NOW), NOW)).sender == "x"


def test_the_primary_seals_and_any_installed_key_opens() -> None:
    """Rotation's three steps: a node with [new, old] seals with new; a node with only
    old cannot open it; one with [old, new] can, and so can one with [new]."""
    rotated = sealer(K2, K1)
    datagram = rotated.seal(b"{}", NOW)
    assert refused(sealer(K1), datagram) == "auth"
    assert sealer(K1, K2).open(datagram, NOW) == b"{}"
    assert sealer(K2).open(datagram, NOW) == b"{}"
    # Installing keys takes effect at once on a live sealer (SIGHUP).
    live = sealer(K1)
    assert refused(live, datagram) == "auth"
    live.keyring.install([K1, K2])
    assert live.open(datagram, NOW) == b"{}"
    assert live.keyring.fingerprints == (fingerprint(K1), fingerprint(K2))


def test_every_tampered_byte_is_refused() -> None:
    """Flip any byte of a sealed datagram: it no longer opens (the version byte makes it
    not sealed at all); truncations are refused too."""
    s = sealer(K3)
    datagram = s.seal(b'{"t":"gossip","f":"a"}', NOW)
    for i in range(len(datagram)):
        tampered = bytearray(datagram)
        tampered[i] ^= 0x01
        assert refused(sealer(K3), bytes(tampered)) == ("unsealed" if i == 0 else "auth"), i
    for size in (0, 1, 13, OVERHEAD - 1, OVERHEAD, len(datagram) - 1):
        assert refused(sealer(K3), datagram[:size]) in ("unsealed", "auth")
    assert refused(sealer(K3), datagram + b"x") == "auth"


def test_a_datagram_sealed_for_another_cluster_or_key_is_refused() -> None:
    """The cluster's name is associated data: same key, other cluster: refused."""
    datagram = sealer(K1, cluster="blue").seal(b"{}", NOW)
    assert refused(sealer(K1, cluster="green"), datagram) == "auth"
    assert refused(sealer(K2, K3, cluster="blue"), datagram) == "auth"
    assert sealer(K1, cluster="blue").open(datagram, NOW) == b"{}"


def test_plain_json_is_not_sealed() -> None:
    """The forged datagram of the attack: plain JSON is refused as unsealed."""
    forged = encode(
        Sync(
            "evil",
            (Update("alive", "evil", 0, ("127.0.0.66", 7000), (("url", "http://evil:1"),)),),
        )
    )
    assert refused(sealer(K1), forged) == "unsealed"


def test_a_replayed_datagram_is_refused() -> None:
    """The same sealed bytes a second time, even a millisecond later: a replay."""
    s, receiver = sealer(K1), sealer(K1)
    datagram = s.seal(b"{}", NOW)
    assert receiver.open(datagram, NOW) == b"{}"
    assert refused(receiver, datagram, NOW + 0.001) == "replay"
    assert refused(receiver, datagram, NOW + 29) == "replay"
    # Past the window it is stale, and its nonce may be forgotten.
    assert refused(receiver, datagram, NOW + 31) == "stale"


@pytest.mark.parametrize("offset", [-30.5, 30.5, -3600.0, 1e9])
def test_a_stale_or_future_datagram_is_refused(offset: float) -> None:
    """A stamp further than the window from the receiver's clock is refused, either way."""
    datagram = sealer(K1).seal(b"{}", NOW + offset)
    assert refused(sealer(K1), datagram) == "stale"
    assert sealer(K1, window=abs(offset) + 1).open(datagram, NOW) == b"{}"


def test_the_nonce_memory_is_bounded_and_a_forgotten_nonce_is_still_refused() -> None:
    """With room for 4 nonces, a 5th forgets the oldest; replaying the forgotten one is
    refused all the same (stale: at or before the newest stamp forgotten)."""
    s, receiver = sealer(K1), sealer(K1, max_nonces=4)
    datagrams = [s.seal(b"{}", NOW + i * 0.01) for i in range(10)]
    for i, datagram in enumerate(datagrams):
        assert receiver.open(datagram, NOW + i * 0.01) == b"{}"
        assert receiver.remembered <= 4
    for i, datagram in enumerate(datagrams):
        assert refused(receiver, datagram, NOW + 0.2) == ("stale" if i < 6 else "replay")


def test_nonces_out_of_the_window_are_forgotten() -> None:
    """A steady stream over a long time keeps only the window's nonces in memory."""
    s, receiver = sealer(K1), sealer(K1, window=1.0)
    for i in range(500):
        now = NOW + i * 0.1
        receiver.open(s.seal(b"{}", now), now)
    assert receiver.remembered <= 12
    assert MAX_NONCES >= 10_000


def test_a_bad_window_or_key_is_refused() -> None:
    with pytest.raises(ConfigError):
        sealer(K1, window=0)
    with pytest.raises(ConfigError):
        Keyring([])
    with pytest.raises(ConfigError):
        Keyring([os.urandom(15)])


# --------------------------------------------------------------------------- max_packet


def _largest_datagram(overhead: int) -> int:
    """The largest datagram a node sends while it gossips about 50 members and answers a
    table exchange, its messages kept within ``max_packet - overhead``."""
    config = GossipConfig.profile("local", max_packet=600)
    swim = Swim(
        name="self",
        address=("127.0.0.1", 7000),
        meta={"url": "http://127.0.0.1:8000"},
        config=config,
        rng=random.Random(7),
        now=0.0,
        overhead=overhead,
    )
    members = tuple(
        Update(
            "alive",
            f"member-with-a-long-name-{i:03d}",
            1,
            (f"127.0.1.{i}", 7000 + i),
            (("url", f"http://127.0.1.{i}:{8000 + i}"), ("started_at", "1800000000.123")),
        )
        for i in range(50)
    )
    swim.receive(0.0, encode(Sync("member-with-a-long-name-000", members)), ("127.0.1.0", 7000))
    sizes = []
    for now in itertools.accumulate(itertools.repeat(0.05, 40)):
        swim.tick(now)
        sizes += [len(data) for _, data in swim.take_outgoing()]
    assert len(sizes) > 10
    return max(sizes)


def test_sealed_datagrams_stay_within_max_packet() -> None:
    """Without the budget a full datagram plus the envelope would exceed max_packet;
    with it, every message leaves room for the envelope."""
    assert _largest_datagram(0) + OVERHEAD > 600
    assert _largest_datagram(OVERHEAD) + OVERHEAD <= 600


# --------------------------------------------------------------------------- settings


def _serve_plan(*argv: str, env: dict[str, str] | None = None) -> GossipConfig:
    args = build_parser().parse_args(["serve", "--group", "a", "--port", "7000", *argv])
    gossip = build_serve_plan(args, env or {}).node.gossip
    assert gossip is not None
    return gossip


def test_the_sealing_flags_variables_and_options_reach_the_config() -> None:
    """--gossip-keyring, --gossip-cluster, --gossip-accept-plain, --gossip-send-plain (and
    their SHOAL_* variables), replay_window through --gossip-option."""
    gossip = _serve_plan(
        *("--gossip-port", "0", "--gossip-keyring", "keys", "--gossip-cluster", "blue"),
        *("--gossip-accept-plain", "--gossip-send-plain", "--gossip-option", "replay_window=5s"),
    )
    assert (gossip.keyring, gossip.cluster, gossip.accept_plain, gossip.send_plain) == (
        "keys",
        "blue",
        True,
        True,
    )
    assert gossip.replay_window == 5.0
    env = {
        "SHOAL_GOSSIP_KEYRING": "k2",
        "SHOAL_GOSSIP_CLUSTER": "green",
        "SHOAL_GOSSIP_ACCEPT_PLAIN": "1",
    }
    gossip = _serve_plan("--gossip-port", "0", env=env)
    assert (gossip.keyring, gossip.cluster, gossip.accept_plain, gossip.send_plain) == (
        "k2",
        "green",
        True,
        False,
    )
    default = _serve_plan("--gossip-port", "0")
    assert (default.keyring, default.cluster, default.accept_plain) == (None, "default", False)
    assert default.replay_window == 30.0


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"accept_plain": True}, "needs a keyring"),
        ({"keyring": "k", "send_plain": True}, "must accept it too"),
        ({"keyring": "k", "cluster": ""}, "cluster"),
        ({"keyring": "k", "replay_window": 0}, "replay_window"),
        ({"keyring": "k", "accept_plain": "yes"}, "true or false"),
    ],
)
def test_sealing_settings_that_contradict_are_refused(
    options: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        GossipConfig(**options)  # type: ignore[arg-type]


def test_sealing_flags_alone_do_not_turn_gossip_on() -> None:
    args = build_parser().parse_args(["serve", "--group", "a", "--gossip-accept-plain"])
    with pytest.raises(ConfigError, match="--gossip-accept-plain seals gossip: it needs gossip"):
        build_serve_plan(args, {})


def test_the_sealing_keys_of_the_gossip_table() -> None:
    """``[node.gossip]`` takes keyring, cluster, replay_window, accept_plain, send_plain."""
    table = {
        "keyring": "/etc/shoal/gossip.keys",
        "cluster": "blue",
        "replay_window": "10s",
        "accept_plain": True,
        "send_plain": "false",
    }
    assert parse_gossip_table(table) == {
        "keyring": "/etc/shoal/gossip.keys",
        "cluster": "blue",
        "replay_window": 10.0,
        "accept_plain": True,
        "send_plain": False,
    }
    with pytest.raises(ConfigError, match="accept_plain must be true or false"):
        parse_gossip_table({"accept_plain": "maybe"})
