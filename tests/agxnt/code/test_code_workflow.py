"""Codexecution and Sequential Code as nodes of a real Prefect workflow run, on each runtime."""

from __future__ import annotations

import pytest

from compute.runtimes import runtime_registry
from cxmpute.settings import get_settings
from flows.runner import run_workflow

RUNTIMES = ["sandbox", pytest.param("container", marks=[pytest.mark.docker, pytest.mark.slow])]


def document(runtime: str) -> dict:
    return {
        "version": 1,
        "name": f"code on {runtime}",
        "inputs": {"numbers": {"type": "array", "required": True}},
        "outputs": {
            "stats": {"node": "stats", "field": "result"},
            "report": {"node": "analyse", "field": "cells"},
            "files": {"node": "stats", "field": "files"},
        },
        "nodes": [
            {"id": "numbers", "agent": "io.input", "params": {"name": "numbers"}},
            {
                "id": "stats",
                "agent": "code.exec",
                "params": {
                    "runtime": runtime,
                    "code": "import json, statistics\n"
                    "nums = inputs['nums']\n"
                    "open('stats.json', 'w').write(json.dumps({'mean': statistics.mean(nums)}))\n"
                    "{'total': sum(nums), 'mean': statistics.mean(nums), 'n': len(nums)}",
                },
            },
            {
                "id": "analyse",
                "agent": "code.sequential",
                "params": {
                    "runtime": runtime,
                    "cells": [
                        "stats = inputs['stats']\nscaled = [stats['mean'] * k for k in range(3)]",
                        "print('scaled', scaled)\nsum(scaled)",
                    ],
                },
            },
        ],
        "edges": [
            {"source": "numbers", "source_field": "value", "target": "stats", "target_field": "inputs.nums"},
            {"source": "stats", "source_field": "result", "target": "analyse", "target_field": "inputs.stats"},
        ],
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_code_agents_in_a_workflow(runtime):
    why = runtime_registry(get_settings()).runtime(runtime).check()
    if why is not None:
        pytest.skip(f"no {runtime} runtime on this machine: {why}")
    run = run_workflow(document(runtime), inputs={"numbers": [2, 4, 6]}, owner="alice", timeout=180)
    assert run.state == "completed", {n: r.error for n, r in run.nodes.items()}
    assert run.outputs["stats"] == {"total": 12, "mean": 4, "n": 3}
    cells = run.outputs["report"]
    assert [c["status"] for c in cells] == ["ok", "ok"] and cells[1]["result"] == 12
    assert cells[1]["stdout"] == "scaled [0, 4, 8]\n"
    assert [f["path"] for f in run.outputs["files"]] == ["stats.json"]


def test_failing_code_fails_its_node_when_asked():
    doc = {
        "version": 1,
        "name": "fails",
        "nodes": [
            {
                "id": "boom",
                "agent": "code.exec",
                "params": {"code": "raise RuntimeError('nope')", "fail_on_error": True},
            },
            {"id": "after", "agent": "code.exec", "params": {"code": "1"}},
        ],
        "edges": [{"source": "boom", "source_field": "result", "target": "after", "target_field": "inputs.x"}],
    }
    run = run_workflow(doc, owner="alice", timeout=180)
    assert run.state == "failed"
    assert "RuntimeError: nope" in (run.nodes["boom"].error or "")
