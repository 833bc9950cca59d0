"""Tables of training jobs: each job with its generation and rendezvous, its checkpoints, its losses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compute.models import utcnow
from cxmpute.db import Base


class TrainingJob(Base):
    """A job; ``token_hash`` is the digest of the current generation's rank URL secret (None: no ranks may report)."""

    __tablename__ = "training_jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    rdzv_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    rdzv_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    final_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The platform process running the job's generations, and the unix time it last confirmed it (see coordinator).
    coordinator: Mapped[str | None] = mapped_column(String(64), nullable=True)
    coordinator_ts: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TrainingCheckpoint(Base):
    __tablename__ = "training_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    cid: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingLoss(Base):
    __tablename__ = "training_losses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
