"""Accounts for MCP tests: a fresh wallet signed in over the API, and an API key of its."""

from __future__ import annotations

import httpx
from eth_account import Account

from cxmpute.settings import get_settings
from tests.support.signin import sign_in


def signed_in(api_url: str) -> dict[str, str]:
    """The Authorization header of a new wallet's session (a wallet needs no funds to sign in)."""
    return sign_in(api_url, Account.create(), get_settings().chain_id)


def api_key(api_url: str, auth: dict[str, str], scopes: list[str] | None = None) -> str:
    body = {"name": "mcp", **({"scopes": scopes} if scopes else {})}
    resp = httpx.post(f"{api_url}/v1/auth/keys", json=body, headers=auth, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["key"]
