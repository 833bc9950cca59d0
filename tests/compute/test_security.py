"""Hostile input: replayed or forged identity, cross-account access. Each is refused and changes nothing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from compute.identity import siwe
from compute.models import AuthSession, Provider, utcnow
from cxmpute.settings import reset_settings

CONTAINER = {"kind": "container", "resources": {"cpu": 4, "memory_mb": 8192}, "price_gwei": 100}
REQUEST = {"kind": "container", "resources": {"cpu": 1, "memory_mb": 1024}, "price_max_gwei": 500, "duration_s": 60}


def sessions(net) -> int:
    with net.store.read() as s:
        return s.scalar(select(func.count()).select_from(AuthSession))


def nonce(client) -> siwe.Nonce:
    return siwe.Nonce(**client.get("/v1/auth/nonce").json())


def verify(client, message: str, signature: str):
    return client.post("/v1/auth/verify", json={"message": message, "signature": signature})


def test_replayed_sign_in_is_refused(client, net, make_wallet):
    wallet = make_wallet(eth=1)
    message = wallet.sign_in_message(nonce(client))
    assert verify(client, message, wallet.sign_text(message)).status_code == 200
    before = sessions(net)
    resp = verify(client, message, wallet.sign_text(message))
    assert resp.status_code == 401 and resp.json()["field"] == "nonce"
    assert sessions(net) == before


@pytest.mark.parametrize(
    "change, field",
    [
        ({"expiration_time": utcnow() - timedelta(seconds=1)}, "expiration_time"),
        ({"domain": "evil.example"}, "domain"),
        ({"chain_id": 999_999}, "chain_id"),
        ({"not_before": utcnow() + timedelta(hours=1)}, "not_before"),
    ],
)
def test_bad_sign_in_message_is_refused_and_nonce_survives(client, net, make_wallet, change, field):
    wallet = make_wallet(eth=1)
    n = nonce(client)
    bad = wallet.sign_in_message(n, **change)
    before = sessions(net)
    resp = verify(client, bad, wallet.sign_text(bad))
    assert resp.status_code == 401 and resp.json()["field"] == field, resp.text
    assert sessions(net) == before
    good = wallet.sign_in_message(n)  # the refused attempt did not burn the nonce
    assert verify(client, good, wallet.sign_text(good)).status_code == 200


def test_signature_of_another_wallet_and_garbage_are_refused(client, net, make_wallet):
    wallet, thief = make_wallet(eth=1), make_wallet(eth=1)
    message = wallet.sign_in_message(nonce(client))
    assert verify(client, message, thief.sign_text(message)).json()["field"] == "signature"
    assert verify(client, message, "0x1234").status_code == 401
    assert verify(client, "hello", "0x1234").status_code == 401
    assert sessions(net) == 0


def test_invalid_credentials_are_401_and_anonymous_has_no_wallet(client, monkeypatch):
    assert client.get("/v1/account/balance", headers={"Authorization": "Bearer cxs_nope"}).status_code == 401
    assert client.get("/v1/account/balance", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/v1/account/balance").status_code == 401  # anonymous local use does not sign in: its wallet does
    assert client.post("/v1/market/quote", json=REQUEST).status_code == 200  # quoting needs no account
    monkeypatch.setenv("CXMPUTE_ALLOW_ANONYMOUS", "false")
    reset_settings()
    try:
        assert client.post("/v1/market/quote", json=REQUEST).status_code == 200
        from cxmpute.errors import CxmputeError
        from web.deps import current_principal

        with pytest.raises(CxmputeError) as info:
            current_principal(None)
        assert info.value.status_code == 401 and info.value.field == "authorization"
    finally:
        monkeypatch.delenv("CXMPUTE_ALLOW_ANONYMOUS")
        reset_settings()


def test_forged_and_replayed_heartbeats_are_refused(client, net, make_wallet, register_provider):
    provider, forger = make_wallet(), make_wallet(eth=1)
    auth = register_provider(client, net, provider)
    ts = int(time.time())
    hb = {"provider": provider.address, "timestamp": ts}
    forged = {**hb, "signature": forger.sign_typed(net.domain, "Heartbeat", hb)}
    resp = client.post("/v1/providers/heartbeat", json=forged)
    assert resp.status_code == 401 and resp.json()["field"] == "signature"
    genuine = {**hb, "signature": provider.sign_typed(net.domain, "Heartbeat", hb)}
    assert client.post("/v1/providers/heartbeat", json=genuine).status_code == 200
    assert client.post("/v1/providers/heartbeat", json=genuine).status_code == 401  # replay
    stale = {"provider": provider.address, "timestamp": ts - 3600}
    stale["signature"] = provider.sign_typed(net.domain, "Heartbeat", stale)
    assert client.post("/v1/providers/heartbeat", json=stale).status_code == 401
    other_auth = {"Authorization": auth["Authorization"]}
    forger_hb = {"provider": forger.address, "timestamp": ts + 1}
    forger_hb["signature"] = forger.sign_typed(net.domain, "Heartbeat", forger_hb)
    assert client.post("/v1/providers/heartbeat", json=forger_hb, headers=other_auth).status_code == 403
    with net.store.read() as s:
        assert s.get(Provider, provider.address).heartbeats == 1


def test_registration_must_be_signed_by_the_account(client, net, make_wallet, login):
    wallet, other = make_wallet(eth=1), make_wallet(eth=1)
    auth = login(client, wallet)
    from compute.providers.hardware import HardwareProfile

    hw = HardwareProfile(cpu_count=4, cpu_model="x", memory_mb=8192, disk_gb=10)
    issued = int(time.time())
    typed = {"provider": wallet.address, "name": "p", "region": "eu", "profileHash": hw.digest(), "issuedAt": issued}
    body = {
        "name": "p",
        "region": "eu",
        "profile": hw.model_dump(),
        "issued_at": issued,
        "signature": other.sign_typed(net.domain, "ProviderRegistration", typed),
    }
    assert client.post("/v1/providers", json=body, headers=auth).status_code == 401
    body["signature"] = wallet.sign_typed(net.domain, "ProviderRegistration", {**typed, "name": "q"})
    assert client.post("/v1/providers", json=body, headers=auth).status_code == 401  # tampered
    with net.store.read() as s:
        assert s.get(Provider, wallet.address) is None


def test_accounts_cannot_touch_each_others_provisions_leases_balances_or_keys(
    client, net, make_wallet, login, register_provider
):
    alice, bob = make_wallet(), make_wallet()
    a_auth = register_provider(client, net, alice)
    b_auth = register_provider(client, net, bob)
    prov = client.post("/v1/provisions", json=CONTAINER, headers=a_auth).json()

    # Provisions: bob cannot change or retire alice's.
    assert client.patch(f"/v1/provisions/{prov['id']}", json={"price_gwei": 1}, headers=b_auth).status_code == 403
    assert client.delete(f"/v1/provisions/{prov['id']}", headers=b_auth).status_code == 403
    after = client.get(f"/v1/provisions/{prov['id']}").json()
    assert after["price_gwei"] == 100 and after["status"] == "active"

    # Balances: bob cannot claim alice's deposit; alice cannot claim it twice.
    tx = alice.call_vault("deposit", 10**18)
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=b_auth).status_code == 403
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=a_auth).status_code == 200
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=a_auth).status_code == 409
    assert client.get("/v1/account/balance", headers=b_auth).json()["user_gwei"] == 0
    assert client.get("/v1/account/balance", headers=a_auth).json()["user_gwei"] == 10**9
    # Bob cannot withdraw money he does not have (and alice's is not his).
    resp = client.post(
        "/v1/account/withdrawals", headers=b_auth, json={"amount_gwei": 10, "idempotency_key": "steal-0001"}
    )
    assert resp.status_code == 402

    # Leases: alice (as a user) leases her own provision; bob cannot see, meter or end it.
    lease = client.post("/v1/market/requests", json=REQUEST, headers=a_auth).json()
    assert client.get(f"/v1/leases/{lease['id']}", headers=b_auth).status_code == 403
    assert (
        client.post(
            f"/v1/leases/{lease['id']}/usage", json={"seconds": 5, "idempotency_key": "x"}, headers=b_auth
        ).status_code
        == 403
    )
    assert (
        client.post(f"/v1/leases/{lease['id']}/end", json={"reason": "user-cancelled"}, headers=b_auth).status_code
        == 403
    )
    assert client.get(f"/v1/leases/{lease['id']}", headers=a_auth).json()["status"] == "active"

    # Keys: bob cannot revoke alice's key; a revoked key is 401; a key is limited to its scopes.
    key = client.post("/v1/auth/keys", json={"name": "ci", "scopes": ["account"]}, headers=a_auth).json()
    k_auth = {"Authorization": f"Bearer {key['key']}"}
    assert client.delete(f"/v1/auth/keys/{key['id']}", headers=b_auth).status_code == 403
    assert client.get("/v1/account/balance", headers=k_auth).status_code == 200
    assert client.post("/v1/provisions", json=CONTAINER, headers=k_auth).status_code == 403  # no provider scope
    assert client.post("/v1/auth/keys", json={"name": "x"}, headers=k_auth).status_code == 403  # no keys scope
    assert client.delete(f"/v1/auth/keys/{key['id']}", headers=a_auth).status_code == 200
    assert client.get("/v1/account/balance", headers=k_auth).status_code == 401


def test_publishing_needs_stake_and_unstake_respects_the_lock(client, net, make_wallet, login, register_provider):
    poor = make_wallet()  # signed in, never registered nor staked
    auth = login(client, poor)
    assert client.post("/v1/provisions", json=CONTAINER, headers=auth).status_code == 403
    rich = make_wallet()
    r_auth = register_provider(client, net, rich, stake_eth=2)
    resp = client.post("/v1/providers/unstake", json={"amount_gwei": 10}, headers=r_auth)
    assert resp.status_code == 409 and resp.json()["field"] == "amount_gwei"
    assert client.get("/v1/account/balance", headers=r_auth).json()["stake_gwei"] == 2 * 10**9


def test_bad_input_names_the_field(client, net, make_wallet, login):
    auth = login(client, make_wallet(eth=1))
    resp = client.post("/v1/market/quote", json={**REQUEST, "price_min_gwei": 900})
    assert resp.status_code == 422 and "price_max_gwei" in resp.json()["detail"]
    resp = client.post("/v1/market/quote", json={k: v for k, v in REQUEST.items() if k != "duration_s"})
    assert resp.status_code == 422 and "duration_s" in resp.json()["detail"]
    resp = client.post("/v1/market/quote", json={**REQUEST, "kind": "spaceship"})
    assert resp.status_code == 422 and "kind" in resp.json()["detail"]
    resp = client.post("/v1/account/deposits", json={"tx_hash": "0x" + "00" * 32}, headers=auth)
    assert resp.status_code == 400 and resp.json()["field"] == "tx_hash"
    resp = client.post("/v1/account/deposits", json={"tx_hash": "nope"}, headers=auth)
    assert resp.status_code == 422
