"""Trace readers: every format, every compression, and clear errors for bad input."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from shoal.cli.traces import TRACE_FORMATS, TraceError, read_trace
from shoal.errors import MissingExtra

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bzip2": bz2.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}

# One small file per format, and the keys it must give.
SAMPLES: dict[str, tuple[bytes, list[str]]] = {
    "lirs": (b"12\n7\n\n*\n12\n  3 \n", ["12", "7", "12", "3"]),
    "arc": (b"100 3 0 1\n7 1 0 2\n\n100 2 0 3\n", ["100", "101", "102", "7", "100", "101"]),
    "cache2k": (struct.pack(">4i", 5, -1, 5, 2**31 - 1), ["5", "-1", "5", "2147483647"]),
    "address": (b"R 0x1f 4\nW 0x10 8\nR 0X1F 4\n", ["31", "16", "31"]),
    "adapt": (b"1 42 100\n2 42 100\n3 42 120\n", ["42:100", "42:100", "42:120"]),
    "plain": (b"5\n6\n\n5\n", ["5", "6", "5"]),
    "oracle": (
        b"".join(struct.pack("<IQIq", t, obj, 10, -1) for t, obj in ((1, 9), (2, 2**40), (3, 9))),
        ["9", str(2**40), "9"],
    ),
}


def write(tmp_path: Path, data: bytes, name: str = "trace") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_every_format_has_a_sample() -> None:
    """The table below covers every reader."""
    assert set(SAMPLES) == set(TRACE_FORMATS)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_reads_every_format_in_every_compression(
    tmp_path: Path, fmt: str, compression: str
) -> None:
    """Compression is recognised by content, so the file name does not matter."""
    data, keys = SAMPLES[fmt]
    path = write(tmp_path, COMPRESSORS[compression](data))
    assert list(read_trace(path, fmt)) == keys


def test_large_binary_trace_across_chunks(tmp_path: Path) -> None:
    """Records that straddle the reader's chunks come out whole."""
    numbers = list(range(-300_000, 300_000, 3))
    path = write(tmp_path, lzma.compress(struct.pack(f">{len(numbers)}i", *numbers)))
    assert list(read_trace(path, "cache2k")) == [str(n) for n in numbers]


def test_torn_binary_record(tmp_path: Path) -> None:
    """A binary trace whose length is not a whole number of records is refused."""
    path = write(tmp_path, struct.pack(">2i", 1, 2) + b"\x00")
    with pytest.raises(TraceError, match="partial"):
        list(read_trace(path, "cache2k"))


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("lirs", b"1\n2 3 4 5\n"),
        ("arc", b"1\n"),
        ("address", b"R zz 4\n"),
        ("adapt", b"1 2\n"),
        ("plain", b"x\n"),
    ],
)
def test_malformed_text_names_the_record(tmp_path: Path, fmt: str, data: bytes) -> None:
    """Reading a file as the wrong format fails with the offending line."""
    path = write(tmp_path, data)
    with pytest.raises(TraceError, match=fmt):
        list(read_trace(path, fmt))


def test_unknown_format() -> None:
    """An unknown format is refused at once."""
    with pytest.raises(ValueError, match="unknown trace format"):
        read_trace("whatever", "csv")


def test_missing_zstandard_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the zstandard package a .zst trace names the extra to install."""
    path = write(tmp_path, COMPRESSORS["zstd"](b"1\n"))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingExtra, match=r"shoal\[traces\]"):
        list(read_trace(path, "lirs"))
