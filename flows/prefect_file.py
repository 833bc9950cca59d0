"""A ``prefect.yaml`` read and checked: every problem of the file at once, before any deployment is created.

The file is Prefect 3's own format, so ``prefect deploy --prefect-file deploy/prefect.yaml --all`` reads
it too; this module adds what an operator of the network needs on top: every problem of the file reported
at once (each naming its deployment and field) before anything is created, and workflow templates validated
like any workflow document.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import ConcurrencyOptions
from prefect.events import DeploymentTriggerTypes
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.templating import apply_values
from pydantic import BaseModel, TypeAdapter, ValidationError

from cxmpute.errors import CxmputeError
from flows.run_inputs import check_inputs
from flows.schedules import schedule_from_file
from flows.template_runs import TEMPLATE_FLOW, load_template
from flows.validate import validate

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
            schedules.append(schedule_from_file(item))
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
