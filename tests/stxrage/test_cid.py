"""Chunk ids are the CIDs IPFS gives the same bytes as raw blocks."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from stxrage import cid as cids
from stxrage.chunker import BLOCK_LIMIT, chunk_bytes


def spec_raw_cid(data: bytes) -> str:
    """CIDv1 from the spec, by hand: version 1, codec raw (0x55), multihash sha2-256 (0x12, 32 bytes),
    multibase base32 lower-case without padding behind the 'b' prefix."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def test_empty_block_matches_the_known_ipfs_vector():
    assert cids.cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert spec_raw_cid(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_every_chunk_cid_equals_the_raw_block_cid_from_the_spec():
    data = os.urandom(3 * 1024 * 1024)
    chunks = list(chunk_bytes(data))
    assert b"".join(chunks) == data and len(chunks) > 3
    for chunk in chunks:
        assert len(chunk) <= BLOCK_LIMIT
        assert cids.cid_of(chunk) == spec_raw_cid(chunk)


def test_parse_rejects_what_the_store_cannot_address():
    for bad in ["", "not-a-cid", "../../etc/passwd", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]:
        with pytest.raises(cids.InvalidCID):
            cids.parse(bad)
    assert cids.matches(cids.cid_of(b"abc"), b"abc")
    assert not cids.matches(cids.cid_of(b"abc"), b"abd")
