"""Pydantic models at the storage boundary: redundancy policies, manifests and file records."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, field_validator, model_validator


class Replicas(BaseModel):
    kind: Literal["replicas"] = "replicas"
    copies: int = Field(3, ge=1, le=16, description="Whole copies of each block, each on a different node")

    @property
    def width(self) -> int:
        return self.copies

    @property
    def tolerance(self) -> int:
        return self.copies - 1


class Erasure(BaseModel):
    kind: Literal["erasure"] = "erasure"
    k: int = Field(4, ge=1, le=128, description="Fragments needed to rebuild a block")
    n: int = Field(6, ge=2, le=256, description="Fragments stored, each on a different node")

    @model_validator(mode="after")
    def _k_below_n(self) -> Erasure:
        if self.k >= self.n:
            raise ValueError(f"erasure coding needs k < n (got {self.k}-of-{self.n})")
        return self

    @property
    def width(self) -> int:
        return self.n

    @property
    def tolerance(self) -> int:
        return self.n - self.k


Policy = Annotated[Replicas | Erasure, Field(discriminator="kind")]
_policy_adapter: TypeAdapter[Replicas | Erasure] = TypeAdapter(Policy)


def stored_policy(doc: dict) -> Replicas | Erasure:
    """A policy as the catalog keeps it (its ``model_dump()``)."""
    return _policy_adapter.validate_python(doc)


def parse_policy(text: str) -> Replicas | Erasure:
    """``3`` or ``replicas:3`` → three copies; ``4/6`` or ``erasure:4/6`` → 4-of-6 Reed–Solomon."""
    spec = text.strip().lower().removeprefix("replicas:").removeprefix("erasure:")
    try:
        if "/" in spec:
            k, n = spec.split("/", 1)
            return Erasure(k=int(k), n=int(n))
        return Replicas(copies=int(spec))
    except ValueError as exc:
        raise ValueError(f"policy {text!r}: use a copy count like '3' or k/n like '4/6' ({exc})") from None


class ChunkRef(BaseModel):
    cid: str
    size: int = Field(ge=0, description="Plaintext bytes of the chunk")
    digest: str | None = Field(None, description="sha256 of the plaintext (hex); private files only")


class FileEntry(BaseModel):
    """One file of a directory archive: its bytes are [offset, offset + size) of the archive."""

    path: str = Field(min_length=1, max_length=1000)
    offset: int = Field(ge=0)
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str) -> str:
        # A manifest may come from anyone: its paths must never reach outside the target directory.
        parts = PurePosixPath(path).parts
        canonical = PurePosixPath(path).as_posix() == path
        if not canonical or path.startswith("/") or not parts or ".." in parts or "\\" in path:
            raise ValueError(f"archive path {path!r} must be relative and stay inside the archive")
        return path


class Manifest(BaseModel):
    """A file, or a directory archive (the files' chunks back to back, with an index of paths).
    Public manifests are stored as DAG-JSON (chunk links as {"/": cid})."""

    format: Literal["stxrage/file@1"] = "stxrage/file@1"
    kind: Literal["file", "dir"] = "file"
    size: int = Field(ge=0)
    chunks: list[ChunkRef]
    parts: list[ChunkRef] = Field(default_factory=list, description="Sub-manifests, in order, of a very large file")
    files: list[FileEntry] = Field(default_factory=list, description="Directory archives: the files, by path")

    def to_dag_json(self) -> bytes:
        # DAG-JSON: map keys sorted, no whitespace, links written as {"/": "<cid>"}
        doc: dict = {"chunks": [self._chunk_doc(c) for c in self.chunks], "format": self.format, "size": self.size}
        if self.parts:
            doc["parts"] = [self._chunk_doc(p) for p in self.parts]
        if self.kind == "dir":
            doc["kind"] = "dir"
            doc["files"] = [e.model_dump() for e in self.files]
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def _chunk_doc(chunk: ChunkRef) -> dict:
        doc: dict = {"cid": {"/": chunk.cid}, "size": chunk.size}
        if chunk.digest is not None:
            doc["digest"] = chunk.digest
        return doc

    @classmethod
    def from_dag_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)

        def refs(items: list[dict]) -> list[ChunkRef]:
            return [ChunkRef(cid=c["cid"]["/"], size=c["size"], digest=c.get("digest")) for c in items]

        return cls(
            format=doc["format"],
            kind=doc.get("kind", "file"),
            size=doc["size"],
            chunks=refs(doc["chunks"]),
            parts=refs(doc.get("parts", [])),
            files=doc.get("files", []),
        )


class FileInfo(BaseModel):
    cid: str = Field(description="The file's id: the CID of its manifest")
    owner: str | None = Field(description="The account that stored it; shown to that account only")
    name: str | None = None
    size: int
    private: bool = Field(description="Encrypted before it left the platform")
    public: bool = Field(False, description="Readable by anyone who knows its CID; otherwise by its owner only")
    pinned: bool
    policy: Policy
    chunks: int
    kind: Literal["file", "dir"] = "file"
    created_at: datetime


class PutStats(BaseModel):
    """What one put did: how much was new and how much was found already stored."""

    file: FileInfo
    new_blocks: int
    reused_blocks: int
    bytes_uploaded: int


class NodeInfo(BaseModel):
    id: str = Field(description="Assigned by the platform when the node is registered")
    url: str
    capacity_bytes: int
    used_bytes: int = 0
    price_per_gb_month: float = 0.0
    provider: str | None = Field(
        None,
        description="The provider account that registered the node (its signed "
        "registration); None for the operator's own nodes",
    )
    status: Literal["active", "down", "evicted"] = "active"
    audit_failures: int = 0


class Redundancy(BaseModel):
    block: str
    target: int
    healthy: int


class AuditReport(BaseModel):
    checked: int
    failed: list[dict] = Field(default_factory=list)
    evicted: list[NodeInfo] = Field(
        default_factory=list,
        description="Nodes this audit evicted (their failures reached storage_max_audit_failures); a provider's "
        "node costs it a slash of its stake",
    )


class RepairReport(BaseModel):
    blocks_checked: int
    fragments_rebuilt: int
    fragments_recovered: int = Field(0, description="Copies marked bad that read back whole again, kept in place")
    degraded: list[str] = Field(default_factory=list, description="Blocks still below target (too few healthy nodes)")
    lost: list[str] = Field(default_factory=list, description="Blocks with fewer healthy fragments than needed to read")


class MaintenanceReport(BaseModel):
    nodes_down: list[str]
    audit: AuditReport
    repair: RepairReport
