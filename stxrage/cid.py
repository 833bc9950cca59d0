"""IPFS-compatible content identifiers: CIDv1, sha2-256 multihash, base32 multibase.

Chunks and erasure fragments use the ``raw`` codec, so a chunk's id is exactly the CID that
IPFS gives the same bytes imported as a raw block; public manifests use ``dag-json``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from multiformats import CID, multihash

Codec = Literal["raw", "dag-json"]
SUPPORTED_CODECS = ("raw", "dag-json")


class InvalidCID(ValueError):
    pass


def cid_of(data: bytes | memoryview, codec: Codec = "raw") -> str:
    return cid_from_digest(hashlib.sha256(data).digest(), codec)


def cid_from_digest(digest: bytes, codec: Codec = "raw") -> str:
    return str(CID("base32", 1, codec, multihash.wrap(digest, "sha2-256")))


def parse(cid: str) -> CID:
    """Decode and check a CID this store can address (CIDv1, sha2-256, raw or dag-json)."""
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # the library raises several error types for malformed input
        raise InvalidCID(f"not a valid CID: {cid!r}") from exc
    if parsed.version != 1 or parsed.hashfun.name != "sha2-256" or parsed.codec.name not in SUPPORTED_CODECS:
        raise InvalidCID(f"unsupported CID {cid!r}: need CIDv1 with sha2-256 and codec raw or dag-json")
    return parsed


def codec_of(cid: str) -> str:
    return parse(cid).codec.name


def digest_of(cid: str) -> bytes:
    return multihash.unwrap(parse(cid).digest)


def matches(cid: str, data: bytes | memoryview) -> bool:
    """True when ``data`` is exactly the content ``cid`` names."""
    return hashlib.sha256(data).digest() == digest_of(cid)
