"""Every generation agent as a node of one real Prefect workflow run: text flows from Step into a PDF and
speech, an image into a deck, and each node's file parses back from the owner's storage."""

from __future__ import annotations

import uuid

import nbformat
import pytest
from fixtures.generated_files import mp4_info, pdf_pages, png_size, pptx_slides, wav_info

from flows.runner import run_workflow
from flows.validate import validate

pytestmark = pytest.mark.slow

SMALL = {"width": 64, "height": 64, "steps": 1, "seed": 5}

DOCUMENT = {
    "version": 1,
    "name": "generation",
    "inputs": {"topic": {"type": "string", "required": True}},
    "outputs": {
        "pdf": {"node": "pdf", "field": "pdf"},
        "pages": {"node": "pdf", "field": "pages"},
        "document": {"node": "step", "field": "document"},
        "speech": {"node": "speech", "field": "audio"},
        "images": {"node": "image", "field": "images"},
        "deck": {"node": "deck", "field": "presentation"},
        "video": {"node": "video", "field": "video"},
        "notebook": {"node": "notebook", "field": "notebook"},
        "cells": {"node": "notebook", "field": "cells"},
    },
    "nodes": [
        {"id": "topic", "agent": "io.input", "params": {"name": "topic"}},
        {"id": "step", "agent": "gen.step", "params": {"outline": ["Overview", "Details", "Outlook"]}},
        {"id": "pdf", "agent": "gen.pdf", "params": {"filename": "report"}},
        {"id": "speech", "agent": "gen.tts", "params": {"voice": "en"}},
        {"id": "image", "agent": "gen.image", "params": SMALL},
        {
            "id": "deck",
            "agent": "gen.presentation",
            "params": {"title": "Generated", "outline": "# Picture\n- from the image node\n# Summary\n- done"},
        },
        {"id": "video", "agent": "gen.video", "params": {**SMALL, "frames": 4, "fps": 4}},
        {"id": "notebook", "agent": "gen.notebook", "params": {"cells": [{"source": "len(parameters['outline'])"}]}},
    ],
    "edges": [
        {"source": "topic", "source_field": "value", "target": "step", "target_field": "topic"},
        {"source": "step", "source_field": "document", "target": "pdf", "target_field": "markdown"},
        {"source": "step", "source_field": "title", "target": "speech", "target_field": "text"},
        {"source": "topic", "source_field": "value", "target": "image", "target_field": "prompt"},
        {"source": "image", "source_field": "images", "target": "deck", "target_field": "images"},
        {"source": "topic", "source_field": "value", "target": "video", "target_field": "prompt"},
        {"source": "step", "source_field": "outline", "target": "notebook", "target_field": "parameters.outline"},
    ],
}


def test_the_document_validates():
    plan, problems = validate(DOCUMENT)
    assert problems == [] and plan is not None


def test_every_generation_agent_in_one_workflow(prefect_api, platform):
    owner = f"0xF10{uuid.uuid4().hex[:8]}"
    run = run_workflow(DOCUMENT, inputs={"topic": "a lighthouse"}, owner=owner, timeout=280)
    assert run.state == "completed", {n: r.error for n, r in run.nodes.items()}
    out = run.outputs

    def read(ref: dict) -> bytes:
        data = platform.storage.get_bytes(ref["cid"], owner=owner)
        assert len(data) == ref["size"]
        return data

    pages = pdf_pages(read(out["pdf"]))
    assert out["pdf"]["name"] == "report.pdf" and len(pages) == out["pages"]
    text = "\n".join(pages)
    assert all(heading in text for heading in ("a lighthouse", "Overview", "Details", "Outlook"))
    assert out["document"].startswith("# a lighthouse\n")

    assert wav_info(read(out["speech"]))["frames"] > 0
    assert png_size(read(out["images"][0])) == (64, 64)
    slides = pptx_slides(read(out["deck"]))
    assert [(s["title"], s["pictures"]) for s in slides] == [("Generated", 0), ("Picture", 1), ("Summary", 0)]
    assert mp4_info(read(out["video"]))["frames"] == 4
    assert [c["outputs"] for c in out["cells"]] == [[], ["3"]]  # the parameters cell, then the given one
    nbformat.validate(nbformat.reads(read(out["notebook"]).decode(), as_version=4))
