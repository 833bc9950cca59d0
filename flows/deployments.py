"""Prefect deployments managed once created: listed with the last run of each and the worker that ran it, run
now, paused, resumed and deleted. A run's parameters are checked before the run is created, since the server
takes any and the run would crash on its worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import BaseModel

from cxmpute.errors import CxmputeError
from flows.deploy import refusal_detail, remove
from flows.run_inputs import check_inputs
from flows.schedules import describe_schedule
from flows.template_runs import TEMPLATE_FLOW, load_template
from flows.validate import validate

WORKER_LABEL = "prefect.worker.name"


class NoSuchDeployment(CxmputeError):
    status_code = 404


class LastRun(BaseModel):
    id: UUID
    name: str
    state: str
    at: datetime | None
    worker: str | None


class DeploymentRow(BaseModel):
    id: UUID
    name: str
    flow: str
    schedules: list[str]
    paused: bool
    work_pool: str | None
    work_queue: str | None
    last_run: LastRun | None


async def find(client: PrefectClient, name: str):
    """A deployment by ``flow/name``, or by its bare name when that is unambiguous."""
    if "/" in name:
        try:
            return await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise NoSuchDeployment(f"no deployment {name!r}", field="name") from None
    found = await client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
    if not found:
        raise NoSuchDeployment(f"no deployment {name!r}", field="name")
    if len(found) > 1:
        flows = {f.id: f.name for f in await client.read_flows()}
        choices = ", ".join(sorted(f"{flows.get(d.flow_id, d.flow_id)}/{d.name}" for d in found))
        raise CxmputeError(f"{len(found)} deployments are called {name!r}; say which: {choices}", field="name")
    return found[0]


async def _flow_names(client: PrefectClient) -> dict[UUID, str]:
    return {f.id: f.name for f in await client.read_flows()}


def last_run(run: FlowRun) -> LastRun:
    """What a flow run's row says: its state, when, and which worker ran it."""
    return LastRun(
        id=run.id,
        name=run.name,
        state=run.state.name if run.state else "unknown",
        at=run.end_time or run.start_time or run.expected_start_time,
        worker=run.labels.get(WORKER_LABEL),
    )


async def list_deployments() -> list[DeploymentRow]:
    rows = []
    async with get_client() as client:
        flows = await _flow_names(client)
        for d in await client.read_deployments():
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED]))
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            )
            rows.append(
                DeploymentRow(
                    id=d.id,
                    name=d.name,
                    flow=flows.get(d.flow_id, str(d.flow_id)),
                    schedules=[
                        describe_schedule(s.schedule) + ("" if s.active else " (inactive)") for s in d.schedules
                    ],
                    paused=d.paused,
                    work_pool=d.work_pool_name,
                    work_queue=d.work_queue_name,
                    last_run=last_run(runs[0]) if runs else None,
                )
            )
    return sorted(rows, key=lambda r: (r.flow, r.name))


def _parameter_problem(name: str, deployment: Any, flow_name: str, parameters: dict[str, Any]) -> CxmputeError | None:
    """A parameter the deployment's flow does not take, or a template's run input it does not declare: the
    server takes either and the run crashes on its worker, so they are refused before the run is created."""
    accepted = (deployment.parameter_openapi_schema or {}).get("properties")
    if accepted is not None:
        for key in parameters:
            if key not in accepted:
                return CxmputeError(
                    f"{name} has no parameter {key!r} (its parameters: {', '.join(accepted)})",
                    field=f"param.{key}",
                    status_code=422,
                )
    merged = {**(deployment.parameters or {}), **parameters}
    if flow_name != TEMPLATE_FLOW or not isinstance(merged.get("template"), str):
        return None
    try:
        plan, _ = validate(load_template(merged["template"]))
    except (ValueError, OSError) as exc:
        return CxmputeError(f"{name}: {exc}", field="param.template", status_code=422)
    inputs = merged.get("inputs") or {}
    if plan is None or not isinstance(inputs, dict):
        return None  # the deployment's own check reported the template; the schema checks the inputs' type
    if problems := check_inputs(plan.workflow, inputs):
        return CxmputeError(
            f"{name}: " + "; ".join(p.message for p in problems), field=f"param.{problems[0].field}", status_code=422
        )
    return None


async def start_run(name: str, parameters: dict[str, Any]) -> FlowRun:
    """Create a flow run of the deployment now; its worker pool runs it."""
    async with get_client() as client:
        deployment = await find(client, name)
        flow_name = (await client.read_flow(deployment.flow_id)).name
        if problem := _parameter_problem(name, deployment, flow_name, parameters):
            raise problem
        try:
            return await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code in (409, 422):  # parameters the deployment's schema refuses
                raise CxmputeError(f"{name}: {refusal_detail(exc)}", field="param") from None
            raise


async def read_run(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def set_paused(name: str, paused: bool) -> str:
    async with get_client() as client:
        deployment = await find(client, name)
        await (client.pause_deployment if paused else client.resume_deployment)(deployment.id)
        return f"{(await _flow_names(client)).get(deployment.flow_id)}/{deployment.name}"


async def delete(name: str) -> str:
    async with get_client() as client:
        deployment = await find(client, name)
        await remove(client, deployment.id)
        return f"{(await _flow_names(client)).get(deployment.flow_id)}/{deployment.name}"
