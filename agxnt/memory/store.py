"""MemoryStore: named memories per owner on Chroma, each memory one collection.

Collection names are derived from a hash of (owner, memory), so user-facing memory names may be
any length from one character, and no owner can address another's collection by name.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from agxnt.errors import AgentError
from agxnt.memory.chunking import chunk_text
from agxnt.memory.embeddings import SentenceTransformerEmbedding, embedding_function
from agxnt.memory.filters import Scalar, normalize_filter
from agxnt.memory.items import (
    CHUNK_KEY,
    CHUNKS_KEY,
    CREATED_KEY,
    DOC_KEY,
    DocumentIn,
    ItemPage,
    MemoryInfo,
    MemoryItem,
    SearchHit,
    memory_item,
    public_metadata,
    validate_id,
    validate_memory_name,
    validate_metadata,
)
from agxnt.memory.threads import ThreadLog
from cxmpute.errors import NotFound
from cxmpute.settings import Settings

MAX_DOCUMENTS_PER_WRITE = 10_000
OWNER_KEY, NAME_KEY = "cx_owner", "cx_memory"


def _collection_name(owner: str, memory: str) -> str:
    digest = hashlib.sha256(f"{owner}\x00{memory}".encode()).hexdigest()
    return f"cx-{digest[:40]}"


class MemoryStore:
    """Every method takes the owner first; nothing here can reach across owners."""

    def __init__(
        self, client: ClientAPI, embedder: SentenceTransformerEmbedding, settings: Settings, threads: ThreadLog
    ):
        self.client = client
        self.embedder = embedder
        self.settings = settings
        self.threads = threads

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryStore:
        return cls(chroma_client(settings), embedding_function(settings), settings, ThreadLog.from_settings(settings))

    # memories -------------------------------------------------------------------------------

    def _collection(self, owner: str, memory: str, create: bool = False) -> Collection:
        validate_memory_name(memory)
        name = _collection_name(owner, memory)
        if create:
            return self.client.get_or_create_collection(
                name,
                metadata={OWNER_KEY: owner, NAME_KEY: memory},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=self.embedder,
            )
        try:
            return self.client.get_collection(name, embedding_function=self.embedder)
        except chromadb.errors.NotFoundError:
            raise NotFound(f"memory {memory!r} does not exist", field="memory") from None

    def exists(self, owner: str, memory: str) -> bool:
        try:
            self._collection(owner, memory)
            return True
        except NotFound:
            return False

    def list_memories(self, owner: str) -> list[MemoryInfo]:
        found: list[MemoryInfo] = []
        page, offset = 500, 0
        while True:
            batch = self.client.list_collections(limit=page, offset=offset)
            for col in batch:
                meta = col.metadata or {}
                if meta.get(OWNER_KEY) == owner and NAME_KEY in meta:
                    found.append(MemoryInfo(name=str(meta[NAME_KEY]), count=col.count()))
            if len(batch) < page:
                break
            offset += page
        return sorted(found, key=lambda m: m.name)

    def clear(self, owner: str, memory: str) -> int:
        """Forget a whole memory; returns how many items it held."""
        col = self._collection(owner, memory)
        count = col.count()
        self.client.delete_collection(col.name)
        return count

    # items ----------------------------------------------------------------------------------

    def _check_documents(self, documents: list[DocumentIn]) -> None:
        if not documents:
            raise AgentError("nothing to write: give text or documents", field="documents")
        if len(documents) > MAX_DOCUMENTS_PER_WRITE:
            raise AgentError(f"at most {MAX_DOCUMENTS_PER_WRITE} documents per write", field="documents")
        limit = self.settings.memory_max_document_chars
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            if not doc.text.strip():
                raise AgentError(f"document {i} has empty text", field=f"documents.{i}.text")
            if len(doc.text) > limit:
                raise AgentError(
                    f"document {i} is {len(doc.text)} characters; the limit is {limit}",
                    field=f"documents.{i}.text",
                    status_code=413,
                )
            if doc.id is not None:
                validate_id(doc.id, f"documents.{i}.id")
                if "#" in doc.id:
                    raise AgentError(
                        "document ids may not contain '#' (it separates a document id from its chunk number)",
                        field=f"documents.{i}.id",
                    )
                if doc.id in seen:
                    raise AgentError(f"document id {doc.id!r} appears twice", field=f"documents.{i}.id")
                seen.add(doc.id)
            validate_metadata(doc.metadata, f"documents.{i}.metadata")

    def write(
        self,
        owner: str,
        memory: str,
        documents: list[DocumentIn],
        metadata: dict[str, Scalar] | None = None,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
    ) -> list[str]:
        """Store documents (chunked with overlap); returns the item ids written, in order."""
        validate_memory_name(memory)
        validate_metadata(metadata or {})
        self._check_documents(documents)
        if chunk_size < 50 or not 0 <= chunk_overlap < chunk_size:
            raise AgentError(
                "chunk_size must be at least 50 and chunk_overlap in [0, chunk_size)",
                field="chunk_overlap" if chunk_size >= 50 else "chunk_size",
            )
        now = time.time()
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        for doc in documents:
            doc_id = doc.id or uuid.uuid4().hex
            chunks = chunk_text(doc.text, chunk_size, chunk_overlap)
            for n, chunk in enumerate(chunks):
                ids.append(doc_id if len(chunks) == 1 else f"{doc_id}#{n}")
                texts.append(chunk)
                metas.append(
                    {
                        **(metadata or {}),
                        **doc.metadata,
                        DOC_KEY: doc_id,
                        CHUNK_KEY: n,
                        CHUNKS_KEY: len(chunks),
                        CREATED_KEY: now,
                    }
                )
        # Embed everything before touching the collection, so a failure leaves it as it was.
        vectors = self.embedder(texts)
        col = self._collection(owner, memory, create=True)
        self._upsert(col, ids, vectors, texts, metas)
        self._drop_stale_chunks(col, [d.id for d in documents if d.id is not None], set(ids))
        return ids

    def _upsert(self, col: Collection, ids: list[str], vectors, texts: list[str], metas: list[dict]) -> None:
        step = max(1, min(self.client.get_max_batch_size(), 5000))
        for i in range(0, len(ids), step):
            col.upsert(
                ids=ids[i : i + step],
                embeddings=vectors[i : i + step],
                documents=texts[i : i + step],
                metadatas=metas[i : i + step],
            )

    def _drop_stale_chunks(self, col: Collection, doc_ids: list[str], keep: set[str]) -> None:
        """A rewritten document may now have fewer chunks than before; remove the leftovers."""
        # Only documents stored before can have leftovers; an id lookup finds those cheaply, since a
        # stored document always has an item '<id>' or '<id>#0'.
        if not doc_ids:
            return
        probe = [x for d in doc_ids for x in (d, f"{d}#0")]
        earlier = {m[DOC_KEY] for m in col.get(ids=probe, include=["metadatas"])["metadatas"] if m}
        earlier = [d for d in doc_ids if d in earlier]
        for i in range(0, len(earlier), 500):
            batch = earlier[i : i + 500]
            found = col.get(where={DOC_KEY: {"$in": batch}}, include=[])["ids"]
            stale = [x for x in found if x not in keep]
            if stale:
                col.delete(ids=stale)

    def search(
        self,
        owner: str,
        memory: str,
        query: str,
        k: int = 5,
        where: dict[str, Any] | None = None,
        contains: str | None = None,
    ) -> list[SearchHit]:
        if not query or not query.strip():
            raise AgentError("query must not be empty", field="query")
        if not 1 <= k <= 100:
            raise AgentError("k must be between 1 and 100", field="k")
        where = normalize_filter(where)
        col = self._collection(owner, memory)
        vector = self.embedder.embed_query([query])
        result = col.query(
            query_embeddings=vector,
            n_results=k,
            where=where,
            where_document={"$contains": contains} if contains else None,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for item_id, text, meta, dist in zip(
            result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]
        ):
            base = memory_item(item_id, text, meta)
            hits.append(SearchHit(**base.model_dump(), score=round(1.0 - float(dist), 6)))
        return hits

    def get(self, owner: str, memory: str, ids: list[str]) -> list[MemoryItem]:
        col = self._collection(owner, memory)
        result = col.get(ids=[validate_id(i, "ids") for i in ids], include=["documents", "metadatas"])
        by_id = {i: memory_item(i, t, m) for i, t, m in zip(result["ids"], result["documents"], result["metadatas"])}
        return [by_id[i] for i in ids if i in by_id]

    def list_items(
        self, owner: str, memory: str, offset: int = 0, limit: int = 50, where: dict[str, Any] | None = None
    ) -> ItemPage:
        if offset < 0:
            raise AgentError("offset must not be negative", field="offset")
        if not 1 <= limit <= 1000:
            raise AgentError("limit must be between 1 and 1000", field="limit")
        where = normalize_filter(where)
        col = self._collection(owner, memory)
        total = col.count() if where is None else len(col.get(where=where, include=[])["ids"])
        result = col.get(where=where, limit=limit, offset=offset, include=["documents", "metadatas"])
        items = [memory_item(i, t, m) for i, t, m in zip(result["ids"], result["documents"], result["metadatas"])]
        return ItemPage(items=items, total=total, offset=offset, limit=limit)

    def _document_items(self, col: Collection, item_id: str) -> dict[str, Any]:
        """The items an id names: itself, or every chunk of the document with that id."""
        result = col.get(where={DOC_KEY: item_id}, include=["documents", "metadatas"])
        if not result["ids"]:
            result = col.get(ids=[item_id], include=["documents", "metadatas"])
        return result

    def update(
        self,
        owner: str,
        memory: str,
        item_id: str,
        text: str | None = None,
        metadata: dict[str, Scalar] | None = None,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
    ) -> list[str]:
        """Change a document's (or one chunk's) text and/or metadata; new text is re-embedded."""
        validate_id(item_id, "id")
        if text is None and metadata is None:
            raise AgentError("nothing to update: give text and/or metadata", field="text")
        if metadata is not None:
            validate_metadata(metadata)
        col = self._collection(owner, memory)
        current = self._document_items(col, item_id)
        if not current["ids"]:
            raise NotFound(f"no item {item_id!r} in memory {memory!r}", field="id")
        first_meta = current["metadatas"][0] or {}
        merged = {**public_metadata(first_meta), **(metadata or {})}
        if text is not None:
            doc_id = str(first_meta.get(DOC_KEY, item_id))
            if doc_id != item_id:
                # one chunk of a longer document: replace that chunk in place
                self._check_documents([DocumentIn(text=text)])
                vectors = self.embedder([text.strip()])
                meta = {**merged, **{k: v for k, v in first_meta.items() if k.startswith("_")}}
                self._upsert(col, [item_id], vectors, [text.strip()], [meta])
                return [item_id]
            created = first_meta.get(CREATED_KEY)
            ids = self.write(
                owner,
                memory,
                [DocumentIn(id=doc_id, text=text, metadata=merged or {})],
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
            )
            if created is not None:
                col.update(ids=ids, metadatas=[{CREATED_KEY: created}] * len(ids))
            return ids
        col.update(ids=current["ids"], metadatas=[{**(m or {}), **(metadata or {})} for m in current["metadatas"]])
        return list(current["ids"])

    def delete(
        self, owner: str, memory: str, ids: Iterable[str] | None = None, where: dict[str, Any] | None = None
    ) -> list[str]:
        """Delete by ids (a document id removes all its chunks) and/or by filter; returns the ids removed."""
        ids = [validate_id(i, "ids") for i in (ids or [])]
        where = normalize_filter(where)
        if not ids and where is None:
            raise AgentError("give ids or a filter to delete by (Clear Memory empties a whole memory)", field="ids")
        col = self._collection(owner, memory)
        doomed: list[str] = []
        if ids:
            doomed += col.get(ids=ids, include=[])["ids"]
            doomed += col.get(where={DOC_KEY: {"$in": ids}}, include=[])["ids"]
        if where is not None:
            doomed += col.get(where=where, include=[])["ids"]
        doomed = list(dict.fromkeys(doomed))
        for i in range(0, len(doomed), 5000):
            col.delete(ids=doomed[i : i + 5000])
        return doomed


def chroma_client(settings: Settings) -> ClientAPI:
    """A Chroma server when CXMPUTE_CHROMA_URL is set, otherwise an embedded store in the data dir."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError(f"CXMPUTE_CHROMA_URL must be an http(s) URL, got {settings.chroma_url!r}")
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except ValueError as exc:  # chromadb's way of saying the server did not answer
            raise AgentError(
                f"the memory service at {settings.chroma_url} is unreachable: {exc}", field="memory", status_code=503
            ) from None
    path = settings.data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
