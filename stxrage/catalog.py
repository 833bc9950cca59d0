"""The catalog: which files each owner holds, which blocks make them up, and where every
fragment of every block lives. Content stays on the block stores; this is the index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from cxmpute.db import Base

CID_LEN = 120
_IN_CHUNK = 500  # keeps IN (...) lists under every database's bound-parameter limit


def utcnow() -> datetime:
    return datetime.now(UTC)


class NodeRow(Base):
    __tablename__ = "stxrage_nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(500), unique=True)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    price_per_gb_month: Mapped[float] = mapped_column(Float, default=0.0)
    # The provider account (EVM address) that registered the node; None for the operator's own nodes.
    provider: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    audit_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What the platform presents to the node on every call; never part of any listing or answer.
    credential: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # issued_at of the provider's last signed registration: an older one is a replay.
    registered_ts: Mapped[int] = mapped_column(BigInteger, default=0)


class UpkeepRow(Base):
    """Which platform replica holds the storage upkeep, and until when, unless it renews."""

    __tablename__ = "stxrage_upkeep"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until_ts: Mapped[float] = mapped_column(Float)


class BlockRow(Base):
    __tablename__ = "stxrage_blocks"
    cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict] = mapped_column(JSON)


class FragmentRow(Base):
    __tablename__ = "stxrage_fragments"
    block_cid: Mapped[str] = mapped_column(
        String(CID_LEN), ForeignKey("stxrage_blocks.cid", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    fragment_cid: Mapped[str] = mapped_column(String(CID_LEN))
    node_id: Mapped[str] = mapped_column(String(64), ForeignKey("stxrage_nodes.id"), index=True)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)


class ManifestRow(Base):
    __tablename__ = "stxrage_manifests"
    cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    private: Mapped[bool] = mapped_column(Boolean)
    policy: Mapped[dict] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(8), default="file")


class RefRow(Base):
    """manifest → every block it needs (its chunks and itself), for garbage collection."""

    __tablename__ = "stxrage_refs"
    manifest_cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)
    block_cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True, index=True)


class FileRow(Base):
    __tablename__ = "stxrage_files"
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    cid: Mapped[str] = mapped_column(String(CID_LEN), ForeignKey("stxrage_manifests.cid"), primary_key=True, index=True)
    name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    private: Mapped[bool] = mapped_column(Boolean)
    pinned: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Readable by anyone who knows the CID; otherwise by the owner only.
    public: Mapped[bool] = mapped_column(Boolean, default=False)


def insert_ignore(session: Session, model: type[Base], rows: list[dict]) -> None:
    """Insert rows, skipping those whose key already exists (two writers may store the same block)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": pg_insert, "sqlite": sqlite_insert}[dialect]
    session.execute(insert(model).on_conflict_do_nothing(), rows)


def batched(items: list, size: int = _IN_CHUNK) -> Iterator[list]:
    """``items`` in runs short enough for one ``IN (...)`` list."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
