"""Request paths: the one strict percent-decoder, and the peer protocol's paths.

Rules:
    * A raw path is split first and decoded after, so ``%2F`` is a ``/`` inside a
      segment and never a separator.
    * :func:`percent_decode` is every front end's decoder (peer paths here, the
      HTTP API's paths and queries): ``%XX`` with two hex digits, then UTF-8;
      ``+`` stays ``+`` except in a query (``plus_is_space``); a malformed escape,
      a raw control byte or text that is not UTF-8 is a
      :class:`~shoal.wire.errors.RemoteProtocolError` (hint 400).
    * Building escapes every byte but RFC 3986's unreserved ones (upper-case hex).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from .errors import LocalProtocolError, PathOutsideBase, RemoteProtocolError
from .messages import REMOVE_KEYS_SEGMENT, PeerPath

__all__ = [
    "DEFAULT_BASE_PATH",
    "BAD_REQUEST_MESSAGE",
    "percent_decode",
    "parse_peer_path",
    "build_peer_path",
    "build_remove_keys_path",
]

DEFAULT_BASE_PATH = "/_groupcache/"
"""Where Go groupcache serves its peers (``defaultBasePath``)."""

BAD_REQUEST_MESSAGE = "bad request"
"""What Go answers (status 400) to a path without a key segment."""


# ---------------------------------------------------------------------- decoding

# Two hex digits -> the byte they spell; anything else after '%' is malformed.
_UNHEX = {
    (a + b).encode(): bytes((int(a + b, 16),))
    for a in "0123456789abcdefABCDEF"
    for b in "0123456789abcdefABCDEF"
}
# Control bytes Go's URL parser refuses anywhere in a request target.
_CTL = bytes(range(0x20)) + b"\x7f"


def percent_decode(raw: bytes, what: str = "component", *, plus_is_space: bool = False) -> str:
    """Decode one raw URL component: ``%XX`` escapes, then UTF-8.

    Args:
        raw: the component exactly as it appeared in the request target.
        what: what it is, for the error message (``"key of the path"``).
        plus_is_space: decode ``+`` as a space (a query), not as ``+`` (a path);
            ``%2B`` is ``+`` either way.

    Raises:
        RemoteProtocolError: a ``%`` not followed by two hex digits, a raw
            control byte, or bytes that are not UTF-8 (hint 400; a ValueError).
    """
    if raw.translate(None, _CTL) != raw:
        raise RemoteProtocolError(f"control character in the {what}")
    if plus_is_space and b"+" in raw:
        raw = raw.replace(b"+", b" ")  # before unescaping, so "%2B" stays "+"
    if b"%" in raw:
        pieces = raw.split(b"%")
        out = [pieces[0]]
        for piece in pieces[1:]:
            byte = _UNHEX.get(piece[:2])
            if byte is None:
                raise RemoteProtocolError(f"malformed percent-escape in the {what}")
            out.append(byte)
            out.append(piece[2:])
        raw = b"".join(out)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"the {what} is not UTF-8") from None


_DEFAULT_BASE = DEFAULT_BASE_PATH.encode()


def parse_peer_path(raw_path: bytes, base: bytes = _DEFAULT_BASE) -> PeerPath:
    """Split a raw request path ``{base}{group}/{key}`` into group and key.

    The raw path is split first and decoded after: strip ``base``, split at the
    first ``/`` (so a group cannot contain a raw ``/``, while a key may hold raw
    ones, as Go allows), then percent-decode each part. ``%2F`` is ``/``; ``+``
    stays ``+``, never a space. A query string (``?...``) is dropped, as Go
    keeps it out of ``URL.Path``. An empty key (``{base}{group}/``) is returned
    as ``""``, which Go serves; whether it is acceptable is the group's call.

    Why ``+`` stays ``+``: golang/groupcache clients escape keys with
    ``url.QueryEscape``, so the key ``user 42 #7`` goes out as
    ``user+42+%237``, and golang servers, which read the decoded
    ``URL.Path`` where ``+`` is literal, serve the key ``user+42+#7`` (captured
    from real nodes). Decoding the same way keeps every node of a mixed cluster
    serving one key per path. shoal's own client sends ``%20`` for a space
    (:func:`build_peer_path`), which every server decodes to a space.

    Args:
        raw_path: the request target exactly as received (origin form, not
            decoded), e.g. ``b"/_groupcache/scores/key%3A2"``.
        base: the base path; starts and ends with ``/``.

    Returns:
        ``PeerPath(group, key)``; check :attr:`PeerPath.is_remove_keys` for a POST.

    Raises:
        PathOutsideBase: the path is not under ``base`` (hint 404; Go's mux
            would not route it to groupcache, and shoal never redirects).
        RemoteProtocolError: no ``/`` after the group (Go answers 400 "bad
            request"), a malformed escape, a control character, or text that is
            not UTF-8 (hint 400).
    """
    if not base.endswith(b"/") or not base.startswith(b"/"):
        raise ValueError(f"a base path starts and ends with '/': {base!r}")
    query = raw_path.find(b"?")
    if query >= 0:
        raw_path = raw_path[:query]
    if not raw_path.startswith(base):
        raise PathOutsideBase(f"path is not under {base.decode('latin-1')!r}")
    rest = raw_path[len(base) :]
    slash = rest.find(b"/")
    if slash < 0:
        raise RemoteProtocolError(f"{BAD_REQUEST_MESSAGE}: no key in the path")
    group = percent_decode(rest[:slash], "group of the path")
    return PeerPath(group, percent_decode(rest[slash + 1 :], "key of the path"))


# ---------------------------------------------------------------------- building

# Text made only of RFC 3986 unreserved characters needs no escaping.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _escape(text: str, what: str) -> str:
    if _UNRESERVED.fullmatch(text):
        return text  # what quote() returns for it, without its work
    try:
        return quote(text, safe="")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text: {exc}") from exc


def build_peer_path(base: str, group: str, key: str) -> str:
    """The path to request ``key`` of ``group`` from a peer: ``{base}{group}/{key}``.

    Group and key are escaped as RFC 3986 path segments: every byte of their
    UTF-8 except the unreserved ``A-Za-z0-9-._~`` becomes ``%XX`` (upper-case
    hex), so ``:`` is ``%3A``, ``/`` is ``%2F``, ``+`` is ``%2B`` and a space is
    ``%20``. That is byte for byte what golang/groupcache clients send (Go's
    ``url.QueryEscape``), except for the space, which they send as ``+`` and Go
    servers then read as a literal ``+`` (see :func:`parse_peer_path`).
    :func:`parse_peer_path` reads the path back as the same group and key, and
    so do Go servers, except where Go's own path handling gets in the way: they
    split the decoded path, so a group holding ``/`` breaks, and Go's ServeMux
    redirects a key that is a ``.`` or ``..`` segment.

    The result is already escaped: an HTTP client must send it as is, not
    escape it again.

    Raises:
        LocalProtocolError: group or key is not encodable as UTF-8.
    """
    return base + _escape(group, "group") + "/" + _escape(key, "key")


def build_remove_keys_path(base: str, group: str) -> str:
    """The path of a remove-keys POST: ``{base}{group}/_remove-keys/`` (groupcache-go v3).

    Raises:
        LocalProtocolError: group is not encodable as UTF-8.
    """
    return base + _escape(group, "group") + "/" + REMOVE_KEYS_SEGMENT
