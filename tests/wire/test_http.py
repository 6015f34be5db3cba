"""Paths and statuses of the HTTP peer protocol, against what Go nodes sent and answered."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.go_captures import (
    HTTP_CAPTURES,
    Exchange,
    Missing,
    capture_group,
    driven_keys,
    exchanges,
    params,
)
from shoal.wire import (
    BAD_REQUEST_MESSAGE,
    DEFAULT_BASE_PATH,
    ERROR_HEADERS,
    PROTOBUF_CONTENT_TYPE,
    REMOVE_KEYS_SEGMENT,
    STATUS_BAD_REQUEST,
    STATUS_LOAD_FAILED,
    STATUS_NOT_FOUND,
    PathOutsideBase,
    PeerPath,
    PeerReply,
    RemoteProtocolError,
    build_peer_path,
    build_remove_keys_path,
    classify_get_status,
    decode_get_response,
    error_body,
    no_such_group_message,
    parse_peer_path,
)

BASE = DEFAULT_BASE_PATH.encode()


def captured_value(key: str) -> bytes:
    """What the capture's loader returned for ``key``: (hex(sha256(K)) * 2)[:100]."""
    return (hashlib.sha256(key.encode()).hexdigest() * 2)[:100].encode()


def _exchange(row: Any) -> Exchange:
    if isinstance(row, Missing):
        row.skip_or_fail()
    assert isinstance(row, Exchange)
    return row


EXCHANGES = exchanges()
EXCHANGE_PARAMS = params(HTTP_CAPTURES, EXCHANGES, [ex.what for ex in EXCHANGES])


def _go_client_bug(ex: Exchange) -> dict[str, Any] | None:
    """The driven key whose capture shows the golang client's '+' for a space, if this is it."""
    for driven in driven_keys():
        if not driven["value_correct"] and f"'{driven['key']}'" in ex.what:
            return driven
    return None


# --------------------------------------------------------------- captures


@pytest.mark.parametrize("row", EXCHANGE_PARAMS)
def test_captured_request_paths(row: Any) -> None:
    """Every captured path parses as the Go peer read it; building it gives the same bytes.

    A 200 proves which key the Go peer served: its body is the loader's value
    for that key. The one path that does not rebuild byte for byte is the golang
    client's ``+`` for a space (``url.QueryEscape``): shoal sends ``%20``.
    """
    ex = _exchange(row)
    if ex.status == STATUS_BAD_REQUEST:
        with pytest.raises(RemoteProtocolError) as info:
            parse_peer_path(ex.target)
        assert info.value.error_status_hint == ex.status
        assert BAD_REQUEST_MESSAGE in str(info.value)
        return
    group, key = parse_peer_path(ex.target)
    if ex.status == STATUS_NOT_FOUND:
        assert group != capture_group()  # the unknown-group case: found by the node, not here
    else:
        assert ex.status == 200
        assert group == capture_group()
        assert ex.decoded_value == captured_value(key)
        assert decode_get_response(ex.body).value == ex.decoded_value
    built = build_peer_path(DEFAULT_BASE_PATH, group, key).encode("ascii")
    bug = _go_client_bug(ex)
    if bug is None:
        assert built == ex.target
    else:
        # The key the user asked for went out wrong; shoal's path for it reads back right.
        assert key == bug["value_matches_key"] != bug["key"]
        asked = build_peer_path(DEFAULT_BASE_PATH, group, bug["key"]).encode("ascii")
        assert asked != ex.target
        assert asked == ex.target.replace(b"+", b"%20")
        assert parse_peer_path(asked) == (group, bug["key"])
        assert parse_peer_path(built) == (group, key)


def test_every_driven_key_was_captured() -> None:
    """The three keys driven through the Go node are the three Go-client captures."""
    keys = driven_keys()
    if not keys:
        Missing(HTTP_CAPTURES).skip_or_fail()
    paths = {ex.target for ex in EXCHANGES if "Go peer fetch" in ex.what}
    assert len(paths) == len(keys) == 3
    served = {parse_peer_path(p).key for p in paths}
    assert served == {k["value_matches_key"] for k in keys}


@pytest.mark.parametrize("row", EXCHANGE_PARAMS)
def test_captured_statuses_and_bodies(row: Any) -> None:
    """Error bodies and headers are Go's http.Error; a 200 is application/x-protobuf."""
    ex = _exchange(row)
    head = ex.response_head.lower()
    if ex.status == 200:
        assert f"content-type: {PROTOBUF_CONTENT_TYPE}\r\n" in head
        assert classify_get_status(ex.status) is PeerReply.OK
        return
    for name, value in ERROR_HEADERS:
        assert f"{name}: {value}\r\n".lower() in head
    if ex.status == STATUS_BAD_REQUEST:
        assert ex.body == error_body(BAD_REQUEST_MESSAGE)
        assert classify_get_status(ex.status) is PeerReply.FAILED
    else:
        assert ex.status == STATUS_NOT_FOUND
        group = parse_peer_path(ex.target).group
        assert ex.body == error_body(no_such_group_message(group))
        assert classify_get_status(ex.status) is PeerReply.NOT_FOUND


# ------------------------------------------------------------- parse rules

PARSE_CASES = [
    (b"/_groupcache/scores/Tom", ("scores", "Tom")),
    (b"/_groupcache/scores/", ("scores", "")),
    (b"/_groupcache//k", ("", "k")),
    (b"/_groupcache/scores/a/b/c", ("scores", "a/b/c")),
    (b"/_groupcache/scores/a%2Fb", ("scores", "a/b")),
    (b"/_groupcache/sc%2Fores/k", ("sc/ores", "k")),
    (b"/_groupcache/scores/a+b", ("scores", "a+b")),
    (b"/_groupcache/scores/a%20b", ("scores", "a b")),
    (b"/_groupcache/scores/a%2bb%2B", ("scores", "a+b+")),
    (b"/_groupcache/scores/%25", ("scores", "%")),
    (b"/_groupcache/scores/%00", ("scores", "\x00")),
    (b"/_groupcache/scores/caf%C3%A9", ("scores", "café")),
    (b"/_groupcache/scores/caf\xc3\xa9", ("scores", "café")),
    (b"/_groupcache/scores/k?x=1", ("scores", "k")),
    (b"/_groupcache/scores/..", ("scores", "..")),
    (b"/_groupcache/scores/_remove-keys/", ("scores", "_remove-keys/")),
]


@pytest.mark.parametrize(("raw", "expected"), PARSE_CASES)
def test_parse(raw: bytes, expected: tuple[str, str]) -> None:
    """Split the raw path at the first '/', then decode; '+' stays '+'; never normalise."""
    assert parse_peer_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"/_groupcache/scores",
        b"/_groupcache/",
        b"/_groupcache/scores/%",
        b"/_groupcache/scores/%2",
        b"/_groupcache/scores/%zz",
        b"/_groupcache/scores/%+1",
        b"/_groupcache/sc%g0/k",
        b"/_groupcache/scores/%C3%28",
        b"/_groupcache/scores/%FF",
        b"/_groupcache/scores/\xff",
        b"/_groupcache/scores/a\x00b",
        b"/_groupcache/scores/a\x7fb",
        b"/_groupcache/scores/a\tb",
    ],
)
def test_parse_rejects(raw: bytes) -> None:
    """No key segment, a malformed escape, a control byte or bad UTF-8: 400."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_peer_path(raw)
    assert not isinstance(info.value, PathOutsideBase)
    assert info.value.error_status_hint == 400


@pytest.mark.parametrize(
    "raw", [b"/", b"/_groupcache", b"/_groupcachex/g/k", b"/api/g/k", b"_groupcache/g/k", b""]
)
def test_parse_outside_base(raw: bytes) -> None:
    """A path not under the base is its own error, hint 404 (no redirect, as in Go's mux)."""
    with pytest.raises(PathOutsideBase) as info:
        parse_peer_path(raw)
    assert info.value.error_status_hint == 404


def test_custom_base() -> None:
    """The base path is configurable; it must start and end with '/'."""
    assert parse_peer_path(b"/cache/v1/g/k", b"/cache/v1/") == ("g", "k")
    with pytest.raises(PathOutsideBase):
        parse_peer_path(b"/_groupcache/g/k", b"/cache/v1/")
    with pytest.raises(ValueError, match="base"):
        parse_peer_path(b"/cache/g/k", b"/cache")
    assert build_peer_path("/cache/v1/", "g", "k") == "/cache/v1/g/k"


def test_remove_keys_marker() -> None:
    """A POST to {base}{group}/_remove-keys/ is a remove-keys request (decoded key prefix)."""
    path = build_remove_keys_path(DEFAULT_BASE_PATH, "my group")
    assert path == "/_groupcache/my%20group/_remove-keys/"
    parsed = parse_peer_path(path.encode())
    assert parsed == PeerPath("my group", REMOVE_KEYS_SEGMENT)
    assert parsed.is_remove_keys
    assert parse_peer_path(b"/_groupcache/g/_remove-keys%2F").is_remove_keys
    assert not parse_peer_path(b"/_groupcache/g/_remove-keys").is_remove_keys
    assert not parse_peer_path(b"/_groupcache/g/x_remove-keys/").is_remove_keys


# ------------------------------------------------------------- build rules

BUILD_CASES = [
    ("key:2", "key%3A2"),
    ("a/b?c&d=é+%22", "a%2Fb%3Fc%26d%3D%C3%A9%2B%2522"),
    ("user 42 #7", "user%2042%20%237"),
    ("AZaz09-._~", "AZaz09-._~"),
    ("!$'()*,;=@[]", "%21%24%27%28%29%2A%2C%3B%3D%40%5B%5D"),
    ("", ""),
    ("\x00\x7f", "%00%7F"),
    ("🙂", "%F0%9F%99%82"),
]


@pytest.mark.parametrize(("key", "escaped"), BUILD_CASES)
def test_build(key: str, escaped: str) -> None:
    """Everything but A-Za-z0-9-._~ is %XX (upper case): Go's QueryEscape, with %20 for space."""
    assert build_peer_path(DEFAULT_BASE_PATH, "scores", key) == f"/_groupcache/scores/{escaped}"
    assert build_peer_path(DEFAULT_BASE_PATH, key, "k") == f"/_groupcache/{escaped}/k"


# --------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "reply"),
    [
        (200, PeerReply.OK),
        (404, PeerReply.NOT_FOUND),
        (503, PeerReply.LOAD_FAILED),
        (500, PeerReply.LOAD_FAILED),
        (400, PeerReply.FAILED),
        (405, PeerReply.FAILED),
        (413, PeerReply.FAILED),
        (502, PeerReply.FAILED),
        (504, PeerReply.FAILED),
        (301, PeerReply.FAILED),
    ],
)
def test_classify_get_status(status: int, reply: PeerReply) -> None:
    """404 NotFound, 500/503 loader failed (golang+mailgun / groupcache-go), else failed."""
    assert classify_get_status(status) is reply


def test_server_statuses_round_trip() -> None:
    """What a shoal server answers is read back as the same outcome by a shoal client."""
    assert classify_get_status(STATUS_NOT_FOUND) is PeerReply.NOT_FOUND
    assert classify_get_status(STATUS_LOAD_FAILED) is PeerReply.LOAD_FAILED
    assert classify_get_status(STATUS_BAD_REQUEST) is PeerReply.FAILED
    assert error_body("no such group: x") == b"no such group: x\n"


# -------------------------------------------------------------- properties


@given(st.text(), st.text())
def test_build_then_parse(group: str, key: str) -> None:
    """Any text group and key survive build_peer_path then parse_peer_path."""
    path = build_peer_path(DEFAULT_BASE_PATH, group, key)
    assert path.isascii()
    assert parse_peer_path(path.encode("ascii")) == (group, key)


@given(st.text(), st.text())
def test_build_matches_rfc3986_quote(group: str, key: str) -> None:
    """The escaping is RFC 3986 with only the unreserved characters left alone."""
    assert build_peer_path("/b/", group, key) == f"/b/{quote(group, safe='')}/{quote(key, safe='')}"


@given(st.binary(max_size=40))
def test_any_raw_path_parses_or_raises_protocol_error(tail: bytes) -> None:
    """Whatever follows the base, parsing returns text or raises RemoteProtocolError."""
    try:
        group, key = parse_peer_path(BASE + tail)
    except RemoteProtocolError:
        return
    assert isinstance(group, str)
    assert isinstance(key, str)
