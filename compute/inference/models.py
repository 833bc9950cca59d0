"""Tables of inference serving: where each provision's server listens, what the gateway served, the archive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from compute.models import utcnow
from cxmpute.db import Base


class Endpoint(Base):
    """A provision's inference server. ``suspended``: the gateway found it failing; it stays out of matching
    (its provision paused, if it was the gateway that paused it) until the provider registers it again."""

    __tablename__ = "inference_endpoints"
    provision_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    url: Mapped[str] = mapped_column(String(500))
    api_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    models: Mapped[list] = mapped_column(JSON)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_provision: Mapped[bool] = mapped_column(Boolean, default=False)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RequestRecord(Base):
    """One gateway request: who asked, which provision served it, tokens used, seconds billed."""

    __tablename__ = "inference_requests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user: Mapped[str] = mapped_column(String(42), index=True)
    model: Mapped[str] = mapped_column(String(200))
    operation: Mapped[str] = mapped_column(String(32))
    lease_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    provision_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(42), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[int] = mapped_column(Integer, default=0)
    amount_gwei: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ArchivedModel(Base):
    """A model directory pushed to the archive: its name points at a Stxrage directory manifest (CID)."""

    __tablename__ = "inference_archive"
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    cid: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    pushed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
