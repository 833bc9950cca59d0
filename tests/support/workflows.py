"""Workflow documents several suites run."""

from __future__ import annotations

# A run that pauses at an approval step, waiting for its owner's answer.
APPROVAL = {
    "name": "approval",
    "inputs": {"draft": {"default": "draft text"}},
    "outputs": {"final": {"node": "review", "field": "value"}},
    "nodes": [
        {"id": "in", "agent": "io.input", "params": {"name": "draft"}},
        {"id": "review", "agent": "hitl.approve", "params": {"prompt": "Publish?"}},
    ],
    "edges": [{"source": "in", "source_field": "value", "target": "review", "target_field": "value"}],
}
