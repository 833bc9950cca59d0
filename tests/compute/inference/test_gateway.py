"""The gateway's bookkeeping on SQLite and PostgreSQL: endpoint registration, per-request leases metered
and ended, suspension taking a provision out of matching, and dedicated deployments."""

from __future__ import annotations

import threading
import time

import pytest

from compute.inference import backends, endpoints
from compute.inference.server import create_app
from compute.models import Provision
from cxmpute.ports import free_port

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def server_url(tiny_lm):
    import uvicorn

    model = backends.load(backends.ModelSpec.parse("text", f"tiny={tiny_lm}"), "cpu")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app([model]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def market(client, net, make_wallet, login, register_provider, server_url):
    provider, user = make_wallet(), make_wallet()
    p_auth = register_provider(client, net, provider)
    resp = client.post(
        "/v1/provisions",
        headers=p_auth,
        json={"kind": "inference", "resources": {"cpu": 2, "memory_mb": 4096}, "price_gwei": 5, "models": ["tiny"]},
    )
    provision = resp.json()["id"]
    u_auth = login(client, user)
    tx = user.call_vault("deposit", 10**18)
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=u_auth).status_code == 200
    return p_auth, u_auth, provision


def _models(client) -> dict[str, dict]:
    return {m["id"]: m for m in client.get("/v1/models").json()["data"]}


def test_requests_are_metered_per_second_and_leases_ended(client, net, market, server_url):
    p_auth, u_auth, provision = market
    assert _models(client) == {}  # no server registered yet
    resp = client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    assert resp.status_code == 200 and resp.json()["models"] == ["tiny"]
    assert _models(client)["tiny"]["price_gwei"] == 5

    resp = client.post("/v1/chat/completions", headers=u_auth, json=CHAT)
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    with client.stream("POST", "/v1/chat/completions", headers=u_auth, json={**CHAT, "stream": True}) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert not any('"usage"' in e for e in events)  # asked of the provider by the gateway, not passed on

    streamed, whole = client.get("/v1/inference/requests", headers=u_auth).json()
    assert whole["completion_tokens"] == usage["completion_tokens"] and streamed["completion_tokens"] > 0
    for record in (streamed, whole):
        lease = client.get(f"/v1/leases/{record['lease_id']}", headers=u_auth).json()
        assert lease["end_reason"] == "completed" and lease["metered_s"] == record["seconds"] >= 1
        assert lease["paid_gwei"] == record["amount_gwei"] == 5 * lease["compute_units"] * record["seconds"]
    with net.store.read() as session:  # capacity is back
        assert session.get(Provision, provision).free_cpu == 2


def test_a_suspended_server_leaves_matching_until_registered_again(client, net, market, server_url):
    p_auth, u_auth, provision = market
    client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    endpoints.suspend(net, provision)
    assert client.get(f"/v1/provisions/{provision}").json()["status"] == "paused"
    assert _models(client) == {}
    resp = client.post("/v1/chat/completions", headers=u_auth, json=CHAT)
    assert resp.status_code == 503 and resp.json()["error"]["param"] == "model"  # known, but no provider serves it now

    client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    assert client.get(f"/v1/provisions/{provision}").json()["status"] == "active"
    assert client.post("/v1/chat/completions", headers=u_auth, json=CHAT).status_code == 200


def test_a_provider_paused_provision_stays_paused_on_registration(client, net, market, server_url):
    p_auth, _, provision = market
    client.patch(f"/v1/provisions/{provision}", headers=p_auth, json={"status": "paused"})
    client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    endpoints.suspend(net, provision)
    client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    assert client.get(f"/v1/provisions/{provision}").json()["status"] == "paused"


def test_a_deployment_takes_the_whole_provision(client, net, market, server_url, make_wallet, login):
    p_auth, u_auth, provision = market
    client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url})
    resp = client.post(
        "/v1/inference/deployments", headers=u_auth, json={"model": "tiny", "term": "hour", "price_max_gwei": 5}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["cpu"] == 2 and resp.json()["provision_id"] == provision
    assert client.post("/v1/chat/completions", headers=u_auth, json=CHAT).status_code == 200
    record = client.get("/v1/inference/requests", headers=u_auth).json()[0]
    assert record["lease_id"] is None and record["amount_gwei"] == 0

    other = make_wallet()
    o_auth = login(client, other)
    tx = other.call_vault("deposit", 10**18)
    client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=o_auth)
    resp = client.post("/v1/chat/completions", headers=o_auth, json=CHAT)
    assert resp.status_code == 503  # the provision is rented out whole
    assert (
        client.post(
            "/v1/inference/deployments", headers=u_auth, json={"model": "tiny", "term": "hour", "price_max_gwei": 4}
        ).status_code
        == 409
    )
