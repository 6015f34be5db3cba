"""The one percent-decoder: the peer protocol's paths and the HTTP API's paths agree."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.api.http import parse_key_path, parse_query
from shoal.wire import RemoteProtocolError, parse_peer_path, percent_decode

# Raw segment bytes: escapes (good and bad), '+', control bytes, non-ASCII and bad UTF-8.
_SEGMENT = st.lists(
    st.sampled_from(
        [
            *(b"a", b"Z", b"+", b"%", b"%2", b"%2F", b"%2b", b"%zz", b"%C3%A9", b"%FF"),
            *(b"\xc3\xa9", b"\xff", b"\x00", b"\t", b"\x1f", b"\x7f", b" ", b"~", b"."),
        ]
    ),
    max_size=8,
).map(b"".join)


def _decoded(parse: Callable[[], object]) -> object:
    """What a parse yields, or "refused"."""
    try:
        return parse()
    except ValueError:
        return "refused"


@settings(max_examples=300, deadline=None)
@given(_SEGMENT, _SEGMENT)
def test_peer_and_api_paths_decode_alike(group: bytes, key: bytes) -> None:
    """A group and key decode to the same text, or are refused alike, on both front ends."""
    peer = _decoded(lambda: tuple(parse_peer_path(b"/_groupcache/" + group + b"/" + key)))
    api = _decoded(lambda: parse_key_path(b"/v1/groups/" + group + b"/keys/" + key))
    assert peer == api


@pytest.mark.parametrize("raw", [b"a\x00b", b"a\x7fb", b"a\tb", b"%zz", b"%C3%28"])
def test_refusals_are_protocol_errors_naming_the_part(raw: bytes) -> None:
    """A refusal is a RemoteProtocolError (a ValueError) with hint 400 naming the part."""
    with pytest.raises(RemoteProtocolError, match="the key of the path") as info:
        percent_decode(raw, "key of the path")
    assert info.value.error_status_hint == 400
    with pytest.raises(ValueError, match="the group of the path"):
        parse_key_path(b"/v1/groups/" + raw + b"/keys/k")


def test_plus_is_a_space_only_in_a_query() -> None:
    """'+' is a space in a query and itself in a path; '%2B' is '+' everywhere."""
    assert parse_query(b"key=a+b%2Bc") == {"key": ["a b+c"]}
    assert parse_key_path(b"/v1/groups/g/keys/a+b%2Bc") == ("g", "a+b+c")
    assert parse_peer_path(b"/_groupcache/g/a+b%2Bc") == ("g", "a+b+c")
    assert percent_decode(b"a+b", plus_is_space=True) == "a b"
