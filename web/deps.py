"""Request dependencies shared by the routers: the caller's identity and a database session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from sqlalchemy.orm import Session

from compute.errors import ComputeError
from compute.identity.tokens import SCOPES, Principal, authenticate
from compute.network import get_network
from cxmpute.db import session_scope
from cxmpute.settings import get_settings


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# Committed before the response is sent, so a client that reads right after a write sees it.
DbSession = Annotated[Session, Depends(db_session, scope="function")]


def current_principal(authorization: str | None = Header(None)) -> Principal:
    """Who the request acts for: a session token or API key (``Authorization: Bearer ...``), else — while
    ``CXMPUTE_ALLOW_ANONYMOUS`` allows it — the single-user 'local' owner. A credential that is present
    but invalid is always a 401, never a fall-back to anonymous."""
    if authorization is None:
        if not get_settings().allow_anonymous:
            raise HTTPException(401, "sign in required", headers={"WWW-Authenticate": "Bearer"})
        return Principal(address="local", scopes=frozenset(SCOPES), via="anonymous")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "authorization must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    try:
        return authenticate(get_network().store, token.strip())
    except ComputeError as exc:
        raise HTTPException(exc.status_code, exc.message, headers={"WWW-Authenticate": "Bearer"}) from exc


def current_owner(principal: Principal = Depends(current_principal)) -> str:
    """The account the request acts for; anonymous local use maps to the 'local' owner."""
    return principal.address
