"""Pure parsing helpers of the HTTP API: paths, queries, TTLs, targets, serialization."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal._http import Request, Response
from shoal._http.server import _encode, _split_target
from shoal.api.http import parse_key_path, parse_query, parse_ttl
from shoal.wire import percent_decode


class TestPercentDecode:
    @pytest.mark.parametrize(
        ("raw", "plus_is_space", "expected"),
        [
            (b"plain", False, "plain"),
            (b"a%2Fb", False, "a/b"),
            (b"a%2fb", False, "a/b"),
            (b"a+b", False, "a+b"),
            (b"a+b", True, "a b"),
            (b"a%2Bb", True, "a+b"),
            (b"%20", False, " "),
            (b"caf%C3%A9", False, "café"),
            (b"caf\xc3\xa9", False, "café"),
            (b"%25", False, "%"),
            (b"", False, ""),
        ],
    )
    def test_decodes(self, raw: bytes, plus_is_space: bool, expected: str) -> None:
        """Escapes decode to UTF-8; '+' is a space only when asked."""
        assert percent_decode(raw, plus_is_space=plus_is_space) == expected

    @pytest.mark.parametrize(
        "raw", [b"%", b"%2", b"%zz", b"a%g0", b"100%", b"%C3%28", b"%FF", b"\xff", b"%%41"]
    )
    def test_rejects(self, raw: bytes) -> None:
        """Malformed escapes and invalid UTF-8 raise ValueError."""
        with pytest.raises(ValueError, match=r"percent-escape|UTF-8"):
            percent_decode(raw)

    @given(st.text())
    def test_round_trips_rfc3986_escaping(self, text: str) -> None:
        """Whatever a client escapes as a path segment decodes back to the same text."""
        raw = quote(text, safe="").encode("ascii")  # st.text() has no lone surrogates
        assert percent_decode(raw) == text


class TestParseQuery:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (b"", {}),
            (b"key=Tom", {"key": ["Tom"]}),
            (b"key=Tom&group=scores", {"key": ["Tom"], "group": ["scores"]}),
            (b"key=a+b%2Bc", {"key": ["a b+c"]}),
            (b"key=a%26b%3Dc", {"key": ["a&b=c"]}),
            (b"key=a=b", {"key": ["a=b"]}),
            (b"flag", {"flag": [""]}),
            (b"key=", {"key": [""]}),
            (b"&&key=1&&", {"key": ["1"]}),
            (b"k=1&k=2", {"k": ["1", "2"]}),
            (b"na%6De=v", {"name": ["v"]}),
        ],
    )
    def test_parses(self, raw: bytes, expected: dict[str, list[str]]) -> None:
        """parse_qs rules with blank values kept."""
        assert parse_query(raw) == expected

    @pytest.mark.parametrize("raw", [b"key=%zz", b"key=%", b"%zz=1", b"key=%C3"])
    def test_rejects(self, raw: bytes) -> None:
        """A bad escape anywhere is an error, not a silently kept '%'."""
        with pytest.raises(ValueError, match=r"percent-escape|UTF-8"):
            parse_query(raw)


class TestParseKeyPath:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            (b"/v1/groups/scores/keys/Tom", ("scores", "Tom")),
            (b"/v1/groups/scores/keys/a%2Fb", ("scores", "a/b")),
            (b"/v1/groups/scores/keys/a+b", ("scores", "a+b")),
            (b"/v1/groups/sc%6Fres/keys/%20", ("scores", " ")),
            (b"/v1/groups/scores/keys/", ("scores", "")),
            (b"/v1/groups//keys/k", ("", "k")),
        ],
    )
    def test_matches(self, path: bytes, expected: tuple[str, str]) -> None:
        """Group and key are single segments, each percent-decoded."""
        assert parse_key_path(path) == expected

    @pytest.mark.parametrize(
        "path",
        [
            b"/v1/groups/scores",
            b"/v1/groups/scores/",
            b"/v1/groups/scores/keys",
            b"/v1/groups/scores/key/Tom",
            b"/v1/groups/scores/keys/a/b",
            b"/v2/groups/scores/keys/Tom",
            b"/api",
        ],
    )
    def test_other_shapes(self, path: bytes) -> None:
        """Another shape of path is not this route (None, so a 404)."""
        assert parse_key_path(path) is None

    @pytest.mark.parametrize(
        "path", [b"/v1/groups/scores/keys/%zz", b"/v1/groups/%/keys/k", b"/v1/groups/g/keys/%FF"]
    )
    def test_rejects(self, path: bytes) -> None:
        """A bad escape in either segment is an error."""
        with pytest.raises(ValueError, match=r"percent-escape|UTF-8"):
            parse_key_path(path)


class TestParseTtl:
    @pytest.mark.parametrize(
        ("text", "expected"), [("5", 5.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0)]
    )
    def test_accepts(self, text: str, expected: float) -> None:
        """Plain positive decimal numbers."""
        assert parse_ttl(text) == expected

    @pytest.mark.parametrize(
        "text", ["", "0", "0.0", "-1", "+1", "abc", "inf", "nan", "1e999", "1_000", " 5", "\u0665"]
    )
    def test_rejects(self, text: str) -> None:
        """Zero, negatives, non-finite values and anything float() is lenient about."""
        with pytest.raises(ValueError, match="ttl must be"):
            parse_ttl(text)


class TestTargetsAndSerialization:
    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            (b"/api?key=Tom", (b"/api", b"key=Tom")),
            (b"/api", (b"/api", b"")),
            (b"/api?", (b"/api", b"")),
            (b"/a?b?c", (b"/a", b"b?c")),
            (b"/a#frag", (b"/a", b"")),
            (b"*", (b"*", b"")),
            (b"http://example.com/p?q=1", (b"/p", b"q=1")),
            (b"http://example.com", (b"/", b"")),
        ],
    )
    def test_split_target(self, target: bytes, expected: tuple[bytes, bytes]) -> None:
        """Origin-, absolute- and asterisk-form targets split into raw path and query."""
        assert _split_target(target) == expected

    def test_encode(self) -> None:
        """One status line, the fixed headers, extra headers, then the body."""
        response = Response(404, b'{"x":1}', "application/json", (("Allow", "GET"),))
        header, body = _encode(response, b"DATE", head=False, close=True, keep_alive_header=False)
        assert body == b""
        assert header == (
            b"HTTP/1.1 404 Not Found\r\nServer: shoal\r\nDate: DATE\r\n"
            b"Content-Type: application/json\r\nContent-Length: 7\r\nAllow: GET\r\n"
            b'Connection: close\r\n\r\n{"x":1}'
        )

    def test_encode_head_and_no_content(self) -> None:
        """HEAD keeps Content-Length but drops the body; 204 has neither."""
        header, body = _encode(
            Response(200, b"abc"), b"D", head=True, close=False, keep_alive_header=True
        )
        assert header.endswith(b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\n")
        assert body == b""
        header, _ = _encode(Response(204), b"D", head=False, close=False, keep_alive_header=False)
        assert header == b"HTTP/1.1 204 No Content\r\nServer: shoal\r\nDate: D\r\n\r\n"

    def test_large_body_is_not_copied(self) -> None:
        """A big body is returned apart from the header bytes."""
        big = b"x" * (1 << 20)
        header, body = _encode(
            Response(200, big), b"D", head=False, close=False, keep_alive_header=False
        )
        assert body is big
        assert header.endswith(b"\r\n\r\n")

    @pytest.mark.parametrize(
        "headers", [(("X-A", "a\r\nInjected: 1"),), (("X-\nB", "v"),), (("X-C", "\0"),)]
    )
    def test_header_injection_is_refused(self, headers: tuple[tuple[str, str], ...]) -> None:
        """CR, LF and NUL never reach the wire."""
        with pytest.raises(ValueError, match="invalid character"):
            Response(200, b"", headers=headers)

    @pytest.mark.parametrize("status", [100, 199, 600, 0])
    def test_status_range(self, status: int) -> None:
        """Only final statuses can be answered."""
        with pytest.raises(ValueError, match="200-599"):
            Response(status)

    def test_request_header_lookup(self) -> None:
        """Header names match case-insensitively; the first value wins."""
        request = Request("GET", b"/", headers=[(b"X-Thing", b"1"), (b"x-thing", b"2")])
        assert request.header("x-THING") == b"1"
        assert request.header(b"X-Thing") == b"1"
        assert request.header("absent") is None
