"""Compilation of a validated workflow into a Prefect flow: one task per node (:mod:`flows.node_task`), edges as
futures.

Independent branches run concurrently on Prefect's task runner. A normal run scopes each node's persisted result
to itself; a re-run from a node passes ``scopes`` that point the nodes upstream of it at the original run, so only
the chosen node and its descendants execute again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prefect import Flow, Task, flow
from prefect.flow_engine import run_flow
from prefect.utilities.annotations import opaque

from flows import cancellation, prefect_api
from flows.cancel_watch import unless_lost
from flows.node_task import current_run_id, run_node
from flows.run_errors import WorkflowCancelled, WorkflowFailed
from flows.run_inputs import check_inputs
from flows.spec import Node, Workflow
from flows.validate import Plan, on_network, validate_or_raise

FLOW_NAME = "cxmpute-workflow"


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
    run_id = current_run_id()
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
        unless_lost(run_id)
        result, failure = _outcome(nid, fut, nid in read)
        if result is not None:
            results[nid] = result
        if failure is not None:
            failures.append(failure)
    unless_lost(run_id)
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
