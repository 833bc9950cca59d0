"""The platform's signing key, derived from the settings' secret: it signs receipts and operates the vault."""

from __future__ import annotations

from functools import lru_cache

from eth_account import Account
from eth_utils import keccak

from cxmpute.settings import get_settings


def platform_account() -> Account:
    return _account(get_settings().resolved_secret_key())


@lru_cache(maxsize=4)
def _account(secret: str) -> Account:
    # Deriving the public key is the costly part of loading a key; receipts are signed on every match.
    return Account.from_key(keccak(b"cxmpute-platform-signer:" + secret.encode()))
