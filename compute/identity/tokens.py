"""Resolving a Bearer credential (session token or API key) to the account it acts for."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select, update

from compute.identity.siwe import token_hash
from compute.models import ApiKey, AuthSession, aware, utcnow
from compute.store import Store
from cxmpute.db import get_engine
from cxmpute.errors import Forbidden, NotFound, Unauthorized

# What a credential may touch. Sessions hold every scope; an API key holds those named when it was issued.
SCOPES = ("account", "market", "provider", "keys", "workflows", "agents", "storage", "secrets", "memory", "workloads")
Scope = Literal[
    "account", "market", "provider", "keys", "workflows", "agents", "storage", "secrets", "memory", "workloads"
]
# Held by the platform's own operator credential only (storage audit and repair, the chain's development
# methods); never by a session or an API key.
OPERATOR = "operator"


class Principal(BaseModel):
    address: str
    scopes: frozenset[str]
    via: Literal["session", "api_key", "anonymous", "operator"]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"credential lacks the {scope!r} scope", field="authorization")

    @property
    def is_account(self) -> bool:
        return self.via in ("session", "api_key")


class ApiKeyCreate(BaseModel):
    name: str = Field(..., min_length=1, max_length=100)
    scopes: list[Scope] = Field(
        default_factory=lambda: [s for s in SCOPES if s != "keys"],
        min_length=1,
        description="Scopes the key holds; default: every scope but 'keys'",
    )


class ApiKeyInfo(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class NewApiKey(ApiKeyInfo):
    key: str = Field(..., description="Shown once; only its hash is stored")


def authenticate(store: Store, token: str, operator_token: str | None = None) -> Principal:
    if operator_token and token.startswith("cxo_") and secrets.compare_digest(token, operator_token):
        return Principal(address=OPERATOR, scopes=frozenset({OPERATOR}), via="operator")
    digest = token_hash(token)
    now = utcnow()
    # One statement on a pooled connection: every authenticated request pays for this lookup, and an ORM
    # session with its entity costs several times the query.
    with get_engine(store.url).connect() as conn:
        if token.startswith("cxs_"):
            row = conn.execute(SESSION_BY_HASH, {"digest": digest}).first()
            if row is None or row.revoked or aware(row.expires_at) <= now:
                raise Unauthorized("session token is unknown, revoked or expired", field="authorization")
            return Principal(address=row.address, scopes=frozenset(SCOPES), via="session")
        if token.startswith("cxk_"):
            key = conn.execute(KEY_BY_HASH, {"digest": digest}).first()
            if key is None or key.revoked_at is not None:
                raise Unauthorized("API key is unknown or revoked", field="authorization")
            return Principal(address=key.owner, scopes=frozenset(key.scopes), via="api_key")
    raise Unauthorized("unrecognised credential", field="authorization")


SESSION_BY_HASH = select(AuthSession.address, AuthSession.revoked, AuthSession.expires_at).where(
    AuthSession.token_hash == bindparam("digest")
)
KEY_BY_HASH = select(ApiKey.owner, ApiKey.scopes, ApiKey.revoked_at).where(ApiKey.key_hash == bindparam("digest"))


def logout(store: Store, token: str) -> None:
    with store.write() as session:
        session.execute(update(AuthSession).where(AuthSession.token_hash == token_hash(token)).values(revoked=True))


def create_api_key(store: Store, principal: Principal, spec: ApiKeyCreate) -> NewApiKey:
    principal.require("keys")
    if not set(spec.scopes) <= principal.scopes:
        raise Forbidden("a key cannot hold scopes its creator lacks", field="scopes")
    key_id = secrets.token_hex(8)
    key = f"cxk_{key_id}_{secrets.token_urlsafe(32)}"
    with store.write() as session:
        row = ApiKey(
            id=key_id,
            owner=principal.address,
            name=spec.name,
            key_hash=token_hash(key),
            scopes=sorted(set(spec.scopes)),
            created_at=utcnow(),
        )
        session.add(row)
    return NewApiKey(key=key, **_info(row).model_dump())


def list_api_keys(store: Store, principal: Principal) -> list[ApiKeyInfo]:
    principal.require("keys")
    with store.read() as session:
        rows = session.scalars(
            select(ApiKey).where(ApiKey.owner == principal.address).order_by(ApiKey.created_at)
        ).all()
        return [_info(row) for row in rows]


def revoke_api_key(store: Store, principal: Principal, key_id: str) -> ApiKeyInfo:
    principal.require("keys")
    with store.write() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"no API key {key_id}", field="key_id")
        if row.owner != principal.address:
            raise Forbidden("API key belongs to another account", field="key_id")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id, name=row.name, scopes=list(row.scopes), created_at=row.created_at, revoked_at=row.revoked_at
    )
