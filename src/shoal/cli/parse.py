"""Value parsers of the command line, the environment and the TOML file.

Rules: each parser takes text (a flag, a ``SHOAL_*`` variable) or a TOML value and
a ``what`` that names the setting, returns the value the config classes take, and
raises :class:`~shoal.errors.ConfigError` with a one-line message naming ``what``.
Pure functions: no I/O, no imports from the rest of the CLI.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from ..errors import ConfigError

__all__ = [
    "parse_size",
    "parse_duration",
    "parse_int",
    "parse_str",
    "parse_port",
    "parse_float",
    "parse_url",
    "parse_peers",
    "optional",
    "split_assignment",
]

_SIZE: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)")
_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_DURATION: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d|)")
_DURATION_UNITS: Final[Mapping[str, float]] = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_size(value: object, *, what: str = "size") -> int:
    """Parse a byte count: an integer, or a number with a unit.

    Units (case-insensitive): ``B``; ``KB``, ``MB``, ``GB``, ``TB`` (powers of
    1000); ``KiB``, ``MiB``, ``GiB``, ``TiB`` and the short ``K``, ``M``, ``G``,
    ``T`` (powers of 1024). Examples: ``64MiB``, ``1GB``, ``1.5G``, ``4096``.

    Raises:
        ConfigError: not a size, or not a positive whole number of bytes.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size like 64MiB or 1GB, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value.strip().lower())):
        unit = _SIZE_UNITS.get(m["unit"])
        if unit is None:
            raise ConfigError(
                f"{what}: unknown unit {m['unit']!r} in {value!r}; use B, KiB, MiB, GiB, KB, MB, GB"
            )
        exact = Decimal(m["number"]) * unit
        if exact != exact.to_integral_value():
            raise ConfigError(f"{what} must be a whole number of bytes, got {value!r}")
        size = int(exact)
    else:
        raise ConfigError(f"{what} must be a size like 64MiB or 1GB, got {value!r}")
    if size <= 0:
        raise ConfigError(f"{what} must be at least one byte, got {value!r}")
    return size


def parse_duration(value: object, *, what: str = "duration", allow_zero: bool = False) -> float:
    """Parse a duration in seconds: a number, or a number with ``ms``, ``s``, ``m``, ``h``, ``d``.

    Examples: ``60``, ``1.5``, ``"500ms"``, ``"10m"``.

    Args:
        value: the text or number to parse.
        what: what the value is, for the error message.
        allow_zero: accept 0 (a delay may be zero; a timeout may not).

    Raises:
        ConfigError: not a duration, or not positive (or zero, if allowed) and finite.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(m["number"]) * _DURATION_UNITS[m["unit"]]
    else:
        raise ConfigError(f"{what} must be a number of seconds (or 500ms, 10m, 1h), got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return seconds


def parse_int(value: object, *, what: str) -> int:
    """Parse a whole number (an int, or digits in text).

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ConfigError(f"{what} must be a whole number, got {value!r}")


def parse_str(value: object, *, what: str) -> str:
    """Accept a string as is.

    Raises:
        ConfigError: not a string (a TOML number or table, say).
    """
    if isinstance(value, str):
        return value
    raise ConfigError(f"{what} must be a string, got {value!r}")


def parse_bool(value: object, *, what: str) -> bool:
    """Accept a TOML boolean, or ``true``/``false``/``1``/``0``/``yes``/``no`` text.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    raise ConfigError(f"{what} must be true or false, got {value!r}")


def parse_port(value: object, *, what: str) -> int:
    """Parse a TCP or UDP port, 0-65535 (0: any free port).

    Raises:
        ConfigError: not a whole number in range.
    """
    port = parse_int(value, what=what)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} must be 0-65535, got {value!r}")
    return port


def parse_float(value: object, *, what: str) -> float:
    """Parse a number (an int, a float, or one in text); its range is the caller's to check.

    Raises:
        ConfigError: not a number.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what} must be a number, got {value!r}")


def parse_url(value: object, *, what: str = "URL") -> str:
    """Parse a node URL: ``http://host:port`` (or ``https://``), nothing after the port.

    A node's URL is its identity on the ring, compared as a string by every
    member, so anything that would make two spellings of one node differ is
    refused rather than guessed at. Only a lone trailing ``/`` is dropped.

    Raises:
        ConfigError: not an http(s) URL of a host, or one with a path, query or fragment.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a URL like http://10.0.0.1:8001, got {value!r}")
    url = value.strip()
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{what}: bad port in {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be a URL like http://10.0.0.1:8001, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"{what} must be scheme://host:port with nothing after it "
            f"(the peer protocol adds its base path), got {url!r}"
        )
    return url.removesuffix("/")


def parse_peers(value: object, *, what: str = "peers") -> tuple[str, ...]:
    """Parse a member list: comma-separated URLs (flags, environment) or a TOML list.

    Duplicates are dropped (the first spelling is kept, and order matters: it
    settles hash collisions on the ring, so every node must list the members in
    the same order).

    Raises:
        ConfigError: an empty entry or a malformed URL.
    """
    if isinstance(value, str):
        items: list[object] = [item.strip() for item in value.split(",")] if value.strip() else []
    elif isinstance(value, list):
        items = list(value)
    else:
        raise ConfigError(f"{what} must be comma-separated URLs or a list, got {value!r}")
    urls = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            raise ConfigError(f"{what}: empty entry in {value!r}")
        urls.append(parse_url(item, what=f"{what} entry"))
    return tuple(dict.fromkeys(urls))


def optional(parse: Callable[..., Any]) -> Callable[..., Any]:
    """Accept ``"none"`` as None (TOML has no null) for bounds that may be switched off."""

    def parse_optional(value: object, *, what: str) -> Any:
        if isinstance(value, str) and value.strip().lower() == "none":
            return None
        return parse(value, what=what)

    return parse_optional


def split_assignment(text: str, flag: str, *, value_required: bool = True) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (a per-group flag such as ``--ttl users=60``).

    Args:
        text: the flag's value.
        flag: the flag, for the error message.
        value_required: refuse ``NAME`` alone (``--group NAME`` allows it).

    Raises:
        ConfigError: no name, or no ``=`` where a value is required.
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not name or (value_required and not sep):
        raise ConfigError(f"{flag} expects NAME=VALUE, got {text!r}")
    return name, value
