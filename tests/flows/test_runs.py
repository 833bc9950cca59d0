"""Workflows run as real Prefect flows on a real Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import flows
from agxnt import Agent, AgentContext, registry
from agxnt.builtins import ApprovalResponse
from flows.runner import rerun_from, resume_run, run_workflow, start_run, wait_run
from flows.spec import load_document
from tests.support.workflows import APPROVAL

DIAMOND = Path(flows.__file__).parent / "templates" / "diamond.yaml"

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_diamond_runs_branches_concurrently():
    view = run_workflow(load_document(DIAMOND), {"topic": "markets"}, timeout=120)
    assert view.state == "completed", view.error
    assert view.outputs == {"report": "B saw 'markets' and C saw 'markets'"}
    b, c, d = view.nodes["b"], view.nodes["c"], view.nodes["d"]
    # Overlapping intervals prove concurrency, whatever the machine's speed.
    assert b.started_at < c.finished_at and c.started_at < b.finished_at
    assert d.started_at >= max(b.finished_at, c.finished_at)
    assert d.inputs["variables"] == {"left": "markets", "right": "markets"}
    assert view.nodes["a"].output == {"value": "markets"}


def _fetch_doc(url: str, retries: int) -> dict:
    return {
        "name": "fetch",
        "outputs": {"body": {"node": "get", "field": "json_body"}},
        "nodes": [
            {
                "id": "get",
                "agent": "http.request",
                "params": {"url": url},
                "options": {"retries": retries, "retry_delay_seconds": 0},
            }
        ],
    }


def test_failing_node_is_retried_then_succeeds(flaky):
    server = flaky(failures=2)
    view = run_workflow(_fetch_doc(server.url, retries=3), timeout=120)
    assert view.state == "completed", view.error
    assert view.nodes["get"].attempts == 3
    assert view.outputs == {"body": {"ok": True, "call": 3}}


def test_node_error_is_reported_on_the_node_and_downstream_skipped(flaky):
    server = flaky(failures=100)
    doc = _fetch_doc(server.url, retries=1)
    doc["nodes"].append({"id": "after", "agent": "io.output"})
    doc["edges"] = [{"source": "get", "source_field": "status", "target": "after", "target_field": "value"}]
    view = run_workflow(doc, timeout=120)
    assert view.state == "failed"
    node = view.nodes["get"]
    assert node.state == "failed" and node.attempts == 2 and server.calls == 2
    assert "node 'get'" in node.error and "500" in node.error
    assert "get" in view.error
    assert view.nodes["after"].state == "skipped"
    # a node skipped before it started keeps Prefect's internal task-run name; the view shows the node, not it
    assert list(view.nodes) == ["get", "after"]


def test_run_inputs_are_checked_before_the_run_is_created():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.problems import WorkflowInvalid

    doc = {
        "name": "checked-inputs",
        "inputs": {"topic": {"type": "string"}, "n": {"type": "integer"}},
        "nodes": [
            {"id": "t", "agent": "io.input", "params": {"name": "topic"}},
            {"id": "n", "agent": "io.input", "params": {"name": "n"}},
        ],
    }
    with pytest.raises(WorkflowInvalid) as refused:
        start_run(doc, {"topik": "x", "n": "three"})
    assert {(p.code, p.field) for p in refused.value.problems} == {
        ("unknown_run_input", "inputs.topik"),
        ("missing_run_input", "inputs.topic"),
        ("bad_run_input", "inputs.n"),
    }
    with get_client(sync_client=True) as client:
        created = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["checked-inputs"])))
    assert created == []
    assert run_workflow(doc, {"topic": "x", "n": 3}, timeout=120).state == "completed"


def test_no_run_logs_a_link_to_a_ui_that_is_not_served():
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    collect = Collect()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(collect)
    try:
        view = run_workflow(load_document(DIAMOND), {"topic": "links"}, timeout=120)
    finally:
        logger.removeHandler(collect)
    assert view.state == "completed"
    assert any("Beginning flow run" in m for m in collect.messages)  # the handler does see the engine's lines
    assert not [m for m in collect.messages if "View at" in m]


def test_bad_input_fails_once_without_retrying():
    doc = {
        "name": "bad",
        "nodes": [
            {"id": "t", "agent": "io.template", "options": {"retries": 3}, "params": {"template": "{{ missing }}"}}
        ],
    }
    view = run_workflow(doc, timeout=120)
    assert view.state == "failed"
    assert view.nodes["t"].attempts == 1
    assert "template variable missing" in view.nodes["t"].error


def test_rerun_from_a_node_reuses_upstream_outputs():
    first = run_workflow(load_document(DIAMOND), {"topic": "first"}, timeout=120)
    second = wait_run(rerun_from(first.id, "d", "local"), timeout=120)
    assert second.state == "completed"
    assert {n: second.nodes[n].cached for n in "abcd"} == {"a": True, "b": True, "c": True, "d": False}
    assert second.nodes["b"].output == first.nodes["b"].output  # same timestamps: truly reused
    assert second.outputs == first.outputs


def test_rerun_is_refused_for_another_owner():
    first = run_workflow(load_document(DIAMOND), {"topic": "x"}, owner="alice", timeout=120)
    with pytest.raises(Exception, match="not found"):
        rerun_from(first.id, "d", "mallory")


def test_approval_pauses_until_answered():
    run_id = start_run(APPROVAL, {})
    waiting = wait_run(run_id, timeout=120, until_waiting=True)
    assert waiting.state == "waiting" and waiting.waiting_for == ["review"]
    resume_run(run_id, "local", ApprovalResponse(approved=True, value="edited text", comment="ok"))
    done = wait_run(run_id, timeout=120)
    assert done.state == "completed"
    assert done.outputs == {"final": "edited text"}


def test_rejection_fails_the_node():
    run_id = start_run(APPROVAL, {})
    wait_run(run_id, timeout=120, until_waiting=True)
    resume_run(run_id, "local", ApprovalResponse(approved=False, comment="not yet"))
    done = wait_run(run_id, timeout=120)
    assert done.state == "failed"
    assert "rejected: not yet" in done.nodes["review"].error


class _Echo(BaseModel):
    text: str


def _versioned(version: str, prefix: str):
    class Shout(Agent):
        id = "test.shout"
        name = "Shout"
        Input = _Echo
        Output = _Echo

        async def run(self, input, ctx: AgentContext):
            return _Echo(text=f"{prefix}{input.text}")

    Shout.version = version
    return Shout


def test_pinned_agent_version_keeps_running_after_a_new_version():
    registry.register(_versioned("1", "v1:"))
    registry.register(_versioned("2", "v2:"))
    doc = {
        "name": "pinned",
        "outputs": {"o": {"node": "s", "field": "text"}},
        "nodes": [{"id": "s", "agent": "test.shout", "agent_version": "1", "params": {"text": "hi"}}],
    }
    assert run_workflow(doc, timeout=120).outputs == {"o": "v1:hi"}
    doc["nodes"][0]["agent_version"] = None
    assert run_workflow(doc, timeout=120).outputs == {"o": "v2:hi"}


class _Count(BaseModel):
    n: int = 1000


class _Counted(BaseModel):
    iterations: int


class Looper(Agent):
    id = "test.loop"
    name = "Loop"
    Input = _Count
    Output = _Counted

    async def run(self, input, ctx: AgentContext):
        done = 0
        for _ in ctx.iterate(input.n):
            done += 1
        return _Counted(iterations=done)


def test_loops_are_bounded_by_the_workflow_budget():
    registry.register(Looper)
    doc = {
        "name": "loop",
        "budget": {"max_iterations": 7},
        "outputs": {"n": {"node": "l", "field": "iterations"}},
        "nodes": [{"id": "l", "agent": "test.loop", "params": {"n": 1000}}],
    }
    assert run_workflow(doc, timeout=120).outputs == {"n": 7}


def read_run_state(run_id):
    from flows.history import read_run

    return read_run(run_id, with_results=False)


class _SecretName(BaseModel):
    name: str


class _Leak(BaseModel):
    text: str


class Leaky(Agent):
    """Echoes a secret's value, as a careless agent might."""

    id = "test.leaky"
    name = "Leaky"
    Input = _SecretName
    Output = _Leak

    async def run(self, input, ctx: AgentContext):
        return _Leak(text=f"token is {ctx.secret(input.name)}")


def test_secret_values_never_reach_the_run_view():
    from agxnt.secrets import store_for
    from cxmpute.settings import get_settings

    registry.register(Leaky)
    store_for(get_settings()).set("carol", "api_token", "sk-very-secret-value-123")
    doc = {
        "name": "leak",
        "outputs": {"o": {"node": "l", "field": "text"}},
        "nodes": [{"id": "l", "agent": "test.leaky", "params": {"name": "api_token"}}],
    }
    view = run_workflow(doc, owner="carol", timeout=120)
    assert view.state == "completed"
    assert view.outputs == {"o": "token is [redacted]"}
    assert "sk-very-secret" not in view.model_dump_json()
