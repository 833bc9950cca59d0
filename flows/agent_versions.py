"""The agent versions a document's nodes are pinned to: pinned to the newest when a document is saved, and
upgraded through each agent's ``migrate_params`` when a pinned version is no longer registered."""

from __future__ import annotations

from typing import Any

from agxnt.registry import Registry
from agxnt.registry import registry as default_registry
from flows.spec import Workflow


def pin_versions(document: dict[str, Any] | Workflow, reg: Registry | None = None) -> Workflow:
    """Fill each node's agent_version with the newest registered version where it is not pinned yet."""
    reg = reg or default_registry
    wf = document if isinstance(document, Workflow) else Workflow.model_validate(document)
    wf = wf.model_copy(deep=True)
    for node in wf.nodes:
        if node.agent_version is None and reg.has(node.agent):
            node.agent_version = reg.get(node.agent).version
    return wf


def migrate(document: dict[str, Any] | Workflow, reg: Registry | None = None) -> tuple[Workflow, list[str]]:
    """Upgrade nodes pinned to agent versions that are no longer registered to the newest version,
    through each agent's ``migrate_params``; returns the new document and what changed."""
    reg = reg or default_registry
    wf = document if isinstance(document, Workflow) else Workflow.model_validate(document)
    wf = wf.model_copy(deep=True)
    changes = []
    for node in wf.nodes:
        if node.agent_version and reg.has(node.agent) and not reg.has(node.agent, node.agent_version):
            cls = reg.get(node.agent)
            node.params = cls.migrate_params(dict(node.params), node.agent_version)
            changes.append(f"node {node.id}: {node.agent} {node.agent_version} -> {cls.version}")
            node.agent_version = cls.version
    return wf, changes
