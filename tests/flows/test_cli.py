"""The CLI as a user runs it against the platform's API over real HTTP: a separate process, or (faster) the
same commands in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flows
from cxmpute.client import PlatformClient
from cxmpute.ports import free_port
from cxmpute.settings import reset_settings
from tests.support.workflows import APPROVAL

DIAMOND = Path(flows.__file__).parent / "templates" / "diamond.yaml"
CLI = [sys.executable, "-m", "cxmpute.cli"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def platform(api_url, monkeypatch):
    """This process's CLI pointed at the platform API; yields a client acting as the same wallet."""
    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    monkeypatch.setenv("COLUMNS", "120")
    reset_settings()
    with PlatformClient() as client:
        yield client
    monkeypatch.undo()
    reset_settings()


def invoke(*args: str):
    from cxmpute.cli import app

    return CliRunner().invoke(app, list(args))


def runs(client: PlatformClient) -> dict[str, dict]:
    return {r["id"]: r for r in client.get("/v1/runs", params={"limit": 500})["items"]}


def test_run_prints_outputs(api_url):
    result = cli("run", str(DIAMOND), "--input", "topic=cli", "--json", env={"CXMPUTE_API_URL": api_url})
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["outputs"] == {"report": "B saw 'cli' and C saw 'cli'"}
    assert {n["state"] for n in view["nodes"].values()} == {"completed"}
    assert "started run" in result.stderr
    assert "View at" not in result.stdout + result.stderr


def test_run_failure_exits_non_zero_and_names_the_node(api_url, tmp_path):
    doc = tmp_path / "wf.yaml"
    doc.write_text("name: bad\nnodes:\n  - {id: t, agent: io.template, params: {template: '{{ nope }}'}}\n")
    result = cli("run", str(doc), env={"CXMPUTE_API_URL": api_url})
    assert result.returncode == 1
    assert "node t failed" in result.stderr and "Traceback" not in result.stderr


def test_a_run_from_the_cli_is_in_the_platforms_history(platform):
    result = invoke("run", str(DIAMOND), "--input", "topic=history", "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["id"]
    recorded = runs(platform)[run_id]
    assert (recorded["workflow"], recorded["state"]) == ("diamond", "completed")

    listed = invoke("runs", "ls", "--limit", "5")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if run_id in line)  # the whole id on one line
    assert "diamond" in row and "completed" in row
    page = json.loads(invoke("runs", "ls", "--json", "--limit", "1").stdout)
    assert page["items"][0]["id"] == run_id and page["total"] >= 1 and page["limit"] == 1
    second = json.loads(invoke("runs", "ls", "--json", "--limit", "1", "--offset", "1").stdout)
    assert second["items"][0]["id"] != run_id

    shown = invoke("runs", "show", run_id, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["outputs"] == {
        "report": "B saw 'history' and C saw 'history'"
    }
    again = invoke("runs", "rerun", run_id, "--from", "d", "--json")
    assert again.exit_code == 0, again.output
    view = json.loads(again.stdout)
    assert {n: view["nodes"][n]["cached"] for n in "abcd"} == {"a": True, "b": True, "c": True, "d": False}
    assert runs(platform)[view["id"]]["workflow"] == "diamond"


def test_run_inputs_are_checked_by_the_platform_before_the_run_exists(platform, tmp_path):
    doc = tmp_path / "wf.yaml"
    doc.write_text(
        "name: typed\ninputs: {topic: {type: string}, n: {type: integer, default: 1}}\n"
        "nodes:\n  - {id: t, agent: io.input, params: {name: topic}}\n"
        "  - {id: n, agent: io.input, params: {name: n}}\n"
    )
    before = platform.get("/v1/runs", params={"limit": 1})["total"]
    result = invoke("run", str(doc), "--input", "topik=x", "--input", 'n="two"')
    assert result.exit_code == 1, result.output
    for text in ("inputs.topik", "inputs.topic", "inputs.n", "is required", "must be of type integer"):
        assert text in result.stderr
    assert "Traceback" not in result.output
    assert platform.get("/v1/runs", params={"limit": 1})["total"] == before


def test_unknown_run_or_node_is_one_line_naming_it(platform):
    missing = "00000000-0000-0000-0000-000000000000"
    for args in (
        ["runs", "show", missing],
        ["runs", "rerun", missing, "--from", "d"],
        ["runs", "resume", missing, "--approve"],
    ):
        result = invoke(*args)
        assert result.exit_code == 1 and "(run_id)" in result.stderr and missing in result.stderr, result.output
        assert "Traceback" not in result.output
    run_id = platform.post("/v1/runs", json={"document": json.loads(json.dumps(APPROVAL))})["id"]
    result = invoke("runs", "rerun", run_id, "--from", "nowhere")
    assert result.exit_code == 1 and "(node)" in result.stderr and "'nowhere'" in result.stderr
    assert "in, review" in result.stderr  # the nodes it has
    for _ in range(600):  # leave nothing waiting: answer the approval once the run asks for it
        if platform.get(f"/v1/runs/{run_id}")["state"] == "waiting":
            break
        time.sleep(0.2)
    platform.post(f"/v1/runs/{run_id}/resume", json={"approved": False})


def test_approvals_are_answered_through_the_platform(platform):
    run_id = platform.post("/v1/runs", json={"document": APPROVAL})["id"]
    for _ in range(600):
        if platform.get(f"/v1/runs/{run_id}")["state"] == "waiting":
            break
        time.sleep(0.2)
    answered = invoke("runs", "resume", run_id, "--approve", "--value", "edited", "--comment", "fine")
    assert answered.exit_code == 0, answered.output
    for _ in range(600):
        view = json.loads(invoke("runs", "show", run_id, "--json").stdout)
        if view["state"] == "completed":
            break
        time.sleep(0.2)
    assert view["outputs"] == {"final": "edited"}
    again = invoke("runs", "resume", run_id, "--approve")
    assert again.exit_code == 1 and "not waiting" in again.stderr


def test_with_the_platform_down_every_run_command_exits_2_at_once(prefect_api, monkeypatch):
    """Nothing runs on this machine instead (no in-process run, no temporary Prefect server), although a Prefect
    server answers: the platform's API is the one way in."""
    monkeypatch.setenv("CXMPUTE_API_URL", f"http://127.0.0.1:{free_port()}")
    reset_settings()
    try:
        for args in (["run", str(DIAMOND)], ["runs", "ls"], ["runs", "show", "x"]):
            result = invoke(*args)
            assert result.exit_code == 2, result.output
            assert "is not answering" in result.stderr and "Traceback" not in result.output
    finally:
        monkeypatch.undo()
        reset_settings()


def test_validate_lists_every_problem_and_exits_1(tmp_path):
    doc = tmp_path / "bad.yaml"
    doc.write_text(
        "nodes:\n"
        "  - {id: a, agent: nope.agent}\n"
        "  - {id: b, agent: io.template}\n"
        "edges:\n"
        "  - {source: b, source_field: text, target: ghost, target_field: value}\n"
    )
    result = cli("workflows", "validate", str(doc), env={"COLUMNS": "200"})
    assert result.returncode == 1
    for text in ("node a", "unknown_agent", "node b", "missing_input", "edge #0", "unknown_node"):
        assert text in result.stderr


def test_validate_accepts_the_template():
    result = cli("workflows", "validate", str(DIAMOND))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [["run", "/no/such/file.yaml"], ["run", str(DIAMOND), "--input", "novalue"]])
def test_bad_cli_input_is_a_usage_error(args):
    result = cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_agents_list_and_show(api_url):
    listed = cli("agents", "list", env={"COLUMNS": "200", "CXMPUTE_API_URL": api_url})
    assert listed.returncode == 0 and "io.template" in listed.stdout
    shown = cli("agents", "show", "io.template", env={"CXMPUTE_API_URL": api_url})
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["input_schema"]["required"] == ["template"]
    assert cli("agents", "show", "no.such", env={"CXMPUTE_API_URL": api_url}).returncode == 1
