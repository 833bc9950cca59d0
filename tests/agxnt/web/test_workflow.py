"""The web agents inside real Prefect workflow runs, configured through the environment like a deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxmpute.settings import reset_settings
from flows.runner import run_workflow
from flows.spec import load_document

TEMPLATE = Path(__file__).resolve().parents[3] / "flows" / "templates" / "web_research.yaml"


def test_research_template(configured: None, site: str) -> None:
    result = run_workflow(load_document(TEMPLATE), inputs={"question": "When was Acme founded?"})
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    assert "founded in 1999 [1]" in result.outputs["answer"]
    assert result.outputs["sources"][0]["url"] == f"{site}/about"
    assert {p["url"] for p in result.outputs["site_pages"]} >= {f"{site}/about", f"{site}/", f"{site}/products"}


BROWSE = {
    "version": 1,
    "name": "search, browse, chain",
    "inputs": {"term": {"type": "string", "required": True}},
    "outputs": {
        "found": {"node": "search", "field": "results"},
        "form_result": {"node": "browse", "field": "extracted"},
        "chain": {"node": "chain", "field": "last"},
    },
    "nodes": [
        {"id": "term", "agent": "io.input", "params": {"name": "term"}},
        {"id": "search", "agent": "web.internet", "params": {"read_results": 1}},
        {
            "id": "browse",
            "agent": "web.browser",
            "params": {
                "actions": [
                    {"type": "goto", "url": "SITE/form"},
                    {"type": "type", "selector": "input[name=q]", "text": "gizmo"},
                    {"type": "select", "selector": "select[name=color]", "value": "red"},
                    {"type": "click", "selector": "button[type=submit]"},
                    {"type": "extract_text", "selector": "#result"},
                ],
                "screenshots": False,
            },
        },
        {
            "id": "chain",
            "agent": "web.sequential",
            "params": {
                "steps": [
                    {"agent": "web.internet", "params": {"url": "SITE/table", "render": True}},
                    {
                        "agent": "web.browser",
                        "params": {
                            "start_url": "{{ prev.page.url }}",
                            "screenshots": False,
                            "actions": [{"type": "extract_table"}],
                        },
                    },
                ]
            },
        },
    ],
    "edges": [{"source": "term", "source_field": "value", "target": "search", "target_field": "query"}],
}


@pytest.mark.browser
def test_browser_agents_in_a_workflow(configured: None, site: str) -> None:
    import json

    document = json.loads(json.dumps(BROWSE).replace("SITE", site))
    result = run_workflow(document, inputs={"term": "brass gizmo"})
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    assert result.outputs["found"][0]["url"] == f"{site}/products/gizmo"
    assert result.nodes["search"].output["pages"][0]["title"] == "Gizmo"
    assert result.outputs["form_result"] == ["Found 3 red gizmo items."]
    assert result.outputs["chain"]["extracted"][0]["rows"] == [["Gizmo", "12"], ["Sprocket", "30"]]


def test_refused_target_fails_the_node_with_the_field(configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXMPUTE_WEB_ALLOW_PRIVATE", "false")
    reset_settings()
    document = {
        "version": 1,
        "name": "metadata probe",
        "nodes": [
            {"id": "fetch", "agent": "web.internet", "params": {"url": "http://169.254.169.254/latest/meta-data/"}}
        ],
    }
    result = run_workflow(document)
    assert result.state == "failed"
    assert "private, loopback or link-local" in result.nodes["fetch"].error
