"""Ordered, append-only logs per (owner, thread): the conversation memory behind Sequential Memory."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from agxnt.errors import AgentError
from cxmpute.db import Base, migrate, session_scope
from cxmpute.settings import Settings

APPEND_ATTEMPTS = 10  # where appenders are not serialised, the unique constraint settles a race for a seq


def _pg_thread_lock(session: Session, owner: str, thread: str) -> None:
    key = int.from_bytes(hashlib.sha256(f"{owner}\n{thread}".encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


# Per-dialect serialisation of appends to one thread (SQLite already admits one writer at a time).
_THREAD_LOCKS: dict[str, Callable[[Session, str, str], None]] = {"postgresql": _pg_thread_lock}


class ThreadEntryRow(Base):
    __tablename__ = "memory_thread_entries"
    __table_args__ = (UniqueConstraint("owner", "thread", "seq", name="uq_memory_thread_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    thread: Mapped[str] = mapped_column(String(100))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EntryIn(BaseModel):
    role: str = Field("user", min_length=1, max_length=32, description="user, assistant, system, tool, ...")
    content: str = Field(..., description="The message text")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadEntry(EntryIn):
    seq: int = Field(..., description="Position in the thread, from 0")
    created_at: datetime


class ThreadInfo(BaseModel):
    thread: str
    count: int


class ThreadWindow(BaseModel):
    entries: list[ThreadEntry]
    total: int = Field(..., description="Entries in the whole thread")


def _entry(row: ThreadEntryRow) -> ThreadEntry:
    return ThreadEntry(
        seq=row.seq, role=row.role, content=row.content, metadata=row.meta or {}, created_at=row.created_at
    )


class ThreadLog:
    def __init__(self, database_url: str):
        self.url = database_url

    @classmethod
    def from_settings(cls, settings: Settings) -> ThreadLog:
        return cls(settings.resolved_database_url)

    def _session(self):
        migrate(self.url)  # once per URL per process; safe from many threads
        return session_scope(self.url)

    def append(self, owner: str, thread: str, entries: list[EntryIn]) -> list[ThreadEntry]:
        if not entries:
            raise AgentError("nothing to append: give at least one message", field="messages")
        for i, entry in enumerate(entries):
            if not entry.content.strip():
                raise AgentError(f"message {i} has empty content", field=f"messages.{i}.content")
        attempt = 0
        while True:
            try:
                with self._session() as s:
                    lock = _THREAD_LOCKS.get(s.get_bind().dialect.name)
                    if lock is not None:
                        lock(s, owner, thread)
                    last = s.scalar(
                        select(func.max(ThreadEntryRow.seq)).where(
                            ThreadEntryRow.owner == owner, ThreadEntryRow.thread == thread
                        )
                    )
                    start = -1 if last is None else last
                    now = datetime.now(UTC)
                    rows = [
                        ThreadEntryRow(
                            owner=owner,
                            thread=thread,
                            seq=start + 1 + i,
                            role=e.role,
                            content=e.content,
                            meta=e.metadata,
                            created_at=now,
                        )
                        for i, e in enumerate(entries)
                    ]
                    s.add_all(rows)
                    s.flush()
                    return [_entry(r) for r in rows]
            except IntegrityError:
                attempt += 1
                if attempt >= APPEND_ATTEMPTS:
                    raise AgentError(
                        "the thread is being written concurrently; try again", field="thread", status_code=409
                    ) from None
                time.sleep(random.uniform(0, 0.01 * attempt))

    def read(self, owner: str, thread: str, last: int | None = None, before_seq: int | None = None) -> ThreadWindow:
        """The thread in order; ``last`` keeps only the newest entries (before ``before_seq`` when given)."""
        with self._session() as s:
            where = [ThreadEntryRow.owner == owner, ThreadEntryRow.thread == thread]
            total = s.scalar(select(func.count()).select_from(ThreadEntryRow).where(*where)) or 0
            if before_seq is not None:
                where.append(ThreadEntryRow.seq < before_seq)
            query = select(ThreadEntryRow).where(*where).order_by(ThreadEntryRow.seq.desc())
            if last is not None:
                query = query.limit(last)
            rows = list(s.scalars(query))
        return ThreadWindow(entries=[_entry(r) for r in reversed(rows)], total=total)

    def threads(self, owner: str) -> list[ThreadInfo]:
        with self._session() as s:
            rows = s.execute(
                select(ThreadEntryRow.thread, func.count())
                .where(ThreadEntryRow.owner == owner)
                .group_by(ThreadEntryRow.thread)
                .order_by(ThreadEntryRow.thread)
            ).all()
        return [ThreadInfo(thread=t, count=c) for t, c in rows]
