"""Content-defined chunking (FastCDC 2020): cut points follow the content, so an edit in the
middle of a file changes only the chunks around it and the rest are found again by CID."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

MIN_CHUNK = 64 * 1024
AVG_CHUNK = 256 * 1024
# Room for the AES-GCM tag of a private chunk keeps every stored block within 1 MiB,
# the size IPFS peers exchange without complaint.
MAX_CHUNK = 1024 * 1024 - 64
BLOCK_LIMIT = 1024 * 1024


def _cdc() -> FastCDC:
    return FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


def chunk_stream(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the chunks of ``stream`` as independent bytes objects."""
    for chunk in _cdc().cut_stream(stream):
        yield bytes(chunk.data)


def chunk_bytes(data: bytes | memoryview) -> Iterator[bytes]:
    for chunk in _cdc().cut_buf(data):
        yield bytes(chunk.data)
