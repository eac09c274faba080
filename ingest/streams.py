"""Streams under :func:`ingest.mapio.read_map`: the file's bytes hashed as they
are read (:class:`HashingReader`), gzip and bzip2 opened by their magic bytes
(:func:`open_stream`), and exact reads and skips in chunks."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
from typing import IO, Any

try:  # isal's gzip is about 2.5x faster than the standard library's.
    from isal import igzip as _fast_gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    _fast_gzip = None

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
#: Bytes skipped per read.
CHUNK = 8 * 2**20
#: Bytes decompressed per call into the data array (a decompressing stream makes
#: a temporary of about twice this).
READ_CHUNK = 2**20


class HashingReader(io.RawIOBase):
    """A file read front to back that feeds every byte read to sha256: the
    decompressor reads the file through it, so the content hash needs no second
    read of the file (:meth:`hexdigest` hashes what the reading left)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n or 0

    def hexdigest(self) -> str:
        """The sha256 of the whole file (reading what is left of it)."""
        buffer = memoryview(bytearray(READ_CHUNK))
        while self.readinto(buffer):
            pass
        return self._digest.hexdigest()


def open_stream(fh: IO[bytes]) -> tuple[IO[bytes], str]:
    """A stream of the map's bytes from ``fh`` (a file at its start),
    decompressing gzip/bzip2 by their magic bytes.

    Returns:
        The stream (closing it leaves ``fh`` open) and its compression:
        ``"gzip"``, ``"bzip2"`` or ``""``.
    """
    reader = io.BufferedReader(fh)  # type: ignore[arg-type]
    magic = reader.peek(3)[:3]
    if magic[:2] == GZIP_MAGIC:
        opener = _fast_gzip.open if _fast_gzip else gzip.open
        return opener(reader, "rb"), "gzip"
    if magic == BZIP2_MAGIC:
        return bz2.open(reader, "rb"), "bzip2"
    return _Unclosed(reader), ""


class _Unclosed(io.BufferedIOBase):
    """``stream`` whose ``close`` leaves it open (a plain map's stream is the
    file, which its opener closes)."""

    def __init__(self, stream: io.BufferedReader) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._stream.readinto(buffer)


def read_exact(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return the number of bytes read.

    At most :data:`READ_CHUNK` bytes a call: a decompressing stream's
    ``readinto`` reads into a temporary of the size asked for, which for the whole
    data block would double the memory a compressed map takes.
    """
    total = 0
    while total < len(buffer):
        n = stream.readinto(buffer[total : total + READ_CHUNK])
        if not n:
            break
        total += n
    return total


def skip_bytes(stream: IO[bytes], n_bytes: int) -> int:
    """Read and drop ``n_bytes`` from ``stream``; return how many there were."""
    skipped = 0
    while skipped < n_bytes:
        block = stream.read(min(CHUNK, n_bytes - skipped))
        if not block:
            break
        skipped += len(block)
    return skipped
