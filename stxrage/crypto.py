"""Owner-side encryption of private files (AES-256-GCM).

Keys derive from the platform secret: one key per owner, from it one key per chunk content
(convergent within an owner, so an owner's edited file still deduplicates against its earlier
version, while two owners never share ciphertext) and one key per file manifest (random salt).
A key that seals exactly one plaintext can use a fixed nonce safely.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MANIFEST_MAGIC = b"STXM1"
_ZERO_NONCE = bytes(12)
_CHUNK_AAD = b"stxrage-chunk"
_MANIFEST_AAD = b"stxrage-manifest"


class DecryptionError(ValueError):
    pass


def owner_key(secret: str, owner: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"stxrage-owner-v1", info=owner.encode()).derive(
        secret.encode()
    )


def chunk_key(key: bytes, plaintext_digest: bytes) -> bytes:
    return hmac.new(key, b"chunk:" + plaintext_digest, hashlib.sha256).digest()


def seal_chunk(key: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt one chunk; returns (ciphertext, sha256 of the plaintext) — the digest re-derives the key."""
    digest = hashlib.sha256(plaintext).digest()
    return AESGCM(chunk_key(key, digest)).encrypt(_ZERO_NONCE, plaintext, _CHUNK_AAD), digest


def open_chunk(key: bytes, plaintext_digest: bytes, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(chunk_key(key, plaintext_digest)).decrypt(_ZERO_NONCE, ciphertext, _CHUNK_AAD)
    except InvalidTag:
        raise DecryptionError("chunk does not decrypt with this owner's key") from None


def _manifest_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_MANIFEST_AAD).derive(key)


def seal_manifest(key: bytes, plaintext: bytes) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    return MANIFEST_MAGIC + salt + nonce + AESGCM(_manifest_key(key, salt)).encrypt(nonce, plaintext, _MANIFEST_AAD)


def open_manifest(key: bytes, sealed: bytes) -> bytes:
    if not sealed.startswith(MANIFEST_MAGIC):
        raise DecryptionError("not a sealed manifest")
    body = sealed[len(MANIFEST_MAGIC) :]
    salt, nonce, ciphertext = body[:16], body[16:28], body[28:]
    try:
        return AESGCM(_manifest_key(key, salt)).decrypt(nonce, ciphertext, _MANIFEST_AAD)
    except InvalidTag:
        raise DecryptionError("manifest does not decrypt with this owner's key") from None
