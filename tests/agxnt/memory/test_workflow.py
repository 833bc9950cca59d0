"""The memory and Dxtabase agents inside real Prefect workflow runs, and the ingest-and-ask template."""

from __future__ import annotations

import uuid
from pathlib import Path

from flows.runner import run_workflow
from flows.spec import load_document

TEMPLATE = Path(__file__).resolve().parents[3] / "flows" / "templates" / "ingest_and_ask.yaml"

FILES = {
    "astronomy/jupiter.txt": "Jupiter is the largest planet in the solar system and has a Great Red Spot.",
    "cooking/risotto.txt": "Risotto is made by slowly adding warm broth to arborio rice while stirring.",
    "history/printing.txt": "Johannes Gutenberg introduced movable type printing in Europe around 1440.",
    "sport/marathon.txt": "A marathon is a long-distance race of 42.195 kilometres.",
}


def test_ingest_folder_then_answer_cites_the_right_passage(platform, owners):
    folder = f"wf-{uuid.uuid4().hex[:8]}"
    root = platform.settings.data_dir / "files" / folder  # the default ingest root
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    result = run_workflow(
        load_document(TEMPLATE),
        inputs={"folder": folder, "question": "Who brought movable type printing to Europe?", "memory": "library"},
        owner=owners[0],
    )
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    assert result.outputs["sources"][0] == "history/printing.txt"
    assert isinstance(result.outputs["answer"], str)
    assert result.nodes["ingest"].output["ids"] == sorted(FILES)
    # the files went into the run owner's memory and nobody else's
    assert [m.name for m in platform.memory.list_memories(owners[0])] == ["library"]
    assert platform.memory.list_memories(owners[1]) == []


ALL_AGENTS = {
    "version": 1,
    "name": "every memory agent",
    "outputs": {
        "found": {"node": "search", "field": "ids"},
        "asked": {"node": "ask", "field": "passage_ids"},
        "deleted": {"node": "delete", "field": "deleted"},
        "cleared": {"node": "clear", "field": "deleted"},
        "thread": {"node": "chat", "field": "text"},
        "rows": {"node": "query", "field": "rows"},
    },
    "nodes": [
        {
            "id": "write",
            "agent": "memory.write",
            "params": {
                "memory": "wf",
                "documents": [
                    {"id": "tea", "text": "Green tea is made from unoxidised leaves.", "metadata": {"kind": "drink"}},
                    {
                        "id": "oak",
                        "text": "Oak trees can live for more than a thousand years.",
                        "metadata": {"kind": "tree"},
                    },
                    {"id": "fig", "text": "Figs grow on trees.", "metadata": {"kind": "tree"}},
                ],
            },
        },
        {
            "id": "update",
            "agent": "memory.update",
            "params": {"id": "fig", "text": "Espresso is coffee brewed under pressure.", "metadata": {"kind": "drink"}},
        },
        {"id": "search", "agent": "memory.search", "params": {"query": "coffee brewing", "k": 1}},
        {"id": "ask", "agent": "memory.ask", "params": {"question": "How long do oak trees live?", "k": 1}},
        {"id": "delete", "agent": "memory.delete", "params": {"filter": {"kind": "tree"}}},
        {"id": "clear", "agent": "memory.clear", "params": {}},
        {
            "id": "chat",
            "agent": "memory.sequential",
            "params": {"thread": "wf", "action": "append", "message": "hello from a workflow"},
        },
        {
            "id": "create",
            "agent": "db.dxtabase",
            "params": {
                "action": "create_table",
                "table": "items",
                "columns": [{"name": "id", "type": "integer", "primary_key": True}, {"name": "name", "type": "text"}],
            },
        },
        {
            "id": "insert",
            "agent": "db.dxtabase",
            "params": {"action": "insert", "rows": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]},
        },
        {
            "id": "query",
            "agent": "db.dxtabase",
            "params": {"action": "query", "sql": "SELECT name FROM items ORDER BY id"},
        },
    ],
    "edges": [
        {"source": "write", "source_field": "memory", "target": "update", "target_field": "memory"},
        {"source": "update", "source_field": "memory", "target": "search", "target_field": "memory"},
        {"source": "search", "source_field": "memory", "target": "ask", "target_field": "memory"},
        {"source": "ask", "source_field": "memory", "target": "delete", "target_field": "memory"},
        {"source": "delete", "source_field": "memory", "target": "clear", "target_field": "memory"},
        {"source": "create", "source_field": "table", "target": "insert", "target_field": "table"},
        {"source": "insert", "source_field": "table", "target": "query", "target_field": "params.table"},
    ],
}


def test_every_agent_runs_inside_a_workflow(platform, owners):
    result = run_workflow(ALL_AGENTS, owner=owners[0])
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    assert result.outputs["found"] == ["fig"]
    assert result.outputs["asked"] == ["oak"]
    assert result.outputs["deleted"] == ["oak"]
    assert result.outputs["cleared"] == 2
    assert result.outputs["thread"] == "user: hello from a workflow"
    assert result.outputs["rows"] == [{"name": "one"}, {"name": "two"}]
    assert platform.memory.list_memories(owners[0]) == []


def test_a_failing_memory_node_fails_the_run_and_names_the_problem(platform, owners):
    doc = {
        "version": 1,
        "name": "bad",
        "nodes": [{"id": "s", "agent": "memory.search", "params": {"memory": "never-written", "query": "x"}}],
    }
    result = run_workflow(doc, owner=owners[0])
    assert result.state == "failed"
    assert "never-written" in (result.nodes["s"].error or "")
