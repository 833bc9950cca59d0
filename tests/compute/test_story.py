"""The whole story on the in-process chain, through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from compute import receipts
from compute.ledger import Acct, balance, total
from compute.market.leases import lease_message, usage_message
from compute.models import Lease
from cxmpute.settings import get_settings

GWEI = 10**9


def test_provider_and_user_story(client, net, make_wallet, login, register_provider):
    provider, user = make_wallet(), make_wallet()

    # Provider: sign in, register (signed profile), stake on chain, publish provisions.
    p_auth = register_provider(client, net, provider, stake_eth=2)
    assert client.get("/v1/account/balance", headers=p_auth).json()["stake_gwei"] == 2 * GWEI
    cheap = {"kind": "container", "resources": {"cpu": 8, "memory_mb": 32768}, "price_gwei": 100}
    dear = {"kind": "container", "resources": {"cpu": 8, "memory_mb": 32768}, "price_gwei": 300}
    ids = []
    for spec in (dear, cheap):
        resp = client.post("/v1/provisions", json=spec, headers=p_auth)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    assert len(client.get("/v1/provisions", headers=p_auth).json()) == 2
    hb = {"provider": provider.address, "timestamp": int(time.time())}
    resp = client.post(
        "/v1/providers/heartbeat", json={**hb, "signature": provider.sign_typed(net.domain, "Heartbeat", hb)}
    )
    assert resp.status_code == 200 and resp.json()["heartbeats"] == 1

    # User: sign in, deposit on chain (verified from the receipt), request within a price range.
    u_auth = login(client, user)
    tx = user.call_vault("deposit", 10**18)
    resp = client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=u_auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["balance_gwei"] == GWEI

    request = {
        "kind": "container",
        "resources": {"cpu": 2, "memory_mb": 4096},
        "image": "python:3.12",
        "price_min_gwei": 50,
        "price_max_gwei": 200,
        "duration_s": 600,
    }
    quote = client.post("/v1/market/quote", json=request).json()
    assert quote["matched"] and quote["provision_id"] == ids[1] and quote["price_gwei"] == 100
    resp = client.post("/v1/market/requests", json=request, headers=u_auth)
    assert resp.status_code == 201, resp.text
    lease = resp.json()
    units = 2 + 1  # 2 vCPU + one 4 GiB memory unit
    assert lease["provision_id"] == ids[1] and lease["compute_units"] == units and lease["price_gwei"] == 100
    escrow = 100 * units * 600
    assert lease["escrow_gwei"] == escrow == lease["escrow_left_gwei"]
    # The lease receipt is EIP-712 signed by the platform for this chain and vault only.
    with net.store.read() as s:
        row = s.get(Lease, lease["id"])
        assert receipts.verify(net.domain, "Lease", lease_message(row), lease["signature"])
        other = receipts.Domain(chain_id=1, verifying_contract=net.domain.verifying_contract)
        assert not receipts.verify(other, "Lease", lease_message(row), lease["signature"])

    # Both sides see the lease.
    assert client.get(f"/v1/leases/{lease['id']}", headers=p_auth).status_code == 200
    assert [item["id"] for item in client.get("/v1/leases", headers=u_auth).json()] == [lease["id"]]

    # Metered for N seconds by the provider (a retried report settles once).
    n = 0
    for i, seconds in enumerate((60, 60, 120)):
        for _ in range(2):
            resp = client.post(
                f"/v1/leases/{lease['id']}/usage",
                json={"seconds": seconds, "idempotency_key": f"tick-{i}"},
                headers=p_auth,
            )
            assert resp.status_code == 200, resp.text
        n += seconds
        usage = resp.json()
        assert receipts.verify(
            net.domain,
            "Usage",
            usage_message(lease["id"], f"{lease['id']}:tick-{i}", seconds, usage["amount_gwei"], usage["fee_gwei"]),
            usage["signature"],
        )
    resp = client.post(f"/v1/leases/{lease['id']}/end", json={"reason": "completed"}, headers=p_auth)
    assert resp.status_code == 200 and resp.json()["end_reason"] == "completed"

    charged = 100 * units * n
    fee = charged * get_settings().platform_fee_bps // 10_000
    u_bal = client.get("/v1/account/balance", headers=u_auth).json()
    p_bal = client.get("/v1/account/balance", headers=p_auth).json()
    assert u_bal["user_gwei"] == GWEI - charged  # unused escrow refunded
    assert p_bal["earnings_gwei"] == charged - fee  # provider paid
    with net.store.read() as s:
        assert balance(s, Acct("fee", "platform")) == fee  # platform fee taken
        assert balance(s, Acct("escrow", lease["id"])) == 0
        assert total(s) == 0  # the ledger balances to zero
    kinds = {h["kind"] for h in client.get("/v1/account/history", headers=u_auth).json()}
    assert {"deposit", "escrow-hold", "refund"} <= kinds

    # Capacity came back; the provider withdraws its earnings to its wallet on chain.
    assert client.get(f"/v1/provisions/{ids[1]}").json()["free"]["cpu"] == 8
    before = net.chain.w3.eth.get_balance(provider.address)
    resp = client.post(
        "/v1/account/withdrawals",
        headers=p_auth,
        json={"amount_gwei": charged - fee, "source": "earnings", "idempotency_key": "payout-0001"},
    )
    assert resp.status_code == 200, resp.text
    assert net.chain.w3.eth.get_balance(provider.address) - before == (charged - fee) * GWEI
    with net.store.read() as s:
        assert total(s) == 0
