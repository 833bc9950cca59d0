"""The platform's signing key, derived from the settings' secret: it signs receipts and operates the vault."""

from __future__ import annotations

from eth_account import Account
from eth_utils import keccak

from cxmpute.settings import get_settings


def platform_account() -> Account:
    return Account.from_key(keccak(b"cxmpute-platform-signer:" + get_settings().resolved_secret_key().encode()))
