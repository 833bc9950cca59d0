"""k-of-n Reed–Solomon coding of one block into fragments (zfec); any k fragments rebuild it."""

from __future__ import annotations

import zfec


def encode(block: bytes, k: int, n: int) -> list[bytes]:
    """Split ``block`` into ``n`` fragments of equal size; fragment i is share i of the code."""
    size = max(1, -(-len(block) // k))
    padded = block.ljust(size * k, b"\0")
    primary = [padded[i * size : (i + 1) * size] for i in range(k)]
    return list(zfec.Encoder(k, n).encode(primary))


def decode(fragments: dict[int, bytes], k: int, n: int, length: int) -> bytes:
    """Rebuild a block of ``length`` bytes from any ``k`` of its fragments (index -> bytes)."""
    if len(fragments) < k:
        raise ValueError(f"need {k} fragments, have {len(fragments)}")
    indexes = sorted(fragments)[:k]
    primary = zfec.Decoder(k, n).decode([fragments[i] for i in indexes], indexes)
    return b"".join(primary)[:length]
