"""The memory agents: Write, Search, Ask, Update, Delete, Clear and Sequential Memory.

Each is a thin typed face over ``ctx.services.memory`` (the owner's namespace is always ``ctx.owner``);
the store's calls are blocking, so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.llm import complete
from agxnt.memory.files import read_folder
from agxnt.memory.filters import Scalar
from agxnt.memory.items import DocumentIn, SearchHit, validate_memory_name
from agxnt.memory.store import MemoryStore
from agxnt.memory.threads import EntryIn, ThreadEntry

MEMORY_FIELD = Field("default", description="Name of the memory (your own namespace)")
FILTER_FIELD = Field(
    None,
    description="Metadata filter: {'key': value}, {'key': {'$gte': 2}}, {'key': {'$in': [..]}}, {'$and'|'$or': [..]}",
)
RESOURCES = Resources(cpu=1.0, memory_mb=1024)


def _store(ctx: AgentContext) -> MemoryStore:
    return ctx.services.memory


def _context_text(hits: list[SearchHit]) -> str:
    return "\n\n".join(f"[{h.id}] {h.text}" for h in hits)


class WriteMemory(Agent):
    """Store text or documents with metadata in a named memory; long texts are chunked with overlap."""

    id = "memory.write"
    name = "Write Memory"
    family = "Data & Memory"
    resources = RESOURCES

    class Input(BaseModel):
        memory: str = MEMORY_FIELD
        text: str | None = Field(None, description="One text to remember")
        texts: list[str] = Field(default_factory=list, description="Several texts, one document each")
        documents: list[DocumentIn] = Field(default_factory=list, description="Documents with ids and metadata")
        folder: str | None = Field(
            None,
            description="A folder of text files to store, one document per file "
            "(id = relative path); must lie in the ingest folders",
        )
        pattern: str = Field("*.txt", description="Which files of `folder` to read (glob)")
        recursive: bool = Field(False, description="Also read the folder's sub-folders")
        metadata: dict[str, Scalar] = Field(default_factory=dict, description="Metadata added to every document")
        chunk_size: int = Field(1000, ge=50, le=20_000, description="Characters per chunk")
        chunk_overlap: int = Field(200, ge=0, le=10_000, description="Characters shared by neighbouring chunks")

    class Output(BaseModel):
        memory: str
        ids: list[str] = Field(..., description="Ids of the stored items (chunks of long documents)")
        documents: int
        chunks: int

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        docs = list(input.documents) + [DocumentIn(text=t) for t in input.texts]
        if input.text is not None:
            docs.insert(0, DocumentIn(text=input.text))
        if input.folder:
            docs += await asyncio.to_thread(read_folder, ctx.settings, input.folder, input.pattern, input.recursive)
        if input.text is not None and not input.text.strip():
            raise AgentError("text must not be empty", field="text")
        for i, t in enumerate(input.texts):
            if not t.strip():
                raise AgentError(f"text {i} is empty", field=f"texts.{i}")
        ids = await asyncio.to_thread(
            _store(ctx).write, ctx.owner, input.memory, docs, input.metadata, input.chunk_size, input.chunk_overlap
        )
        return self.Output(memory=input.memory, ids=ids, documents=len(docs), chunks=len(ids))


class SearchMemory(Agent):
    """Find the passages of a memory closest in meaning to a query, with scores and metadata filters."""

    id = "memory.search"
    name = "Search Memory"
    family = "Data & Memory"
    resources = RESOURCES

    class Input(BaseModel):
        memory: str = MEMORY_FIELD
        query: str = Field(..., description="What to look for")
        k: int = Field(5, ge=1, le=100, description="How many results")
        filter: dict[str, Any] | None = FILTER_FIELD
        contains: str | None = Field(None, description="Only passages containing this exact text")

    class Output(BaseModel):
        memory: str = Field(..., description="The memory searched (wire it on to order later steps)")
        results: list[SearchHit]
        ids: list[str]
        text: str = Field(..., description="The passages as one '[id] text' block, for prompts")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        hits = await asyncio.to_thread(
            _store(ctx).search, ctx.owner, input.memory, input.query, input.k, input.filter, input.contains
        )
        return self.Output(memory=input.memory, results=hits, ids=[h.id for h in hits], text=_context_text(hits))


ASK_SYSTEM = (
    "Answer the question using only the numbered context passages. Cite the passages you use by their id in "
    "square brackets, like [id]. If the passages do not contain the answer, say that you do not know."
)


class AskMemory(Agent):
    """Answer a question from a memory: retrieve the closest passages, then ask the platform LLM."""

    id = "memory.ask"
    name = "Ask Memory"
    family = "Data & Memory"
    resources = Resources(cpu=1.0, memory_mb=2048, network=True)

    class Input(BaseModel):
        memory: str = MEMORY_FIELD
        question: str = Field(..., description="The question")
        k: int = Field(4, ge=1, le=50, description="Passages to retrieve")
        filter: dict[str, Any] | None = FILTER_FIELD
        min_score: float = Field(0.0, ge=-1.0, le=1.0, description="Ignore passages scoring below this")

    class Output(BaseModel):
        memory: str
        answer: str
        passage_ids: list[str] = Field(..., description="Ids of the passages the answer is grounded in")
        passages: list[SearchHit]

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if not input.question.strip():
            raise AgentError("question must not be empty", field="question")
        hits = await asyncio.to_thread(
            _store(ctx).search, ctx.owner, input.memory, input.question, input.k, input.filter
        )
        hits = [h for h in hits if h.score >= input.min_score]
        if not hits:
            return self.Output(
                memory=input.memory,
                answer=f"Memory {input.memory!r} holds nothing relevant to this question.",
                passage_ids=[],
                passages=[],
            )
        prompt = f"Context passages:\n\n{_context_text(hits)}\n\nQuestion: {input.question}"
        answer = await complete(ctx, [("system", ASK_SYSTEM), ("human", prompt)])
        cited = [h.id for h in hits if re.search(rf"\[{re.escape(h.id)}\]", answer)]
        return self.Output(
            memory=input.memory, answer=answer.strip(), passage_ids=cited or [h.id for h in hits], passages=hits
        )


class UpdateMemory(Agent):
    """Change a stored item's text and/or metadata by id; new text is re-chunked and re-embedded."""

    id = "memory.update"
    name = "Update Memory"
    family = "Data & Memory"
    resources = RESOURCES

    class Input(BaseModel):
        memory: str = MEMORY_FIELD
        id: str = Field(..., description="A document id (all its chunks) or one chunk's id")
        text: str | None = Field(None, description="New text")
        metadata: dict[str, Scalar] | None = Field(None, description="Metadata to set (merged into the old)")

    class Output(BaseModel):
        memory: str
        ids: list[str]

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if input.text is not None and not input.text.strip():
            raise AgentError("text must not be empty", field="text")
        ids = await asyncio.to_thread(_store(ctx).update, ctx.owner, input.memory, input.id, input.text, input.metadata)
        return self.Output(memory=input.memory, ids=ids)


class DeleteMemory(Agent):
    """Delete items of a memory by ids (a document id removes all its chunks) or by metadata filter."""

    id = "memory.delete"
    name = "Delete Memory"
    family = "Data & Memory"
    resources = RESOURCES

    class Input(BaseModel):
        memory: str = MEMORY_FIELD
        ids: list[str] = Field(default_factory=list, description="Ids to delete")
        filter: dict[str, Any] | None = FILTER_FIELD

    class Output(BaseModel):
        memory: str
        deleted: list[str]
        count: int

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        deleted = await asyncio.to_thread(_store(ctx).delete, ctx.owner, input.memory, input.ids, input.filter)
        return self.Output(memory=input.memory, deleted=deleted, count=len(deleted))


class ClearMemory(Agent):
    """Forget everything in one named memory."""

    id = "memory.clear"
    name = "Clear Memory"
    family = "Data & Memory"
    resources = RESOURCES

    class Input(BaseModel):
        memory: str = MEMORY_FIELD

    class Output(BaseModel):
        memory: str
        deleted: int

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        count = await asyncio.to_thread(_store(ctx).clear, ctx.owner, input.memory)
        return self.Output(memory=input.memory, deleted=count)


SUMMARY_SYSTEM = "Summarise this conversation so far in a few sentences, keeping names, facts and decisions."
SUMMARY_SOURCE_LIMIT = 200  # older entries fed to the summariser, newest first


class SequentialMemory(Agent):
    """Conversation memory: an ordered, append-only log per thread, read through a window of the newest
    entries, optionally with a summary of what came before the window."""

    id = "memory.sequential"
    name = "Sequential Memory"
    family = "Data & Memory"
    resources = Resources(cpu=0.5, memory_mb=512)

    class Input(BaseModel):
        thread: str = Field("default", description="Conversation thread name")
        action: Literal["append", "read"] = Field("read", description="append messages, or read the window")
        messages: list[EntryIn] = Field(default_factory=list, description="Messages to append, in order")
        message: str | None = Field(None, description="One message to append (with `role`)")
        role: str = Field("user", min_length=1, max_length=32, description="Role of `message`")
        window: int = Field(20, ge=1, le=1000, description="How many of the newest entries to return")
        before_seq: int | None = Field(None, ge=0, description="Read the window ending before this position")
        summarize: bool = Field(False, description="Also summarise the entries before the window (uses the LLM)")

    class Output(BaseModel):
        thread: str
        entries: list[ThreadEntry]
        total: int
        appended: list[int] = Field(default_factory=list, description="Positions of the appended entries")
        summary: str | None = None
        text: str = Field(..., description="The window as 'role: content' lines, for prompts")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        validate_memory_name(input.thread, field="thread")
        log = _store(ctx).threads
        appended: list[int] = []
        if input.action == "append":
            entries = list(input.messages)
            if input.message is not None:
                entries.append(EntryIn(role=input.role, content=input.message))
            written = await asyncio.to_thread(log.append, ctx.owner, input.thread, entries)
            appended = [e.seq for e in written]
        window = await asyncio.to_thread(log.read, ctx.owner, input.thread, input.window, input.before_seq)
        summary = None
        if input.summarize and window.entries and window.entries[0].seq > 0:
            older = await asyncio.to_thread(
                log.read, ctx.owner, input.thread, SUMMARY_SOURCE_LIMIT, window.entries[0].seq
            )
            summary = await self._summarize(older.entries, ctx)
        text = "\n".join(f"{e.role}: {e.content}" for e in window.entries)
        return self.Output(
            thread=input.thread,
            entries=window.entries,
            total=window.total,
            appended=appended,
            summary=summary,
            text=text,
        )

    async def _summarize(self, entries: list[ThreadEntry], ctx: AgentContext) -> str:
        transcript = "\n".join(f"{e.role}: {e.content}" for e in entries)
        return await complete(ctx, [("system", SUMMARY_SYSTEM), ("human", transcript)])
