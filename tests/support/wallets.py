"""Wallets on the platform's chain (the in-process one by default): funding, vault calls, typed signatures, and
a provider's registration through the API."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct

from compute import receipts
from compute.chain import Chain
from compute.identity import siwe
from compute.providers.hardware import HardwareProfile
from tests.support.signin import sign_in


@dataclass
class Wallet:
    account: Account
    chain: Chain

    @classmethod
    def funded(cls, chain: Chain, eth: int = 100) -> Wallet:
        account = Account.create()
        w3 = chain.w3
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": account.address, "value": eth * 10**18})
        return cls(account, chain)

    @property
    def address(self) -> str:
        return self.account.address

    def send(self, tx: dict) -> str:
        """Sign and send ``tx`` (gas, nonce and chain filled in), wait for it to succeed; its hash."""
        w3 = self.chain.w3
        tx = {
            "from": self.address,
            "nonce": w3.eth.get_transaction_count(self.address),
            "chainId": self.chain.chain_id,
            "gasPrice": w3.eth.gas_price,
            **tx,
        }
        tx.setdefault("gas", w3.eth.estimate_gas(tx))
        signed = self.account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        assert receipt["status"] == 1
        return receipt["transactionHash"].to_0x_hex()

    def call_vault(self, fn: str, value_wei: int) -> str:
        w3 = self.chain.w3
        tx = getattr(self.chain.vault.functions, fn)().build_transaction(
            {
                "from": self.address,
                "value": value_wei,
                "nonce": w3.eth.get_transaction_count(self.address),
                "chainId": self.chain.chain_id,
                "gasPrice": w3.eth.gas_price,
            }
        )
        signed = self.account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        assert receipt["status"] == 1
        return receipt["transactionHash"].to_0x_hex()

    def login(self, http) -> dict[str, str]:
        """Sign in to the platform ``http`` talks to; the session's headers."""
        return sign_in(http, self.account, self.chain.chain_id)

    def sign_in_message(self, nonce: siwe.Nonce, **overrides) -> str:
        msg = siwe.message_for(self.address, nonce, overrides.pop("chain_id", self.chain.chain_id))
        return msg.model_copy(update=overrides).text()

    def sign_text(self, text: str) -> str:
        return self.account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()

    def sign_typed(self, domain: receipts.Domain, primary: str, message: dict) -> str:
        return receipts.sign(domain, primary, message, account=self.account)


def register_provider(client, domain: receipts.Domain, wallet: Wallet, auth: dict[str, str], stake_eth: int = 2):
    """Register ``wallet`` (signed in as ``auth``) as a provider with a signed profile and stake ``stake_eth`` on
    chain. ``client`` is an httpx client or a ``TestClient`` on the platform."""
    hw = HardwareProfile(cpu_count=64, cpu_model="test", memory_mb=262144, disk_gb=2000, benchmark_score=500.0)
    issued = int(time.time())
    typed = {"provider": wallet.address, "name": "p", "region": "eu", "profileHash": hw.digest(), "issuedAt": issued}
    body = {
        "name": "p",
        "region": "eu",
        "profile": hw.model_dump(),
        "issued_at": issued,
        "signature": wallet.sign_typed(domain, "ProviderRegistration", typed),
    }
    resp = client.post("/v1/providers", json=body, headers=auth)
    assert resp.status_code == 200, resp.text
    tx = wallet.call_vault("stake", stake_eth * 10**18)
    resp = client.post("/v1/providers/stake", json={"tx_hash": tx}, headers=auth)
    assert resp.status_code == 200, resp.text
