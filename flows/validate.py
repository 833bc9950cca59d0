"""Validation: every problem of a workflow document at once, each naming its node or edge, and for a valid
document the plan that runs it (agents resolved, edges grouped by target, nodes in topological order)."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from agxnt.agent import Agent
from agxnt.errors import UnknownAgent
from agxnt.registry import Registry
from agxnt.registry import registry as default_registry
from flows.problems import Problem, WorkflowInvalid
from flows.spec import Node, Workflow


@dataclass
class Plan:
    """A validated workflow: resolved agent classes, edges grouped by target, and a topological order."""

    workflow: Workflow
    agents: dict[str, type[Agent]]
    incoming: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=dict
    )  # target -> [(src, src_field, tgt_field)]
    order: list[str] = field(default_factory=list)

    def upstream(self, node_id: str) -> set[str]:
        return {src for src, _, _ in self.incoming.get(node_id, [])}

    def descendants(self, node_id: str) -> set[str]:
        children: dict[str, set[str]] = defaultdict(set)
        for target, sources in self.incoming.items():
            for src, _, _ in sources:
                children[src].add(target)
        seen, stack = {node_id}, [node_id]
        while stack:
            for child in children[stack.pop()]:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen


# --- JSON Schema type compatibility -------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root.get("$defs", {}).get(name, {})
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str] | None:
    """The JSON types a schema admits, or None for 'anything'."""
    schema = _resolve(schema, root)
    if "anyOf" in schema or "oneOf" in schema:
        out: set[str] = set()
        for sub in schema.get("anyOf", []) + schema.get("oneOf", []):
            t = _types(sub, root)
            if t is None:
                return None
            out |= t
        return out
    t = schema.get("type")
    if t is None:
        return None
    return set(t) if isinstance(t, list) else {t}


def _compatible(src: set[str] | None, tgt: set[str] | None) -> bool:
    if src is None or tgt is None:
        return True
    src = src - {"null"}
    if not src:
        return True
    if "number" in tgt:
        tgt = tgt | {"integer"}
    return src <= tgt


@lru_cache(maxsize=1024)
def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _field_schema(model: type[BaseModel], path: str, which: str) -> tuple[dict | None, dict]:
    """Schema of ``path`` in the model (``variables.topic`` addresses a key of a dict field)."""
    root = _model_schema(model)
    props = root.get("properties", {})
    head, _, rest = path.partition(".")
    if head not in props:
        return None, root
    schema = props[head]
    if rest:
        resolved = _resolve(schema, root)
        if which == "input" and "object" in (_types(resolved, root) or {"object"}):
            extra = resolved.get("additionalProperties", True)
            return (extra if isinstance(extra, dict) else {}), root
        inner = _resolve(schema, root).get("properties", {})
        if rest in inner:
            return inner[rest], root
        return None, root
    return schema, root


# --- validation ---------------------------------------------------------------------------------


def _locate(raw: dict[str, Any], loc: tuple) -> tuple[str | None, int | None, str]:
    """Turn a pydantic error location into (node id, edge index, field path)."""
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        nodes = raw.get("nodes") or []
        node = nodes[loc[1]] if loc[1] < len(nodes) and isinstance(nodes[loc[1]], dict) else {}
        return str(node.get("id") or f"#{loc[1]}"), None, ".".join(str(p) for p in loc[2:])
    if len(loc) >= 2 and loc[0] == "edges" and isinstance(loc[1], int):
        return None, loc[1], ".".join(str(p) for p in loc[2:])
    return None, None, ".".join(str(p) for p in loc)


def on_network(wf: Workflow, node: Node, cls: type[Agent]) -> bool:
    """Whether ``node`` runs on a provider (matched and dispatched) rather than where the flow runs."""
    if cls.id == "hitl.approve":  # it pauses the flow run itself, so it runs where the flow runs
        return False
    if node.options.placement != "auto":
        return node.options.placement == "network"
    return wf.compute.on_network and cls.resources.needs_provider


def validate(document: dict[str, Any] | Workflow, reg: Registry | None = None) -> tuple[Plan | None, list[Problem]]:
    """Check a document; return a runnable plan and no problems, or None and every problem found."""
    reg = reg or default_registry
    if isinstance(document, Workflow):
        wf = document
    else:
        try:
            wf = Workflow.model_validate(document)
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                node, edge, fld = _locate(document, tuple(e["loc"]))
                problems.append(
                    Problem(
                        code="invalid_document",
                        message=f"{fld or 'document'}: {e['msg']}",
                        node=node,
                        edge=edge,
                        field=fld or None,
                    )
                )
            return None, problems

    problems: list[Problem] = []
    agents: dict[str, type[Agent]] = {}
    seen: set[str] = set()
    for node in wf.nodes:
        if node.id in seen:
            problems.append(Problem(code="duplicate_node", message=f"node id {node.id!r} is used twice", node=node.id))
            continue
        seen.add(node.id)
        try:
            cls = reg.get(node.agent, node.agent_version)
        except UnknownAgent as exc:
            code = "unknown_version" if node.agent_version and reg.has(node.agent) else "unknown_agent"
            hint = "; `cxmpute workflows migrate` upgrades it" if code == "unknown_version" else ""
            problems.append(Problem(code=code, message=exc.message + hint, node=node.id, field="agent"))
            continue
        agents[node.id] = cls

    incoming: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    targets_seen: dict[tuple[str, str], int] = {}
    for i, edge in enumerate(wf.edges):
        ok = True
        for end, nid in (("source", edge.source), ("target", edge.target)):
            if nid not in seen:
                problems.append(
                    Problem(code="unknown_node", message=f"edge {end} {nid!r} is not a node", edge=i, field=end)
                )
                ok = False
        if not ok:
            continue
        src_cls, tgt_cls = agents.get(edge.source), agents.get(edge.target)
        if src_cls is None or tgt_cls is None:
            continue  # the unknown agent is already reported
        src_schema, src_root = _field_schema(src_cls.Output, edge.source_field, "output")
        if src_schema is None:
            problems.append(
                Problem(
                    code="unknown_port",
                    node=edge.source,
                    edge=i,
                    field=edge.source_field,
                    message=f"{src_cls.id} has no output {edge.source_field!r} "
                    f"(outputs: {', '.join(src_cls.Output.model_fields)})",
                )
            )
            ok = False
        tgt_schema, tgt_root = _field_schema(tgt_cls.Input, edge.target_field, "input")
        if tgt_schema is None:
            problems.append(
                Problem(
                    code="unknown_port",
                    node=edge.target,
                    edge=i,
                    field=edge.target_field,
                    message=f"{tgt_cls.id} has no input {edge.target_field!r} "
                    f"(inputs: {', '.join(tgt_cls.Input.model_fields)})",
                )
            )
            ok = False
        if not ok:
            continue
        st, tt = _types(src_schema, src_root), _types(tgt_schema, tgt_root)
        if not _compatible(st, tt):
            problems.append(
                Problem(
                    code="type_mismatch",
                    node=edge.target,
                    edge=i,
                    field=edge.target_field,
                    message=f"{edge.source}.{edge.source_field} ({'/'.join(sorted(st or []))}) cannot feed "
                    f"{edge.target}.{edge.target_field} ({'/'.join(sorted(tt or []))})",
                )
            )
            continue
        key = (edge.target, edge.target_field)
        if key in targets_seen:
            problems.append(
                Problem(
                    code="duplicate_edge",
                    node=edge.target,
                    edge=i,
                    field=edge.target_field,
                    message=f"input {edge.target_field!r} already fed by edge #{targets_seen[key]}",
                )
            )
            continue
        targets_seen[key] = i
        incoming[edge.target].append((edge.source, edge.source_field, edge.target_field))

    order, cyclic = _toposort([n.id for n in wf.nodes if n.id in agents], incoming)
    for nid in cyclic:
        problems.append(Problem(code="cycle", node=nid, message="node is part of a cycle"))

    for node in wf.nodes:
        cls = agents.get(node.id)
        if cls is None:
            continue
        fed = {tf.split(".")[0] for _, _, tf in incoming.get(node.id, [])}
        if node.agent == "io.input":
            name = node.params.get("name", "input")
            if name not in wf.inputs:
                problems.append(
                    Problem(
                        code="unknown_input",
                        node=node.id,
                        field="params.name",
                        message=f"workflow has no input {name!r} (declared: {', '.join(wf.inputs) or 'none'})",
                    )
                )
            fed.add("value")
        for key in node.params:
            if key not in cls.Input.model_fields:
                problems.append(
                    Problem(
                        code="bad_param", node=node.id, field=f"params.{key}", message=f"{cls.id} has no input {key!r}"
                    )
                )
        for name, info in cls.Input.model_fields.items():
            if info.is_required() and name not in node.params and name not in fed:
                problems.append(
                    Problem(
                        code="missing_input",
                        node=node.id,
                        field=name,
                        message=f"required input {name!r} is neither set nor connected",
                    )
                )
        try:
            cls.Input.model_validate({k: v for k, v in node.params.items() if k in cls.Input.model_fields})
        except ValidationError as exc:
            for e in exc.errors():
                head = str(e["loc"][0]) if e["loc"] else ""
                if e["type"] == "missing" or head in fed:
                    continue
                problems.append(
                    Problem(
                        code="bad_param",
                        node=node.id,
                        field=f"params.{'.'.join(map(str, e['loc']))}",
                        message=f"{'.'.join(map(str, e['loc']))}: {e['msg']}",
                    )
                )

    if wf.compute.price_max_gwei is None:
        for node in wf.nodes:
            cls = agents.get(node.id)
            if cls is not None and on_network(wf, node, cls):
                problems.append(
                    Problem(
                        code="bad_param",
                        node=node.id,
                        field="compute.price_max_gwei",
                        message="runs on a provider: set compute.price_max_gwei, the most you pay "
                        "per compute-unit-second",
                    )
                )
    if wf.compute.price_max_gwei is not None and wf.compute.price_max_gwei < wf.compute.price_min_gwei:
        problems.append(
            Problem(
                code="invalid_document",
                field="compute.price_max_gwei",
                message="compute.price_max_gwei is below compute.price_min_gwei",
            )
        )

    for name, out in wf.outputs.items():
        cls = agents.get(out.node)
        if out.node not in seen:
            problems.append(
                Problem(
                    code="unknown_output",
                    field=f"outputs.{name}",
                    message=f"output {name!r} reads unknown node {out.node!r}",
                )
            )
        elif cls is not None and out.field not in cls.Output.model_fields:
            problems.append(
                Problem(
                    code="unknown_output",
                    node=out.node,
                    field=f"outputs.{name}",
                    message=f"output {name!r}: {cls.id} has no output {out.field!r}",
                )
            )

    if problems:
        return None, problems
    return Plan(workflow=wf, agents=agents, incoming=dict(incoming), order=order), []


def _toposort(nodes: list[str], incoming: dict[str, list[tuple[str, str, str]]]) -> tuple[list[str], list[str]]:
    indegree = {n: 0 for n in nodes}
    children: dict[str, list[str]] = defaultdict(list)
    for target, sources in incoming.items():
        for src, _, _ in sources:
            if src in indegree and target in indegree:
                indegree[target] += 1
                children[src].append(target)
    ready = deque(n for n in nodes if indegree[n] == 0)
    order = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    cyclic = [n for n in nodes if indegree[n] > 0]
    return order, cyclic


def validate_or_raise(document: dict[str, Any] | Workflow, reg: Registry | None = None) -> Plan:
    plan, problems = validate(document, reg)
    if plan is None:
        raise WorkflowInvalid(problems)
    return plan
