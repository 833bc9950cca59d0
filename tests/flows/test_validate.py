"""Validation reports every problem at once, each naming its node or edge."""

from __future__ import annotations

from pathlib import Path

import pytest

import flows
from flows.agent_versions import pin_versions
from flows.run_inputs import check_inputs
from flows.spec import Workflow, load_document
from flows.validate import validate

TEMPLATES = Path(flows.__file__).parent / "templates"


def codes(problems):
    return {(p.code, p.node) for p in problems}


def test_templates_are_valid():
    for path in TEMPLATES.glob("*.yaml"):
        plan, problems = validate(load_document(path))
        assert problems == [], (path, problems)
        assert plan is not None


def test_every_error_kind_reported_at_once():
    doc = {
        "name": "broken",
        "nodes": [
            {"id": "a", "agent": "no.such.agent"},
            {"id": "b", "agent": "io.template"},  # missing required input 'template'
            {"id": "c", "agent": "util.wait", "params": {"seconds": -1}},  # bad param
            {"id": "d", "agent": "io.template", "params": {"template": "x"}},
            {"id": "e", "agent": "io.template", "params": {"template": "y"}},
            {"id": "f", "agent": "util.wait", "params": {"seconds": 0}},
        ],
        "edges": [
            {"source": "d", "source_field": "text", "target": "e", "target_field": "variables.v"},
            {"source": "e", "source_field": "text", "target": "d", "target_field": "variables.w"},  # cycle
            {"source": "d", "source_field": "nope", "target": "f", "target_field": "value"},  # unknown port
            {"source": "d", "source_field": "text", "target": "f", "target_field": "seconds"},  # type mismatch
        ],
    }
    plan, problems = validate(doc)
    assert plan is None
    found = codes(problems)
    assert ("unknown_agent", "a") in found
    assert ("missing_input", "b") in found
    assert ("bad_param", "c") in found
    assert ("cycle", "d") in found and ("cycle", "e") in found
    assert ("unknown_port", "d") in found
    assert ("type_mismatch", "f") in found
    assert all(p.node or p.edge is not None for p in problems)


def test_structural_errors_name_the_node():
    plan, problems = validate({"nodes": [{"id": "ok", "agent": "io.output"}, {"id": "bad id!", "agent": "io.output"}]})
    assert plan is None
    assert problems[0].code == "invalid_document" and problems[0].node == "bad id!"


def test_unknown_pinned_version_and_undeclared_input():
    doc = {
        "nodes": [
            {"id": "t", "agent": "io.template", "agent_version": "99", "params": {"template": "x"}},
            {"id": "i", "agent": "io.input", "params": {"name": "question"}},
        ]
    }
    _, problems = validate(doc)
    assert ("unknown_version", "t") in codes(problems)
    assert ("unknown_input", "i") in codes(problems)


def test_documents_never_carry_code():
    _, problems = validate({"nodes": [{"id": "x", "agent": "io.output", "code": "import os"}]})
    assert problems and problems[0].code == "invalid_document"


def test_saving_pins_agent_versions():
    wf = pin_versions(load_document(TEMPLATES / "diamond.yaml"))
    assert all(n.agent_version for n in wf.nodes)


def test_large_generated_workflow_validates():
    nodes = [{"id": f"n{i}", "agent": "io.template", "params": {"template": "{{ x }}"}} for i in range(300)]
    nodes[0]["params"]["variables"] = {"x": "seed"}
    edges = [
        {"source": f"n{i}", "source_field": "text", "target": f"n{i + 1}", "target_field": "variables.x"}
        for i in range(299)
    ]
    plan, problems = validate({"nodes": nodes, "edges": edges})
    assert problems == []
    assert plan.order[0] == "n0" and plan.order[-1] == "n299"


def test_documents_pinned_to_a_retired_version_migrate_explicitly(tmp_path):
    import subprocess
    import sys

    from pydantic import BaseModel

    from agxnt import Agent, registry
    from flows.agent_versions import migrate
    from flows.spec import dump_document

    class In(BaseModel):
        text: str

    class Renamed(Agent):
        """Version 3 renamed its input 'message' to 'text'."""

        id = "test.renamed"
        name = "Renamed"
        version = "3"
        Input = In
        Output = In

        @classmethod
        def migrate_params(cls, params, from_version):
            if "message" in params:
                params["text"] = params.pop("message")
            return params

        async def run(self, input, ctx):
            return input

    registry.register(Renamed)
    old = {"nodes": [{"id": "r", "agent": "test.renamed", "agent_version": "1", "params": {"message": "hi"}}]}
    _, problems = validate(old)
    assert problems[0].code == "unknown_version" and "migrate" in problems[0].message
    new, changes = migrate(old)
    assert changes == ["node r: test.renamed 1 -> 3"]
    assert new.nodes[0].params == {"text": "hi"} and validate(new)[1] == []
    # the CLI reaches the same code path (the agent is only registered here, so check "nothing to migrate")
    path = tmp_path / "wf.yaml"
    path.write_text(dump_document(new))
    out = subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", "workflows", "migrate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "nothing to migrate" in out.stdout


def _inputs_doc(inputs: dict, value=None) -> Workflow:
    params = {"name": "topic"} if value is None else {"name": "topic", "value": value}
    return validate({"inputs": inputs, "nodes": [{"id": "in", "agent": "io.input", "params": params}]})[0].workflow


def run_input_problems(inputs: dict, given: dict, value=None) -> set[tuple[str, str]]:
    return {(p.code, p.field) for p in check_inputs(_inputs_doc(inputs, value), given)}


def test_run_inputs_every_problem_at_once():
    declared = {
        "topic": {"type": "string"},
        "count": {"type": "integer", "default": 1},
        "flags": {"type": "object", "required": False},
    }
    found = run_input_problems(declared, {"topik": "x", "count": "3", "flags": [1]})
    assert found == {
        ("unknown_run_input", "inputs.topik"),
        ("missing_run_input", "inputs.topic"),
        ("bad_run_input", "inputs.count"),
        ("bad_run_input", "inputs.flags"),
    }


def test_an_input_without_a_default_is_required_unless_marked_optional():
    assert run_input_problems({"topic": {}}, {}) == {("missing_run_input", "inputs.topic")}
    assert run_input_problems({"topic": {}}, {"topic": None}) == {("missing_run_input", "inputs.topic")}
    assert run_input_problems({"topic": {"required": False}}, {}) == set()
    assert run_input_problems({"topic": {"default": "markets"}}, {}) == set()
    assert run_input_problems({"topic": {}}, {}, value="from the node") == set()  # the node's value is a default
    assert run_input_problems({"topic": {"default": "x", "required": True}}, {}) == {
        ("missing_run_input", "inputs.topic")
    }


@pytest.mark.parametrize(
    "kind,good,bad",
    [
        ("string", "a", 1),
        ("number", 1.5, "1.5"),
        ("number", 2, True),
        ("integer", 3, 3.5),
        ("integer", 4.0, "4"),
        ("boolean", False, 0),
        ("object", {"a": 1}, [1]),
        ("array", [1], {"a": 1}),
    ],
)
def test_declared_input_types_are_enforced(kind, good, bad):
    assert run_input_problems({"topic": {"type": kind}}, {"topic": good}) == set()
    assert run_input_problems({"topic": {"type": kind}}, {"topic": bad}) == {("bad_run_input", "inputs.topic")}
    assert run_input_problems({"topic": {}}, {"topic": bad}) == set()  # no declared type: any value


def test_an_unknown_input_type_is_a_document_problem():
    _, problems = validate({"inputs": {"n": {"type": "text"}}})
    assert problems[0].code == "invalid_document" and problems[0].field == "inputs.n.type"


def test_every_template_runs_with_its_required_inputs_only():
    for path in TEMPLATES.glob("*.yaml"):
        wf = validate(load_document(path))[0].workflow
        required = {name for name, declared in wf.inputs.items() if declared.required}
        assert check_inputs(wf, dict.fromkeys(required, "x")) == [], path
