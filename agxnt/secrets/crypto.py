"""AES-256-GCM sealing of secret values under a key derived from the platform secret."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class SealBroken(Exception):
    """The ciphertext does not open under this key and binding (tampered, moved, or another secret_key)."""


def derive_key(platform_secret: str) -> bytes:
    # A purpose-bound key: the same platform secret also signs tokens, so it is never used directly.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"cxmpute-secrets-v1", info=b"account secret store").derive(
        platform_secret.encode()
    )


def seal(key: bytes, value: str, binding: bytes) -> bytes:
    """Encrypt ``value``; ``binding`` (owner and name) is authenticated so a row cannot be moved to another."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, value.encode(), binding)


def unseal(key: bytes, blob: bytes, binding: bytes) -> str:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], binding).decode()
    except InvalidTag:
        raise SealBroken("secret does not decrypt") from None
