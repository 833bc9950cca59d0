"""Each generation agent run directly: the stored file parses back to what was asked for."""

from __future__ import annotations

import json

import nbformat
import pytest
from fixtures.generated_files import mp4_info, pdf_pages, png_size, pptx_slides, wav_info
from langchain_core.callbacks import BaseCallbackHandler

from agxnt import AgentError, registry
from agxnt.adapters import as_langchain_tool
from agxnt.context import AgentContext
from agxnt.gen.presentation import parse_outline
from agxnt.gen.step import parse_outline as parse_step_outline
from agxnt.llm import chat_model

pytestmark = pytest.mark.slow


async def run(agent_id: str, input: dict, ctx: AgentContext):
    return await registry.get(agent_id)()(input, ctx)


GEN = ["gen.image", "gen.video", "gen.pdf", "gen.notebook", "gen.presentation", "gen.tts", "gen.step"]


async def test_the_family_is_registered_and_every_agent_is_a_tool(ctx, read):
    assert {info.id: info.family for info in registry.catalogue() if info.id.startswith("gen.")} == dict.fromkeys(
        GEN, "Generation"
    )
    assert registry.get("gen.notebook").resources.runtime == "sandbox"
    tools = {agent: as_langchain_tool(registry.get(agent), ctx) for agent in GEN}
    assert all(tool.args_schema.model_json_schema()["type"] == "object" for tool in tools.values())
    answer = await tools["gen.tts"].ainvoke({"text": "a tool call"})
    assert wav_info(read(answer["audio"], ctx.owner))["frames"] > 0


async def test_image_gen_stores_pngs_of_the_asked_size(ctx, read, tiny_pipeline):
    out = await run("gen.image", {"prompt": "a red cat", "n": 2, "width": 64, "height": 48, "steps": 2, "seed": 7}, ctx)
    assert out.model == tiny_pipeline and [i.name for i in out.images] == ["image-1.png", "image-2.png"]
    pngs = [read(i, ctx.owner) for i in out.images]
    assert [png_size(p) for p in pngs] == [(64, 48), (64, 48)]
    assert [len(p) for p in pngs] == [i.size for i in out.images] and all(
        i.media_type == "image/png" for i in out.images
    )
    again = await run(
        "gen.image", {"prompt": "a red cat", "n": 2, "width": 64, "height": 48, "steps": 2, "seed": 7}, ctx
    )
    assert [read(i, ctx.owner) for i in again.images] == pngs  # same seed, same images


async def test_video_gen_encodes_every_frame(ctx, read):
    out = await run(
        "gen.video", {"prompt": "a dog", "frames": 12, "fps": 6, "width": 64, "height": 64, "steps": 1, "seed": 1}, ctx
    )
    assert (out.frames, out.fps, out.duration_seconds, out.video.media_type) == (12, 6, 2.0, "video/mp4")
    info = mp4_info(read(out.video, ctx.owner))
    assert info["frames"] == 12 and info["shape"] == (64, 64, 3)
    assert info["fps"] == pytest.approx(6) and info["duration"] == pytest.approx(2.0, abs=0.2)


async def test_pdf_from_markdown_html_and_sections(ctx, read):
    image = (await run("gen.image", {"prompt": "a tree", "width": 64, "height": 64, "steps": 1}, ctx)).images[0]
    long_md = "# Report — café ✓\n\n" + "\n\n".join(
        f"## Part {i}\n\nParagraph {i} with **bold** text.\n\n- point {i}a\n- point {i}b" for i in range(60)
    )
    md = await run("gen.pdf", {"markdown": long_md, "filename": "../../report.md"}, ctx)
    pages = pdf_pages(read(md.pdf, ctx.owner))
    assert md.pdf.name == "report.pdf" and md.pages == len(pages) > 1
    text = "\n".join(pages)
    assert "Report — café ✓" in text and "Paragraph 59 with bold text." in text and "point 0b" in text

    html = await run(
        "gen.pdf",
        {
            "html": "<h1>Hi</h1><p>from <b>HTML</b></p><img src='/etc/passwd'>"
            "<table><tr><td>a</td><td>b</td></tr></table>"
        },
        ctx,
    )
    assert "from HTML" in pdf_pages(read(html.pdf, ctx.owner))[0]

    sections = await run(
        "gen.pdf",
        {
            "title": "Structured",
            "sections": [
                {"heading": "One", "body": "First *section*."},
                {"heading": "Two", "body": "With a picture.", "image_cid": image.cid, "image_caption": "A tree"},
            ],
        },
        ctx,
    )
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(read(sections.pdf, ctx.owner)))
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert all(s in text for s in ("Structured", "One", "First section.", "Two", "A tree"))
    assert sum(len(p.images) for p in reader.pages) == 1


async def test_pdf_without_a_unicode_font_falls_back_to_latin_1(ctx, read, tmp_path):
    bare = AgentContext(
        owner=ctx.owner,
        services=ctx.services,
        settings=ctx.settings.model_copy(update={"pdf_font": tmp_path / "missing.ttf"}),
    )
    out = await run("gen.pdf", {"markdown": "# Café ✓\n\n```\ncode ✓\n```"}, bare)
    text = pdf_pages(read(out.pdf, ctx.owner))[0]
    assert "Café ?" in text and "code ?" in text


async def test_notebook_executes_in_the_sandbox(ctx, read):
    out = await run(
        "gen.notebook",
        {
            "parameters": {"n": 4},
            "cells": [
                {"kind": "markdown", "source": "# Squares"},
                {"source": "import os\nsquares = [i * i for i in range(parameters['n'])]\nprint(os.getcwd())"},
                {"source": "sum(squares)"},
                {"source": "open('/etc/hostname').read() if False else os.getuid()"},
            ],
        },
        ctx,
    )
    assert out.status == "ok" and out.runtime == "sandbox" and out.error is None
    assert [c.status for c in out.cells] == ["ok", "not_run", "ok", "ok", "ok"]
    assert out.cells[2].outputs == ["/scratch\n"] and out.cells[3].outputs == ["14"]
    nb = nbformat.reads(read(out.notebook, ctx.owner).decode(), as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code", "code", "code"]
    assert nb.cells[3].outputs[0]["data"]["text/plain"] == "14"
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == [1, 2, 3, 4]


async def test_notebook_reports_a_failing_cell_and_reruns_a_stored_notebook(ctx, read):
    failed = await run("gen.notebook", {"cells": [{"source": "x = 1"}, {"source": "1/0"}, {"source": "x"}]}, ctx)
    assert failed.status == "error" and "ZeroDivisionError" in failed.error
    assert [c.status for c in failed.cells] == ["ok", "error", "not_run"]
    assert failed.cells[1].outputs == ["ZeroDivisionError: division by zero"]
    with pytest.raises(AgentError) as err:
        await run("gen.notebook", {"cells": [{"source": "1/0"}], "fail_on_error": True}, ctx)
    assert err.value.status_code == 422 and err.value.field == "cells"

    rerun = await run(
        "gen.notebook", {"notebook_cid": failed.notebook.cid, "allow_errors": True, "parameters": {"x": 2}}, ctx
    )
    assert rerun.status == "ok" and [c.status for c in rerun.cells] == ["ok", "ok", "error", "ok"]
    assert rerun.cells[3].outputs == ["1"]


async def test_notebook_code_cannot_forge_the_result(ctx):
    forge = (
        "import os\nopen('notebook.ipynb', 'w').write('not json')\n"
        "open('.cx-notebook.json', 'w').write('{\"status\": \"ok\"}')\nos.kill(os.getppid(), 9)"
    )
    with pytest.raises(AgentError) as err:
        await run("gen.notebook", {"cells": [{"source": forge}]}, ctx)
    assert err.value.status_code == 422 and err.value.field == "cells"
    garbled = "open('.cx-notebook.json', 'w').write('[1]')\nimport os\nos.kill(os.getppid(), 9)"
    out = await run("gen.notebook", {"cells": [{"source": garbled}]}, ctx)
    assert out.status == "killed" and [c.status for c in out.cells] == ["not_run"]


async def test_notebook_cell_timeout(ctx):
    out = await run(
        "gen.notebook",
        {"cells": [{"source": "import time\ntime.sleep(30)"}, {"source": "2"}], "cell_timeout_seconds": 1},
        ctx,
    )
    assert out.status == "timeout" and [c.status for c in out.cells] == ["error", "not_run"]
    assert "timed out" in out.error


def test_presentation_outline_parsing():
    slides = parse_outline("# Intro\n- why\n- how\n  said aloud\n![a skyline]\nPlan\n1. first\n2) second\n")
    assert [(s.title, s.bullets, s.notes, s.image_prompt) for s in slides] == [
        ("Intro", ["why", "how"], "said aloud", "a skyline"),
        ("Plan", ["first", "second"], None, None),
    ]
    with pytest.raises(AgentError) as err:
        parse_outline("- orphan bullet")
    assert err.value.field == "outline"


async def test_presentation_with_stored_and_generated_images(ctx, read):
    stored = (await run("gen.image", {"prompt": "a house", "width": 64, "height": 64, "steps": 1}, ctx)).images
    out = await run(
        "gen.presentation",
        {
            "title": "Deck",
            "subtitle": "made here",
            "outline": "# Intro\n- one\n- two\n  the notes\n# Picture\n![a blue sea]\n# Given\n- text only\n"
            "# Plain\n- no picture",
            "images": [i.model_dump() for i in stored],
            "generation": {"width": 64, "height": 64, "steps": 1},
        },
        ctx,
    )
    assert out.slides == 5 and len(out.generated_images) == 1
    slides = pptx_slides(read(out.presentation, ctx.owner))
    assert [s["title"] for s in slides] == ["Deck", "Intro", "Picture", "Given", "Plain"]
    # the stored image goes to the first slide without one of its own; the cover never gets one
    assert [s["pictures"] for s in slides] == [0, 1, 1, 0, 0]
    assert "• one\n• two" in slides[1]["texts"] and slides[1]["notes"] == "the notes"
    assert png_size(read(out.generated_images[0], ctx.owner)) == (64, 64)


async def test_tts_wav_and_mp3(ctx, read):
    wav = await run("gen.tts", {"text": "Hello from the generation agents.", "voice": "en-us+f3"}, ctx)
    info = wav_info(read(wav.audio, ctx.owner))
    assert wav.audio.media_type == "audio/wav" and info["channels"] == 1 and info["width"] == 2
    assert wav.duration_seconds == pytest.approx(info["frames"] / info["rate"], abs=1e-3) and wav.duration_seconds > 1
    mp3 = await run("gen.tts", {"text": "Bonjour", "voice": "fr", "format": "mp3"}, ctx)
    data = read(mp3.audio, ctx.owner)
    assert mp3.audio.name == "speech.mp3" and mp3.audio.media_type == "audio/mpeg"
    assert data[:3] == b"ID3" or data[:2] == b"\xff\xfb"


class _Prompts(BaseCallbackHandler):
    """Keeps the prompt of every chat model call."""

    def __init__(self):
        self.prompts: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.prompts.append("\n".join(m.text for m in messages[0]))


def _counting_ctx(ctx: AgentContext, tiny_llm: str) -> tuple[AgentContext, _Prompts]:
    from agxnt.context import Services

    prompts = _Prompts()
    llm = chat_model(ctx.settings, max_new_tokens=12, callbacks=[prompts])
    services = Services(ctx.settings, llm=llm, storage=ctx.services.storage)
    return AgentContext(owner=ctx.owner, settings=ctx.settings, services=services), prompts


async def test_step_writes_each_section_with_the_previous_ones(ctx, read, tiny_llm):
    ctx, prompts = _counting_ctx(ctx, tiny_llm)
    out = await run(
        "gen.step",
        {"topic": "Compute markets", "outline": ["Supply", "Demand", "Prices"], "instructions": "Be brief."},
        ctx,
    )
    assert out.outline == ["Supply", "Demand", "Prices"] and len(prompts.prompts) == 3
    assert [s.title for s in out.sections] == out.outline
    assert "Written so far" not in prompts.prompts[0] and all("Be brief." in p for p in prompts.prompts)
    # each section's prompt carries every section written before it
    assert "## Supply" in prompts.prompts[1] and out.sections[0].content in prompts.prompts[1]
    assert "## Supply" in prompts.prompts[2] and "## Demand" in prompts.prompts[2]
    assert out.document.startswith("# Compute markets\n\n## Supply\n\n")
    assert [line for line in out.document.splitlines() if line.startswith("## ")] == [
        "## Supply",
        "## Demand",
        "## Prices",
    ]
    assert read(out.file, ctx.owner).decode() == out.document and out.file.media_type == "text/markdown"


async def test_step_asks_the_model_for_the_outline(ctx, tiny_llm):
    ctx, prompts = _counting_ctx(ctx, tiny_llm)
    try:
        out = await run("gen.step", {"topic": "Storage", "sections": 3, "store": False}, ctx)
    except AgentError as err:  # random weights may answer with nothing at all
        assert err.field == "outline" and len(prompts.prompts) == 1
        return
    assert 1 <= len(out.outline) <= 3 and len(prompts.prompts) == 1 + len(out.outline)
    assert "at most 3 section titles" in prompts.prompts[0] and out.file is None
    assert [s.title for s in out.sections] == out.outline


async def test_step_names_an_unreachable_llm(ctx):
    from agxnt.context import Services

    settings = ctx.settings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m"})
    services = Services(settings, llm=chat_model(settings, max_retries=0), storage=ctx.services.storage)
    with pytest.raises(AgentError) as err:
        await run(
            "gen.step",
            {"topic": "x", "outline": ["a"]},
            AgentContext(owner=ctx.owner, settings=settings, services=services),
        )
    assert err.value.status_code == 502 and err.value.field == "llm" and "CXMPUTE_LLM_BASE_URL" in err.value.message


def test_step_outline_parsing():
    text = "1. Intro\n2) Body\n- **Body**\n\n### Conclusion\nIV. Extra"
    assert parse_step_outline(text, 10) == ["Intro", "Body", "Conclusion", "Extra"]
    assert parse_step_outline(text, 2) == ["Intro", "Body"]


@pytest.mark.parametrize(
    "agent, input, field",
    [
        ("gen.image", {"prompt": "x", "width": 60, "height": 64}, "size"),
        ("gen.image", {"prompt": "x", "model": "/etc"}, "model"),
        ("gen.image", {"prompt": "x", "model": "../models/x"}, "model"),
        ("gen.image", {"prompt": "x", "model": "no-such-org/no-such-model"}, "model"),
        ("gen.tts", {"text": "hi", "voice": "xx-nosuch"}, "voice"),
        ("gen.tts", {"text": "hi", "voice": "en+nosuchvariant"}, "voice"),
        ("gen.tts", {"text": "   "}, "text"),
        ("gen.presentation", {"outline": "\n\n"}, "outline"),
        ("gen.presentation", {"slides": []}, "slides"),
        ("gen.presentation", {"slides": [{"title": "a", "image_cid": "bafy-missing"}]}, "slides"),
        ("gen.pdf", {"markdown": ""}, "markdown"),
        ("gen.pdf", {"sections": [{"body": "x", "image_cid": "bafy-missing"}]}, "sections"),
        ("gen.step", {"topic": "t", "outline": [" ", ""]}, "outline"),
        ("gen.step", {"topic": " \n ", "outline": ["a"]}, "topic"),
        ("gen.notebook", {"cells": []}, "cells"),
        ("gen.notebook", {"notebook_cid": "bafy-missing"}, "notebook_cid"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(ctx, agent, input, field):
    with pytest.raises(AgentError) as err:
        await run(agent, input, ctx)
    assert 400 <= err.value.status_code < 500 and err.value.field == field, err.value.message


async def test_an_unconfigured_image_model_is_named(ctx):
    bare = AgentContext(
        owner=ctx.owner, settings=ctx.settings.model_copy(update={"image_model": None}), services=ctx.services
    )
    with pytest.raises(AgentError) as err:
        await run("gen.image", {"prompt": "x"}, bare)
    assert err.value.field == "model" and "CXMPUTE_IMAGE_MODEL" in err.value.message


async def test_a_non_notebook_file_is_rejected(ctx):
    stored = ctx.services.storage.put_bytes(json.dumps({"not": "a notebook"}).encode(), owner=ctx.owner, name="x")
    with pytest.raises(AgentError) as err:
        await run("gen.notebook", {"notebook_cid": stored.file.cid}, ctx)
    assert err.value.status_code == 422 and err.value.field == "notebook_cid"
