"""The Prefect task every node of a workflow runs as: on a provider or where the flow runs, its result persisted.

Every node's result (its inputs and output) is persisted under a cache key made of a *scope*, the node and its
resolved inputs: a normal run scopes keys to itself, so a run executed again after its executor died reuses the
outputs of the nodes that had completed; a re-run from a node scopes the nodes upstream of it to the original run,
so their persisted outputs are reused and only the chosen node and its descendants execute again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from prefect import Task, task
from prefect.context import TaskRunContext
from prefect.flow_runs import apause_flow_run
from prefect.results import ResultRecord
from prefect.runtime import flow_run as runtime_flow_run
from prefect.transactions import get_transaction
from pydantic import BaseModel

from agxnt.builtins import ApprovalResponse
from agxnt.jobs import AgentJob, run_agent
from compute.errors import ComputeError
from compute.worker.dispatch import Dispatcher
from compute.worker.jobs import JobSpec
from cxmpute.errors import CxmputeError
from flows import cancellation
from flows.cancel_watch import unless_cancelled, unless_lost
from flows.history import NODE_TASK, PAUSE_KEY_PREFIX
from flows.run_errors import NodeFailed

NETWORK_TIMEOUT_S = 600.0  # a node on a provider with no timeout of its own


def current_run_id() -> str:
    """The platform's id of the run executing now (a deployment's flow run, started without one, is its own)."""
    return (runtime_flow_run.parameters or {}).get("run_id") or str(runtime_flow_run.id)


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
async def run_node(node_id: str, spec: dict[str, Any], upstream: dict[str, Any]) -> dict[str, Any] | ResultRecord:
    """Run one node. ``spec`` holds what the plan fixed (agent, version, params, which upstream field feeds which
    input, owner, scope, budget, market terms); ``upstream`` the results of the nodes bound to its inputs, by
    input field. Few parameters, and the fixed ones passed whole, since Prefect visits every parameter value of
    every task run looking for futures."""
    started = datetime.now(UTC)
    run_id = current_run_id()
    agent, version, owner, deadline = spec["agent"], spec["version"], spec["owner"], spec["deadline"]
    unless_lost(run_id)
    if cancellation.requested(run_id):
        raise NodeFailed(f"node {node_id!r} ({agent}): the run was cancelled")
    inputs = copy.deepcopy(spec["params"])
    for target_field, value in sorted(_bound(spec["fields"], upstream).items()):
        _set_path(inputs, target_field, value)
    if agent == "hitl.approve":
        timeout = int(inputs.get("timeout_seconds") or 3600)
        response = await unless_cancelled(
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
            output = await unless_cancelled(run_agent(payload, owner), run_id, node_id, agent)
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
    persisted = await _persist_now(result)
    unless_lost(run_id)  # its output is kept for the executor that holds the run now
    return persisted


async def _persist_now(result: dict[str, Any]) -> dict[str, Any] | ResultRecord:
    """Write the node's output under its cache key before Prefect records the node completed. Prefect writes it
    only after, so an executor killed between the two would leave a node recorded completed whose output a run
    executed again cannot find: it would execute the node a second time.

    Returns the record written, which Prefect takes as the node's result as it is (its callers get the output):
    given the output itself it would build a second record, resolving the same storage paths again, a few
    hundred microseconds of CPU per node."""
    txn = get_transaction()
    if txn is None or not txn.key or txn.store is None:
        return result
    record = txn.store.create_result_record(result, key=txn.key)
    await txn.store.apersist_result_record(record)
    txn.write_on_commit = False  # written already
    return record


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
