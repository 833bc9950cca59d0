"""Step: long-form writing in steps. An outline first, then each section written with what came before it
in view, then the sections assembled into one markdown document."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.gen.files import GeneratedFile, stem, store
from agxnt.llm import complete

MAX_SECTIONS = 50
_NUMBERING = re.compile(r"^\s*(?:[-*+#>]+|\(?\d+[.):]|[ivxIVX]+[.)])\s*")


class Section(BaseModel):
    title: str
    content: str


def parse_outline(text: str, limit: int) -> list[str]:
    """Section titles from a model's outline: one per line, bullets and numbering dropped, duplicates skipped."""
    titles: list[str] = []
    for line in text.splitlines():
        title = _NUMBERING.sub("", line).strip().strip("*_`\"'").strip()
        if title and title.lower() not in {t.lower() for t in titles}:
            titles.append(title[:200])
        if len(titles) == limit:
            break
    return titles


async def _ask(ctx: AgentContext, messages: list) -> str:
    return await complete(ctx, messages)


def _tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "…" + text[-chars:]


def _section_prompt(input: Step.Input, outline: list[str], index: int, written: list[Section]) -> str:
    """The request for one section: the topic, the whole outline, and the end of what is written so far."""
    parts = [f"Topic: {input.topic}", "Outline:\n" + "\n".join(f"{n + 1}. {t}" for n, t in enumerate(outline))]
    so_far = "\n\n".join(f"## {s.title}\n\n{s.content}" for s in written)
    if so_far and input.context_chars:
        parts.append(f"Written so far:\n{_tail(so_far, input.context_chars)}")
    parts.append(
        f'Write section {index + 1}, "{outline[index]}". Continue from the text so far without '
        "repeating it. Reply with the section's body only, no heading."
    )
    return "\n\n".join(parts)


class Step(Agent):
    """Write long-form content in steps: outline, then each section with the previous context, then assemble."""

    id = "gen.step"
    name = "Step"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=1024)

    class Input(BaseModel):
        topic: str = Field(..., min_length=1, max_length=20_000, description="What to write about")
        title: str | None = Field(None, max_length=300, description="Document title; default: the topic")
        outline: list[str] | None = Field(
            None, max_length=MAX_SECTIONS, description="Section titles; when empty, the model writes the outline"
        )
        sections: int = Field(5, ge=1, le=MAX_SECTIONS, description="Sections the model's outline may have")
        instructions: str | None = Field(
            None, max_length=10_000, description="Style, audience, length: given to every step"
        )
        context_chars: int = Field(
            6000, ge=0, le=100_000, description="How much of the text written so far each section sees"
        )
        store: bool = Field(True, description="Also store the document as a markdown file")
        filename: str = Field("document", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        title: str
        outline: list[str]
        sections: list[Section]
        document: str = Field(description="The assembled markdown document")
        file: GeneratedFile | None = None

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if not input.topic.strip():
            raise AgentError("topic is blank", field="topic", status_code=422)
        if input.outline is not None:
            outline = [t.strip() for t in input.outline if t.strip()]
            if not outline:
                raise AgentError("outline has no section titles", field="outline", status_code=422)
        else:
            outline = await self._outline(input, ctx)
        title = input.title or input.topic.strip().splitlines()[0][:300]
        written: list[Section] = []
        steps = len(outline) + 1
        for i in ctx.iterate(len(outline)):
            ctx.progress((i + 1) / steps, f"section {i + 1} of {len(outline)}: {outline[i]}")
            reply = await _ask(ctx, [self._system(input), HumanMessage(_section_prompt(input, outline, i, written))])
            written.append(Section(title=outline[i], content=reply.strip()))
        if len(written) < len(outline):
            raise AgentError(
                f"the iteration budget allowed {len(written)} of {len(outline)} sections",
                field="outline",
                status_code=422,
            )
        document = f"# {title}\n\n" + "\n\n".join(f"## {s.title}\n\n{s.content}" for s in written) + "\n"
        file = (
            await store(ctx, document.encode(), f"{stem(input.filename, 'document')}.md", "text/markdown")
            if input.store
            else None
        )
        ctx.progress(1.0)
        return self.Output(title=title, outline=outline, sections=written, document=document, file=file)

    @staticmethod
    def _system(input: Input) -> SystemMessage:
        text = "You write clear, well-structured long-form documents one section at a time."
        return SystemMessage(f"{text}\n{input.instructions}" if input.instructions else text)

    async def _outline(self, input: Input, ctx: AgentContext) -> list[str]:
        ctx.progress(0.0, "outline")
        reply = await _ask(
            ctx,
            [
                self._system(input),
                HumanMessage(
                    f"Topic: {input.topic}\n\nWrite an outline of at most {input.sections} section titles, "
                    "one per line, nothing else."
                ),
            ],
        )
        outline = parse_outline(reply, input.sections)
        if not outline:
            raise AgentError(
                "the model returned an empty outline; give one in outline", field="outline", status_code=422
            )
        return outline
