"""Cache access traces: readers for the public trace formats, for replaying through policies.

A trace is a sequence of requests; each reader turns one file into the keys
requested, in order, as ``str`` (the key type of a store). Compressed files
are recognised by their first bytes, whatever their name: gzip, xz, and
Zstandard (the last needs the ``zstandard`` package: ``shoal[traces]``).

==========  ==========================================================================
format      record → key
==========  ==========================================================================
``lirs``    one decimal block number per line; blank lines and lines ``*`` are skipped
``arc``     ``start n ignore reqno``: blocks ``start`` … ``start+n-1``, one request each
``cache2k`` a stream of big-endian signed 32-bit integers
``address`` ``op 0xADDR n``: the address, as a decimal number
``adapt``   ``time id size``: ``id:size`` (an object whose size changes is a new object)
``plain``   one decimal id per line
``oracle``  24-byte little-endian records ``<uint32 time, uint64 id, uint32 size,
            int64 next>``: the id
==========  ==========================================================================

These are the formats of the Caffeine simulator's trace files, of the ARC
paper's traces and of libCacheSim's; a malformed record raises
:class:`TraceError` naming it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from ..errors import MissingExtra, ShoalError

__all__ = ["TRACE_FORMATS", "TraceError", "open_trace", "read_trace"]

_CHUNK: Final = 1 << 20


class TraceError(ShoalError, ValueError):
    """A trace file is not in the format it was read as."""


def open_trace(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """Open a trace file for reading, decompressing it if it is compressed.

    Args:
        path: the file; gzip, xz, bzip2 and Zstandard files are recognised by content.

    Raises:
        MissingExtra: for a Zstandard file without the ``zstandard`` package.
        OSError: if the file cannot be opened.
    """
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        magic = raw.peek(6)[:6] if isinstance(raw, io.BufferedReader) else b""
        if magic.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=raw, mode="rb")
        if magic.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMAFile(raw, mode="rb")
        if magic.startswith(b"BZh"):
            return bz2.BZ2File(raw, mode="rb")
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            try:
                import zstandard
            except ImportError as exc:
                raise MissingExtra("zstandard", "traces") from exc
            return io.BufferedReader(
                zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), _CHUNK
            )
    except BaseException:
        raw.close()
        raise
    return raw


def _lirs(stream: io.BufferedIOBase) -> Iterator[str]:
    line = b""
    try:
        for line in stream:
            text = line.strip()
            if text and text != b"*":
                yield str(int(text))
    except ValueError:
        raise TraceError(f"not a lirs record (a block number per line): {line[:80]!r}") from None


def _plain(stream: io.BufferedIOBase) -> Iterator[str]:
    line = b""
    try:
        for line in stream:
            text = line.strip()
            if text:
                yield str(int(text))
    except ValueError:
        raise TraceError(f"not a plain record (an id per line): {line[:80]!r}") from None


def _arc(stream: io.BufferedIOBase) -> Iterator[str]:
    line = b""
    try:
        for line in stream:
            fields = line.split()
            if not fields:
                continue
            start, count = int(fields[0]), int(fields[1])
            # One request per block of the range, not one per line.
            yield from map(str, range(start, start + count))
    except (ValueError, IndexError):
        raise TraceError(f"not an arc record (start n ignore reqno): {line[:80]!r}") from None


def _address(stream: io.BufferedIOBase) -> Iterator[str]:
    line = b""
    try:
        for line in stream:
            fields = line.split()
            if fields:
                yield str(int(fields[1], 16))
    except (ValueError, IndexError):
        raise TraceError(f"not an address record (op 0xADDR n): {line[:80]!r}") from None


def _adapt(stream: io.BufferedIOBase) -> Iterator[str]:
    line = b""
    try:
        for line in stream:
            fields = line.split()
            if fields:
                yield f"{int(fields[1])}:{int(fields[2])}"
    except (ValueError, IndexError):
        raise TraceError(f"not an adapt record (time id size): {line[:80]!r}") from None


def _records(stream: io.BufferedIOBase, size: int, what: str) -> Iterator[bytes]:
    """Whole ``size``-byte records of ``stream``, in chunks; a torn last record is an error."""
    tail = b""
    while chunk := stream.read(_CHUNK):
        data = tail + chunk
        cut = len(data) - len(data) % size
        yield data[:cut]
        tail = data[cut:]
    if tail:
        raise TraceError(f"{what} trace ends in a partial {size}-byte record")


def _cache2k(stream: io.BufferedIOBase) -> Iterator[str]:
    for data in _records(stream, 4, "cache2k"):
        numbers = array("i")
        numbers.frombytes(data)
        if sys.byteorder == "little":
            numbers.byteswap()
        yield from map(str, numbers)


_ORACLE: Final = struct.Struct("<IQIq")


def _oracle(stream: io.BufferedIOBase) -> Iterator[str]:
    for data in _records(stream, _ORACLE.size, "oracle"):
        for _, obj_id, _, _ in _ORACLE.iter_unpack(data):
            yield str(obj_id)


_READERS: Final[dict[str, Callable[[io.BufferedIOBase], Iterator[str]]]] = {
    "lirs": _lirs,
    "arc": _arc,
    "cache2k": _cache2k,
    "address": _address,
    "adapt": _adapt,
    "plain": _plain,
    "oracle": _oracle,
}

TRACE_FORMATS: Final = tuple(_READERS)
"""The formats :func:`read_trace` reads."""


def read_trace(path: str | os.PathLike[str], fmt: str) -> Iterator[str]:
    """Iterate over the keys a trace file requests, in order.

    The file is opened when iteration starts and closed when it ends.

    Args:
        path: the trace file, compressed or not (see :func:`open_trace`).
        fmt: one of :data:`TRACE_FORMATS`.

    Raises:
        ValueError: for an unknown format (at once).
        TraceError: for a record not in ``fmt`` (while iterating).
        MissingExtra: for a Zstandard file without ``shoal[traces]``.
    """
    reader = _READERS.get(fmt)
    if reader is None:
        raise ValueError(f"unknown trace format {fmt!r}; choose one of {TRACE_FORMATS}")
    return _read(path, reader)


def _read(
    path: str | os.PathLike[str], reader: Callable[[io.BufferedIOBase], Iterable[str]]
) -> Iterator[str]:
    with open_trace(path) as stream:
        yield from reader(stream)
