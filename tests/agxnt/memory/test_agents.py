"""Every memory agent through its Python API: behaviour, owner isolation and bad input."""

from __future__ import annotations

import pytest

from agxnt.memory.agents import (
    AskMemory,
    ClearMemory,
    DeleteMemory,
    SearchMemory,
    SequentialMemory,
    UpdateMemory,
    WriteMemory,
)
from agxnt.registry import registry
from cxmpute.errors import CxmputeError, NotFound

FACTS = [
    {
        "id": "paris",
        "text": "Paris is the capital of France and sits on the Seine.",
        "metadata": {"topic": "geo", "year": 2020},
    },
    {
        "id": "rhine",
        "text": "The Rhine flows from the Swiss Alps to the North Sea.",
        "metadata": {"topic": "geo", "year": 2021},
    },
    {
        "id": "banana",
        "text": "Bananas are yellow fruit rich in potassium.",
        "metadata": {"topic": "food", "year": 2022},
    },
    {
        "id": "python",
        "text": "Python is a programming language created by Guido van Rossum.",
        "metadata": {"topic": "code", "year": 2023},
    },
]


async def _seed(ctx, memory="kb"):
    return await WriteMemory()({"memory": memory, "documents": FACTS}, ctx)


def test_all_catalogue_ids_are_registered():
    for agent_id in [
        "memory.write",
        "memory.search",
        "memory.ask",
        "memory.clear",
        "memory.delete",
        "memory.update",
        "memory.sequential",
        "db.dxtabase",
    ]:
        assert registry.has(agent_id)


async def test_write_then_search_ranks_by_meaning_with_scores(ctx_for, owners):
    ctx = ctx_for(owners[0])
    out = await _seed(ctx)
    assert out.ids == ["paris", "rhine", "banana", "python"] and out.chunks == 4
    found = await SearchMemory()({"memory": "kb", "query": "Which city is France's capital?", "k": 2}, ctx)
    assert found.ids[0] == "paris"
    assert found.results[0].score > found.results[1].score
    assert found.results[0].metadata == {"topic": "geo", "year": 2020}
    assert "[paris]" in found.text


async def test_search_filters_by_metadata(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    geo = await SearchMemory()({"memory": "kb", "query": "fruit", "k": 10, "filter": {"topic": "geo"}}, ctx)
    assert set(geo.ids) == {"paris", "rhine"}
    recent = await SearchMemory()(
        {
            "memory": "kb",
            "query": "x",
            "k": 10,
            "filter": {"$and": [{"year": {"$gte": 2021}}, {"topic": {"$in": ["geo", "code"]}}]},
        },
        ctx,
    )
    assert set(recent.ids) == {"rhine", "python"}


async def test_long_text_is_chunked_with_overlap_and_searchable(ctx_for, owners):
    ctx = ctx_for(owners[0])
    filler = " ".join(f"Paragraph {i} discusses ordinary weather in a quiet town." for i in range(60))
    text = filler + " The secret launch code of the rocket is PURPLE-OCTOPUS. " + filler
    out = await WriteMemory()(
        {"memory": "long", "documents": [{"id": "doc", "text": text}], "chunk_size": 400, "chunk_overlap": 80}, ctx
    )
    assert out.chunks > 5 and all(i.startswith("doc#") for i in out.ids)
    hit = (await SearchMemory()({"memory": "long", "query": "rocket launch code", "k": 1}, ctx)).results[0]
    assert "PURPLE-OCTOPUS" in hit.text and hit.document_id == "doc"


async def test_update_reembeds_text_and_merges_metadata(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    await UpdateMemory()(
        {
            "memory": "kb",
            "id": "banana",
            "text": "Saturn is a gas giant with bright rings.",
            "metadata": {"topic": "space"},
        },
        ctx,
    )
    found = await SearchMemory()({"memory": "kb", "query": "planet with rings", "k": 1}, ctx)
    assert found.ids == ["banana"]
    assert found.results[0].metadata == {"topic": "space", "year": 2022}
    await UpdateMemory()({"memory": "kb", "id": "paris", "metadata": {"checked": True}}, ctx)
    item = ctx.services.memory.get(ctx.owner, "kb", ["paris"])[0]
    assert item.metadata == {"topic": "geo", "year": 2020, "checked": True}
    assert item.text.startswith("Paris")


async def test_update_of_long_document_to_short_text_removes_old_chunks(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await WriteMemory()(
        {"memory": "m", "documents": [{"id": "d", "text": "word " * 500}], "chunk_size": 200, "chunk_overlap": 20}, ctx
    )
    out = await UpdateMemory()({"memory": "m", "id": "d", "text": "now short"}, ctx)
    assert out.ids == ["d"]
    page = ctx.services.memory.list_items(ctx.owner, "m")
    assert page.total == 1 and page.items[0].text == "now short"


async def test_update_of_one_chunk_keeps_the_rest_of_the_document(ctx_for, owners):
    ctx = ctx_for(owners[0])
    out = await WriteMemory()(
        {"memory": "m", "documents": [{"id": "d", "text": "alpha " * 300}], "chunk_size": 200, "chunk_overlap": 20}, ctx
    )
    await UpdateMemory()({"memory": "m", "id": "d#1", "text": "a replaced chunk about volcanoes"}, ctx)
    items = {i.id: i for i in ctx.services.memory.list_items(ctx.owner, "m", limit=1000).items}
    assert set(items) == set(out.ids)
    assert items["d#1"].text == "a replaced chunk about volcanoes" and items["d#1"].document_id == "d"
    assert (await SearchMemory()({"memory": "m", "query": "volcano", "k": 1}, ctx)).ids == ["d#1"]


async def test_delete_by_ids_and_by_filter(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    out = await DeleteMemory()({"memory": "kb", "ids": ["paris", "missing"]}, ctx)
    assert out.deleted == ["paris"]
    out = await DeleteMemory()({"memory": "kb", "filter": {"topic": "food"}}, ctx)
    assert out.deleted == ["banana"]
    left = ctx.services.memory.list_items(ctx.owner, "kb")
    assert {i.id for i in left.items} == {"rhine", "python"}


async def test_clear_forgets_one_memory_only(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx, "a")
    await _seed(ctx, "b")
    assert (await ClearMemory()({"memory": "a"}, ctx)).deleted == 4
    names = [m.name for m in ctx.services.memory.list_memories(ctx.owner)]
    assert names == ["b"]
    with pytest.raises(NotFound):
        await SearchMemory()({"memory": "a", "query": "x"}, ctx)


async def test_ask_answers_with_the_ids_of_the_retrieved_passages(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    out = await AskMemory()({"memory": "kb", "question": "What river flows to the North Sea?", "k": 2}, ctx)
    assert "rhine" in out.passage_ids
    assert out.passages[0].id == "rhine"
    assert isinstance(out.answer, str)


async def test_ask_with_nothing_relevant_does_not_invent_sources(ctx_for, owners):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    out = await AskMemory()({"memory": "kb", "question": "capital of France", "min_score": 0.99}, ctx)
    assert out.passage_ids == [] and "nothing relevant" in out.answer


async def test_sequential_memory_is_an_ordered_windowed_log_with_summary(ctx_for, owners):
    ctx = ctx_for(owners[0])
    agent = SequentialMemory()
    for i in range(6):
        out = await agent(
            {
                "thread": "chat",
                "action": "append",
                "message": f"message {i}",
                "role": "user" if i % 2 == 0 else "assistant",
                "window": 3,
            },
            ctx,
        )
        assert out.appended == [i]
    assert [e.content for e in out.entries] == ["message 3", "message 4", "message 5"]
    assert out.total == 6 and out.text.splitlines()[0] == "assistant: message 3"
    page = await agent({"thread": "chat", "window": 2, "before_seq": 3}, ctx)
    assert [e.seq for e in page.entries] == [1, 2]
    summarized = await agent({"thread": "chat", "window": 2, "summarize": True}, ctx)
    assert summarized.summary is not None and [e.seq for e in summarized.entries] == [4, 5]
    batch = await agent(
        {
            "thread": "chat",
            "action": "append",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        },
        ctx,
    )
    assert batch.appended == [6, 7]


# --- isolation: the second owner can never see or change the first owner's memories -------------------


async def test_isolation_across_owners_for_every_memory_agent(ctx_for, owners):
    alice, bob = ctx_for(owners[0]), ctx_for(owners[1])
    await _seed(alice, "shared-name")
    await SequentialMemory()({"thread": "t", "action": "append", "message": "alice's secret"}, alice)

    # Bob writing to the same memory name creates his own memory, not a view of Alice's
    await WriteMemory()({"memory": "shared-name", "text": "Bob's note about bicycles."}, bob)
    bob_hits = await SearchMemory()({"memory": "shared-name", "query": "capital of France", "k": 10}, bob)
    assert all(h.document_id not in {f["id"] for f in FACTS} for h in bob_hits.results)
    bob_answer = await AskMemory()({"memory": "shared-name", "question": "What is the capital of France?"}, bob)
    assert not set(bob_answer.passage_ids) & {"paris", "rhine", "banana", "python"}

    with pytest.raises(NotFound):
        await UpdateMemory()({"memory": "shared-name", "id": "paris", "text": "hijacked"}, bob)
    assert (await DeleteMemory()({"memory": "shared-name", "ids": ["paris", "rhine"]}, bob)).deleted == []
    assert (await DeleteMemory()({"memory": "shared-name", "filter": {"topic": "geo"}}, bob)).deleted == []
    await ClearMemory()({"memory": "shared-name"}, bob)
    with pytest.raises(NotFound):
        await ClearMemory()({"memory": "shared-name"}, bob)
    bob_thread = await SequentialMemory()({"thread": "t"}, bob)
    assert bob_thread.entries == [] and bob_thread.total == 0
    assert [m.name for m in alice.services.memory.list_memories(bob.owner)] == []

    # and Alice's memory is untouched by all of it
    still = await SearchMemory()({"memory": "shared-name", "query": "capital of France", "k": 10}, alice)
    assert set(still.ids) == {"paris", "rhine", "banana", "python"}
    assert alice.services.memory.get(alice.owner, "shared-name", ["paris"])[0].text.startswith("Paris")
    assert (await SequentialMemory()({"thread": "t"}, alice)).entries[0].content == "alice's secret"


# --- bad input: a clear 4xx naming the field, and nothing changes -----------------------------------


async def _snapshot(ctx, memory="kb"):
    page = ctx.services.memory.list_items(ctx.owner, memory, limit=1000)
    return sorted((i.id, i.text, tuple(sorted(i.metadata.items()))) for i in page.items)


@pytest.mark.parametrize(
    "agent, payload, field, status",
    [
        (WriteMemory, {"memory": "kb", "text": "   "}, "text", 400),
        (WriteMemory, {"memory": "kb", "documents": [{"text": "ok"}, {"text": ""}]}, "documents.1.text", 400),
        (WriteMemory, {"memory": "kb"}, "documents", 400),
        (WriteMemory, {"memory": "kb", "text": "x", "metadata": {"_doc": "forged"}}, "metadata", 400),
        (WriteMemory, {"memory": "", "text": "x"}, "memory", 400),
        (WriteMemory, {"memory": "../etc", "text": "x"}, "memory", 400),
        (
            WriteMemory,
            {"memory": "kb", "documents": [{"id": "paris", "text": "ok"}, {"id": "paris", "text": "dup"}]},
            "documents.1.id",
            400,
        ),
        (WriteMemory, {"memory": "kb", "documents": [{"id": "paris#0", "text": "ok"}]}, "documents.0.id", 400),
        (SearchMemory, {"memory": "kb", "query": "x", "filter": {"topic": {"$regex": "g.*"}}}, "filter", 400),
        (SearchMemory, {"memory": "kb", "query": ""}, "query", 400),
        (SearchMemory, {"memory": "nope", "query": "x"}, "memory", 404),
        (AskMemory, {"memory": "nope", "question": "x"}, "memory", 404),
        (AskMemory, {"memory": "kb", "question": "  "}, "question", 400),
        (UpdateMemory, {"memory": "kb", "id": "ghost", "text": "x"}, "id", 404),
        (UpdateMemory, {"memory": "kb", "id": "paris"}, "text", 400),
        (UpdateMemory, {"memory": "kb", "id": "paris", "text": ""}, "text", 400),
        (DeleteMemory, {"memory": "kb"}, "ids", 400),
        (DeleteMemory, {"memory": "kb", "filter": {"$nor": []}}, "filter", 400),
        (ClearMemory, {"memory": "nope"}, "memory", 404),
        (SequentialMemory, {"thread": "t", "action": "append"}, "messages", 400),
        (SequentialMemory, {"thread": "t", "action": "append", "message": " "}, "messages.0.content", 400),
    ],
)
async def test_bad_input_is_a_named_4xx_and_changes_nothing(ctx_for, owners, agent, payload, field, status):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    before = await _snapshot(ctx)
    with pytest.raises(CxmputeError) as err:
        await agent()(payload, ctx)
    assert err.value.status_code == status
    assert err.value.field == field
    assert await _snapshot(ctx) == before


async def test_oversize_document_is_413_and_nothing_is_written(ctx_for, owners, settings):
    ctx = ctx_for(owners[0])
    await _seed(ctx)
    before = await _snapshot(ctx)
    huge = "a" * (settings.memory_max_document_chars + 1)
    with pytest.raises(CxmputeError) as err:
        await WriteMemory()({"memory": "kb", "documents": [{"id": "ok", "text": "fine"}, {"text": huge}]}, ctx)
    assert err.value.status_code == 413 and err.value.field == "documents.1.text"
    assert await _snapshot(ctx) == before


async def test_memory_agents_as_langchain_tools(ctx_for, owners):
    from agxnt.adapters import as_langchain_tool

    ctx = ctx_for(owners[0])
    await _seed(ctx)
    tool = as_langchain_tool(SearchMemory, ctx)
    assert tool.name == "memory_search"
    out = await tool.ainvoke({"memory": "kb", "query": "programming language", "k": 1})
    assert out["ids"] == ["python"]


async def test_unreachable_llm_is_a_502_naming_the_llm(ctx_for, owners):
    from agxnt.context import AgentContext, Services
    from cxmpute.settings import Settings

    base = ctx_for(owners[0])
    await _seed(base)
    # nothing listens on port 9 of the loopback address
    settings = Settings(home=base.settings.home, llm_base_url="http://127.0.0.1:9/v1")
    ctx = AgentContext(owner=owners[0], settings=settings, services=Services(settings, memory=base.services.memory))
    with pytest.raises(CxmputeError) as err:
        await AskMemory()({"memory": "kb", "question": "capital of France?"}, ctx)
    assert (err.value.status_code, err.value.field) == (502, "llm")
    assert "CXMPUTE_LLM_BASE_URL" in err.value.message
