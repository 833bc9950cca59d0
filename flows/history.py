"""Run views read back from the Prefect API: the run's state and, per node, state, attempts and I/O.

A run is known by the platform's id; the run queue (:mod:`flows.queue`) says which Prefect flow run it
became, and describes it itself until an executor has created one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field, PrivateAttr

from cxmpute.db import session_scope
from cxmpute.errors import NotFound
from flows import prefect_api
from flows.queue import Located, locate

PAGE = 200
NODE_TASK = "run_node"  # the Prefect task every node runs as; its task runs are named after it until they start
PAUSE_KEY_PREFIX = "approve-"  # an approval node pauses its run under this prefix + its node id
TERMINAL = {"completed", "failed", "skipped", "cancelled"}

# Prefect state (type, name) → the node states the builder, API and CLI show.
_NODE_STATES = {
    ("SCHEDULED", None): "pending",
    ("PENDING", "NotReady"): "skipped",
    ("PENDING", None): "pending",
    ("RUNNING", None): "running",
    ("RUNNING", "Retrying"): "retrying",
    ("SCHEDULED", "AwaitingRetry"): "retrying",
    ("COMPLETED", None): "completed",
    ("FAILED", None): "failed",
    ("CRASHED", None): "failed",
    ("CANCELLED", None): "cancelled",
    ("CANCELLING", None): "cancelled",
    ("PAUSED", None): "waiting",
}


def node_state(state: State | None) -> str:
    if state is None:
        return "pending"
    kind = state.type.value
    return _NODE_STATES.get((kind, state.name), _NODE_STATES.get((kind, None), kind.lower()))


class RunStarted(BaseModel):
    """A run queued for an executor: its id, and where to read it."""

    id: str
    url: str = Field(..., description="The run's view: GET it to follow the run")

    @classmethod
    def of(cls, run_id: str) -> RunStarted:
        return cls(id=run_id, url=f"/v1/runs/{run_id}")


class NodeRun(BaseModel):
    node: str
    agent: str | None = None
    state: str
    attempts: int = 0
    cached: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    inputs: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    task_run_id: str | None = None
    placement: dict[str, Any] | None = Field(None, description="The provider that ran the node and what it cost")


class RunView(BaseModel):
    id: str
    flow_run_id: str | None = Field(None, description="Its Prefect flow run, once an executor has created it")
    name: str
    state: str
    state_message: str | None = None
    owner: str | None = None
    workflow: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    nodes: dict[str, NodeRun] = Field(default_factory=dict)
    waiting_for: list[str] = Field(default_factory=list, description="Nodes waiting for a person's answer")
    # Nodes whose start the API has not recorded yet: shown from the document, they may still turn out to have run.
    _unrecorded: int = PrivateAttr(0)

    @property
    def finished(self) -> bool:
        return self.state in {"completed", "failed", "cancelled"}

    @property
    def settled(self) -> bool:
        """Finished, and every node's final state has reached the API (task states arrive as events)."""
        return self.finished and self._unrecorded == 0 and all(n.state in TERMINAL for n in self.nodes.values())


def _load(state: State) -> Any:
    try:
        return state.result(raise_on_failure=False)
    except Exception:  # result storage unreachable from here: the state is still worth showing
        return None


def _node(tr: TaskRun, agent: str | None, with_results: bool) -> NodeRun:
    state = tr.state
    view = NodeRun(
        node=tr.name,
        agent=agent,
        state=node_state(state),
        attempts=tr.run_count,
        cached=bool(state and state.name == "Cached"),
        started_at=tr.start_time,
        finished_at=tr.end_time,
        task_run_id=str(tr.id),
    )
    if state is not None and state.is_completed() and with_results:
        result = _load(state)
        if isinstance(result, dict):
            view.inputs, view.output = result.get("inputs"), result.get("output")
            view.placement = result.get("placement")
    elif state is not None and (state.is_failed() or state.is_crashed() or view.state == "skipped"):
        view.error = state.message
    return view


def _located(run_id: str) -> Located | None:
    with session_scope() as session:
        return locate(session, [run_id]).get(run_id)


def _unstarted(found: Located) -> RunView:
    """A run no executor has created a flow run for: still queued, or cancelled before it started."""
    document = (found.parameters or {}).get("document") or {}
    state = "cancelled" if found.status == "done" else "pending"
    view = RunView(
        id=found.id,
        name=found.name or document.get("name") or "workflow",
        state=state,
        owner=found.owner,
        workflow=document.get("name"),
        inputs=found.inputs,
    )
    for node in document.get("nodes", []):
        view.nodes[node["id"]] = NodeRun(
            node=node["id"], agent=node.get("agent"), state="skipped" if view.finished else "pending"
        )
    return view


def read_run(run_id: str | UUID, with_results: bool = True) -> RunView:
    found = _located(str(run_id))
    if found is not None and found.flow_run_id is None:
        return _unstarted(found)
    flow_run_id = found.flow_run_id if found is not None else str(run_id)
    client = prefect_api.client()
    try:
        fr = client.read_flow_run(UUID(flow_run_id))
    except (ObjectNotFound, ValueError):
        raise NotFound(f"run {run_id} not found", field="run_id") from None
    task_runs: list[TaskRun] = []
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])), limit=PAGE, offset=len(task_runs)
        )
        task_runs.extend(page)
        if len(page) < PAGE:
            break
    params = fr.parameters or {}
    state = node_state(fr.state)
    view = RunView(
        id=str(run_id),
        flow_run_id=str(fr.id),
        name=fr.name,
        state=state,
        state_message=fr.state.message if fr.state else None,
        owner=params.get("owner"),
        workflow=(params.get("document") or {}).get("name"),
        started_at=fr.start_time,
        finished_at=fr.end_time,
        inputs=params.get("inputs") or {},
    )
    doc_nodes = (params.get("document") or {}).get("nodes", [])
    agents = {n.get("id"): n.get("agent") for n in doc_nodes}
    position = {n.get("id"): i for i, n in enumerate(doc_nodes)}
    # Only the document's nodes: a node's task run is named after it only once it starts (until then, and for
    # good when an upstream failure skips it, Prefect calls it `run_node-…`; the loop below shows it from the
    # document). Every node of a run that ran is submitted, so a node with no named task run that an unnamed
    # skipped one does not account for has a record still on its way: it may yet show the node ran, and failed.
    skipped = sum(1 for tr in task_runs if tr.name.startswith(f"{NODE_TASK}-") and node_state(tr.state) == "skipped")
    task_runs = [tr for tr in task_runs if tr.name in agents]
    if fr.run_count > 0:  # a flow run that ended before it ever ran (cancelled while queued) submitted nothing
        view._unrecorded = max(0, len(set(agents) - {tr.name for tr in task_runs}) - skipped)
    for tr in sorted(task_runs, key=lambda t: position.get(t.name, len(position))):
        view.nodes[tr.name] = _node(tr, agents.get(tr.name), with_results)
    for node in doc_nodes:  # nodes the engine never started: not yet, or never (an upstream failed)
        if node.get("id") not in view.nodes:
            view.nodes[node["id"]] = NodeRun(
                node=node["id"], agent=node.get("agent"), state="skipped" if view.finished else "pending"
            )
    view.nodes = dict(sorted(view.nodes.items(), key=lambda kv: position.get(kv[0], len(position))))
    if fr.state is not None and fr.state.is_completed() and with_results:
        result = _load(fr.state)
        view.outputs = result if isinstance(result, dict) else None
    elif fr.state is not None and (fr.state.is_failed() or fr.state.is_crashed()):
        view.error = fr.state.message
    if state == "waiting":
        # The pause key names the node; its task run may not be recorded yet, since task states arrive as events.
        key = fr.state.state_details.pause_key or ""
        node = key.removeprefix(PAUSE_KEY_PREFIX) if key.startswith(PAUSE_KEY_PREFIX) else None
        if node in view.nodes:
            view.waiting_for = [node]
            if view.nodes[node].state == "pending":
                view.nodes[node].state = "running"
    return view


class RunStatus(NamedTuple):
    state: str
    started_at: datetime | None = None
    finished_at: datetime | None = None


def run_states(run_ids: list[str]) -> dict[str, RunStatus]:
    """The state of each of these runs, and when its flow run started and finished, read in one call per page;
    runs neither the platform nor the Prefect API knows are left out."""
    with session_scope() as session:
        found = locate(session, run_ids)
    states: dict[str, RunStatus] = {}
    flow_runs: dict[UUID, str] = {}
    for run_id in run_ids:
        located = found.get(run_id)
        if located is not None and located.flow_run_id is None:
            states[run_id] = RunStatus("cancelled" if located.status == "done" else "pending")
            continue
        try:
            flow_runs[UUID(located.flow_run_id if located is not None else run_id)] = run_id
        except ValueError:
            continue
    ids = list(flow_runs)
    client = prefect_api.client()
    for start in range(0, len(ids), PAGE):  # the Prefect API answers at most PAGE runs a call
        chunk = ids[start : start + PAGE]
        for fr in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        ):
            states[flow_runs[fr.id]] = RunStatus(node_state(fr.state), fr.start_time, fr.end_time)
    return states
