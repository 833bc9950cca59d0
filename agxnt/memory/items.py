"""What a memory holds: the documents written to it, the items and search hits read back, and the checks on
memory names, item ids and metadata that every write and read goes through.

A long document is stored as chunks; each item's internal metadata (its document, its chunk) sits beside the
user's under keys only the store may use.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from agxnt.errors import AgentError
from agxnt.memory.filters import Scalar

MEMORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@\-]{0,99}$")
MAX_ID_LENGTH = 256
# Internal metadata keys start with "_"; user keys may not, so the two never collide.
DOC_KEY, CHUNK_KEY, CHUNKS_KEY, CREATED_KEY = "_doc", "_chunk", "_chunks", "_created"


class DocumentIn(BaseModel):
    id: str | None = Field(None, description="Document id; generated when empty. Writing an existing id replaces it")
    text: str = Field(..., description="The text to remember")
    metadata: dict[str, Scalar] = Field(default_factory=dict, description="Values to filter on later")


class MemoryItem(BaseModel):
    id: str = Field(..., description="Item id (a chunk of a long document has id '<document id>#<n>')")
    document_id: str
    chunk: int = 0
    text: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)


class SearchHit(MemoryItem):
    score: float = Field(..., description="Cosine similarity, 1 is identical")


class MemoryInfo(BaseModel):
    name: str
    count: int


class ItemPage(BaseModel):
    items: list[MemoryItem]
    total: int
    offset: int
    limit: int


def validate_memory_name(name: str, field: str = "memory") -> str:
    if not isinstance(name, str) or not MEMORY_NAME.match(name):
        raise AgentError(
            f"invalid {field} name {name!r}: 1-100 characters, letters, digits, space and _ . : @ -, "
            "starting with a letter or digit",
            field=field,
        )
    return name


def validate_metadata(metadata: dict[str, Any], field: str = "metadata") -> dict[str, Scalar]:
    for key, value in metadata.items():
        if not key or key.startswith(("_", "$")):
            raise AgentError(
                f"metadata key {key!r} is reserved: keys may not be empty or start with '_' or '$'", field=field
            )
        if not isinstance(value, (str, int, float, bool)):
            raise AgentError(f"metadata value for {key!r} must be a string, number or boolean", field=field)
    return dict(metadata)


def validate_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise AgentError(f"ids must be non-empty strings of at most {MAX_ID_LENGTH} characters", field=field)
    return value


def public_metadata(meta: dict[str, Any] | None) -> dict[str, Scalar]:
    """The user's metadata of an item, without the store's own keys."""
    return {k: v for k, v in (meta or {}).items() if not k.startswith("_")}


def memory_item(item_id: str, text: str | None, meta: dict[str, Any] | None) -> MemoryItem:
    """An item as Chroma returns it (id, text, metadata), in the terms the API shows it in."""
    meta = meta or {}
    return MemoryItem(
        id=item_id,
        document_id=str(meta.get(DOC_KEY, item_id)),
        chunk=int(meta.get(CHUNK_KEY, 0)),
        text=text or "",
        metadata=public_metadata(meta),
    )
