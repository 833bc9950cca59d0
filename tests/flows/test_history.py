"""A finished run's view is settled only once every node's record has reached the Prefect API: task states
arrive there as events, a moment after the flow run itself ends, and a node whose start is not recorded yet
must not be taken for one that never ran."""

from __future__ import annotations

from prefect import task
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, Pending, Running

from flows.engine import compile_workflow
from flows.history import NODE_TASK, read_run

DOCUMENT = {
    "name": "two steps",
    "inputs": {"x": {"type": "string", "default": "hello"}},
    "nodes": [
        {"id": "a", "agent": "io.input", "params": {"name": "x"}},
        {"id": "b", "agent": "util.wait", "params": {"seconds": 0}},
    ],
    "edges": [{"source": "a", "source_field": "value", "target": "b", "target_field": "value"}],
}


@task(name=NODE_TASK)
def _node_record() -> None:
    """Stands for the engine's node task when recording task runs directly in the API."""


def _flow_run(client, started: bool):
    compiled = compile_workflow(DOCUMENT)
    flow_run = client.create_flow_run(compiled.flow, parameters=compiled.parameters({"x": "hi"}), state=Pending())
    if started:
        client.set_flow_run_state(flow_run.id, Running(), force=True)
    client.set_flow_run_state(flow_run.id, Failed(message="node 'b' failed"), force=True)
    return flow_run


def _task_run(client, flow_run, key: str, name: str, state):
    return client.create_task_run(_node_record, flow_run.id, dynamic_key=key, name=name, state=state)


def test_a_finished_run_whose_node_starts_are_not_recorded_yet_is_not_settled(prefect_api):
    with get_client(sync_client=True) as client:
        flow_run = _flow_run(client, started=True)
        assert not read_run(str(flow_run.id)).settled  # no task run recorded at all yet

        _task_run(client, flow_run, "0", "a", Completed())
        b = _task_run(client, flow_run, "1", f"{NODE_TASK}-5ca1ab1e", Pending())
        view = read_run(str(flow_run.id))
        assert view.nodes["b"].state == "skipped" and not view.settled  # it may yet turn out to have run

        client.set_task_run_state(b.id, Pending(name="NotReady"), force=True)
        view = read_run(str(flow_run.id))
        assert view.nodes["b"].state == "skipped" and view.settled  # skipped for good: an upstream failed


def test_a_run_that_ended_before_it_started_is_settled(prefect_api):
    with get_client(sync_client=True) as client:
        flow_run = _flow_run(client, started=False)
        view = read_run(str(flow_run.id))
    assert view.finished and view.settled
    assert {n.state for n in view.nodes.values()} == {"skipped"}
