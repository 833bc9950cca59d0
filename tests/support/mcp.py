"""Accounts for MCP tests: a fresh wallet signed in over the API, and an API key of its."""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from cxmpute.settings import get_settings
from cxmpute.siwe import Nonce, message_for


def signed_in(api_url: str) -> dict[str, str]:
    """The Authorization header of a new wallet's session (a wallet needs no funds to sign in)."""
    account = Account.create()
    with httpx.Client(base_url=api_url, timeout=30) as http:
        nonce = Nonce(**http.get("/v1/auth/nonce").json())
        message = message_for(account.address, nonce, get_settings().chain_id).text()
        signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        resp = http.post("/v1/auth/verify", json={"message": message, "signature": signature})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def api_key(api_url: str, auth: dict[str, str], scopes: list[str] | None = None) -> str:
    body = {"name": "mcp", **({"scopes": scopes} if scopes else {})}
    resp = httpx.post(f"{api_url}/v1/auth/keys", json=body, headers=auth, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["key"]
