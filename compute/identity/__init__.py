"""Who is calling: Sign-In with Ethereum sessions and API keys, both resolving to an account address."""

from compute.identity.siwe import SiweMessage, issue_nonce, sign_in
from compute.identity.tokens import Principal, authenticate, create_api_key, list_api_keys, revoke_api_key

__all__ = [
    "Principal",
    "SiweMessage",
    "authenticate",
    "create_api_key",
    "issue_nonce",
    "list_api_keys",
    "revoke_api_key",
    "sign_in",
]
