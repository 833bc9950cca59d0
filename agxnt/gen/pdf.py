"""PDF Gen: a PDF from markdown, HTML or structured sections (headings, text, images)."""

from __future__ import annotations

import asyncio
import io
import re
from html import escape
from pathlib import Path

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.gen.files import GeneratedFile, load, one_of, stem, store

MAX_CHARS = 2_000_000
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# fpdf2 fetches <img src> from URLs and local paths; images come only from the caller's storage instead
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


class Section(BaseModel):
    heading: str | None = Field(None, max_length=500)
    body: str = Field("", max_length=MAX_CHARS, description="Markdown")
    image_cid: str | None = Field(None, description="A PNG or JPEG in the caller's storage, shown under the text")
    image_caption: str | None = Field(None, max_length=500)


def _font_files(regular: Path) -> dict[str, Path]:
    """The regular face and whichever bold/italic siblings sit beside it (DejaVu naming)."""
    stem_, suffix = regular.stem, regular.suffix
    styles = {"": regular}
    for style, tail in (("B", "-Bold"), ("I", "-Oblique"), ("BI", "-BoldOblique")):
        sibling = regular.with_name(f"{stem_}{tail}{suffix}")
        styles[style] = sibling if sibling.exists() else regular
    return styles


class _Document:
    """An fpdf2 document with a Unicode font when one is installed, else Latin-1 core fonts."""

    def __init__(self, font: Path | None, title: str | None):
        """``font``: a TrueType file; DejaVu Sans when None. Core fonts when the file is missing."""
        from fpdf import FPDF

        self.pdf = FPDF()
        self.pdf.set_auto_page_break(True, margin=15)
        if title:
            self.pdf.set_title(title)
        self.pdf.add_page()
        font = font if font is not None else DEJAVU
        self.unicode = font.exists()
        self.family, self.mono = "helvetica", "courier"
        if self.unicode:
            for style, path in _font_files(font).items():
                self.pdf.add_font("body", style, str(path))
            self.family = "body"
            mono = font.with_name(f"{font.stem}Mono{font.suffix}")
            if mono.exists():
                self.pdf.add_font("mono", "", str(mono))
                self.mono = "mono"
            else:
                self.mono = "body"
        self.pdf.set_font(self.family, size=11)

    def text(self, value: str) -> str:
        return value if self.unicode else value.encode("latin-1", "replace").decode("latin-1")

    def html(self, html: str) -> None:
        self.pdf.write_html(
            self.text(_IMG.sub("", html)),
            font_family=self.family,
            pre_code_font=self.mono,
            warn_on_tags_not_matching=False,
        )

    def image(self, data: bytes, caption: str | None) -> None:
        width = self.pdf.epw * 0.8
        self.pdf.image(io.BytesIO(data), x=self.pdf.l_margin + self.pdf.epw * 0.1, w=width)
        if caption:
            self.pdf.set_font(self.family, "I", 9)
            self.pdf.multi_cell(0, 5, self.text(caption), align="C", new_x="LMARGIN", new_y="NEXT")
            self.pdf.set_font(self.family, size=11)
        self.pdf.ln(4)

    def bytes(self) -> bytes:
        return bytes(self.pdf.output())


def markdown_html(text: str) -> str:
    import markdown

    return markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"])


class PdfGen(Agent):
    """Render markdown, HTML or structured sections (headings, markdown text, stored images) into a PDF."""

    id = "gen.pdf"
    name = "PDF Gen"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=0.5, memory_mb=512)

    class Input(BaseModel):
        markdown: str | None = Field(None, max_length=MAX_CHARS, description="Markdown document")
        html: str | None = Field(None, max_length=MAX_CHARS, description="HTML document (images are not loaded)")
        sections: list[Section] | None = Field(None, max_length=1000, description="Structured content, in order")
        title: str | None = Field(
            None, max_length=500, description="Document title: metadata, and a heading above structured sections"
        )
        filename: str = Field("document", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        pdf: GeneratedFile
        pages: int

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        source = one_of(input, "markdown", "html", "sections")
        if not (input.markdown or input.html or input.sections):
            raise AgentError(f"{source} is empty", field=source, status_code=422)
        images = {s.image_cid: await load(ctx, s.image_cid, "sections") for s in input.sections or [] if s.image_cid}
        data, pages = await asyncio.to_thread(self._render, input, images, ctx.settings.pdf_font, source)
        pdf = await store(ctx, data, f"{stem(input.filename, 'document')}.pdf", "application/pdf")
        return self.Output(pdf=pdf, pages=pages)

    @staticmethod
    def _render(input: Input, images: dict[str, bytes], font: Path | None, source: str) -> tuple[bytes, int]:
        from fpdf.errors import FPDFException
        from PIL import UnidentifiedImageError

        doc = _Document(font, input.title)
        try:
            if input.markdown is not None:
                doc.html(markdown_html(input.markdown))
            elif input.html is not None:
                doc.html(input.html)
            else:
                if input.title:
                    doc.html(f"<h1>{escape(input.title)}</h1>")
                for section in input.sections:
                    if section.heading:
                        doc.html(f"<h2>{escape(section.heading)}</h2>")
                    if section.body:
                        doc.html(markdown_html(section.body))
                    if section.image_cid:
                        doc.image(images[section.image_cid], section.image_caption)
        except UnidentifiedImageError:
            raise AgentError(
                "a section's image_cid is not a PNG, JPEG or other image", field="sections", status_code=422
            ) from None
        except (FPDFException, ValueError, AssertionError, NotImplementedError) as exc:
            # fpdf2 rejects markup it cannot lay out (nested tables, stray cells) with these, asserts included
            why = str(exc) or "unsupported markup, e.g. a table in a table"
            raise AgentError(f"cannot lay out the {source}: {why}", field=source, status_code=422) from None
        return doc.bytes(), doc.pdf.pages_count
