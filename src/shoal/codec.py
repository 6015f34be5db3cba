"""Codecs: how a group turns typed values into the bytes it stores and sends.

Values are bytes on the wire and in the store; a codec is chosen per group.
Nothing here unpickles: only bytes, UTF-8 text, JSON and msgpack.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TypeVar

from .errors import ConfigError, MissingExtra

__all__ = ["Codec", "BytesCodec", "StrCodec", "JsonCodec", "MsgpackCodec", "codec_for"]

V = TypeVar("V")


class Codec(Protocol[V]):
    """Turns values of one type into bytes and back."""

    def encode(self, value: V) -> bytes:
        """Serialise ``value``; raise TypeError/ValueError if it cannot be."""
        ...

    def decode(self, data: bytes) -> V:
        """Deserialise bytes produced by :meth:`encode`."""
        ...


class BytesCodec:
    """Identity codec: values are bytes (bytearray and memoryview are copied to bytes)."""

    def encode(self, value: bytes) -> bytes:
        """Return ``value`` as bytes."""
        if type(value) is bytes:
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"a bytes group needs bytes values, got {type(value).__name__}")

    def decode(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return data


class StrCodec:
    """UTF-8 text."""

    def encode(self, value: str) -> bytes:
        """Encode ``value`` as UTF-8."""
        if not isinstance(value, str):
            raise TypeError(f"a str group needs str values, got {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> str:
        """Decode UTF-8 ``data``."""
        return data.decode()


class JsonCodec:
    """JSON documents (compact, UTF-8)."""

    def encode(self, value: Any) -> bytes:
        """Serialise ``value`` as compact JSON."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        """Parse JSON ``data``."""
        return json.loads(data)


class MsgpackCodec:
    """msgpack documents (needs the ``shoal[msgpack]`` extra)."""

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise MissingExtra("msgpack", "msgpack") from exc
        self._msgpack = msgpack

    def encode(self, value: Any) -> bytes:
        """Serialise ``value`` with msgpack."""
        data: bytes = self._msgpack.packb(value, use_bin_type=True)
        return data

    def decode(self, data: bytes) -> Any:
        """Parse msgpack ``data`` (strict map keys off, raw strings decoded)."""
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)


def codec_for(name: str) -> Codec[Any]:
    """Return the codec named ``name`` (one of ``bytes``, ``str``, ``json``, ``msgpack``).

    Raises:
        ConfigError: for an unknown name.
        MissingExtra: for ``msgpack`` when msgpack is not installed.
    """
    if name == "bytes":
        return BytesCodec()
    if name == "str":
        return StrCodec()
    if name == "json":
        return JsonCodec()
    if name == "msgpack":
        return MsgpackCodec()
    raise ConfigError(f"unknown codec {name!r}")
