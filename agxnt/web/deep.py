"""Deep Internet (`web.deep`): plan queries with the model, search, read the top pages, and write a
synthesis that cites the pages it read by number."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.internet import ReadError, read_pages, search
from agxnt.web.llm_io import ask, first_json
from agxnt.web.pages import normalize_url
from agxnt.web.session import WebSession

PLAN_PROMPT = """You plan web research. Given a question, reply with a JSON array of {n} short, distinct web
search queries that together cover it, and nothing else. Example: ["query one", "query two"]"""

SYNTHESIS_PROMPT = """You write a research answer from numbered sources. Use only what the sources say.
Cite every claim with the number of its source in square brackets, like [1] or [2][3].
If the sources do not answer the question, say so."""

_CITATION = re.compile(r"\[(\d{1,3})\]")


class Source(BaseModel):
    n: int = Field(..., description="The number the synthesis cites it by")
    url: str
    title: str | None = None
    query: str = Field("", description="The query that found it")
    excerpt: str = ""


class DeepInternetAgent(Agent):
    """Multi-query research with a cited synthesis."""

    id = "web.deep"
    name = "Deep Internet"
    family = "Web"
    resources = Resources(network=True, browser=True, memory_mb=1024)

    class Input(BaseModel):
        question: str = Field(..., min_length=1, max_length=4000, description="What to research")
        max_queries: int = Field(3, ge=1, le=8, description="Search queries to plan")
        results_per_query: int = Field(3, ge=1, le=10, description="Top results read per query")
        max_sources: int = Field(8, ge=1, le=30, description="Pages read in all")
        chars_per_source: int = Field(4000, ge=200, le=50_000, description="Text of each page given to the model")
        render: bool = Field(False, description="Read pages in the browser, after their scripts ran")
        backend: str | None = Field(None, description="Search backend; the configured one when empty")

    class Output(BaseModel):
        answer: str
        queries: list[str]
        sources: list[Source] = Field(default_factory=list, description="Pages read, numbered as cited")
        cited: list[int] = Field(default_factory=list, description="Source numbers the answer cites")
        errors: list[ReadError] = Field(default_factory=list, description="Results that could not be read")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        question = input.question.strip()
        if not question:
            raise AgentError("question is empty", field="question")
        queries = await self.plan(question, input.max_queries, ctx)
        ctx.progress(0.2, f"{len(queries)} queries")

        candidates: dict[str, tuple[str, str]] = {}  # url -> (query, title), first finder wins
        for query in queries:
            ctx.check_cancelled()
            for result in await search(ctx, query, input.results_per_query, input.backend):
                candidates.setdefault(normalize_url(result.url), (query, result.title))
        urls = list(candidates)[: input.max_sources]
        ctx.progress(0.4, f"reading {len(urls)} pages")

        async with WebSession(ctx) as web:
            pages, errors = await read_pages(web, urls, render=input.render, max_chars=input.chars_per_source)
        sources = [
            Source(
                n=i,
                url=page.url,
                title=page.title or candidates.get(normalize_url(page.url), ("", ""))[1],
                query=candidates.get(normalize_url(page.url), ("", ""))[0],
                excerpt=page.text,
            )
            for i, page in enumerate((p for p in pages if p.text.strip()), start=1)
        ]
        if not sources:
            why = "; ".join(f"{e.url}: {e.message}" for e in errors[:3]) or "the search found nothing"
            raise AgentError(
                f"no readable sources were found for this question ({why})", field="question", status_code=422
            )
        ctx.progress(0.7, "writing")
        answer = await ask(ctx, SYNTHESIS_PROMPT, self.synthesis_prompt(question, sources), field="question")
        cited = sorted({int(n) for n in _CITATION.findall(answer) if 1 <= int(n) <= len(sources)})
        return self.Output(answer=answer, queries=queries, sources=sources, cited=cited, errors=errors)

    async def plan(self, question: str, n: int, ctx: AgentContext) -> list[str]:
        reply = await ask(ctx, PLAN_PROMPT.format(n=n), question, field="question")
        planned = first_json(reply)
        if isinstance(planned, dict):  # some models wrap the list: {"queries": [...]}
            planned = next((v for v in planned.values() if isinstance(v, list)), None)
        if not isinstance(planned, list):
            planned = [line.strip(" -*\t0123456789.") for line in reply.splitlines()]
        queries = list(dict.fromkeys(q.strip() for q in planned if isinstance(q, str) and q.strip()))
        # the question itself is always a sound query, and the only one when the plan is unusable
        return (queries or [question])[:n]

    @staticmethod
    def synthesis_prompt(question: str, sources: list[Source]) -> str:
        blocks = "\n\n".join(f"[{s.n}] {s.title or s.url}\nURL: {s.url}\n{s.excerpt}" for s in sources)
        return f"Question: {question}\n\nSources:\n\n{blocks}\n\nWrite the answer with numbered citations."
