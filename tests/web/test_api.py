"""The agent and workflow API over real HTTP (uvicorn on 127.0.0.1), runs read from the Prefect API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

import flows
from flows.spec import load_document

DIAMOND = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")


@pytest.fixture
def http(api_url):
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def wait_done(http, run_id: str) -> dict:
    for _ in range(600):
        view = http.get(f"/v1/runs/{run_id}").json()
        if view["state"] in {"completed", "failed", "cancelled"} and all(
            n["state"] in {"completed", "failed", "skipped"} for n in view["nodes"].values()
        ):
            return view
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {view}")


def test_health(http):
    assert http.get("/healthz").json()["status"] == "ok"


def test_agents_catalogue_has_schemas(http):
    body = http.get("/v1/agents").json()
    template = next(a for a in body["items"] if a["id"] == "io.template")
    assert template["input_schema"]["properties"]["template"]["type"] == "string"
    assert "text" in template["output_schema"]["properties"]
    assert http.get("/v1/agents", params={"q": "template"}).json()["total"] >= 1


def test_invoke_agent(http):
    r = http.post("/v1/agents/io.template/invoke", json={"input": {"template": "Hi {{ n }}", "variables": {"n": 3}}})
    assert r.status_code == 200 and r.json()["output"] == {"text": "Hi 3"}


@pytest.mark.parametrize(
    "path,body,status,field",
    [
        ("/v1/agents/io.template/invoke", {"input": {}}, 422, "input.template"),
        ("/v1/agents/util.wait/invoke", {"input": {"seconds": "soon"}}, 422, "input.seconds"),
        ("/v1/agents/no.such/invoke", {"input": {}}, 404, "agent"),
        ("/v1/agents/io.template/invoke", {"input": {"template": "{{ x }}"}}, 400, "variables"),
    ],
)
def test_invoke_errors_name_the_field(http, path, body, status, field):
    r = http.post(path, json=body)
    assert r.status_code == status
    assert r.json()["field"] == field and r.json()["detail"]


def test_schema_published(http):
    schema = http.get("/v1/workflows/schema").json()
    assert {"nodes", "edges", "inputs", "outputs"} <= set(schema["properties"])


def test_workflow_crud_versions_and_run(http):
    created = http.post("/v1/workflows", json=DIAMOND)
    assert created.status_code == 201
    wf = created.json()
    assert wf["version"] == 1 and all(n["agent_version"] for n in wf["document"]["nodes"])
    changed = dict(DIAMOND, description="second version")
    assert http.put(f"/v1/workflows/{wf['id']}", json=changed).json()["version"] == 2
    assert http.get(f"/v1/workflows/{wf['id']}/versions").json() == [1, 2]
    assert (
        http.get(f"/v1/workflows/{wf['id']}", params={"version": 1}).json()["document"]["description"]
        != "second version"
    )
    listed = http.get("/v1/workflows", params={"limit": 1}).json()
    assert listed["total"] >= 1 and len(listed["items"]) == 1

    started = http.post(f"/v1/workflows/{wf['id']}/runs", json={"inputs": {"topic": "api"}})
    assert started.status_code == 202
    view = wait_done(http, started.json()["id"])
    assert view["state"] == "completed"
    assert view["outputs"] == {"report": "B saw 'api' and C saw 'api'"}
    assert view["nodes"]["d"]["inputs"]["variables"] == {"left": "api", "right": "api"}
    b, c = view["nodes"]["b"], view["nodes"]["c"]
    assert b["started_at"] < c["finished_at"] and c["started_at"] < b["finished_at"]
    runs = http.get("/v1/runs", params={"workflow_id": wf["id"]}).json()
    assert runs["items"][0]["id"] == started.json()["id"]

    rerun = http.post(f"/v1/runs/{started.json()['id']}/rerun", json={"node": "d"})
    again = wait_done(http, rerun.json()["id"])
    assert again["nodes"]["b"]["cached"] and not again["nodes"]["d"]["cached"]

    assert http.delete(f"/v1/workflows/{wf['id']}").status_code == 204
    assert http.get(f"/v1/workflows/{wf['id']}").status_code == 404
    assert http.get(f"/v1/runs/{started.json()['id']}").status_code == 200  # runs outlive their workflow


def test_invalid_workflow_gives_every_error_with_node_ids(http):
    doc = {
        "nodes": [
            {"id": "a", "agent": "nope"},
            {"id": "b", "agent": "io.template"},
            {"id": "c", "agent": "util.wait", "params": {"seconds": -5}},
        ],
        "edges": [{"source": "b", "source_field": "nope", "target": "c", "target_field": "value"}],
    }
    for r in (http.post("/v1/workflows", json=doc), http.post("/v1/runs", json={"document": doc})):
        assert r.status_code == 422
        errors = {(e["code"], e["node"]) for e in r.json()["errors"]}
        assert {("unknown_agent", "a"), ("missing_input", "b"), ("bad_param", "c"), ("unknown_port", "b")} <= errors
    report = http.post("/v1/workflows/validate", json=doc).json()
    assert report["valid"] is False and len(report["problems"]) == 4


def test_failing_node_reported_through_api(http):
    doc = {"name": "fails", "nodes": [{"id": "t", "agent": "io.template", "params": {"template": "{{ x }}"}}]}
    view = wait_done(http, http.post("/v1/runs", json={"document": doc}).json()["id"])
    assert view["state"] == "failed"
    assert view["nodes"]["t"]["state"] == "failed" and "template variable missing" in view["nodes"]["t"]["error"]


def test_approval_answered_through_api(http):
    doc = {
        "name": "approve",
        "inputs": {"v": {"default": 1}},
        "outputs": {"out": {"node": "ok", "field": "value"}},
        "nodes": [{"id": "i", "agent": "io.input", "params": {"name": "v"}}, {"id": "ok", "agent": "hitl.approve"}],
        "edges": [{"source": "i", "source_field": "value", "target": "ok", "target_field": "value"}],
    }
    run_id = http.post("/v1/runs", json={"document": doc}).json()["id"]
    for _ in range(600):
        view = http.get(f"/v1/runs/{run_id}").json()
        if view["state"] == "waiting":
            break
        time.sleep(0.2)
    assert view["waiting_for"] == ["ok"]
    assert http.post(f"/v1/runs/{run_id}/resume", json={"approved": "maybe"}).status_code == 422
    assert http.post(f"/v1/runs/{run_id}/resume", json={"approved": True, "value": 2}).status_code == 202
    assert wait_done(http, run_id)["outputs"] == {"out": 2}
    again = http.post(f"/v1/runs/{run_id}/resume", json={"approved": True})
    assert again.status_code == 409 and "not waiting" in again.json()["detail"]


def test_unknown_run_and_bad_bodies(http):
    assert http.get("/v1/runs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert http.get("/v1/runs/not-a-uuid").status_code == 404
    r = http.post("/v1/workflows", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
