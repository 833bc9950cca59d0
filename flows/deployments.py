"""Prefect deployments from a ``prefect.yaml``: checking the file, creating them, and managing them after.

The file is Prefect 3's own format, so ``prefect deploy --prefect-file deploy/prefect.yaml --all`` reads
it too; this module adds what an operator of the network needs on top: every problem of the file reported
at once (each naming its deployment and field) before anything is created, workflow templates validated
like any workflow document, and the ``cxmpute`` work pool created when it is missing. Deployments without
a queue of their own land in the pool's default queue, which every provider's worker polls besides its
own, so any provider may run them.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyOptions, FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events import DeploymentTriggerTypes
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate as validate_json
from prefect.utilities.templating import apply_values
from pydantic import BaseModel, TypeAdapter, ValidationError

from compute.worker.prefect_worker import WORKER_TYPE, CxmputeWorker
from cxmpute.errors import CxmputeError
from flows.run_inputs import check_inputs
from flows.template_runs import TEMPLATE_FLOW, load_template
from flows.validate import validate

DEFAULT_PREFECT_FILE = Path("deploy/prefect.yaml")
WORKER_LABEL = "prefect.worker.name"
_DEPLOYMENT_FIELDS = {
    "name",
    "version",
    "version_type",
    "tags",
    "description",
    "schedule",
    "schedules",
    "paused",
    "concurrency_limit",
    "flow_name",
    "entrypoint",
    "parameters",
    "enforce_parameter_schema",
    "build",
    "push",
    "pull",
    "work_pool",
    "triggers",
    "sla",
}
_WORK_POOL_FIELDS = {"name", "work_queue_name", "job_variables"}
_SCHEDULE_FIELDS = {
    "cron",
    "interval",
    "rrule",
    "timezone",
    "anchor_date",
    "active",
    "parameters",
    "slug",
    "day_or",
    "replaces",
}
_triggers = TypeAdapter(DeploymentTriggerTypes)


class FileProblem(BaseModel):
    """One thing wrong with a prefect.yaml, named by its deployment (or ``file``) and field."""

    deployment: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.deployment}: {self.field}: {self.message}"


class DeployFileInvalid(CxmputeError):
    def __init__(self, problems: list[FileProblem]):
        super().__init__("; ".join(map(str, problems)), field=problems[0].field)
        self.problems = problems


class NoSuchDeployment(CxmputeError):
    status_code = 404


class Planned(BaseModel, arbitrary_types_allowed=True):
    """A deployment of the file, checked and ready to be created."""

    name: str
    flow: Flow
    entrypoint: str
    work_pool: str
    work_queue: str | None
    job_variables: dict[str, Any]
    parameters: dict[str, Any]
    schedules: list[DeploymentScheduleCreate]
    triggers: list[Any]
    pull_steps: list[dict[str, Any]]
    description: str | None
    version: str | None
    tags: list[str]
    paused: bool | None
    concurrency_limit: int | None
    concurrency_options: ConcurrencyOptions | None
    enforce_parameter_schema: bool


class Applied(BaseModel):
    id: UUID
    name: str
    flow: str
    work_pool: str
    schedules: list[str]
    triggers: int
    created: bool


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


# -- reading and checking the file ------------------------------------------------------------------------


def read_prefect_file(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The raw deployment entries and the file-wide build/push/pull actions."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CxmputeError(f"no such file: {path}", field="prefect_file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CxmputeError(f"cannot read {path}: {exc}", field="prefect_file") from None
    except yaml.YAMLError as exc:
        raise CxmputeError(f"{path} is not valid YAML: {exc}", field="prefect_file") from None
    if not isinstance(loaded, dict):
        raise DeployFileInvalid([FileProblem(deployment="file", field="(top level)", message="must be a mapping")])
    deployments = loaded.get("deployments") or []
    if not isinstance(deployments, list) or not all(isinstance(d, dict) for d in deployments):
        raise DeployFileInvalid(
            [
                FileProblem(
                    deployment="file", field="deployments", message="must be a list of mappings, one per deployment"
                )
            ]
        )
    return deployments, {k: loaded.get(k) for k in ("build", "push", "pull")}


def _schedule(raw: Any) -> DeploymentScheduleCreate:
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping with one of cron, interval or rrule")
    if "schedule" in raw:  # the API's own shape
        return DeploymentScheduleCreate.model_validate(raw)
    unknown = set(raw) - _SCHEDULE_FIELDS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    kinds = [k for k in ("cron", "interval", "rrule") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError("give exactly one of cron, interval or rrule")
    timezone = raw.get("timezone")
    if kinds == ["cron"]:
        schedule: Any = CronSchedule(
            cron=raw["cron"], day_or=raw.get("day_or", True), **({"timezone": timezone} if timezone else {})
        )
    elif kinds == ["interval"]:
        interval = raw["interval"]
        interval = timedelta(seconds=interval) if isinstance(interval, (int, float)) else interval
        extra = {k: raw[k] for k in ("anchor_date", "timezone") if raw.get(k)}
        schedule = IntervalSchedule(interval=interval, **extra)
        if schedule.interval <= timedelta(0):
            raise ValueError("interval must be positive")
    else:
        schedule = RRuleSchedule(rrule=raw["rrule"], **({"timezone": timezone} if timezone else {}))
    extra = {k: raw[k] for k in ("active", "slug", "replaces") if raw.get(k) is not None}
    return DeploymentScheduleCreate(schedule=schedule, parameters=raw.get("parameters") or {}, **extra)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    return f"{where}: {error['msg']}" if where else error["msg"]


def _template_problems(name: str, parameters: dict[str, Any]) -> list[FileProblem]:
    """A template deployment's document must validate, and its required inputs must be given."""
    template = parameters.get("template")
    if not isinstance(template, str):
        return []  # the flow's own parameter check reports it
    try:
        document = load_template(template)
    except (ValueError, OSError) as exc:
        return [FileProblem(deployment=name, field="parameters.template", message=str(exc))]
    plan, problems = validate(document)
    if problems:
        return [FileProblem(deployment=name, field="parameters.template", message=f"{template}: {p}") for p in problems]
    inputs = parameters.get("inputs") or {}
    if not isinstance(inputs, dict):
        return []  # the flow's own parameter check reports it
    return [
        FileProblem(deployment=name, field=f"parameters.{p.field}", message=f"{template}: {p.message}")
        for p in check_inputs(plan.workflow, inputs)
    ]


def _check_parameters(name: str, flow: Flow, parameters: dict[str, Any], where: str) -> list[FileProblem]:
    try:
        flow.validate_parameters(parameters)
    except Exception as exc:  # ParameterTypeError, SignatureMismatchError: both say which parameter
        return [FileProblem(deployment=name, field=where, message=str(exc))]
    return _template_problems(name, parameters) if flow.name == TEMPLATE_FLOW else []


def _default_pull(entrypoint: str) -> list[dict[str, Any]]:
    # A module path is importable wherever Cxmpute is installed; a script path needs the directory it is in.
    if ".py:" not in entrypoint:
        return []
    return [{"prefect.deployments.steps.set_working_directory": {"directory": str(Path.cwd())}}]


def _plan_one(raw: dict[str, Any], index: int, actions: dict[str, Any]) -> tuple[Planned | None, list[FileProblem]]:
    name = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else f"deployments[{index}]"
    problems: list[FileProblem] = []

    def problem(field: str, message: str) -> None:
        problems.append(FileProblem(deployment=name, field=field, message=message))

    if name.startswith("deployments["):
        problem("name", "every deployment needs a name")
    raw = apply_values(raw, os.environ, remove_notset=False)  # `{{ $VAR }}` placeholders, as Prefect does
    for key in sorted(set(raw) - _DEPLOYMENT_FIELDS):
        problem(key, "unknown field")
    for key in ("build", "push"):
        if raw.get(key) or actions.get(key):
            problem(
                key,
                f"`cxmpute deploy` runs no {key} steps (the network installs Cxmpute's code itself); "
                f"use a module entrypoint, or `prefect deploy` for {key} steps",
            )
    if raw.get("sla"):
        problem("sla", "SLAs are a Prefect Cloud feature; the platform's Prefect server has none")
    pool = raw.get("work_pool") or {}
    if not isinstance(pool, dict):
        problem("work_pool", "must be a mapping with a name")
        pool = {}
    for key in sorted(set(pool) - _WORK_POOL_FIELDS):
        problem(f"work_pool.{key}", "unknown field")
    if not pool.get("name"):
        problem("work_pool.name", "name the work pool the deployment's runs go to")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        problem("parameters", "must be a mapping of parameter names to values")
        parameters = {}
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problem("tags", "must be a list of strings")
        tags = []

    schedules: list[DeploymentScheduleCreate] = []
    raw_schedules = (
        raw.get("schedules") if raw.get("schedules") is not None else ([raw["schedule"]] if raw.get("schedule") else [])
    )
    if not isinstance(raw_schedules, list):
        problem("schedules", "must be a list")
        raw_schedules = []
    for i, item in enumerate(raw_schedules):
        try:
            schedules.append(_schedule(item))
        except ValidationError as exc:
            problem(f"schedules[{i}]", _first_error(exc))
        except (ValueError, TypeError) as exc:
            problem(f"schedules[{i}]", str(exc))

    triggers: list[Any] = []
    raw_triggers = raw.get("triggers") or []
    if not isinstance(raw_triggers, list):
        problem("triggers", "must be a list")
        raw_triggers = []
    for i, spec in enumerate(raw_triggers, start=1):
        if not isinstance(spec, dict):
            problem(f"triggers[{i - 1}]", "must be a mapping")
            continue
        try:
            triggers.append(_triggers.validate_python({"name": f"{name}__automation_{i}", **spec}))
        except ValidationError as exc:
            problem(f"triggers[{i - 1}]", _first_error(exc))

    limit, options = raw.get("concurrency_limit"), None
    if isinstance(limit, dict):
        try:
            options = (
                ConcurrencyOptions(**{k: v for k, v in limit.items() if k != "limit" and v is not None})
                if set(limit) - {"limit"}
                else None
            )
        except (ValidationError, TypeError) as exc:
            problem("concurrency_limit", str(exc))
        limit = limit.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problem("concurrency_limit", "must be a positive whole number")

    flow: Flow | None = None
    entrypoint = raw.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint:
        problem("entrypoint", "name the flow: module.path.flow_function or path/to/file.py:flow_function")
    else:
        try:
            flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        except Exception as exc:  # import errors of the user's module surface as the field's problem
            problem("entrypoint", f"cannot load a flow from {entrypoint!r}: {type(exc).__name__}: {exc}")
    if flow is not None:
        problems += _check_parameters(name, flow, parameters, "parameters")
        for i, item in enumerate(schedules):
            if item.parameters:
                problems += _check_parameters(
                    name, flow, {**parameters, **item.parameters}, f"schedules[{i}].parameters"
                )
    if problems or flow is None:
        return None, problems

    pull = raw["pull"] if "pull" in raw else actions.get("pull")
    pull = [pull] if isinstance(pull, dict) and pull else pull  # a single step may be given as a mapping
    return Planned(
        name=name,
        flow=flow,
        entrypoint=entrypoint,
        work_pool=pool["name"],
        work_queue=pool.get("work_queue_name"),
        job_variables=pool.get("job_variables") or {},
        parameters=parameters,
        schedules=schedules,
        triggers=triggers,
        pull_steps=_default_pull(entrypoint) if pull is None else list(pull),
        description=raw.get("description") or flow.description,
        version=raw.get("version"),
        tags=tags,
        paused=raw.get("paused"),
        concurrency_limit=limit,
        concurrency_options=options,
        enforce_parameter_schema=raw.get("enforce_parameter_schema", True),
    ), []


def plan(path: Path, names: list[str] | None = None, all_: bool = False) -> list[Planned]:
    """Check the chosen deployments of the file; raise :class:`DeployFileInvalid` with every problem found."""
    entries, actions = read_prefect_file(path)
    if not entries:
        raise DeployFileInvalid([FileProblem(deployment="file", field="deployments", message="lists no deployment")])
    declared = [e.get("name") for e in entries]
    problems = [
        FileProblem(deployment=n, field="name", message="appears more than once")
        for n in sorted({n for n in declared if isinstance(n, str) and declared.count(n) > 1})
    ]
    if names:
        unknown = [n for n in names if n.rpartition("/")[2] not in declared]
        if unknown:
            raise DeployFileInvalid(
                [FileProblem(deployment=n, field="name", message=f"not in {path}") for n in unknown]
            )
        chosen = [e for e in entries if e.get("name") in {n.rpartition("/")[2] for n in names}]
    elif all_ or len(entries) == 1:
        chosen = entries
    else:
        raise CxmputeError(
            f"{path} lists {len(entries)} deployments: choose with --name, or deploy them with --all", field="name"
        )
    planned = []
    for entry in chosen:
        one, found = _plan_one(entry, entries.index(entry), actions)
        problems += found
        if one is not None:
            planned.append(one)
    if problems:
        raise DeployFileInvalid(problems)
    return planned


# -- creating ---------------------------------------------------------------------------------------------


def describe_schedule(schedule: Any) -> str:
    if isinstance(schedule, CronSchedule):
        return f"cron {schedule.cron}" + (f" ({schedule.timezone})" if schedule.timezone not in (None, "UTC") else "")
    if isinstance(schedule, IntervalSchedule):
        return f"every {schedule.interval}"
    if isinstance(schedule, RRuleSchedule):
        return f"rrule {schedule.rrule}"
    return str(schedule)


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


def _detail(exc: PrefectHTTPStatusError) -> str:
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
                        deployment=p.name, field="name", message=f"the Prefect server refused it: {_detail(http_exc)}"
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
                await _remove(client, done.id)
            raise
    return applied


# -- managing ---------------------------------------------------------------------------------------------


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
                raise CxmputeError(f"{name}: {_detail(exc)}", field="param") from None
            raise


async def read_run(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def set_paused(name: str, paused: bool) -> str:
    async with get_client() as client:
        deployment = await find(client, name)
        await (client.pause_deployment if paused else client.resume_deployment)(deployment.id)
        return f"{(await _flow_names(client)).get(deployment.flow_id)}/{deployment.name}"


async def _remove(client: PrefectClient, deployment_id: UUID) -> None:
    """A deployment and the triggers it owns."""
    await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
    await client.delete_deployment(deployment_id)


async def delete(name: str) -> str:
    async with get_client() as client:
        deployment = await find(client, name)
        await _remove(client, deployment.id)
        return f"{(await _flow_names(client)).get(deployment.flow_id)}/{deployment.name}"
