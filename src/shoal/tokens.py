"""API tokens with roles: the file ``NodeConfig.api_tokens`` names, and the check.

The file holds one ``ROLE TOKEN`` per line; the roles are ``read`` (get, batch
get, the groups' statistics), ``write`` (also set and delete) and ``admin``
(also invalidate a group and read the cluster's internals); ``#`` starts a
comment line and blank lines are skipped. A token is 16 to 4096 characters of
RFC 6750's ``b64token`` (``A-Z a-z 0-9 - . _ ~ + /``, then any ``=``).

Rules of this module:

- A token is never echoed: an error names the file and the line number, never
  what is on the line (a token in the role's place would otherwise be logged).
- Each token is hashed once, when the file is read (a keyed BLAKE2b of this
  process); a presented token is hashed the same way and compared with every
  installed one by :func:`hmac.compare_digest`, without stopping at a match, so
  the time taken tells nothing about which token came close.
- :meth:`ApiTokens.reload` replaces the whole set at once or not at all: a file
  that fails to load leaves the tokens in use as they were.
- Stdlib only, and no clock: the servers of ``api/`` and ``transport/`` call it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from .errors import ConfigError

__all__ = [
    "ROLES",
    "REASONS",
    "MIN_TOKEN_LENGTH",
    "MAX_TOKEN_LENGTH",
    "ApiTokens",
    "Credentials",
    "parse_tokens",
    "role_allows",
    "bearer",
]

ROLES: Final = ("read", "write", "admin")
"""The roles, each allowing what the one before it does and more."""

REASONS: Final = ("missing", "malformed", "unknown", "forbidden")
"""Why a request was refused: no ``Authorization``, one that is not ``Bearer
TOKEN``, a token that is not installed, a role that does not allow the request."""

MIN_TOKEN_LENGTH: Final = 16
"""The shortest token the file may hold, in characters."""

MAX_TOKEN_LENGTH: Final = 4096
"""The longest token the file may hold (and a request may present)."""

log = logging.getLogger("shoal.tokens")

_RANK: Final[Mapping[str, int]] = {role: rank for rank, role in enumerate(ROLES)}
_TOKEN: Final = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_OWS: Final = b" \t"


def role_allows(role: str, needed: str) -> bool:
    """Whether a token of ``role`` may do what needs ``needed`` (both from :data:`ROLES`)."""
    return _RANK[role] >= _RANK[needed]


def bearer(token: str) -> str:
    """The ``Authorization`` value that presents an API token: ``Bearer TOKEN``.

    Raises:
        ConfigError: a token that is empty or holds a space, a control or a
            non-ASCII character (the message does not show the token).
    """
    if (
        not isinstance(token, str)
        or not token
        or not token.isascii()
        or not token.isprintable()
        or " " in token
    ):
        raise ConfigError("an API token is printable ASCII without spaces")
    return f"Bearer {token}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request's ``Authorization`` value turned out to be.

    ``role`` is the token's role when it is installed, else None and ``reason``
    says why (``missing``, ``malformed`` or ``unknown``)."""

    role: str | None
    reason: str | None


_MISSING: Final = Credentials(None, "missing")
_MALFORMED: Final = Credentials(None, "malformed")
_UNKNOWN: Final = Credentials(None, "unknown")


def parse_tokens(text: str, *, source: str) -> list[tuple[str, bytes]]:
    """The (role, token) pairs of a tokens file's ``text``, in file order.

    Raises:
        ConfigError: a line that is not ``ROLE TOKEN``, an unknown role, a token
            that is too short, too long or has other characters, the same token
            twice, or no token at all; the message names ``source`` and the line
            number, never the line's content.
    """
    pairs: list[tuple[str, bytes]] = []
    seen: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}: line {number}"
        fields = stripped.split()
        if len(fields) != 2:
            raise ConfigError(f"{where}: expected 'ROLE TOKEN' (two fields separated by spaces)")
        role, token_text = fields
        if role not in _RANK:
            raise ConfigError(f"{where}: unknown role; the roles are {', '.join(ROLES)}")
        try:
            token = token_text.encode("ascii")
        except UnicodeEncodeError:
            token = b""
        if not token or not _TOKEN.fullmatch(token):
            raise ConfigError(
                f"{where}: the token may hold only A-Z a-z 0-9 - . _ ~ + / (and = at its end)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters")
        if len(token) > MAX_TOKEN_LENGTH:
            raise ConfigError(f"{where}: the token is longer than {MAX_TOKEN_LENGTH} characters")
        if token in seen:
            raise ConfigError(f"{where}: the same token as line {seen[token]}")
        seen[token] = number
        pairs.append((role, token))
    if not pairs:
        raise ConfigError(f"{source}: no tokens (lines 'ROLE TOKEN'); every request would fail")
    return pairs


class ApiTokens:
    """The installed tokens of a node, read from a file (see the module docstring).

    One object serves the HTTP API and the gRPC ``shoal.v1.Cache`` service: it
    checks credentials and counts refusals per port and reason.

    Args:
        path: the tokens file.

    Raises:
        ConfigError: the file cannot be read or is malformed (see :func:`parse_tokens`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # The key of this process's token hashes: a digest in memory is worth
        # nothing elsewhere, and no two processes hash a token alike.
        self._key = os.urandom(32)
        self._entries: tuple[tuple[bytes, str], ...] = ()
        self._failures: dict[tuple[str, str], int] = {}
        self._listeners: list[Callable[[], None]] = []
        self.generation = 0
        """Changes at each successful :meth:`reload` (what a cached check compares)."""
        self._install(self._read())

    def __repr__(self) -> str:
        return f"<ApiTokens {self.path!r}: {len(self._entries)} tokens>"

    @property
    def count(self) -> int:
        """How many tokens are installed."""
        return len(self._entries)

    def _read(self) -> list[tuple[str, bytes]]:
        try:
            with open(self.path, encoding="utf-8") as file:
                mode = os.fstat(file.fileno()).st_mode
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ConfigError(f"cannot read the API tokens file {self.path}: {detail}") from None
        pairs = parse_tokens(text, source=self.path)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "the API tokens file %s can be read by other users (mode %o); chmod 600 it",
                self.path,
                stat.S_IMODE(mode),
            )
        return pairs

    def _digest(self, token: bytes) -> bytes:
        return hashlib.blake2b(token, key=self._key, digest_size=32).digest()

    def _install(self, pairs: list[tuple[str, bytes]]) -> None:
        self._entries = tuple((self._digest(token), role) for role, token in pairs)
        self.generation += 1
        for listener in tuple(self._listeners):
            listener()

    def reload(self) -> None:
        """Read the file again and use its tokens from the next check on; a removed
        token fails at once, requests already admitted are not affected.

        Raises:
            ConfigError: the file cannot be read or is malformed; the tokens in
                use stay as they were.
        """
        self._install(self._read())

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every successful reload (a server forgets the
        credentials it had verified); returns the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def identify(self, authorization: bytes | str | None) -> Credentials:
        """What an ``Authorization`` value (``Bearer TOKEN``) grants: its token's
        role, or why there is none. Every installed token is compared, in constant
        time each, whatever the outcome."""
        if authorization is None:
            return _MISSING
        if isinstance(authorization, str):
            try:
                authorization = authorization.encode("latin-1")
            except UnicodeEncodeError:
                return _MALFORMED
        scheme, _, token = authorization.strip(_OWS).partition(b" ")
        token = token.lstrip(b" ")
        if (
            scheme.lower() != b"bearer"
            or not token
            or len(token) > MAX_TOKEN_LENGTH
            or not _TOKEN.fullmatch(token)
        ):
            return _MALFORMED
        digest = self._digest(token)
        found: str | None = None
        for installed, role in self._entries:
            if hmac.compare_digest(digest, installed):
                found = role  # no break: every token takes the same time
        return _UNKNOWN if found is None else Credentials(found, None)

    def accepts(self, authorization: bytes) -> bool:
        """Whether ``authorization`` holds an installed token (any role); not counted."""
        return self.identify(authorization).role is not None

    def check(self, authorization: bytes | str | None, needed: str, *, port: str) -> str | None:
        """Whether a request with ``authorization`` may do what needs role ``needed``.

        Returns:
            None when it may; else the reason it may not (one of :data:`REASONS`),
            counted for ``port`` (``api`` or ``grpc``).
        """
        credentials = self.identify(authorization)
        role = credentials.role
        if role is not None:
            if _RANK[role] >= _RANK[needed]:
                return None
            reason = "forbidden"
        else:
            reason = credentials.reason or "unknown"
        self.count_failure(port, reason)
        return reason

    def count_failure(self, port: str, reason: str) -> None:
        """Count a refused request on ``port`` for ``reason``."""
        key = (port, reason)
        self._failures[key] = self._failures.get(key, 0) + 1

    def failures(self) -> dict[tuple[str, str], int]:
        """Refused requests so far, per (port, reason)."""
        return dict(self._failures)
