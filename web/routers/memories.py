"""REST conveniences over the caller's memories: list memories, page through items, fetch one item.

Writing, searching and asking go through the agents (``/v1/agents/memory.*/invoke``); these routes
are the read-side views the builder and clients browse with.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query

from agxnt.context import default_services
from agxnt.errors import AgentError
from agxnt.memory.items import ItemPage, MemoryInfo, MemoryItem
from agxnt.memory.store import MemoryStore
from agxnt.memory.threads import ThreadInfo, ThreadWindow
from cxmpute.errors import NotFound
from web.deps import owner_in

router = APIRouter(prefix="/v1/memories", tags=["memories"])


def memory_store() -> MemoryStore:
    return default_services().memory


def _filter(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentError(f"filter is not valid JSON: {exc.msg}", field="filter") from None
    if not isinstance(value, dict):
        raise AgentError("filter must be a JSON object", field="filter")
    return value


@router.get("", summary="List your memories", response_model=list[MemoryInfo])
def list_memories(
    owner: str = Depends(owner_in("memory")), store: MemoryStore = Depends(memory_store)
) -> list[MemoryInfo]:
    return store.list_memories(owner)


@router.get("/threads", summary="List your conversation threads (Sequential Memory)", response_model=list[ThreadInfo])
def list_threads(
    owner: str = Depends(owner_in("memory")), store: MemoryStore = Depends(memory_store)
) -> list[ThreadInfo]:
    return store.threads.threads(owner)


@router.get("/threads/{thread}", summary="Read a thread's newest entries", response_model=ThreadWindow)
def read_thread(
    thread: str,
    last: int = Query(50, ge=1, le=1000),
    before_seq: int | None = Query(None, ge=0),
    owner: str = Depends(owner_in("memory")),
    store: MemoryStore = Depends(memory_store),
) -> ThreadWindow:
    window = store.threads.read(owner, thread, last, before_seq)
    if window.total == 0:
        raise NotFound(f"thread {thread!r} does not exist", field="thread")
    return window


@router.get("/{memory}/items", summary="Page through a memory's items", response_model=ItemPage)
def list_items(
    memory: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
    filter: str | None = Query(None, description='Metadata filter as JSON, e.g. {"topic": "x"}'),
    owner: str = Depends(owner_in("memory")),
    store: MemoryStore = Depends(memory_store),
) -> ItemPage:
    return store.list_items(owner, memory, offset, limit, _filter(filter))


@router.get("/{memory}/items/{item_id:path}", summary="One item of a memory", response_model=MemoryItem)
def get_item(
    memory: str, item_id: str, owner: str = Depends(owner_in("memory")), store: MemoryStore = Depends(memory_store)
) -> MemoryItem:
    found = store.get(owner, memory, [item_id])
    if not found:
        raise NotFound(f"no item {item_id!r} in memory {memory!r}", field="item_id")
    return found[0]
