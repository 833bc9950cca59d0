"""The memories REST views through the real app and real credentials (API keys of two accounts)."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from agxnt.memory.items import DocumentIn
from agxnt.memory.threads import EntryIn
from compute.identity.tokens import SCOPES, ApiKeyCreate, Principal, create_api_key
from compute.network import get_network
from cxmpute.ports import free_port
from web.app import create_app


@pytest.fixture(scope="module")
def app(platform):
    return create_app()


def _account() -> tuple[str, dict[str, str]]:
    address = "0x" + secrets.token_hex(20)
    principal = Principal(address=address, scopes=frozenset(SCOPES), via="session")
    key = create_api_key(get_network().store, principal, ApiKeyCreate(name="memory tests"))
    return address, {"Authorization": f"Bearer {key.key}"}


@pytest.fixture
def accounts(app, platform):
    alice, alice_auth = _account()
    _, bob_auth = _account()
    store = platform.memory
    store.write(
        alice, "kb", [DocumentIn(id=f"n{i}", text=f"note {i} about tides", metadata={"i": i}) for i in range(5)]
    )
    chunks = store.write(alice, "kb", [DocumentIn(id="long", text="tide " * 400)], chunk_size=300, chunk_overlap=50)
    store.threads.append(alice, "chat", [EntryIn(role="user", content="hello")])
    return {"alice": alice_auth, "bob": bob_auth, "total": 5 + len(chunks)}


def test_list_memories_and_page_items(app, accounts):
    client = TestClient(app)
    total = accounts["total"]
    assert client.get("/v1/memories", headers=accounts["alice"]).json() == [{"name": "kb", "count": total}]
    first = client.get("/v1/memories/kb/items", params={"limit": 5}, headers=accounts["alice"]).json()
    second = client.get("/v1/memories/kb/items", params={"limit": 5, "offset": 5}, headers=accounts["alice"]).json()
    assert first["total"] == total and len(first["items"]) == 5 and len(second["items"]) == 5
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    filtered = client.get(
        "/v1/memories/kb/items", params={"filter": '{"i": {"$gte": 3}}'}, headers=accounts["alice"]
    ).json()
    assert {i["id"] for i in filtered["items"]} == {"n3", "n4"}
    item = client.get("/v1/memories/kb/items/long%230", headers=accounts["alice"]).json()
    assert item["document_id"] == "long" and item["chunk"] == 0
    assert client.get("/v1/memories/threads", headers=accounts["alice"]).json() == [{"thread": "chat", "count": 1}]
    window = client.get("/v1/memories/threads/chat", headers=accounts["alice"]).json()
    assert [e["content"] for e in window["entries"]] == ["hello"]


def test_another_account_sees_nothing(app, accounts):
    client = TestClient(app)
    assert client.get("/v1/memories", headers=accounts["bob"]).json() == []
    resp = client.get("/v1/memories/kb/items", headers=accounts["bob"])
    assert resp.status_code == 404 and resp.json()["field"] == "memory"
    assert client.get("/v1/memories/kb/items/n1", headers=accounts["bob"]).status_code == 404
    assert client.get("/v1/memories/threads", headers=accounts["bob"]).json() == []
    assert client.get("/v1/memories/threads/chat", headers=accounts["bob"]).status_code == 404


@pytest.mark.parametrize(
    "path, params, status, field",
    [
        ("/v1/memories/kb/items", {"filter": "{not json"}, 400, "filter"),
        ("/v1/memories/kb/items", {"filter": '{"i": {"$like": 1}}'}, 400, "filter"),
        ("/v1/memories/kb/items", {"filter": "[1]"}, 400, "filter"),
        ("/v1/memories/kb/items", {"limit": 0}, 422, "limit"),
        ("/v1/memories/kb/items/ghost", {}, 404, "item_id"),
        ("/v1/memories/no%20such/items", {}, 404, "memory"),
        ("/v1/memories/-bad/items", {}, 400, "memory"),
    ],
)
def test_bad_requests_are_named_4xx(app, accounts, path, params, status, field):
    resp = TestClient(app).get(path, params=params, headers=accounts["alice"])
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body.get("field") == field or any(e["field"].endswith(field) for e in body.get("errors", []))


def test_invalid_credential_is_401(app):
    resp = TestClient(app).get("/v1/memories", headers={"Authorization": "Bearer cxk_nope_nope"})
    assert resp.status_code == 401


def test_served_over_real_http(app, accounts):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # up to 20 s to start
            if server.started:
                break
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=accounts["alice"]) as client:
            assert client.get("/v1/memories").json() == [{"name": "kb", "count": accounts["total"]}]
            page = client.get("/v1/memories/kb/items", params={"limit": 3}).json()
            assert page["total"] == accounts["total"] and len(page["items"]) == 3
    finally:
        server.should_exit = True
        thread.join(timeout=20)


# --- the agents through /v1/agents/{id}/invoke -------------------------------------------------------


def _invoke(client, auth, agent_id, payload):
    return client.post(f"/v1/agents/{agent_id}/invoke", json={"input": payload}, headers=auth)


def ok(resp) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()["output"]


def test_every_agent_through_the_agent_api(app, accounts):
    client, auth = TestClient(app), accounts["alice"]
    out = ok(
        _invoke(
            client,
            auth,
            "memory.write",
            {
                "memory": "api",
                "documents": [
                    {"id": "x", "text": "Kites fly in strong wind.", "metadata": {"k": 1}},
                    {"id": "y", "text": "Submarines dive under the sea.", "metadata": {"k": 2}},
                ],
            },
        )
    )
    assert out["ids"] == ["x", "y"]
    assert ok(_invoke(client, auth, "memory.search", {"memory": "api", "query": "underwater boat", "k": 1}))["ids"] == [
        "y"
    ]
    assert ok(_invoke(client, auth, "memory.ask", {"memory": "api", "question": "What flies in wind?", "k": 1}))[
        "passage_ids"
    ] == ["x"]
    assert ok(_invoke(client, auth, "memory.update", {"memory": "api", "id": "x", "metadata": {"k": 3}}))["ids"] == [
        "x"
    ]
    assert ok(_invoke(client, auth, "memory.delete", {"memory": "api", "filter": {"k": 2}}))["deleted"] == ["y"]
    assert ok(_invoke(client, auth, "memory.clear", {"memory": "api"}))["deleted"] == 1
    seq = ok(_invoke(client, auth, "memory.sequential", {"thread": "api", "action": "append", "message": "hi"}))
    assert seq["appended"] == [0]
    ok(
        _invoke(
            client,
            auth,
            "db.dxtabase",
            {"action": "create_table", "table": "t", "columns": [{"name": "a", "type": "integer"}]},
        )
    )
    ok(_invoke(client, auth, "db.dxtabase", {"action": "insert", "table": "t", "rows": [{"a": 7}]}))
    assert ok(_invoke(client, auth, "db.dxtabase", {"sql": "SELECT a FROM t"}))["rows"] == [{"a": 7}]


def test_agent_api_isolates_accounts(app, accounts):
    client = TestClient(app)
    resp = _invoke(client, accounts["bob"], "memory.search", {"memory": "kb", "query": "tides"})
    assert resp.status_code == 404 and resp.json()["field"] == "memory"
    resp = _invoke(client, accounts["bob"], "memory.delete", {"memory": "kb", "ids": ["n1"]})
    assert resp.status_code == 404
    seq = _invoke(client, accounts["bob"], "memory.sequential", {"thread": "chat"}).json()["output"]
    assert seq["entries"] == []
    assert _invoke(client, accounts["bob"], "db.dxtabase", {"action": "schema"}).json()["output"]["tables"] == []
    still = _invoke(client, accounts["alice"], "memory.search", {"memory": "kb", "query": "tides", "k": 50})
    assert len(still.json()["output"]["ids"]) == accounts["total"]


@pytest.mark.parametrize(
    "agent_id, payload, status, field",
    [
        ("memory.write", {"memory": "kb", "text": ""}, 400, "text"),
        ("memory.write", {"memory": "kb", "documents": [{"text": "x" * 1_000_001}]}, 413, "documents.0.text"),
        ("memory.search", {"memory": "kb", "query": "x", "filter": {"i": {"$regex": "."}}}, 400, "filter"),
        ("memory.search", {"memory": "ghost", "query": "x"}, 404, "memory"),
        ("memory.search", {"memory": "kb", "query": "x", "k": 0}, 422, "input.k"),
        ("memory.ask", {"memory": "kb"}, 422, "input.question"),
        ("memory.update", {"memory": "kb", "id": "nope", "text": "x"}, 404, "id"),
        ("memory.clear", {"memory": "ghost"}, 404, "memory"),
        ("db.dxtabase", {"sql": "ATTACH DATABASE 'x.db' AS x"}, 403, "sql"),
    ],
)
def test_agent_api_bad_input_is_a_named_4xx_and_changes_nothing(app, accounts, agent_id, payload, status, field):
    client, auth = TestClient(app), accounts["alice"]
    before = client.get("/v1/memories/kb/items", params={"limit": 1000}, headers=auth).json()
    resp = _invoke(client, auth, agent_id, payload)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field
    assert client.get("/v1/memories/kb/items", params={"limit": 1000}, headers=auth).json() == before
