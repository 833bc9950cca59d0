"""Runs through the API over real HTTP: inputs checked before anything is created, run history with each run's
workflow and state, and errors naming the run or the node."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

import flows
from cxmpute.client import PlatformClient, PlatformError
from cxmpute.settings import reset_settings
from flows.spec import load_document

DIAMOND = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")
TYPED = {
    "name": "typed",
    "inputs": {"topic": {"type": "string"}, "n": {"type": "integer", "default": 1}},
    "outputs": {"topic": {"node": "t", "field": "value"}},
    "nodes": [
        {"id": "t", "agent": "io.input", "params": {"name": "topic"}},
        {"id": "n", "agent": "io.input", "params": {"name": "n"}},
    ],
}
MISSPELLED = {"topik": "x", "n": "two"}
EXPECTED = {("unknown_run_input", "inputs.topik"), ("missing_run_input", "inputs.topic"), ("bad_run_input", "inputs.n")}


@pytest.fixture
def api(api_url, monkeypatch):
    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    with PlatformClient() as client:
        yield client
    monkeypatch.undo()
    reset_settings()


def refused(call) -> PlatformError:
    with pytest.raises(PlatformError) as exc:
        call()
    return exc.value


def finished(api: PlatformClient, run_id: str) -> dict:
    for _ in range(600):
        view = api.get(f"/v1/runs/{run_id}")
        if view["state"] in {"completed", "failed"} and all(
            n["state"] in {"completed", "failed", "skipped"} for n in view["nodes"].values()
        ):
            return view
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {view}")


def total(api: PlatformClient) -> int:
    return api.get("/v1/runs", params={"limit": 1})["total"]


def test_run_inputs_are_checked_before_a_run_is_created(api):
    before = total(api)
    saved = api.post("/v1/workflows", json=TYPED)
    for call in (
        lambda: api.post("/v1/runs", json={"document": TYPED, "inputs": MISSPELLED}),
        lambda: api.post(f"/v1/workflows/{saved['id']}/runs", json={"inputs": MISSPELLED}),
    ):
        error = refused(call)
        assert error.status_code == 422
        assert {(e["code"], e["field"]) for e in error.errors} == EXPECTED
    assert total(api) == before

    started = api.post("/v1/runs", json={"document": TYPED, "inputs": {"topic": "x"}})
    assert finished(api, started["id"])["outputs"] == {"topic": "x"}
    error = refused(lambda: api.post(f"/v1/runs/{started['id']}/rerun", json={"node": "t", "inputs": MISSPELLED}))
    assert error.status_code == 422 and {(e["code"], e["field"]) for e in error.errors} == EXPECTED
    assert total(api) == before + 1


def test_history_lists_each_runs_workflow_and_state(api):
    saved = api.post("/v1/workflows", json=DIAMOND)
    from_saved = api.post(f"/v1/workflows/{saved['id']}/runs", json={"inputs": {"topic": "history"}})["id"]
    fails = api.post(
        "/v1/runs",
        json={
            "document": {
                "name": "fails",
                "nodes": [{"id": "t", "agent": "io.template", "params": {"template": "{{ nope }}"}}],
            }
        },
    )["id"]
    finished(api, from_saved)
    finished(api, fails)
    rerun = api.post(f"/v1/runs/{from_saved}/rerun", json={"node": "d"})["id"]
    finished(api, rerun)

    items = {r["id"]: r for r in api.get("/v1/runs", params={"limit": 3})["items"]}
    assert set(items) == {from_saved, fails, rerun}
    assert (items[from_saved]["workflow"], items[from_saved]["state"]) == ("diamond", "completed")
    assert (items[fails]["workflow"], items[fails]["state"]) == ("fails", "failed")
    for item in items.values():  # a finished run says when it ran
        started, ended = (datetime.fromisoformat(item[k]) for k in ("started_at", "finished_at"))
        assert started <= ended
    # a re-run belongs to the workflow its original ran
    assert items[rerun]["workflow"] == "diamond" and items[rerun]["workflow_id"] == saved["id"]
    assert [r["id"] for r in api.get("/v1/runs", params={"limit": 1, "offset": 2})["items"]] == [from_saved]


def test_unknown_run_or_node_is_named(api):
    missing = "00000000-0000-0000-0000-000000000000"
    for call in (
        lambda: api.get(f"/v1/runs/{missing}"),
        lambda: api.post(f"/v1/runs/{missing}/rerun", json={"node": "d"}),
        lambda: api.post(f"/v1/runs/{missing}/resume", json={"approved": True}),
    ):
        error = refused(call)
        assert (error.status_code, error.field) == (404, "run_id")
    run_id = api.post("/v1/runs", json={"document": DIAMOND})["id"]
    finished(api, run_id)
    error = refused(lambda: api.post(f"/v1/runs/{run_id}/rerun", json={"node": "zz"}))
    assert (error.status_code, error.field) == (422, "node")
    assert "'zz'" in error.message and "a, b, c, d" in error.message


def test_run_views_show_only_the_workflows_nodes(api):
    doc = {
        "name": "skips",
        "nodes": [
            {"id": "t", "agent": "io.template", "params": {"template": "{{ nope }}"}},
            {"id": "after", "agent": "io.output"},
        ],
        "edges": [{"source": "t", "source_field": "text", "target": "after", "target_field": "value"}],
    }
    view = finished(api, api.post("/v1/runs", json={"document": doc})["id"])
    assert {n: v["state"] for n, v in view["nodes"].items()} == {"t": "failed", "after": "skipped"}
