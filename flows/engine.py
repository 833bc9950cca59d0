"""Compilation of a validated workflow into a Prefect flow: one task per node, edges as futures.

Independent branches run concurrently on Prefect's task runner. Every node's result (its inputs
and output) is persisted under a cache key made of a *scope*, the node and its resolved inputs: a
normal run scopes keys to itself, so a run executed again after its executor died reuses the outputs of
the nodes that had completed; a re-run from a node scopes the nodes upstream of it to the original run,
so their persisted outputs are reused and only the chosen node and its descendants execute again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import math
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from prefect import Flow, Task, flow, task
from prefect.context import TaskRunContext
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow
from prefect.flow_runs import apause_flow_run
from prefect.runtime import flow_run as runtime_flow_run
from prefect.transactions import get_transaction
from prefect.utilities.annotations import opaque
from pydantic import BaseModel

from agxnt.builtins import ApprovalResponse
from agxnt.jobs import AgentJob, run_agent
from compute.errors import ComputeError
from compute.worker.dispatch import Dispatcher
from compute.worker.jobs import JobSpec
from cxmpute.errors import CxmputeError
from flows import cancellation, prefect_api
from flows.history import NODE_TASK, PAUSE_KEY_PREFIX
from flows.run_inputs import check_inputs
from flows.spec import Node, Workflow
from flows.validate import Plan, on_network, validate_or_raise

FLOW_NAME = "cxmpute-workflow"
NETWORK_TIMEOUT_S = 600.0  # a node on a provider with no timeout of its own


class NodeFailed(Exception):
    """A node's agent raised; the message names the node. Args stay picklable for persisted states."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message, retryable)
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class WorkflowFailed(Exception):
    pass


class WorkflowCancelled(Exception):
    pass


class RunLost(Abort):
    """This process no longer holds the run: its claim lapsed while it was alive (a stall longer than the claim's
    TTL) and another executor carries the run on. Raised to leave Prefect's engine without recording any state,
    which it does for an abort, so the executor that now holds the run is not disturbed."""


CANCEL_POLL_S = 0.1


class _CancelWatch:
    """One thread per process looks for cancelled runs and cancels the work of their nodes. Each node runs
    on an event loop of its own thread; a poll per node would wake every waiting node ten times a second,
    which at a width of hundreds of nodes costs the run more CPU than its nodes' own work."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._work: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Task]]] = {}
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, run_id: str, task: asyncio.Task) -> Iterator[None]:
        entry = (asyncio.get_running_loop(), task)
        with self._changed:
            self._work.setdefault(run_id, set()).add(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, name="cxmpute-cancel-watch", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                entries = self._work.get(run_id)
                if entries is not None:
                    entries.discard(entry)
                    if not entries:
                        del self._work[run_id]

    def _poll(self) -> None:
        while True:
            with self._changed:
                while not self._work:  # asleep while no node runs
                    self._changed.wait()
            time.sleep(CANCEL_POLL_S)
            with self._changed:
                # Each node's work is cancelled once: a second cancel could cut short its cleanup.
                doomed = [
                    entry for run_id in [r for r in self._work if _must_stop(r)] for entry in self._work.pop(run_id)
                ]
            for loop, doomed_task in doomed:
                with contextlib.suppress(RuntimeError):  # its loop closed: the node ended meanwhile
                    loop.call_soon_threadsafe(doomed_task.cancel)


_watch = _CancelWatch()


def _must_stop(run_id: str) -> bool:
    return cancellation.requested(run_id) or cancellation.lost(run_id)


def _unless_lost(run_id: str) -> None:
    if cancellation.lost(run_id):
        raise RunLost(f"run {run_id} is carried on by another executor")


def _run_id() -> str:
    """The platform's id of the run executing now (a deployment's flow run, started without one, is its own)."""
    return (runtime_flow_run.parameters or {}).get("run_id") or str(runtime_flow_run.id)


async def _unless_cancelled(work: Awaitable[Any], run_id: str, node_id: str, agent: str) -> Any:
    """Await ``work`` unless the run's owner cancels it: then the work is cancelled (a sandbox or container it
    started is killed by its own cleanup) and the node fails as cancelled."""
    task = asyncio.ensure_future(work)
    with _watch.watching(run_id, task):
        try:
            return await task
        except asyncio.CancelledError:
            # Only the watch cancels the work without cancelling this node's own task (a timeout does that).
            if asyncio.current_task().cancelling() == 0:
                _unless_lost(run_id)
                if cancellation.requested(run_id):
                    raise NodeFailed(f"node {node_id!r} ({agent}): the run was cancelled") from None
            raise


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    spec = parameters["spec"]
    if spec["scope"] is None:
        return None
    payload = _json(
        [
            spec["scope"],
            parameters["node_id"],
            spec["agent"],
            spec["version"],
            spec["params"],
            _bound(spec["fields"], parameters["upstream"]),
            spec["owner"],
        ]
    )
    return "cxnode-" + hashlib.sha256(payload.encode()).hexdigest()


def _bound(fields: dict[str, str], upstream: dict[str, Any]) -> dict[str, Any]:
    """Each bound input field's value: the named field of its upstream node's output."""
    return {target: upstream[target]["output"].get(source) for target, source in fields.items()}


def _retry_condition(task: Task, task_run: Any, state: Any) -> bool:
    """Retry transient failures only: bad input (a 4xx-class AgentError) fails the same way every time."""
    try:
        state.result(_sync=True)
    except NodeFailed as exc:
        return exc.retryable
    except Exception:
        return True
    return True


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        inner = target.get(head)
        target[head] = inner = dict(inner) if isinstance(inner, dict) else {}
        inner[rest] = value
    else:
        target[head] = value


class Placement(BaseModel):
    """Where a node ran when it ran on a provider, and what it cost."""

    provider: str
    job_id: str
    attempts: int
    seconds: float | None
    cost_gwei: int


class NodeResult(BaseModel):
    """What a node run keeps: the inputs it saw, the output it gave, and where it ran."""

    node: str
    agent: str
    version: str
    inputs: dict[str, Any]
    output: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    placement: Placement | None = None


@task(name=NODE_TASK, persist_result=True, cache_key_fn=_cache_key, retry_condition_fn=_retry_condition)
async def run_node(node_id: str, spec: dict[str, Any], upstream: dict[str, Any]) -> dict[str, Any]:
    """Run one node. ``spec`` holds what the plan fixed (agent, version, params, which upstream field feeds which
    input, owner, scope, budget, market terms); ``upstream`` the results of the nodes bound to its inputs, by
    input field. Few parameters, and the fixed ones passed whole, since Prefect visits every parameter value of
    every task run looking for futures."""
    started = datetime.now(UTC)
    run_id = _run_id()
    agent, version, owner, deadline = spec["agent"], spec["version"], spec["owner"], spec["deadline"]
    _unless_lost(run_id)
    if cancellation.requested(run_id):
        raise NodeFailed(f"node {node_id!r} ({agent}): the run was cancelled")
    inputs = copy.deepcopy(spec["params"])
    for target_field, value in sorted(_bound(spec["fields"], upstream).items()):
        _set_path(inputs, target_field, value)
    if agent == "hitl.approve":
        timeout = int(inputs.get("timeout_seconds") or 3600)
        response = await _unless_cancelled(
            apause_flow_run(
                wait_for_input=ApprovalResponse, timeout=timeout, poll_interval=1, key=PAUSE_KEY_PREFIX + node_id
            ),
            run_id,
            node_id,
            agent,
        )
        inputs["response"] = response.model_dump(mode="json")
    payload = AgentJob(
        agent=agent,
        version=version,
        inputs=inputs,
        run_id=run_id,
        node_id=node_id,
        deadline=deadline,
        max_iterations=spec["max_iterations"],
    ).model_dump(mode="json")
    network = spec["network"]
    placement = None
    try:
        if network is None:
            output = await _unless_cancelled(run_agent(payload, owner), run_id, node_id, agent)
        else:
            # A cancelled run's provider jobs are cancelled by its executor; the dispatcher then raises. A lost
            # run's job is left to end: the executor that took the run over adopts it by its work key.
            output, placement = await _on_provider(node_id, agent, payload, owner, deadline, network)
    except CxmputeError as exc:
        raise NodeFailed(f"node {node_id!r} ({agent}): {exc.message}", retryable=exc.status_code >= 500) from exc
    result = NodeResult(
        node=node_id,
        agent=agent,
        version=version,
        inputs=inputs,
        output=output,
        started_at=started,
        finished_at=datetime.now(UTC),
        placement=placement,
    ).model_dump(mode="json")
    await _persist_now(result)
    _unless_lost(run_id)  # its output is kept for the executor that holds the run now
    return result


async def _persist_now(result: dict[str, Any]) -> None:
    """Write the node's output under its cache key before Prefect records the node completed. Prefect writes it
    only after, so an executor killed between the two would leave a node recorded completed whose output a run
    executed again cannot find: it would execute the node a second time."""
    txn = get_transaction()
    if txn is None or not txn.key or txn.store is None:
        return
    await txn.store.apersist_result_record(txn.store.create_result_record(result, key=txn.key))
    txn.write_on_commit = False  # written already


async def _on_provider(
    node_id: str, agent: str, payload: dict[str, Any], owner: str, deadline: float, network: dict[str, Any]
) -> tuple[dict[str, Any], Placement]:
    """Match the node onto a provider and run it there; the dispatcher fails over if the provider is lost."""
    timeout = min(network.get("timeout_s") or NETWORK_TIMEOUT_S, max(1.0, deadline - time.time()))
    spec = JobSpec(
        kind="agent",
        payload=payload,
        owner=owner,
        resources=network["resources"],
        price_min_gwei=network["price_min_gwei"],
        price_max_gwei=network["price_max_gwei"],
        # Stable across executors: a run executed again adopts the job its dead executor dispatched.
        work_key=f"{payload['run_id']}:{node_id}:{TaskRunContext.get().task_run.run_count}",
        timeout_s=timeout,
    )
    job = await Dispatcher().run(spec)
    if job.status == "failed":
        raise ComputeError(f"failed on provider {job.provider}: {job.error}", status_code=job.error_status or 500)
    return job.result or {}, Placement(
        provider=job.provider, job_id=job.id, attempts=job.attempt, seconds=job.seconds, cost_gwei=job.cost_gwei
    )


def _network_terms(plan: Plan, node: Node, cls: type) -> dict[str, Any] | None:
    """The market terms of a node that runs on a provider, or None when it runs where the flow runs."""
    if not on_network(plan.workflow, node, cls):
        return None
    wants = node.options.resources
    if wants is None:
        needs = cls.resources
        resources = {"cpu": max(1, math.ceil(needs.cpu)), "memory_mb": needs.memory_mb, "gpu_count": needs.gpu}
    else:
        resources = wants.model_dump()
    compute = plan.workflow.compute
    return {
        "resources": resources,
        "price_min_gwei": compute.price_min_gwei,
        "price_max_gwei": compute.price_max_gwei,
        "timeout_s": node.options.timeout_seconds,
    }


@lru_cache(maxsize=256)
def _node_task(retries: int, retry_delay: float, timeout: float | None) -> Task:
    """One task object per distinct option set: building a Task is costly (it reads its source)."""
    return run_node.with_options(
        task_run_name="{node_id}", retries=retries, retry_delay_seconds=retry_delay, timeout_seconds=timeout
    )


def _input_value(plan: Plan, params: dict[str, Any], inputs: dict[str, Any]) -> Any:
    name = params.get("name", "input")
    if name in inputs:
        return inputs[name]
    declared = plan.workflow.inputs.get(name)
    if params.get("value") is not None:
        return params["value"]
    if declared is not None and declared.default is not None:
        return declared.default
    return None


def _outcome(nid: str, future: Any, wanted: bool) -> tuple[dict[str, Any] | None, str | None]:
    """A submitted node's result (read only when ``wanted``: an output reads it) or its failure message."""
    state = future.wait() or future.state
    if state.is_completed():
        return (future.result() if wanted else None), None
    if state.is_failed() or state.is_crashed():
        return None, state.message or f"node {nid!r} failed"
    return None, None


def execute(plan: Plan, inputs: dict[str, Any], owner: str, scopes: dict[str, str] | None) -> dict[str, Any]:
    """Submit every node in topological order; edges become futures, so branches run concurrently."""
    run_id = _run_id()
    scopes = scopes or {}
    deadline = time.time() + plan.workflow.budget.max_seconds
    nodes = {node.id: node for node in plan.workflow.nodes}
    futures: dict[str, Any] = {}
    for nid in plan.order:
        node = nodes[nid]
        cls = plan.agents[nid]
        params = dict(node.params)
        if node.agent == "io.input":
            params["value"] = _input_value(plan, params, inputs)
        scope = scopes.get(nid, run_id)
        opts = node.options
        node_task = _node_task(opts.retries, opts.retry_delay_seconds, opts.timeout_seconds)
        spec = {
            "agent": cls.id,
            "version": cls.version,
            "params": params,
            "owner": owner,
            "scope": scope,
            "deadline": deadline,
            "max_iterations": plan.workflow.budget.max_iterations,
            "network": _network_terms(plan, node, cls),
            "fields": {tf: sf for _, sf, tf in plan.incoming.get(nid, [])},
        }
        # Neither the spec nor an upstream result is walked (``opaque``): Prefect otherwise visits every value of
        # both, for every node, looking for futures, both to resolve them and to record the node's inputs.
        upstream = {tf: opaque(futures[src]) for src, _, tf in plan.incoming.get(nid, [])}
        futures[nid] = node_task.submit(node_id=nid, spec=opaque(spec), upstream=upstream)
    read = {out.node for out in plan.workflow.outputs.values()}
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for nid, fut in futures.items():
        _unless_lost(run_id)
        result, failure = _outcome(nid, fut, nid in read)
        if result is not None:
            results[nid] = result
        if failure is not None:
            failures.append(failure)
    _unless_lost(run_id)
    if cancellation.requested(run_id):
        raise WorkflowCancelled("cancelled by its owner")
    if failures:
        raise WorkflowFailed("; ".join(failures))
    return {name: results[out.node]["output"].get(out.field) for name, out in plan.workflow.outputs.items()}


@flow(name=FLOW_NAME, persist_result=True, validate_parameters=False)
def workflow_flow(
    document: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    owner: str = "local",
    scopes: dict[str, str] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run a workflow document. ``scopes`` maps node ids to the run whose cached outputs they reuse; ``run_id`` is
    the platform's id of the run (outputs are scoped to it, so the run executed again reuses them)."""
    plan = validate_or_raise(document)
    # Runs started through the API were checked before they were created; a deployment's run was not.
    if problems := check_inputs(plan.workflow, inputs or {}):
        raise WorkflowFailed("; ".join(p.message for p in problems))
    return execute(plan, inputs or {}, owner, scopes)


@dataclass
class CompiledWorkflow:
    """A validated document bound to the workflow flow; call it like any Prefect flow."""

    plan: Plan
    flow: Flow

    def parameters(
        self,
        inputs: dict[str, Any] | None = None,
        owner: str = "local",
        scopes: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        # Without its defaults the document is about half the size: Prefect stores it with the flow run.
        return {
            "document": self.plan.workflow.model_dump(mode="json", exclude_defaults=True),
            "inputs": inputs or {},
            "owner": owner,
            "scopes": scopes or {},
            "run_id": run_id,
        }

    def __call__(self, inputs: dict[str, Any] | None = None, owner: str = "local") -> dict[str, Any]:
        """Run it here and now, as an executor runs a claimed run: its flow run created first, then executed."""
        parameters = self.parameters(inputs, owner)
        flow_run = prefect_api.create_flow_run(self.flow, self.plan.workflow.name, parameters, tags=[])
        return run_flow(self.flow, flow_run=flow_run, parameters=engine_parameters(parameters))


def engine_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A workflow flow run's parameters as handed to Prefect's engine for an existing flow run: the document is
    passed whole, not walked. Prefect otherwise visits every value of every parameter looking for futures, about a
    second of CPU per run of a 1,000-node document. (Its flow run's recorded parameters stay plain.)"""
    return {**parameters, "document": opaque(parameters["document"])}


@lru_cache(maxsize=64)
def _bounded_flow(timeout_s: float) -> Flow:
    """One flow object per time budget: building a Flow is costly (it derives its parameter schema)."""
    return workflow_flow.with_options(timeout_seconds=timeout_s)


def compile_workflow(document: dict[str, Any] | Workflow) -> CompiledWorkflow:
    plan = validate_or_raise(document)
    return CompiledWorkflow(plan, _bounded_flow(plan.workflow.budget.max_seconds))
