"""The workflow document: nodes running agents, edges wiring output fields to input fields.

A document pins each node's agent id *and version* and never carries executable source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC_VERSION = 1


class Position(BaseModel):
    x: float = 0
    y: float = 0


class NodeResources(BaseModel):
    """Machine size a node asks the market for when it runs on a provider."""

    model_config = ConfigDict(extra="forbid")

    cpu: int = Field(1, ge=1, le=4096, description="vCPU cores")
    memory_mb: int = Field(512, ge=1, le=64 * 2**20)
    gpu_count: int = Field(0, ge=0, le=64)
    gpu_model: str = Field("", max_length=64)


class NodeOptions(BaseModel):
    """How the engine runs a node."""

    model_config = ConfigDict(extra="forbid")

    retries: int = Field(0, ge=0, le=10, description="Retries after a failure")
    retry_delay_seconds: float = Field(1.0, ge=0, le=3600)
    timeout_seconds: float | None = Field(None, gt=0, le=24 * 3600, description="Fail the node after this long")
    cache: bool = Field(True, description="Reuse this node's output on a re-run when its inputs are unchanged")
    placement: Literal["auto", "local", "network"] = Field(
        "auto",
        description="auto: on a provider when the agent needs provider compute and the workflow's "
        "compute section places work on the network; local: where the flow runs; network: "
        "always on a provider",
    )
    resources: NodeResources | None = Field(
        None, description="What to match a provider by (default: the agent's needs)"
    )


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")
    agent: str = Field(..., description="Catalogue id, e.g. memory.search")
    agent_version: str | None = Field(None, description="Pinned agent version; filled in on save")
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="Static values for the agent's input fields")
    options: NodeOptions = Field(default_factory=NodeOptions)
    position: Position = Field(default_factory=Position)


class Edge(BaseModel):
    """source.source_field → target.target_field; a target field may address a key of a dict input
    (``variables.topic``)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    source_field: str
    target: str
    target_field: str


InputType = Literal["string", "number", "integer", "boolean", "object", "array"]


class WorkflowInput(BaseModel):
    """A named run input. One without a ``default`` (here, or as ``params.value`` of the io.input node reading
    it) is required; ``required: true`` requires it even with one, ``required: false`` lets a run leave it out
    (its node then sees null)."""

    model_config = ConfigDict(extra="forbid")

    type: InputType | None = Field(None, description="JSON type a run's value must have; any value when unset")
    description: str = ""
    default: Any = None
    required: bool | None = Field(
        None, description="Whether a run must give the input; when unset, exactly when it has no default"
    )


class WorkflowOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    field: str = "value"


class Budget(BaseModel):
    """Hard limits for the whole run; loops (the Sequential agents) are bounded by these too."""

    model_config = ConfigDict(extra="forbid")

    max_seconds: float = Field(3600, gt=0, le=7 * 24 * 3600)
    max_iterations: int = Field(100, ge=1, le=10_000, description="Per looping node")


class Compute(BaseModel):
    """Where nodes needing provider compute run, and the price range the workflow's owner pays for it."""

    model_config = ConfigDict(extra="forbid")

    placement: Literal["auto", "local", "network"] = Field(
        "auto", description="auto: on providers when price_max_gwei is set, else where the flow runs"
    )
    price_min_gwei: int = Field(0, ge=0, description="Lowest ask accepted, gwei per compute-unit-second")
    price_max_gwei: int | None = Field(None, gt=0, le=10**12, description="Highest ask accepted")

    @property
    def on_network(self) -> bool:
        return self.placement == "network" or (self.placement == "auto" and self.price_max_gwei is not None)


class Workflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(SPEC_VERSION, description="Document format version")
    name: str = Field("workflow", min_length=1, max_length=200)
    description: str = ""
    inputs: dict[str, WorkflowInput] = Field(
        default_factory=dict, description="Named run inputs; an io.input node whose params.name matches receives it"
    )
    outputs: dict[str, WorkflowOutput] = Field(default_factory=dict)
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    compute: Compute = Field(default_factory=Compute)

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SPEC_VERSION:
            raise ValueError(f"document version {v} is newer than this platform understands ({SPEC_VERSION})")
        return v

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


def workflow_json_schema() -> dict[str, Any]:
    return Workflow.model_json_schema()


def parse_document(text: str) -> dict[str, Any]:
    """Parse YAML or JSON text (JSON is YAML) into a plain mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("a workflow document must be a mapping with nodes and edges")
    return data


def load_document(path: str | Path) -> dict[str, Any]:
    return parse_document(Path(path).read_text())


def dump_document(workflow: Workflow, fmt: str = "yaml") -> str:
    data = workflow.model_dump(mode="json", exclude_defaults=False)
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False)
