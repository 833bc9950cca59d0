"""Fixtures for the compute network: a database on SQLite or PostgreSQL, the in-process chain, wallets."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from compute.chain import Chain, get_chain
from compute.network import Network, use_network
from compute.store import Store
from cxmpute.db import reset_engines
from tests.support import wallets
from tests.support.signin import sign_in
from tests.support.wallets import Wallet

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


@pytest.fixture
def make_wallet(chain):
    def make(eth: int = 100) -> Wallet:
        return Wallet.funded(chain, eth)

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
        wallets.register_provider(client, net.domain, wallet, auth, stake_eth)
        return auth

    return register
