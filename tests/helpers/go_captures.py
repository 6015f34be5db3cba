"""Captures of real Go groupcache nodes (the shared vectors folder beside the repository).

The files are not part of the repository. When they are missing a test that
needs them is skipped, or fails when ``CI=true``: CI must never pass quietly
without them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shoal.wire import GetRequest, GetResponse, SetRequest

# tests/helpers/go_captures.py -> the folder that holds the repository -> shared/vectors
VECTORS_DIR = Path(__file__).resolve().parents[3] / "shared" / "vectors"
HTTP_CAPTURES = "groupcache_http_wire.json"
PROTO_VECTORS = "ring_and_proto_vectors.json"


@dataclass(frozen=True)
class Missing:
    """The one parameter a vector-driven test gets when its vectors file is missing."""

    name: str

    def skip_or_fail(self) -> None:
        """Skip the calling test, or fail it under ``CI=true``."""
        missing_vectors(self.name)


def missing_vectors(name: str) -> None:
    """Skip the calling test, or fail it under ``CI=true``, for a missing vectors file."""
    message = f"test vectors not found: {VECTORS_DIR / name}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def load(name: str) -> Any:
    """The parsed JSON vectors file ``name``, or None when it is missing."""
    path = VECTORS_DIR / name
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def params(name: str, rows: list[Any], ids: list[str]) -> list[Any]:
    """Parametrize over ``rows``, or over one ``MISSING`` row when the file is missing."""
    if load(name) is None:
        return [pytest.param(Missing(name), id=f"missing-{name}")]
    return [pytest.param(row, id=row_id) for row, row_id in zip(rows, ids, strict=True)]


# ----------------------------------------------------------------- HTTP captures


@dataclass(frozen=True)
class Exchange:
    """One captured HTTP request to a Go peer and the peer's answer."""

    what: str
    method: str
    target: bytes
    request_text: str
    status: int
    response_head: str
    body: bytes
    decoded_value: bytes | None
    """The GetResponse value the capture tool decoded from a 200 body."""


def exchanges() -> list[Exchange]:
    """Every captured exchange ([] when the file is missing)."""
    data = load(HTTP_CAPTURES)
    if data is None:
        return []
    out = []
    for ex in data["exchanges"]:
        method, target, _version = ex["request_text"].split("\r\n", 1)[0].split(" ")
        head = ex["response_head_text"]
        decoded = ex.get("response_body_decoded")
        out.append(
            Exchange(
                what=ex["what"],
                method=method,
                target=target.encode("ascii"),
                request_text=ex["request_text"],
                status=int(head.split(" ", 2)[1]),
                response_head=head,
                body=bytes.fromhex(ex["response_body_hex"]),
                decoded_value=(
                    None if decoded is None else decoded["GetResponse.value(1)"].encode()
                ),
            )
        )
    return out


def driven_keys() -> list[dict[str, Any]]:
    """The keys the capture drove through a Go node, with the key each peer served."""
    data = load(HTTP_CAPTURES)
    return [] if data is None else list(data["driven_keys"])


def capture_group() -> str:
    data = load(HTTP_CAPTURES)
    return "" if data is None else str(data["group"])


# ------------------------------------------------------------------- protobuf hex

_MESSAGE = re.compile(r"(\w+)\{(.*?)\}")
_FIELD = re.compile(r"(\w+):(?:'([^']*)'|(-?\d+))")


def _message(description: str) -> GetRequest | GetResponse | SetRequest:
    """Build the message a description such as ``GetResponse{value:'630',expire:0}`` names."""
    match = _MESSAGE.match(description)
    assert match, description
    kind, body = match.groups()
    fields: dict[str, Any] = {}
    for name, text, number in _FIELD.findall(body):
        fields[name] = int(number) if number else text
    if kind == "GetRequest":
        return GetRequest(fields["group"], fields["key"])
    if kind == "GetResponse":
        return GetResponse(fields["value"].encode(), expire_ns=fields.get("expire"))
    if kind == "SetRequest":
        return SetRequest(
            fields["group"], fields["key"], fields["value"].encode(), fields.get("expire")
        )
    raise AssertionError(f"unknown message in the vectors: {description}")


def protobuf_rows() -> list[tuple[str, GetRequest | GetResponse | SetRequest, bytes]]:
    """``(description, message, bytes)`` for every protobuf vector ([] when missing)."""
    data = load(PROTO_VECTORS)
    if data is None:
        return []
    return [
        (description, _message(description), bytes.fromhex(hex_bytes))
        for description, hex_bytes in data["protobuf_hex"].items()
    ]
