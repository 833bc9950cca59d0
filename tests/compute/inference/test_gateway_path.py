"""What a gateway request costs the API: the connections to providers come from one pool per event loop, not a
client per request; a request commits twice (its placement and its settlement), not once per step; and a caller
who can pay has the request sent while its lease is placed, never a caller who cannot."""

from __future__ import annotations

import threading

import httpx
import pytest
from sqlalchemy import event, select

from compute.inference import routing, upstream
from compute.market import placement
from compute.models import Lease, Provision
from cxmpute.db import get_engine
from tests.compute.inference.test_gateway import CHAT, market, server_url

__all__ = ["market", "server_url"]  # test_gateway's fixtures, used here too


def test_requests_share_one_pool_and_commit_twice_each(client, net, market, server_url, monkeypatch):
    p_auth, u_auth, provision = market
    assert (
        client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url}).status_code == 200
    )
    made: list[object] = []
    real = upstream.async_client

    def counted(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(upstream, "async_client", counted)
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    engine = get_engine(net.store.url)
    event.listen(engine, "commit", committed)
    try:
        for _ in range(3):
            assert client.post("/v1/chat/completions", headers=u_auth, json=CHAT).status_code == 200
        with client.stream("POST", "/v1/chat/completions", headers=u_auth, json={**CHAT, "stream": True}) as stream:
            assert [line for line in stream.iter_lines() if line.startswith("data: ")][-1] == "data: [DONE]"
    finally:
        event.remove(engine, "commit", committed)

    assert len(made) == 1
    assert len(commits) == 2 * 4
    records = client.get("/v1/inference/requests", headers=u_auth).json()
    assert [r["status"] for r in records] == ["ok"] * 4 and all(r["amount_gwei"] > 0 for r in records)


@pytest.fixture
def sent(monkeypatch) -> threading.Event:
    """Set when the gateway sends a completion to a provider."""
    sent = threading.Event()
    real = httpx.AsyncClient.send

    async def send(self, request, **kwargs):
        if request.url.path.endswith("/completions"):
            sent.set()
        return await real(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return sent


def _served(client, market, server_url) -> None:
    p_auth, _, provision = market
    assert (
        client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url}).status_code == 200
    )


def test_a_request_goes_to_its_provider_while_its_lease_is_placed(client, market, server_url, sent, monkeypatch):
    _served(client, market, server_url)
    seen_while_placing: list[bool] = []
    real = placement.sign_batch

    def signing(*args, **kwargs):
        seen_while_placing.append(sent.wait(10))
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "sign_batch", signing)
    assert client.post("/v1/chat/completions", headers=market[1], json=CHAT).status_code == 200
    assert seen_while_placing == [True]
    assert client.get("/v1/inference/requests", headers=market[1]).json()[0]["status"] == "ok"


def test_a_caller_who_cannot_pay_is_never_sent_to_a_provider(client, net, market, server_url, sent, make_wallet, login):
    _served(client, market, server_url)
    broke = login(client, make_wallet())
    resp = client.post("/v1/chat/completions", headers=broke, json=CHAT)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "insufficient_quota", resp.text
    assert not sent.is_set()


def test_a_request_sent_ahead_is_withdrawn_when_its_lease_is_refused(
    client, net, market, server_url, sent, make_wallet, login, monkeypatch
):
    """A caller whose balance went between the gateway's look at it and the placement: the request already sent
    is abandoned, the caller gets the refusal, and nothing is leased, billed or held."""
    _served(client, market, server_url)
    wallet = make_wallet()
    broke = login(client, wallet)
    monkeypatch.setattr(routing.Router, "_affords", lambda self, user, amount: True)
    resp = client.post("/v1/chat/completions", headers=broke, json={**CHAT, "stream": True})
    assert resp.status_code == 429 and resp.json()["error"]["param"] == "user_balance", resp.text
    assert sent.is_set()
    with net.store.read() as session:
        assert session.scalars(select(Lease).where(Lease.user == wallet.address)).all() == []
        assert session.get(Provision, market[2]).free_cpu == 2
