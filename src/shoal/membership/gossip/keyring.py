"""Sealed gossip: a keyring of AES-GCM keys and the envelope every datagram travels in.

After hashicorp/memberlist's keyring: the first key of the ring is the *primary*,
which seals every datagram sent; any installed key opens a datagram received, so
a key can be rotated on a live cluster (install the new key everywhere, make it
primary everywhere, remove the old one). The file holds one base64 key of 16, 24
or 32 bytes (AES-128, -192 or -256) per line, the first the primary; blank lines
and ``#`` comments are skipped.

A sealed datagram (:data:`OVERHEAD` bytes longer than the message it carries)::

    version (1 byte, 0x01) | nonce (12 random bytes) | AES-GCM(stamp | message) | tag (16)

``stamp`` is the sender's wall clock (8 bytes, a big-endian IEEE double, Unix
seconds), sealed with the message. The associated data is the version byte and
the cluster name, so a datagram sealed for another cluster, tampered with, or
sealed under a key this node does not hold fails to open (``auth``). Unlike
memberlist, a sealed datagram cannot be replayed: :class:`Sealer` drops one whose
stamp is more than ``window`` seconds from its own clock (``stale``) and one whose
nonce it already saw within the window (``replay``), remembering at most
:data:`MAX_NONCES` nonces; to stay sound when it forgets one early, it then
refuses every stamp at or before the newest one it forgot (``stale``).

A plain gossip datagram is a JSON object, so its first byte is ``{``; a sealed one
starts with the version byte: the two never look alike (``unsealed`` names a
datagram that is not sealed where a sealed one is required).

Pure: no sockets, no clock reads (the caller passes ``now``); randomness for the
nonces comes from ``os.urandom`` unless another source is injected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import struct
from collections.abc import Callable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import ConfigError

__all__ = [
    "VERSION",
    "OVERHEAD",
    "KEY_SIZES",
    "MAX_NONCES",
    "SEAL_REASONS",
    "SealError",
    "parse_keyring",
    "load_keyring",
    "fingerprint",
    "Keyring",
    "Sealer",
]

VERSION: Final = 1
"""The envelope's version byte: AES-GCM, 96-bit random nonce, sealed timestamp."""

_NONCE: Final = 12
_TAG: Final = 16
_STAMP: Final = struct.Struct(">d")

OVERHEAD: Final = 1 + _NONCE + _STAMP.size + _TAG
"""Bytes a sealed datagram adds to the message it carries (37)."""

KEY_SIZES: Final = (16, 24, 32)
"""The key sizes accepted, in bytes: AES-128, AES-192, AES-256."""

MAX_NONCES: Final = 16_384
"""The most nonces remembered to catch replays (about 1 MiB). Far above what a node
receives within the default window: SWIM sends a constant few datagrams a second
to each node, whatever the cluster's size."""

SEAL_REASONS: Final = ("unsealed", "auth", "replay", "stale")
"""Why a datagram is refused before it is decoded (counted in
``shoal_gossip_dropped_total{reason}``)."""


class SealError(ValueError):
    """A datagram that does not open.

    Args:
        message: what is wrong (never any key material).
        reason: one of :data:`SEAL_REASONS`.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_keyring(text: str, *, source: str = "keyring") -> tuple[bytes, ...]:
    """The keys of a keyring file's text, the primary first (duplicates dropped).

    Raises:
        ConfigError: a line that is not base64 of 16, 24 or 32 bytes (the message names
            the line, never its content), or no key at all.
    """
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source}, line {number}: not a base64 key") from None
        if len(key) not in KEY_SIZES:
            raise ConfigError(
                f"{source}, line {number}: a key must be 16, 24 or 32 bytes, this one is {len(key)}"
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ConfigError(f"{source} holds no key (one base64 key per line, the primary first)")
    return tuple(keys)


def load_keyring(path: str) -> tuple[bytes, ...]:
    """The keys in the keyring file at ``path``, the primary first.

    Raises:
        ConfigError: the file cannot be read, or :func:`parse_keyring` refuses it.
    """
    try:
        with open(path, encoding="ascii") as file:
            text = file.read(1 << 20)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the gossip keyring {path}: {exc}") from None
    return parse_keyring(text, source=f"gossip keyring {path}")


def fingerprint(key: bytes) -> str:
    """A short public name of ``key`` (8 hex digits of its SHA-256), to tell which
    keys a node holds without showing them."""
    return hashlib.sha256(key).hexdigest()[:8]


class Keyring:
    """The installed keys, the primary first; :meth:`install` swaps them at once.

    Args:
        keys: the keys, the primary first (see :func:`parse_keyring`).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._ciphers: tuple[AESGCM, ...] = ()
        self._names: tuple[str, ...] = ()
        self.install(keys)

    def install(self, keys: Sequence[bytes]) -> None:
        """Use ``keys`` from now on, the first as primary.

        Raises:
            ConfigError: no key, or a key of a wrong size.
        """
        if not keys:
            raise ConfigError("a keyring needs at least one key")
        if any(len(key) not in KEY_SIZES for key in keys):
            raise ConfigError("a gossip key must be 16, 24 or 32 bytes")
        ciphers = tuple(AESGCM(key) for key in keys)
        names = tuple(fingerprint(key) for key in keys)
        self._ciphers, self._names = ciphers, names

    @property
    def ciphers(self) -> tuple[AESGCM, ...]:
        """The keys' ciphers, the primary first."""
        return self._ciphers

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The keys' :func:`fingerprint`, the primary first."""
        return self._names


class Sealer:
    """Seals datagrams with a keyring's primary key and opens them with any of its keys,
    dropping replays and stale ones.

    Args:
        keyring: the keys (shared; :meth:`Keyring.install` takes effect at once).
        cluster: the cluster's name, sealed as associated data.
        window: seconds a datagram's stamp may be from ``now`` before it is stale.
        max_nonces: the most nonces remembered (see :data:`MAX_NONCES`).
        nonce: a source of random bytes (default ``os.urandom``).
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        cluster: str,
        window: float,
        max_nonces: int = MAX_NONCES,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ConfigError(f"the replay window must be positive seconds, got {window!r}")
        self.keyring = keyring
        self.window = window
        self._aad = bytes([VERSION]) + b"shoal gossip\x00" + cluster.encode()
        self._max_nonces = max(1, max_nonces)
        self._nonce = nonce
        self._seen: dict[bytes, float] = {}
        self._floor = -math.inf
        """Stamps at or before this are refused: a nonce of theirs may be forgotten."""

    def seal(self, message: bytes, now: float) -> bytes:
        """``message`` sealed with the primary key, stamped ``now`` (Unix seconds)."""
        nonce = self._nonce(_NONCE)
        sealed = self.keyring.ciphers[0].encrypt(nonce, _STAMP.pack(now) + message, self._aad)
        return bytes([VERSION]) + nonce + sealed

    def open(self, datagram: bytes, now: float) -> bytes:
        """The message in a sealed ``datagram`` received at ``now`` (Unix seconds).

        Raises:
            SealError: not sealed (``unsealed``); no installed key opens it, or it was
                sealed for another cluster or altered (``auth``); its stamp is more than
                the window away from ``now`` (``stale``); its nonce was seen (``replay``).
        """
        if not datagram or datagram[0] != VERSION:
            raise SealError("not a sealed gossip datagram", "unsealed")
        if len(datagram) < OVERHEAD:
            raise SealError("a sealed gossip datagram too short to open", "auth")
        nonce = datagram[1 : 1 + _NONCE]
        body = datagram[1 + _NONCE :]
        for cipher in self.keyring.ciphers:
            try:
                plain = cipher.decrypt(nonce, body, self._aad)
            except InvalidTag:
                continue
            break
        else:
            raise SealError("no installed key opens the datagram", "auth")
        (stamp,) = _STAMP.unpack_from(plain)
        if not abs(stamp - now) <= self.window:  # NaN is stale too
            raise SealError(f"sealed {now - stamp:.1f}s from now, outside the window", "stale")
        if stamp <= self._floor:
            raise SealError("sealed before the oldest nonce still remembered", "stale")
        if nonce in self._seen:
            raise SealError("a nonce already seen: a replayed datagram", "replay")
        self._remember(nonce, stamp, now)
        return plain[_STAMP.size :]

    def _remember(self, nonce: bytes, stamp: float, now: float) -> None:
        seen = self._seen
        seen[nonce] = stamp
        # Forget, oldest first, the nonces whose stamps are out of the window anyway,
        # then any beyond the bound; a forgotten stamp raises the floor.
        horizon = now - self.window
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon and len(seen) <= self._max_nonces:
                break
            self._floor = max(self._floor, seen.pop(oldest))

    @property
    def remembered(self) -> int:
        """How many nonces are remembered now."""
        return len(self._seen)
