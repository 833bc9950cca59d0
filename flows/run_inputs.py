"""A run's inputs checked against the inputs its workflow declares, every problem at once: names it does not
declare, required inputs left out, values of the wrong JSON type."""

from __future__ import annotations

from typing import Any

from flows.problems import Problem
from flows.spec import Workflow

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _has_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never a number to JSON
        return kind == "boolean"
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[kind])


def _json_type(value: Any) -> str:
    return next(
        (kind for kind in ("boolean", "integer", "number", "string", "object", "array") if _has_type(value, kind)),
        type(value).__name__,
    )


def _defaults(wf: Workflow) -> set[str]:
    """The inputs a run may leave out because the document gives a value: a declared default, or the
    ``params.value`` of the io.input node reading it."""
    given = {name for name, declared in wf.inputs.items() if declared.default is not None}
    return given | {
        n.params.get("name", "input") for n in wf.nodes if n.agent == "io.input" and n.params.get("value") is not None
    }


def check_inputs(wf: Workflow, inputs: dict[str, Any]) -> list[Problem]:
    """Every problem of a run's inputs against the workflow's declared ones: names it does not declare,
    required inputs left out, values of the wrong type. A null value counts as left out."""
    problems = [
        Problem(
            code="unknown_run_input",
            field=f"inputs.{name}",
            message=f"run input {name!r} is not declared (declared: {', '.join(wf.inputs) or 'none'})",
        )
        for name in inputs
        if name not in wf.inputs
    ]
    defaults = _defaults(wf)
    for name, declared in wf.inputs.items():
        value = inputs.get(name)
        if value is None:
            required = declared.required if declared.required is not None else name not in defaults
            if required:
                problems.append(
                    Problem(code="missing_run_input", field=f"inputs.{name}", message=f"run input {name!r} is required")
                )
        elif declared.type is not None and not _has_type(value, declared.type):
            problems.append(
                Problem(
                    code="bad_run_input",
                    field=f"inputs.{name}",
                    message=f"run input {name!r} must be of type {declared.type}, "
                    f"not {_json_type(value)} ({value!r:.60})",
                )
            )
    return problems
