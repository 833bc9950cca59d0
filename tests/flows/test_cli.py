"""The CLI as a user runs it: a separate process against a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flows
from flows.server import client_env

DIAMOND = Path(flows.__file__).parent / "templates" / "diamond.yaml"
CLI = [sys.executable, "-m", "cxmpute.cli"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_run_prints_outputs(prefect_api):
    result = cli("run", str(DIAMOND), "--input", "topic=cli", "--json", env=client_env(prefect_api))
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["outputs"] == {"report": "B saw 'cli' and C saw 'cli'"}
    assert {n["state"] for n in view["nodes"].values()} == {"completed"}
    assert "started run" in result.stderr


def test_run_failure_exits_non_zero_and_names_the_node(prefect_api, tmp_path):
    doc = tmp_path / "wf.yaml"
    doc.write_text("name: bad\nnodes:\n  - {id: t, agent: io.template, params: {template: '{{ nope }}'}}\n")
    result = cli("run", str(doc), env=client_env(prefect_api))
    assert result.returncode == 1
    assert "node t failed" in result.stderr


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


def test_agents_list_and_show():
    listed = cli("agents", "list", env={"COLUMNS": "200"})
    assert listed.returncode == 0 and "io.template" in listed.stdout
    shown = cli("agents", "show", "io.template")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["input_schema"]["required"] == ["template"]
    assert cli("agents", "show", "no.such").returncode == 1
