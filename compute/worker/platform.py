"""A provider's signed-in connection to the platform API: sign-in, registration, stake, provisions, heartbeats."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from compute import receipts
from compute.chain.client import vault_abi
from compute.errors import ComputeError
from compute.identity import siwe
from compute.providers.hardware import HardwareProfile
from cxmpute.http import async_client, client

log = logging.getLogger(__name__)


class PlatformError(ComputeError):
    """The platform refused a call; carries its status and message."""


class Platform:
    def __init__(self, api_url: str, wallet: Account, chain_rpc_url: str | None = None):
        self.api_url = api_url.rstrip("/")
        self.wallet = wallet
        self.chain_rpc_url = chain_rpc_url
        self.http = async_client(self.api_url)
        self.domain: receipts.Domain | None = None
        self.chain_id = 0

    @property
    def address(self) -> str:
        return self.wallet.address

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, body: dict | None = None, ok: tuple[int, ...] = ()) -> Any:
        resp = await self.http.request(method, path, json=body)
        if resp.is_success or resp.status_code in ok:
            return resp.json() if resp.content else None
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise PlatformError(f"{method} {path}: {detail}", status_code=resp.status_code)

    async def sign_in(self) -> None:
        info = await self.call("GET", "/v1/account/chain")
        self.chain_id = info["chain_id"]
        self.domain = receipts.Domain(chain_id=info["chain_id"], verifying_contract=info["vault_address"])
        nonce = siwe.Nonce(**await self.call("GET", "/v1/auth/nonce"))
        message = siwe.message_for(self.address, nonce, self.chain_id).text()
        signature = self.wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        session = await self.call("POST", "/v1/auth/verify", {"message": message, "signature": signature})
        self.http.headers["Authorization"] = f"Bearer {session['token']}"

    async def register(self, name: str, region: str, profile: HardwareProfile) -> dict:
        issued = int(time.time())
        typed = {"provider": self.address, "name": name, "region": region, "profileHash": profile.digest(),
                 "issuedAt": issued}
        return await self.call("POST", "/v1/providers", {
            "name": name, "region": region, "profile": profile.model_dump(), "issued_at": issued,
            "signature": receipts.sign(self.domain, "ProviderRegistration", typed, self.wallet)})

    async def ensure_stake(self, stake_gwei: int) -> None:
        """Top the stake up to ``stake_gwei`` through the vault on chain (embedded chain: the API's RPC)."""
        have = (await self.call("GET", "/v1/account/balance"))["stake_gwei"]
        if have >= stake_gwei:
            return
        info = await self.call("GET", "/v1/account/chain")
        w3 = Web3(Web3.HTTPProvider(self.chain_rpc_url or f"{self.api_url}/v1/chain/rpc"))
        vault = w3.eth.contract(address=Web3.to_checksum_address(info["vault_address"]), abi=vault_abi())
        tx = vault.functions.stake().build_transaction({
            "from": self.address, "value": (stake_gwei - have) * 10**9, "chainId": self.chain_id,
            "nonce": w3.eth.get_transaction_count(self.address, "pending"), "gasPrice": w3.eth.gas_price})
        signed = self.wallet.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=120)
        await self.call("POST", "/v1/providers/stake", {"tx_hash": receipt["transactionHash"].to_0x_hex()})

    def heartbeat_body(self) -> dict:
        stamp = int(time.time())
        signature = receipts.sign(self.domain, "Heartbeat", {"provider": self.address, "timestamp": stamp}, self.wallet)
        return {"provider": self.address, "timestamp": stamp, "signature": signature}

    async def heartbeat(self) -> None:
        await self.call("POST", "/v1/providers/heartbeat", self.heartbeat_body())

    def beat_forever(self, interval: float, stop: threading.Event) -> None:
        """Heartbeats from their own thread and connection, so busy jobs on the event loop never delay them."""
        with client(self.api_url) as http:
            while not stop.wait(interval):
                try:
                    resp = http.post("/v1/providers/heartbeat", json=self.heartbeat_body())
                    # A second beat within the same second is refused as a replay, and is simply redundant.
                    if not resp.is_success and "replayed" not in resp.text:
                        log.warning("heartbeat refused: %s %s", resp.status_code, resp.text[:200])
                except Exception as exc:  # keep beating: the platform may be restarting
                    log.warning("heartbeat failed: %s", exc)
