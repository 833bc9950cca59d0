"""The checked deployments of a ``prefect.yaml`` created, or updated, on the Prefect server with the triggers
they own; all or none.

The ``cxmpute`` work pool is created when it is missing. Deployments without a queue of their own land in the
pool's default queue, which every provider's worker polls besides its own, so any provider may run them.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate as validate_json
from pydantic import BaseModel

from compute.worker.prefect_worker import WORKER_TYPE, CxmputeWorker
from flows.prefect_file import DeployFileInvalid, FileProblem, Planned
from flows.schedules import describe_schedule


class Applied(BaseModel):
    id: UUID
    name: str
    flow: str
    work_pool: str
    schedules: list[str]
    triggers: int
    created: bool


async def ensure_work_pool(client: PrefectClient, name: str) -> bool:
    """Create the work pool, of the network's worker type, unless it exists; True when created here."""
    try:
        await client.read_work_pool(name)
        return False
    except ObjectNotFound:
        pass
    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=WORKER_TYPE,
                base_job_template=CxmputeWorker.get_default_base_job_template(),
                description="Flow runs executed by Cxmpute providers' workers",
            )
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:  # another deploy created it meanwhile
            raise
    return True


async def _exists(client: PrefectClient, flow_name: str, name: str) -> bool:
    try:
        await client.read_deployment_by_name(f"{flow_name}/{name}")
        return True
    except ObjectNotFound:
        return False


def refusal_detail(exc: PrefectHTTPStatusError) -> str:
    """What the Prefect server said when it refused a request."""
    try:
        return str(exc.response.json().get("detail", exc.response.text))
    except ValueError:
        return exc.response.text


async def _create(client: PrefectClient, p: Planned) -> UUID:
    flow_id = await client.create_flow_from_name(p.flow.name)
    deployment_id = await client.create_deployment(
        flow_id=flow_id,
        name=p.name,
        version=p.version,
        schedules=p.schedules,
        concurrency_limit=p.concurrency_limit,
        concurrency_options=p.concurrency_options,
        parameters=p.parameters,
        description=p.description,
        work_queue_name=p.work_queue,
        work_pool_name=p.work_pool,
        tags=p.tags,
        entrypoint=p.entrypoint,
        parameter_openapi_schema=parameter_schema(p.flow).model_dump_for_openapi(),
        paused=p.paused,
        pull_steps=p.pull_steps,
        enforce_parameter_schema=p.enforce_parameter_schema,
        job_variables=p.job_variables,
    )
    # Triggers are automations owned by the deployment: replaced as a whole, like its schedules.
    await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
    for trigger in p.triggers:
        trigger.set_deployment_id(deployment_id)
        await client.create_automation(trigger.as_automation())
    return deployment_id


async def _job_variable_problems(client: PrefectClient, planned: list[Planned]) -> list[FileProblem]:
    """Each deployment's job variables checked against its work pool's template, as the server will check
    them (required variables aside: a run's own variables may supply them), before any is created."""
    problems, schemas = [], {}
    for p in planned:
        if not p.job_variables:
            continue
        if p.work_pool not in schemas:
            schemas[p.work_pool] = ((await client.read_work_pool(p.work_pool)).base_job_template or {}).get("variables")
        if not schemas[p.work_pool]:
            continue
        for error in validate_json(
            p.job_variables, schemas[p.work_pool], preprocess=True, ignore_required=True, allow_none_with_default=True
        ):
            where = error.json_path.removeprefix("$").removeprefix(".")
            problems.append(
                FileProblem(
                    deployment=p.name, field=f"work_pool.job_variables{'.' * bool(where)}{where}", message=error.message
                )
            )
    return problems


async def apply(planned: list[Planned]) -> list[Applied]:
    """Create or update each deployment (by flow and name, so a second deploy updates), with its triggers.
    All or none are created: what the server refuses partway removes those this call had created."""
    applied = []
    async with get_client() as client:
        for pool in sorted({p.work_pool for p in planned}):
            await ensure_work_pool(client, pool)
        if problems := await _job_variable_problems(client, planned):
            raise DeployFileInvalid(problems)
        try:
            for p in planned:
                existed = await _exists(client, p.flow.name, p.name)
                try:
                    deployment_id = await _create(client, p)
                except (PrefectHTTPStatusError, ObjectAlreadyExists) as exc:  # what only the server checks
                    http_exc = getattr(exc, "http_exc", exc)
                    if not isinstance(http_exc, PrefectHTTPStatusError) or http_exc.response.status_code >= 500:
                        raise
                    # e.g. two schedules of one deployment under the same slug (a 409)
                    refused = FileProblem(
                        deployment=p.name,
                        field="name",
                        message=f"the Prefect server refused it: {refusal_detail(http_exc)}",
                    )
                    raise DeployFileInvalid([refused]) from None
                applied.append(
                    Applied(
                        id=deployment_id,
                        name=p.name,
                        flow=p.flow.name,
                        work_pool=p.work_pool,
                        schedules=[describe_schedule(s.schedule) for s in p.schedules],
                        triggers=len(p.triggers),
                        created=not existed,
                    )
                )
        except BaseException:
            for done in (a for a in applied if a.created):
                await remove(client, done.id)
            raise
    return applied


async def remove(client: PrefectClient, deployment_id: UUID) -> None:
    """A deployment and the triggers it owns."""
    await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
    await client.delete_deployment(deployment_id)
