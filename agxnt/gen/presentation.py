"""Presentation Gen: a PowerPoint deck from an outline or slide list, with stored or generated images."""

from __future__ import annotations

import asyncio
import io
import re

from pydantic import BaseModel, Field, model_validator

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.gen.files import GeneratedFile, load, one_of, stem, store
from agxnt.gen.image import SamplingOptions, generate_pngs

MAX_SLIDES = 200
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^\s*#{1,6}\s+(.*)$")
_IMAGE = re.compile(r"\s*!\[(.+)\]\s*")


class SlideSpec(BaseModel):
    title: str = Field(..., min_length=1, max_length=300)
    bullets: list[str] = Field(default_factory=list, max_length=30)
    notes: str | None = Field(None, max_length=20_000, description="Speaker notes")
    image_cid: str | None = Field(None, description="A PNG or JPEG in the caller's storage")
    image_prompt: str | None = Field(None, max_length=4000, description="Generate the slide's image from this")

    @model_validator(mode="after")
    def _one_image(self):
        if self.image_cid and self.image_prompt:
            raise ValueError("give image_cid or image_prompt, not both")
        return self


def parse_outline(outline: str) -> list[SlideSpec]:
    """Slides from a markdown outline: a heading or an unindented line starts a slide, list items are its
    bullets, ``![prompt]`` asks for a generated image, indented lines are speaker notes."""
    slides: list[dict] = []
    for number, raw in enumerate(outline.splitlines(), 1):
        if not raw.strip():
            continue
        heading, bullet = _HEADING.match(raw), _BULLET.match(raw)
        image = _IMAGE.fullmatch(raw)
        if heading or not (bullet or image or raw[:1].isspace()):
            slides.append({"title": (heading.group(1) if heading else raw).strip()[:300], "bullets": [], "notes": []})
        elif not slides:
            raise AgentError(f"outline line {number} comes before any slide title", field="outline", status_code=422)
        elif image:
            slides[-1]["image_prompt"] = image.group(1).strip()
        elif bullet:
            slides[-1]["bullets"].append(bullet.group(1).strip())
        else:
            slides[-1]["notes"].append(raw.strip())
    try:
        return [
            SlideSpec(
                title=s["title"],
                bullets=s["bullets"],
                notes="\n".join(s["notes"]) or None,
                image_prompt=s.get("image_prompt"),
            )
            for s in slides
        ]
    except ValueError as exc:
        raise AgentError(f"outline: {exc}", field="outline", status_code=422) from None


def build_deck(title: str | None, subtitle: str | None, slides: list[SlideSpec], images: dict[int, bytes]) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches, Pt

    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)  # 16:9
    if title:
        cover = deck.slides.add_slide(deck.slide_layouts[0])
        cover.shapes.title.text = title
        cover.placeholders[1].text = subtitle or ""
    for index, spec in enumerate(slides):
        image = images.get(index)
        slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only: the body is laid out below
        slide.shapes.title.text = spec.title
        text_width = Inches(6.8) if image else Inches(12.3)
        if spec.bullets:
            frame = slide.shapes.add_textbox(Inches(0.5), Inches(1.6), text_width, Inches(5.4)).text_frame
            frame.word_wrap = True
            for i, bullet in enumerate(spec.bullets):
                paragraph = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
                paragraph.text = f"\u2022 {bullet}"
                paragraph.font.size = Pt(20)
        if image:
            slide.shapes.add_picture(io.BytesIO(image), Inches(7.6), Inches(1.6), width=Inches(5.2))
        if spec.notes:
            slide.notes_slide.notes_text_frame.text = spec.notes
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


class PresentationGen(Agent):
    """Build a PowerPoint deck from a markdown outline or a slide list, with images stored or generated."""

    id = "gen.presentation"
    name = "Presentation Gen"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=2048)

    class Input(BaseModel):
        title: str | None = Field(None, max_length=300, description="Cover slide title (no cover when empty)")
        subtitle: str | None = Field(None, max_length=500)
        outline: str | None = Field(
            None, max_length=200_000, description="Markdown: '# Slide title', '- bullet', '![image prompt]', notes"
        )
        slides: list[SlideSpec] | None = Field(None, max_length=MAX_SLIDES)
        images: list[GeneratedFile] = Field(
            default_factory=list,
            max_length=MAX_SLIDES,
            description="Stored images (e.g. Image Gen's images), placed in order "
            "on the slides that have no image of their own",
        )
        generation: SamplingOptions = Field(
            default_factory=lambda: SamplingOptions(width=512, height=384),
            description="Model and settings for the slides' image prompts",
        )
        image_style: str | None = Field(None, max_length=1000, description="Added to every slide's image prompt")
        filename: str = Field("presentation", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        presentation: GeneratedFile
        slides: int = Field(description="Slides in the deck, the cover included")
        generated_images: list[GeneratedFile] = Field(default_factory=list, description="Images made for the deck")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        field = one_of(input, "outline", "slides")
        slides = parse_outline(input.outline) if input.outline is not None else input.slides
        if not slides:
            raise AgentError(f"{field} has no slides", field=field, status_code=422)
        if len(slides) > MAX_SLIDES:
            raise AgentError(f"{field} has more than {MAX_SLIDES} slides", field=field, status_code=422)
        images: dict[int, bytes] = {}
        generated: list[GeneratedFile] = []
        prompts = [(i, s) for i, s in enumerate(slides) if s.image_prompt]
        for done, (i, spec) in enumerate(prompts):
            ctx.check_cancelled()
            ctx.progress(done / (len(prompts) + 1), f"image for slide {i + 1}")
            prompt = f"{spec.image_prompt}, {input.image_style}" if input.image_style else spec.image_prompt
            images[i] = (await generate_pngs(ctx, input.generation, prompt, 1))[0]
            generated.append(await store(ctx, images[i], f"slide-{i + 1}.png", "image/png"))
        for i, spec in enumerate(slides):
            if spec.image_cid:
                images[i] = await load(ctx, spec.image_cid, field)
        free = [i for i in range(len(slides)) if i not in images]
        for i, given in zip(free, input.images):
            images[i] = await load(ctx, given.cid, "images")
        data = await asyncio.to_thread(self._build, input, slides, images, field)
        deck = await store(
            ctx,
            data,
            f"{stem(input.filename, 'presentation')}.pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        )
        ctx.progress(1.0)
        return self.Output(
            presentation=deck, slides=len(slides) + (1 if input.title else 0), generated_images=generated
        )

    @staticmethod
    def _build(input: Input, slides: list[SlideSpec], images: dict[int, bytes], field: str) -> bytes:
        from PIL import UnidentifiedImageError

        try:
            return build_deck(input.title, input.subtitle, slides, images)
        except (UnidentifiedImageError, ValueError) as exc:
            raise AgentError(f"a slide image cannot be placed: {exc}", field=field, status_code=422) from None
