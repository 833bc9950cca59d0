"""The console's browser suites: wallets in the page, signed-in pages, a market with a provider, screenshots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

import web
from compute.network import get_network
from tests.support.signin import sign_in
from tests.support.wallets import Wallet, register_provider

SCREENSHOTS = Path(web.__file__).parent / "console" / "screenshots"

# An EIP-1193 wallet in the page that signs and sends with a real key held by the test.
BROWSER_WALLET = """([address, chainId]) => { window.ethereum = { request: async ({ method, params }) => {
  if (method === "eth_requestAccounts") return [address];
  if (method === "eth_chainId") return chainId;
  if (method === "personal_sign") return await window.walletSign(params[0]);
  if (method === "eth_sendTransaction") return await window.walletSend(params[0]);
  throw new Error(`unsupported ${method}`);
} }; }"""


def wallet() -> Wallet:
    """A new wallet with ETH on the chain the served platform uses (this process's)."""
    return Wallet.funded(get_network().chain)


def wallet_in_page(page, owner: Wallet) -> None:
    """Give ``page`` a browser wallet (window.ethereum) holding ``owner``'s key."""

    def sign(hex_message: str) -> str:
        signed = Account.sign_message(encode_defunct(hexstr=hex_message), owner.account.key)
        return "0x" + bytes(signed.signature).hex()

    def send(tx: dict) -> str:
        fields = {"to": tx["to"], "value": int(tx.get("value", "0x0"), 16), "data": tx.get("data", "0x")}
        return owner.send(fields)

    page.expose_function("walletSign", sign)
    page.expose_function("walletSend", send)
    page.add_init_script(f"({BROWSER_WALLET})({json.dumps([owner.address.lower(), hex(owner.chain.chain_id)])})")


def signed_in(page, api_url: str, owner: Wallet) -> dict[str, str]:
    """Sign ``owner`` in through the API and hand the page that session, as the wallet button would leave it;
    returns the session's Authorization header for the test's own calls."""
    auth = sign_in(api_url, owner.account, owner.chain.chain_id)
    session = {"token": auth["Authorization"].removeprefix("Bearer "), "address": owner.address}
    page.add_init_script(f"localStorage.setItem('cxmpute.session', {json.dumps(json.dumps(session))})")
    return auth


def provider(api: httpx.Client, offers: list[dict], stake_eth: int = 2) -> tuple[Wallet, dict[str, str], list[dict]]:
    """A registered, staked provider publishing ``offers``: its wallet, Authorization header and provisions."""
    owner = wallet()
    auth = sign_in(api, owner.account, owner.chain.chain_id)
    register_provider(api, get_network().domain, owner, auth, stake_eth)
    published = []
    for spec in offers:
        resp = api.post("/v1/provisions", json=spec, headers=auth)
        assert resp.status_code == 201, resp.text
        published.append(resp.json())
    heartbeat(api, owner)
    return owner, auth, published


def deposit(api: httpx.Client, owner: Wallet, auth: dict[str, str], eth: float) -> None:
    tx = owner.call_vault("deposit", int(eth * 10**18))
    resp = api.post("/v1/account/deposits", json={"tx_hash": tx}, headers=auth)
    assert resp.status_code == 200, resp.text


def screenshot(page, name: str) -> None:
    """Save the page for the README (web/console/screenshots)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def heartbeat(api: httpx.Client, owner: Wallet) -> None:
    """A signed heartbeat, so the market counts the provider as up."""
    beat = {"provider": owner.address, "timestamp": int(time.time())}
    signature = owner.sign_typed(get_network().domain, "Heartbeat", beat)
    resp = api.post("/v1/providers/heartbeat", json={**beat, "signature": signature})
    assert resp.status_code == 200, resp.text


def sign_in_header(api: httpx.Client, owner: Wallet) -> dict[str, str]:
    return sign_in(api, owner.account, owner.chain.chain_id)
