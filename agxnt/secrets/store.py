"""The encrypted per-account secret store: values go in by name and come out only to agents at run time."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import DateTime, LargeBinary, String, select
from sqlalchemy.orm import Mapped, mapped_column

from agxnt.errors import AgentError
from agxnt.secrets.crypto import SealBroken, derive_key, seal, unseal
from agxnt.secrets.redact import register_values
from cxmpute.db import Base, migrate, session_scope
from cxmpute.errors import NotFound
from cxmpute.settings import Settings, get_settings

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
MIN_VALUE_CHARS = 8  # shorter values would be masked wherever the same letters occur in ordinary text
MAX_VALUE_CHARS = 16_384


class SecretRow(Base):
    __tablename__ = "account_secrets"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SecretInfo(BaseModel):
    """What may be shown about a secret: its name and when it was written, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise AgentError(
            "secret name must start with a letter or '_' and hold at most 100 letters, digits, '_', '.' or '-'",
            field="name",
            status_code=422,
        )
    return name


def check_value(value: str) -> str:
    if not MIN_VALUE_CHARS <= len(value) <= MAX_VALUE_CHARS:
        raise AgentError(
            f"secret value must be {MIN_VALUE_CHARS} to {MAX_VALUE_CHARS} characters", field="value", status_code=422
        )
    return value


def _binding(owner: str, name: str) -> bytes:
    return f"{owner}\n{name}".encode()


class SecretStore:
    def __init__(self, url: str, key: bytes):
        self.url = url
        self._key = key
        self._migrated = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretStore:
        return cls(settings.resolved_database_url, derive_key(settings.resolved_secret_key()))

    def _ready(self) -> None:
        with self._lock:
            if not self._migrated:
                migrate(self.url)
                self._migrated = True

    def set(self, owner: str, name: str, value: str) -> SecretInfo:
        """Create or replace the secret ``name`` of ``owner``."""
        check_name(name)
        check_value(value)
        self._ready()
        now = datetime.now(UTC)
        blob = seal(self._key, value, _binding(owner, name))
        with session_scope(self.url) as s:
            row = s.get(SecretRow, (owner, name))
            if row is None:
                row = SecretRow(owner=owner, name=name, ciphertext=blob, created_at=now, updated_at=now)
                s.add(row)
            else:
                row.ciphertext, row.updated_at = blob, now
            return SecretInfo(name=name, created_at=row.created_at, updated_at=now)

    def names(self, owner: str) -> list[SecretInfo]:
        self._ready()
        with session_scope(self.url) as s:
            rows = s.scalars(select(SecretRow).where(SecretRow.owner == owner).order_by(SecretRow.name))
            return [SecretInfo(name=r.name, created_at=r.created_at, updated_at=r.updated_at) for r in rows]

    def delete(self, owner: str, name: str) -> None:
        self._ready()
        with session_scope(self.url) as s:
            row = s.get(SecretRow, (owner, name))
            if row is None:
                raise NotFound(f"no secret named {name!r}", field="name")
            s.delete(row)

    def resolve(self, owner: str, names: Iterable[str]) -> dict[str, str]:
        """The values of those of ``names`` that ``owner`` has set, registered for redaction."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        self._ready()
        with session_scope(self.url) as s:
            rows = list(s.scalars(select(SecretRow).where(SecretRow.owner == owner, SecretRow.name.in_(wanted))))
        values = {}
        for row in rows:
            try:
                values[row.name] = unseal(self._key, row.ciphertext, _binding(owner, row.name))
            except SealBroken:
                raise AgentError(
                    f"secret {row.name!r} cannot be decrypted with this platform's secret key; set it again",
                    field=row.name,
                    status_code=409,
                ) from None
        register_values(values.values())
        return values


_stores: dict[tuple[str, str], SecretStore] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings) -> SecretStore:
    """One store per database and key, so migrations run once per process."""
    key = (settings.resolved_database_url, settings.resolved_secret_key())
    with _stores_lock:
        if key not in _stores:
            _stores[key] = SecretStore.from_settings(settings)
        return _stores[key]


def resolve_for(owner: str, names: Iterable[str], settings: Settings | None = None) -> dict[str, str]:
    """The secrets ``names`` of ``owner`` that are set — what a runner puts in ``AgentContext.secrets``."""
    return store_for(settings or get_settings()).resolve(owner, names)
