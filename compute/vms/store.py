"""The ``vms`` table: each machine's owner, resources, boot artifacts, lease, billing position and snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compute.models import utcnow
from cxmpute.db import Base


class Vm(Base):
    """A machine. ``segment`` counts its runs; ``segment_billed_s`` is how much of the current run is billed."""

    __tablename__ = "vms"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(String(120), nullable=True)
    kernel: Mapped[str | None] = mapped_column(String(120), nullable=True)
    initrd: Mapped[str | None] = mapped_column(String(120), nullable=True)
    cmdline: Mapped[str] = mapped_column(String(2048))
    ssh_key: Mapped[str] = mapped_column(Text)
    accel: Mapped[str] = mapped_column(String(8))
    lease_id: Mapped[str] = mapped_column(String(36))
    provider: Mapped[str] = mapped_column(String(42))
    segment: Mapped[int] = mapped_column(Integer, default=0)
    running_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ssh_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    segment_billed_s: Mapped[int] = mapped_column(Integer, default=0)
    billed_s: Mapped[int] = mapped_column(Integer, default=0)
    snapshots: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
