"""Gossip messages and their wire format: compact JSON, one message per datagram.

Pure and sans-I/O: frozen dataclasses, :func:`encode` and :func:`decode`. Every
message names its sender and may carry *updates* (news about members) that
ride along, SWIM's piggy-backing. Wire shape (keys kept short)::

    {"t": "ping", "s": 7, "f": "a:7001", "to": "b:7001", "u": [...]}
    {"t": "ack", "s": 7, "f": "b:7001", "u": [...]}
    {"t": "ping-req", "s": 9, "f": "a:7001", "to": "c:7001", "a": "10.0.0.3:7001", "u": [...]}
    {"t": "gossip", "f": "a:7001", "u": [...]}
    {"t": "sync", "f": "a:7001", "r": false, "p": 0, "m": [...]}

An update is ``{"k": kind, "n": name, "i": incarnation}`` plus, for ``alive``,
``"a": "host:port"`` and ``"m": {meta}``, and for ``suspect``/``dead``, ``"o"``:
the member that says so. A ``sync`` carries whole member tables (``m``) in the
same shape, one entry per member, its ``k`` being the member's state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "KINDS",
    "Update",
    "Ping",
    "Ack",
    "PingReq",
    "Gossip",
    "Sync",
    "Message",
    "GossipProtocolError",
    "encode",
    "encode_packed",
    "decode",
    "format_address",
    "parse_address",
]

KINDS: Final = ("alive", "suspect", "dead", "left")
"""Kinds of update, which are also the states a member can be in."""

Address = tuple[str, int]


class GossipProtocolError(ValueError):
    """A datagram is not a well-formed gossip message."""


@dataclass(frozen=True, slots=True)
class Update:
    """News about one member: it is alive, suspected, dead, or left for good."""

    kind: str
    """``alive``, ``suspect``, ``dead`` or ``left``."""
    name: str
    """The member's node id."""
    incarnation: int
    """The member's incarnation the news is about (only the member raises it)."""
    address: Address | None = None
    """``alive`` only: where the member receives gossip."""
    meta: tuple[tuple[str, str], ...] = ()
    """``alive`` only: what the member publishes about itself (its URL...)."""
    origin: str | None = None
    """``suspect``/``dead``: the member that suspected or declared it."""


@dataclass(frozen=True, slots=True)
class Ping:
    """A direct probe: ``target`` must answer with an :class:`Ack` of the same ``seq``."""

    seq: int
    sender: str
    target: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a :class:`Ping` (relayed for a :class:`PingReq`)."""

    seq: int
    sender: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """An indirect probe: ping ``target`` at ``address`` and relay its ack as ``seq``."""

    seq: int
    sender: str
    target: str
    address: Address
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    """Updates only: a gossip round or a leave announcement."""

    sender: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Sync:
    """Part ``part`` of the sender's whole member table (join and anti-entropy).

    A member that receives part 0 of a sync that is not a ``reply`` answers with
    its own table.
    """

    sender: str
    members: tuple[Update, ...]
    reply: bool = False
    part: int = 0


Message = Ping | Ack | PingReq | Gossip | Sync
"""Any gossip message."""


def format_address(address: Address) -> str:
    """``host:port`` (``[v6]:port`` for IPv6)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: object) -> Address:
    """``(host, port)`` from ``host:port``.

    Raises:
        GossipProtocolError: not ``host:port``.
    """
    if not isinstance(text, str):
        raise GossipProtocolError(f"an address must be host:port, got {text!r}")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise GossipProtocolError(f"an address must be host:port, got {text!r}")
    return host, int(port)


def _update_obj(update: Update) -> dict[str, Any]:
    obj: dict[str, Any] = {"k": update.kind, "n": update.name, "i": update.incarnation}
    if update.address is not None:
        obj["a"] = format_address(update.address)
    if update.meta:
        obj["m"] = dict(update.meta)
    if update.origin is not None:
        obj["o"] = update.origin
    return obj


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _base(message: Message) -> dict[str, Any]:
    match message:
        case Ping():
            return {"t": "ping", "s": message.seq, "f": message.sender, "to": message.target}
        case Ack():
            return {"t": "ack", "s": message.seq, "f": message.sender}
        case PingReq():
            return {
                "t": "ping-req",
                "s": message.seq,
                "f": message.sender,
                "to": message.target,
                "a": format_address(message.address),
            }
        case Gossip():
            return {"t": "gossip", "f": message.sender}
        case Sync():
            return {
                "t": "sync",
                "f": message.sender,
                "r": message.reply,
                "p": message.part,
                "m": [_update_obj(m) for m in message.members],
            }


def encode(message: Message) -> bytes:
    """The datagram of ``message``, every update included."""
    obj = _base(message)
    if not isinstance(message, Sync) and message.updates:
        obj["u"] = [_update_obj(u) for u in message.updates]
    return _dump(obj)


def encode_packed(
    message: Ping | Ack | PingReq | Gossip, updates: Sequence[Update], limit: int
) -> tuple[bytes, int]:
    """The datagram of ``message`` (sent without updates of its own) with as many of
    ``updates``, in order, as fit in ``limit`` bytes.

    Returns:
        The datagram and how many of ``updates`` it carries (the message itself
        always goes, even if it alone is over ``limit``).
    """
    head = _dump(_base(message))
    parts: list[bytes] = []
    room = limit - len(head) - len(b',"u":[]')
    for update in updates:
        part = _dump(_update_obj(update))
        cost = len(part) + (1 if parts else 0)
        if cost > room:
            break
        parts.append(part)
        room -= cost
    if not parts:
        return head, 0
    return head[:-1] + b',"u":[' + b",".join(parts) + b"]}", len(parts)


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GossipProtocolError(f"{key!r} must be a non-negative integer, got {value!r}")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise GossipProtocolError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _update(obj: object) -> Update:
    if not isinstance(obj, dict):
        raise GossipProtocolError(f"an update must be an object, got {obj!r}")
    kind = obj.get("k")
    if kind not in KINDS:
        raise GossipProtocolError(f"unknown update kind {kind!r}")
    address = parse_address(obj["a"]) if "a" in obj else None
    if kind == "alive" and address is None:
        raise GossipProtocolError("an alive update needs an address")
    meta = obj.get("m", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise GossipProtocolError(f"meta must map strings to strings, got {meta!r}")
    origin = obj.get("o")
    if origin is not None and not isinstance(origin, str):
        raise GossipProtocolError(f"origin must be a string, got {origin!r}")
    return Update(
        kind=kind,
        name=_str(obj, "n"),
        incarnation=_int(obj, "i"),
        address=address,
        meta=tuple(sorted(meta.items())),
        origin=origin,
    )


def _updates(obj: dict[str, Any], key: str) -> tuple[Update, ...]:
    items = obj.get(key, [])
    if not isinstance(items, list):
        raise GossipProtocolError(f"{key!r} must be a list")
    return tuple(_update(item) for item in items)


def decode(data: bytes) -> Message:
    """The message in a datagram.

    Raises:
        GossipProtocolError: not JSON, or not a gossip message.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GossipProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise GossipProtocolError("a message must be a JSON object")
    kind = obj.get("t")
    sender = _str(obj, "f")
    if kind == "ping":
        return Ping(_int(obj, "s"), sender, _str(obj, "to"), _updates(obj, "u"))
    if kind == "ack":
        return Ack(_int(obj, "s"), sender, _updates(obj, "u"))
    if kind == "ping-req":
        return PingReq(
            _int(obj, "s"), sender, _str(obj, "to"), parse_address(obj.get("a")), _updates(obj, "u")
        )
    if kind == "gossip":
        return Gossip(sender, _updates(obj, "u"))
    if kind == "sync":
        reply = obj.get("r", False)
        if not isinstance(reply, bool):
            raise GossipProtocolError(f"'r' must be true or false, got {reply!r}")
        return Sync(sender, _updates(obj, "m"), reply, _int(obj, "p"))
    raise GossipProtocolError(f"unknown message type {kind!r}")
