"""The checks of untrusted membership inputs: member URLs and bounded JSON."""

from __future__ import annotations

import pytest

from shoal.membership import MAX_URL_LENGTH, BadInput, check_member_url, load_json


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8001", "https://cache.example:443", "http://[::1]:8001", "http://h:1/base"],
)
def test_good_member_urls_pass(url: str) -> None:
    assert check_member_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://",
        "http://:8001",
        "ftp://h:1",
        "grpc://h:1",
        "http://h:0",
        "http://h:65536",
        "http://h:port",
        "http://user@h:1",
        "http://user:pw@h:1",
        "http://h:1?q=1",
        "http://h:1?",
        "http://h:1#f",
        "http://h:1\n",
        "http://hé:1",
        "http://h :1",
        "http://h:1/" + "p" * MAX_URL_LENGTH,
        5,
        None,
    ],
)
def test_bad_member_urls_are_refused(url: object) -> None:
    with pytest.raises(BadInput):
        check_member_url(url)


def test_grpc_urls_with_the_grpc_transport() -> None:
    assert check_member_url("grpc://h:1", grpc=True) == "grpc://h:1"
    assert check_member_url("http://h:1/", grpc=True) == "http://h:1/"
    for url in ("grpc://h", "http://h:1/base"):
        with pytest.raises(BadInput):
            check_member_url(url, grpc=True)


def test_load_json_bounds_size_and_depth() -> None:
    assert load_json(b'{"a":[1,{"b":2}]}', max_bytes=100, max_depth=3) == {"a": [1, {"b": 2}]}
    # Brackets inside strings are text, not nesting.
    doc = b'{"a":"[[[[{{{{","b\\"[[[[":1}'
    assert load_json(doc, max_bytes=100, max_depth=1) == {"a": "[[[[{{{{", 'b"[[[[': 1}
    for data, why in [
        (b"[" * 90, "deeper"),
        (b"[[[[1]]]]", "deeper"),
        (b'{"a":' * 3 + b"1" + b"}" * 3, "deeper"),
        (b"1" * 101, "more than"),
        (b"{", "not JSON"),
        (b"\xff", "not JSON"),
        (b"1" + b"0" * 5000, "more than"),
    ]:
        with pytest.raises(BadInput, match=why):
            load_json(data, max_bytes=100, max_depth=2)
    with pytest.raises(BadInput, match="not JSON"):
        load_json(b"1" * 5000, max_bytes=10_000, max_depth=2)  # past int's digit limit
