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

Every datagram is untrusted. :func:`decode` refuses (with a
:class:`GossipProtocolError` whose ``reason`` is ``malformed`` or ``invalid``),
and never raises anything else for:

- more than :data:`MAX_DATAGRAM` bytes, or arrays and objects nested deeper
  than :data:`MAX_DEPTH` (a message is at most 4 deep: message, update list,
  update, meta), checked before the JSON parser runs (``malformed``);
- names (``f``, ``to``, ``n``, ``o``) that are not node ids (1-128 characters,
  see :func:`~shoal.config.check_node_id`); addresses that are not
  ``ip:port`` (datagrams go to addresses, so a member advertises an IP
  address); sequence numbers and incarnations outside ``0..``:data:`MAX_INCARNATION`
  (uint32, as memberlist's); a sync part above :data:`MAX_PART`; more than
  :data:`MAX_UPDATES` updates; meta that is not a map of at most
  :data:`MAX_META` short strings (``invalid``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ...config import check_node_id
from ...errors import ConfigError
from .. import MAX_URL_LENGTH, BadInput, load_json

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
    "MAX_DATAGRAM",
    "MAX_DEPTH",
    "MAX_INCARNATION",
    "MAX_UPDATES",
    "MAX_PART",
    "MAX_META",
]

KINDS: Final = ("alive", "suspect", "dead", "left")
"""Kinds of update, which are also the states a member can be in."""

MAX_DATAGRAM: Final = 65_507
"""The largest datagram decoded: the most a UDP datagram can carry over IPv4."""

MAX_DEPTH: Final = 4
"""The deepest nesting of arrays and objects in a message (message, updates, update, meta)."""

MAX_INCARNATION: Final = 2**32 - 1
"""The largest incarnation or sequence number (uint32, as in memberlist)."""

MAX_UPDATES: Final = 128
"""The most updates (or sync rows) one message may carry: far more than fit in a
``max_packet`` datagram of any sane size (a row is ~130 bytes)."""

MAX_PART: Final = 1024
"""The highest part number of a sync."""

MAX_META: Final = 8
"""The most meta entries a member publishes (shoal uses 3: url, grpc, started_at)."""

_MAX_META_KEY: Final = 32

Address = tuple[str, int]


class GossipProtocolError(ValueError):
    """A datagram is not a well-formed gossip message.

    Args:
        message: what is wrong.
        reason: ``malformed`` (not a bounded JSON document) or ``invalid`` (JSON,
            but not a gossip message).
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


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
        GossipProtocolError: not ``host:port`` with a port from 1 to 65535.
    """
    if not isinstance(text, str) or len(text) > 300:
        raise GossipProtocolError(f"an address must be host:port, got {_short(text)}")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not host
        or not port.isascii()
        or not port.isdigit()
        or len(port) > 5
        or not 0 < int(port) <= 65535
    ):
        raise GossipProtocolError(f"an address must be host:port, got {_short(text)}")
    return host, int(port)


def _ip_address(text: object) -> Address:
    """``(ip, port)`` from ``ip:port``: an address a member sent (always an IP address)."""
    host, port = parse_address(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise GossipProtocolError(f"an address must be ip:port, got {_short(text)}") from None
    return host, port


def _short(value: object) -> str:
    """``repr(value)``, cut for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


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
    for update in updates[:MAX_UPDATES]:
        part = _dump(_update_obj(update))
        cost = len(part) + (1 if parts else 0)
        if cost > room:
            break
        parts.append(part)
        room -= cost
    if not parts:
        return head, 0
    return head[:-1] + b',"u":[' + b",".join(parts) + b"]}", len(parts)


def _int(obj: dict[str, Any], key: str, top: int = MAX_INCARNATION) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise GossipProtocolError(
            f"{key!r} must be an integer from 0 to {top}, got {_short(value)}"
        )
    return value


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    try:
        return check_node_id(value)  # type: ignore[arg-type]
    except ConfigError:
        raise GossipProtocolError(f"{key!r} must be a node id, got {_short(value)}") from None


def _meta(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    meta = obj.get("m", {})
    if (
        not isinstance(meta, dict)
        or len(meta) > MAX_META
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and len(k) <= _MAX_META_KEY
            and len(v) <= MAX_URL_LENGTH
            for k, v in meta.items()
        )
    ):
        raise GossipProtocolError(
            f"meta must map at most {MAX_META} short strings to strings, got {_short(meta)}"
        )
    return tuple(sorted(meta.items()))


def _update(obj: object) -> Update:
    if not isinstance(obj, dict):
        raise GossipProtocolError(f"an update must be an object, got {_short(obj)}")
    kind = obj.get("k")
    if kind not in KINDS:
        raise GossipProtocolError(f"unknown update kind {_short(kind)}")
    address = _ip_address(obj["a"]) if "a" in obj else None
    if kind == "alive" and address is None:
        raise GossipProtocolError("an alive update needs an address")
    return Update(
        kind=kind,
        name=_name(obj, "n"),
        incarnation=_int(obj, "i"),
        address=address,
        meta=_meta(obj),
        origin=_name(obj, "o") if obj.get("o") is not None else None,
    )


def _updates(obj: dict[str, Any], key: str) -> tuple[Update, ...]:
    items = obj.get(key, [])
    if not isinstance(items, list) or len(items) > MAX_UPDATES:
        raise GossipProtocolError(f"{key!r} must be a list of at most {MAX_UPDATES} updates")
    return tuple(_update(item) for item in items)


def decode(data: bytes) -> Message:
    """The message in a datagram.

    Raises:
        GossipProtocolError: not bounded JSON (``reason`` ``malformed``), or not a
            gossip message within the bounds of the module docstring (``invalid``).
            Never any other exception, whatever ``data`` holds.
    """
    try:
        obj = load_json(data, max_bytes=MAX_DATAGRAM, max_depth=MAX_DEPTH)
    except BadInput as exc:
        raise GossipProtocolError(str(exc), "malformed") from None
    if not isinstance(obj, dict):
        raise GossipProtocolError("a message must be a JSON object")
    kind = obj.get("t")
    sender = _name(obj, "f")
    if kind == "ping":
        return Ping(_int(obj, "s"), sender, _name(obj, "to"), _updates(obj, "u"))
    if kind == "ack":
        return Ack(_int(obj, "s"), sender, _updates(obj, "u"))
    if kind == "ping-req":
        return PingReq(
            _int(obj, "s"), sender, _name(obj, "to"), _ip_address(obj.get("a")), _updates(obj, "u")
        )
    if kind == "gossip":
        return Gossip(sender, _updates(obj, "u"))
    if kind == "sync":
        reply = obj.get("r", False)
        if not isinstance(reply, bool):
            raise GossipProtocolError(f"'r' must be true or false, got {_short(reply)}")
        return Sync(sender, _updates(obj, "m"), reply, _int(obj, "p", MAX_PART))
    raise GossipProtocolError(f"unknown message type {_short(kind)}")
