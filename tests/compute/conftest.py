"""Fixtures for the compute network: a database on SQLite or PostgreSQL, the in-process chain, wallets."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from compute import receipts
from compute.chain import Chain, get_chain
from compute.identity import siwe
from compute.network import Network, use_network
from compute.providers.hardware import HardwareProfile
from compute.store import Store
from cxmpute.db import reset_engines
from tests.support.signin import sign_in

PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def _pg_url(schema: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'compute.db'}"
        return
    schema = f"cx_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_url(schema)
    finally:
        reset_engines()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def chain() -> Chain:
    return get_chain()  # the process's in-process chain, so the CLI under test sends to the same one


@pytest.fixture
def net(db_url, chain):
    network = Network(Store(db_url), chain)
    use_network(network)
    yield network
    use_network(None)


@pytest.fixture
def client(net):
    from web.app import create_app

    with TestClient(create_app()) as c:
        yield c


@dataclass
class Wallet:
    account: Account
    chain: Chain

    @property
    def address(self) -> str:
        return self.account.address

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

    def sign_in_message(self, nonce: siwe.Nonce, **overrides) -> str:
        msg = siwe.message_for(self.address, nonce, overrides.pop("chain_id", self.chain.chain_id))
        return msg.model_copy(update=overrides).text()

    def sign_text(self, text: str) -> str:
        return self.account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()

    def sign_typed(self, domain: receipts.Domain, primary: str, message: dict) -> str:
        return receipts.sign(domain, primary, message, account=self.account)


@pytest.fixture
def make_wallet(chain):
    def make(eth: int = 100) -> Wallet:
        account = Account.create()
        w3 = chain.w3
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": account.address, "value": eth * 10**18})
        return Wallet(account, chain)

    return make


@pytest.fixture
def login():
    """Sign ``wallet`` in through the API; returns the Authorization header."""

    def login(client: TestClient, wallet: Wallet) -> dict[str, str]:
        return sign_in(client, wallet.account, wallet.chain.chain_id)

    return login


@pytest.fixture
def register_provider(login):
    """Sign in, register with a signed profile, stake ``stake_eth`` on chain; returns the auth header."""

    def register(client: TestClient, net: Network, wallet: Wallet, stake_eth: int = 2) -> dict[str, str]:
        auth = login(client, wallet)
        hw = HardwareProfile(cpu_count=64, cpu_model="test", memory_mb=262144, disk_gb=2000, benchmark_score=500.0)
        issued = int(time.time())
        typed = {
            "provider": wallet.address,
            "name": "p",
            "region": "eu",
            "profileHash": hw.digest(),
            "issuedAt": issued,
        }
        body = {
            "name": "p",
            "region": "eu",
            "profile": hw.model_dump(),
            "issued_at": issued,
            "signature": wallet.sign_typed(net.domain, "ProviderRegistration", typed),
        }
        resp = client.post("/v1/providers", json=body, headers=auth)
        assert resp.status_code == 200, resp.text
        tx = wallet.call_vault("stake", stake_eth * 10**18)
        resp = client.post("/v1/providers/stake", json={"tx_hash": tx}, headers=auth)
        assert resp.status_code == 200, resp.text
        return auth

    return register
