"""GET /v1/runs/{id}/events over real HTTP: run views as they change, log lines, then the end of the stream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

import flows
from flows.spec import load_document

DIAMOND = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_a_run_streams_until_every_node_settles(api_url):
    with httpx.Client(base_url=api_url, timeout=120) as http:
        run_id = http.post("/v1/runs", json={"document": DIAMOND, "inputs": {"topic": "sse"}}).json()["id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response)
    views = [data for name, data in events if name == "run"]
    assert events[-1] == ("end", {"state": "completed"})
    assert views[-1]["state"] == "completed"
    assert {n["state"] for n in views[-1]["nodes"].values()} == {"completed"}
    assert views[-1]["outputs"] == {"report": "B saw 'sse' and C saw 'sse'"}
    # the stream sends a view only when it changed
    assert all(a != b for a, b in zip(views, views[1:]))
    logs = [data for name, data in events if name == "log"]
    assert logs and all(set(line) == {"time", "level", "node", "message"} for line in logs)


def test_unknown_runs_are_a_404_naming_the_run(api_url):
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-run"):
        r = httpx.get(f"{api_url}/v1/runs/{run_id}/events", timeout=30)
        assert r.status_code == 404 and r.json()["field"] == "run_id"
