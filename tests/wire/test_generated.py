"""The protobuf code checked in under shoal/wire/_pb is what the pinned protoc makes.

``make proto`` regenerates it (messages and their type stubs, with the same
protoc arguments as below); a stale copy (a .proto edited without regenerating,
or a new grpcio-tools pin) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import shoal.wire

WIRE_DIR = Path(shoal.wire.__file__).resolve().parent
PB_DIR = WIRE_DIR / "_pb"
HAND_WRITTEN = {"__init__.py"}


def _protoc_or_skip() -> None:
    try:
        import grpc_tools.protoc  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("grpcio-tools is not installed (pip install -e '.[dev]')")
        pytest.skip("grpcio-tools is not installed")


def _generated(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name not in HAND_WRITTEN
    }


def test_checked_in_code_is_fresh(tmp_path: Path) -> None:
    """Regenerating into a temporary folder gives byte-identical files, and no others."""
    _protoc_or_skip()
    protos = sorted(p.name for p in WIRE_DIR.glob("*.proto"))
    assert protos == ["geekcache.proto", "groupcache.proto", "shoal.proto"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{WIRE_DIR}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        check=True,
        cwd=WIRE_DIR,
    )
    fresh = _generated(tmp_path)
    assert fresh, "protoc wrote nothing"
    assert _generated(PB_DIR) == fresh


def test_schema_matches_go() -> None:
    """Field names, numbers, types and labels are the Go schema's, so the bytes are too."""
    from google.protobuf.descriptor import FieldDescriptor as F

    from shoal.wire._pb import groupcache_pb2 as pb

    def fields(message: object) -> dict[str, tuple[int, int, bool]]:
        descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
        return {
            f.name: (f.number, f.type, f.is_required)  # proto2 labels
            for f in descriptor.fields
        }

    assert pb.DESCRIPTOR.package == "groupcachepb"
    assert fields(pb.GetRequest) == {
        "group": (1, F.TYPE_STRING, True),
        "key": (2, F.TYPE_STRING, True),
    }
    assert fields(pb.GetResponse) == {
        "value": (1, F.TYPE_BYTES, False),
        "minute_qps": (2, F.TYPE_DOUBLE, False),
        "expire": (3, F.TYPE_INT64, False),
    }
    assert fields(pb.SetRequest) == {
        "group": (1, F.TYPE_STRING, True),
        "key": (2, F.TYPE_STRING, True),
        "value": (3, F.TYPE_BYTES, False),
        "expire": (4, F.TYPE_INT64, False),
    }
    assert fields(pb.RemoveKeysRequest) == {
        "group": (1, F.TYPE_STRING, True),
        "keys": (2, F.TYPE_STRING, False),
    }


def test_geek_cache_schema() -> None:
    """pb.GroupCache is geek-cache's: same package, messages, fields and methods, so its
    clients' requests decode and its answers encode to the same bytes."""
    from google.protobuf.descriptor import FieldDescriptor as F

    from shoal.wire._pb import geekcache_pb2 as geek

    def fields(message: object) -> dict[str, tuple[int, int]]:
        descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
        return {f.name: (f.number, f.type) for f in descriptor.fields}

    assert geek.DESCRIPTOR.package == "pb"
    assert fields(geek.Request) == {"group": (1, F.TYPE_STRING), "key": (2, F.TYPE_STRING)}
    assert fields(geek.ResponseForGet) == {"value": (1, F.TYPE_BYTES)}
    assert fields(geek.ResponseForDelete) == {"value": (1, F.TYPE_BOOL)}
    service = geek.DESCRIPTOR.services_by_name["GroupCache"]
    assert service.full_name == "pb.GroupCache"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        "Get": ("Request", "ResponseForGet"),
        "Delete": ("Request", "ResponseForDelete"),
    }


def test_shoal_services() -> None:
    """shoal.v1 has the client service and the peer service with their methods."""
    from shoal.wire._pb import shoal_pb2 as pb

    services = {
        s.full_name: sorted(m.name for m in s.methods)
        for s in pb.DESCRIPTOR.services_by_name.values()
    }
    assert services == {
        "shoal.v1.Cache": sorted(
            [
                "Get",
                "GetMany",
                "Set",
                "Delete",
                "RemoveKeys",
                "Invalidate",
                "Stats",
                "Cluster",
                "Op",
            ]
        ),
        "shoal.v1.Peer": sorted(
            ["Get", "GetMany", "Set", "RemoveKeys", "Invalidate", "Replica", "Op"]
        ),
    }


def test_codec_needs_no_protobuf_runtime() -> None:
    """shoal.wire encodes and decodes by hand: importing it loads no protobuf module."""
    code = (
        "import sys, shoal.wire as w\n"
        "assert w.decode_get_response(w.encode_get_response(b'v')).value == b'v'\n"
        "bad = [m for m in sys.modules if m.startswith('google')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
