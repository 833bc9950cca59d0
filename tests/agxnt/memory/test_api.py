"""The memories REST views through the real app and real credentials (API keys of two accounts)."""

from __future__ import annotations

import secrets
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from agxnt.memory.store import DocumentIn
from agxnt.memory.threads import EntryIn
from compute.identity.tokens import SCOPES, ApiKeyCreate, Principal, create_api_key
from compute.network import get_network
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
    bob, bob_auth = _account()
    store = platform.memory
    store.write(alice, "kb", [DocumentIn(id=f"n{i}", text=f"note {i} about tides", metadata={"i": i})
                              for i in range(5)])
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
    filtered = client.get("/v1/memories/kb/items", params={"filter": '{"i": {"$gte": 3}}'},
                          headers=accounts["alice"]).json()
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


@pytest.mark.parametrize("path, params, status, field", [
    ("/v1/memories/kb/items", {"filter": "{not json"}, 400, "filter"),
    ("/v1/memories/kb/items", {"filter": '{"i": {"$like": 1}}'}, 400, "filter"),
    ("/v1/memories/kb/items", {"filter": "[1]"}, 400, "filter"),
    ("/v1/memories/kb/items", {"limit": 0}, 422, "limit"),
    ("/v1/memories/kb/items/ghost", {}, 404, "item_id"),
    ("/v1/memories/no%20such/items", {}, 404, "memory"),
    ("/v1/memories/-bad/items", {}, 400, "memory"),
])
def test_bad_requests_are_named_4xx(app, accounts, path, params, status, field):
    resp = TestClient(app).get(path, params=params, headers=accounts["alice"])
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body.get("field") == field or any(e["field"].endswith(field) for e in body.get("errors", []))


def test_invalid_credential_is_401(app):
    resp = TestClient(app).get("/v1/memories", headers={"Authorization": "Bearer cxk_nope_nope"})
    assert resp.status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_over_real_http(app, accounts):
    port = _free_port()
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
