"""The flow that deployments of workflow templates run.

A deployment names a template of ``flows/templates`` rather than embedding its document, so
``prefect.yaml`` stays readable and every machine with Cxmpute installed has the same document. The
template runs as an ordinary workflow run (a child flow run of the workflow flow), so run history and
the builder see it like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, tags

from flows.engine import compile_workflow
from flows.spec import load_document

TEMPLATE_FLOW = "cxmpute-template"
TEMPLATES = Path(__file__).parent / "templates"
_SUFFIXES = (".yaml", ".yml", ".json")


def template_names() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.suffix in _SUFFIXES)


def template_path(name: str) -> Path:
    """The template file called ``name``: a bare file name of ``flows/templates``, never a path elsewhere."""
    if Path(name).name != name or name not in template_names():
        raise ValueError(f"no workflow template {name!r}; known: {', '.join(template_names())}")
    return TEMPLATES / name


def load_template(name: str) -> dict[str, Any]:
    return load_document(template_path(name))


@flow(name=TEMPLATE_FLOW)
def run_template(template: str, inputs: dict[str, Any] | None = None, owner: str = "local") -> dict[str, Any]:
    """Run the workflow template ``template`` (a file name in flows/templates) with ``inputs``."""
    compiled = compile_workflow(load_template(template))
    with tags(f"owner:{owner}", f"template:{template}"):
        return compiled.flow(**compiled.parameters(inputs, owner))
