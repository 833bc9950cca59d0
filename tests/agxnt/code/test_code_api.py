"""The code agents through the agent API, with real credentials of two accounts, and over real HTTP."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from compute.identity.tokens import SCOPES, ApiKeyCreate, Principal, create_api_key
from compute.network import get_network
from compute.runtimes import runtime_registry
from cxmpute.ports import free_port
from cxmpute.settings import get_settings
from web.app import create_app


@pytest.fixture(scope="module")
def app():
    return create_app()


def _auth() -> dict[str, str]:
    principal = Principal(address="0x" + secrets.token_hex(20), scopes=frozenset(SCOPES), via="session")
    key = create_api_key(get_network().store, principal, ApiKeyCreate(name="code tests"))
    return {"Authorization": f"Bearer {key.key}"}


@pytest.fixture
def accounts(app):
    return {"alice": _auth(), "bob": _auth()}


def invoke(client, agent: str, input: dict, headers: dict) -> httpx.Response:
    return client.post(f"/v1/agents/{agent}/invoke", json={"input": input}, headers=headers)


def test_codexecution_through_the_api(app, accounts):
    client = TestClient(app)
    resp = invoke(
        client, "code.exec", {"code": "print('hi')\nsum(inputs['xs'])", "inputs": {"xs": [1, 2, 3]}}, accounts["alice"]
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()["output"]
    assert (out["status"], out["stdout"], out["result"], out["runtime"]) == ("ok", "hi\n", 6, "sandbox")
    broken = invoke(client, "code.exec", {"code": "def (:"}, accounts["alice"]).json()["output"]
    assert broken["status"] == "error" and "SyntaxError" in broken["error"]


@pytest.mark.parametrize(
    "input, status, field",
    [
        ({}, 422, "input.code"),
        ({"code": "1", "timeout_seconds": -1}, 422, "input.timeout_seconds"),
        ({"code": "1", "language": "cobol"}, 422, "input.language"),
        ({"code": "1", "runtime": "vm9000"}, 400, "runtime"),
        ({"code": "1", "files": [{"path": "../../etc/passwd", "text": "x"}]}, 400, "path"),
        ({"code": "1", "fail_on_error": True, "timeout_seconds": 1, "cpu_seconds": 1}, 200, None),
    ],
)
def test_bad_input_is_a_named_4xx(app, accounts, input, status, field):
    resp = invoke(TestClient(app), "code.exec", input, accounts["alice"])
    assert resp.status_code == status, resp.text
    if field:
        assert resp.json()["field"] == field


def test_failed_code_with_fail_on_error_is_a_422(app, accounts):
    resp = invoke(TestClient(app), "code.exec", {"code": "1/0", "fail_on_error": True}, accounts["alice"])
    assert resp.status_code == 422 and resp.json()["field"] == "code" and "ZeroDivisionError" in resp.json()["detail"]


def test_sessions_are_owned(app, accounts):
    client = TestClient(app)
    opened = invoke(client, "code.sequential", {"cells": ["secret = 41"], "keep_open": True}, accounts["alice"])
    assert opened.status_code == 200, opened.text
    session_id = opened.json()["output"]["session_id"]
    stolen = invoke(client, "code.sequential", {"session_id": session_id, "cells": ["secret"]}, accounts["bob"])
    assert stolen.status_code == 403 and stolen.json()["field"] == "session_id"
    assert client.get("/v1/code/sessions", headers=accounts["bob"]).json() == []
    assert client.delete(f"/v1/code/sessions/{session_id}", headers=accounts["bob"]).status_code == 403
    mine = client.get("/v1/code/sessions", headers=accounts["alice"]).json()
    assert [s["id"] for s in mine] == [session_id] and mine[0]["alive"]
    again = invoke(client, "code.sequential", {"session_id": session_id, "cells": ["secret + 1"]}, accounts["alice"])
    assert again.json()["output"]["cells"][0]["result"] == 42
    assert client.delete(f"/v1/code/sessions/{session_id}", headers=accounts["alice"]).status_code == 204
    gone = client.delete(f"/v1/code/sessions/{session_id}", headers=accounts["alice"])
    assert gone.status_code == 404 and gone.json()["field"] == "session_id"


def test_runtimes_listed(app, accounts):
    runtimes = {r["name"]: r for r in TestClient(app).get("/v1/runtimes", headers=accounts["alice"]).json()}
    assert runtimes["sandbox"]["available"] and runtimes["sandbox"]["default"]
    assert "container" in runtimes


def test_both_agents_on_every_offered_runtime_over_real_http(app, accounts):
    offered = runtime_registry(get_settings()).offered()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # up to 20 s to start
            if server.started:
                break
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=accounts["alice"], timeout=120) as client:
            for runtime in offered:
                out = invoke(
                    client,
                    "code.exec",
                    {
                        "runtime": runtime,
                        "language": "shell",
                        "code": 'echo \'{"ran": true}\' > "$RESULT_FILE"; echo done',
                    },
                    {},
                ).json()["output"]
                assert (out["status"], out["stdout"], out["result"], out["runtime"]) == (
                    "ok",
                    "done\n",
                    {"ran": True},
                    runtime,
                )
                seq = invoke(client, "code.sequential", {"runtime": runtime, "cells": ["n = 5", "n * n"]}, {}).json()[
                    "output"
                ]
                assert seq["runtime"] == runtime and seq["cells"][1]["result"] == 25 and not seq["open"]
    finally:
        server.should_exit = True
        thread.join(timeout=20)
