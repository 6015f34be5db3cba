"""The gossip wire format: one golden table drives encoding and decoding."""

from __future__ import annotations

import json

import pytest

from shoal.membership.gossip.messages import (
    MAX_INCARNATION,
    MAX_META,
    MAX_UPDATES,
    Ack,
    Gossip,
    GossipProtocolError,
    Message,
    Ping,
    PingReq,
    Sync,
    Update,
    decode,
    encode,
    encode_packed,
)

ALIVE = Update("alive", "b:7001", 3, ("10.0.0.2", 7001), (("url", "http://10.0.0.2:8001"),))
SUSPECT = Update("suspect", "c:7001", 1, origin="a:7001")

CASES: list[tuple[Message, dict[str, object]]] = [
    (Ping(7, "a", "b"), {"t": "ping", "s": 7, "f": "a", "to": "b"}),
    (
        Ping(7, "a", "b", (SUSPECT,)),
        {
            "t": "ping",
            "s": 7,
            "f": "a",
            "to": "b",
            "u": [{"k": "suspect", "n": "c:7001", "i": 1, "o": "a:7001"}],
        },
    ),
    (Ack(7, "b"), {"t": "ack", "s": 7, "f": "b"}),
    (
        PingReq(9, "a", "c", ("10.0.0.3", 7001)),
        {"t": "ping-req", "s": 9, "f": "a", "to": "c", "a": "10.0.0.3:7001"},
    ),
    (
        Gossip("a", (ALIVE,)),
        {
            "t": "gossip",
            "f": "a",
            "u": [
                {
                    "k": "alive",
                    "n": "b:7001",
                    "i": 3,
                    "a": "10.0.0.2:7001",
                    "m": {"url": "http://10.0.0.2:8001"},
                }
            ],
        },
    ),
    (
        Sync("a", (ALIVE,), reply=True, part=1),
        {
            "t": "sync",
            "f": "a",
            "r": True,
            "p": 1,
            "m": [
                {
                    "k": "alive",
                    "n": "b:7001",
                    "i": 3,
                    "a": "10.0.0.2:7001",
                    "m": {"url": "http://10.0.0.2:8001"},
                }
            ],
        },
    ),
    (
        Gossip("a", (Update("alive", "v6", 0, ("::1", 7001)),)),
        {"t": "gossip", "f": "a", "u": [{"k": "alive", "n": "v6", "i": 0, "a": "[::1]:7001"}]},
    ),
]


@pytest.mark.parametrize(("message", "wire"), CASES)
def test_encode_and_decode(message: Message, wire: dict[str, object]) -> None:
    """Each message encodes to its wire form and decodes back to itself."""
    assert json.loads(encode(message)) == wire
    assert decode(json.dumps(wire).encode()) == message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff",
        b"[1]",
        b'{"t": "ping", "s": 1, "to": "b"}',  # no sender
        b'{"t": "ping", "s": -1, "f": "a", "to": "b"}',
        b'{"t": "ping", "s": true, "f": "a", "to": "b"}',
        b'{"t": "ping-req", "s": 1, "f": "a", "to": "c", "a": "nohost"}',
        b'{"t": "gossip", "f": "a", "u": [{"k": "alive", "n": "b", "i": 0}]}',  # no address
        b'{"t": "gossip", "f": "a", "u": [{"k": "zombie", "n": "b", "i": 0}]}',
        b'{"t": "gossip", "f": "a", "u": [{"k": "dead", "n": "b", "i": 0, "m": {"x": 1}}]}',
        b'{"t": "gossip", "f": "a", "u": {}}',
        b'{"t": "sync", "f": "a", "r": "yes", "p": 0, "m": []}',
        b'{"t": "shout", "f": "a"}',
    ],
)
def test_malformed_datagrams_are_refused(data: bytes) -> None:
    """Anything that is not a well-formed message raises GossipProtocolError (a ValueError)."""
    with pytest.raises(GossipProtocolError):
        decode(data)


def test_packing_stops_at_the_limit() -> None:
    """encode_packed takes updates in order while the datagram stays within the limit."""
    updates = [Update("alive", f"node-{i}", i, ("10.0.0.1", 7000 + i)) for i in range(50)]
    data, count = encode_packed(Ping(1, "a", "b"), updates, 600)
    assert 0 < count < 50
    assert len(data) <= 600
    assert decode(data) == Ping(1, "a", "b", tuple(updates[:count]))
    data, count = encode_packed(Ack(1, "b"), updates, 10)  # too small: the bare message
    assert (count, decode(data)) == (0, Ack(1, "b"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 5000, "malformed"),
        (
            b'{"t":"gossip","f":"a","u":[{"k":"alive","n":"b","i":0,"a":"10.0.0.1:1","m":{"x":[]}}]}',
            "malformed",
        ),
        (b"\xff", "malformed"),
        (b" " * 70_000, "malformed"),
        (b'{"t":"gossip","f":"a\\n"}', "invalid"),
        (b'{"t":"gossip","f":"' + b"a" * 129 + b'"}', "invalid"),
        (b'{"t":"gossip","f":7}', "invalid"),
        (b'{"t":"ping","s":4294967296,"f":"a","to":"b"}', "invalid"),
        (b'{"t":"ping","s":-1,"f":"a","to":"b"}', "invalid"),
        (b'{"t":"ping","s":1.0,"f":"a","to":"b"}', "invalid"),
        (b'{"t":"ping-req","s":1,"f":"a","to":"b","a":"localhost:7000"}', "invalid"),
        (b'{"t":"ping-req","s":1,"f":"a","to":"b","a":"10.0.0.1:\xc2\xb2"}', "invalid"),
        (b'{"t":"ping-req","s":1,"f":"a","to":"b","a":"10.0.0.1:' + b"1" * 5000 + b'"}', "invalid"),
        (b'{"t":"ping-req","s":1,"f":"a","to":"b","a":"10.0.0.1:0"}', "invalid"),
        (b'{"t":"sync","f":"a","p":1025,"m":[]}', "invalid"),
        (b'{"t":"sync","f":"a","p":0,"m":{}}', "invalid"),
        (b'{"t":"gossip","f":"a","u":[{"k":"left","n":"b","i":' + b"9" * 1300 + b"}]}", "invalid"),
        (b'{"t":"gossip","f":"a","u":[{"k":"dead","n":"b","i":0,"o":5}]}', "invalid"),
        (
            b'{"t":"gossip","f":"a","u":[{"k":"alive","n":"b","i":0,"a":"10.0.0.1:1","m":[]}]}',
            "invalid",
        ),
        (
            b'{"t":"gossip","f":"a","u":[{"k":"alive","n":"b","i":0,"a":"10.0.0.1:1","m":{"url":'
            + b'"'
            + b"u" * 600
            + b'"}}]}',
            "invalid",
        ),
        (
            b'{"t":"gossip","f":"a","u":'
            + json.dumps([{"k": "left", "n": "b", "i": 0}] * 129).encode()
            + b"}",
            "invalid",
        ),
    ],
)
def test_out_of_bounds_datagrams_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    """Too deep, too large, wrong types, names that are not node ids, addresses that
    are not ip:port, numbers outside uint32, oversize meta or lists: refused, and
    only ever with a GossipProtocolError."""
    with pytest.raises(GossipProtocolError) as refused:
        decode(data)
    assert refused.value.reason == reason


def test_the_largest_valid_values_decode() -> None:
    """The bounds are inclusive: uint32's maximum, MAX_UPDATES updates, MAX_META entries."""
    top = MAX_INCARNATION
    meta = {f"k{i}": "v" for i in range(MAX_META)}
    updates = [
        Update("alive", f"n{i}", top, ("::1", 65535), tuple(sorted(meta.items())))
        for i in range(MAX_UPDATES)
    ]
    message = Gossip("a", tuple(updates))
    assert decode(encode(message)) == message
    assert decode(encode(Ping(top, "a", "b"))) == Ping(top, "a", "b")
