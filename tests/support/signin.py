"""Signing a wallet in through the platform's real EIP-4361 flow: nonce, message, signature, verify."""

from __future__ import annotations

import httpx
from eth_account.messages import encode_defunct

from cxmpute.siwe import Nonce, message_for


def sign_in(api: httpx.Client | str, account, chain_id: int | None = None) -> dict[str, str]:
    """A session for ``account`` (an eth-account ``LocalAccount``); returns its Authorization header. ``api`` is
    a client whose base URL is the platform's (a ``TestClient`` is one) or the platform's URL. Without
    ``chain_id`` the platform's own is read from ``/v1/account/chain``."""
    if isinstance(api, str):
        with httpx.Client(base_url=api, timeout=30) as http:
            return sign_in(http, account, chain_id)
    if chain_id is None:
        chain_id = api.get("/v1/account/chain").json()["chain_id"]
    nonce = Nonce(**api.get("/v1/auth/nonce").json())
    message = message_for(account.address, nonce, chain_id).text()
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    resp = api.post("/v1/auth/verify", json={"message": message, "signature": signature})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}
