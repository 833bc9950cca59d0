"""Tables of serverless functions: each deployed version (a package CID plus its limits) and each invocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compute.models import utcnow
from cxmpute.db import Base


class FunctionVersion(Base):
    """A deployed version: the newest version of a name is what an invocation without a version runs."""

    __tablename__ = "function_versions"
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    handler: Mapped[str] = mapped_column(String(200))
    memory_mb: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float] = mapped_column(Float)
    concurrency: Mapped[int] = mapped_column(Integer)
    price_max_gwei: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Invocation(Base):
    """One call of a function: where it ran, how it ended, its logs, and the milliseconds billed."""

    __tablename__ = "function_invocations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    where: Mapped[str] = mapped_column(String(42))
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cold: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    billed_ms: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    queued_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_gwei: Mapped[int] = mapped_column(BigInteger, default=0)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
