"""What a gateway request costs the API: the connections to providers come from one pool per event loop, not a
client per request, and a request commits twice (its placement and its settlement), not once per step."""

from __future__ import annotations

from sqlalchemy import event

from compute.inference import gateway
from cxmpute.db import get_engine
from tests.compute.inference.test_gateway import CHAT, market, server_url

__all__ = ["market", "server_url"]  # test_gateway's fixtures, used here too


def test_requests_share_one_pool_and_commit_twice_each(client, net, market, server_url, monkeypatch):
    p_auth, u_auth, provision = market
    assert (
        client.put(f"/v1/inference/endpoints/{provision}", headers=p_auth, json={"url": server_url}).status_code == 200
    )
    made: list[object] = []
    real = gateway.async_client

    def counted(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(gateway, "async_client", counted)
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
