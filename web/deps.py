"""Request dependencies shared by the routers: the caller's identity and a database session."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Header
from sqlalchemy.orm import Session

from cxmpute.db import session_factory


def db_session() -> Iterator[Session]:
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def current_owner(authorization: str | None = Header(None)) -> str:
    """The account the request acts for; anonymous local use maps to the 'local' owner."""
    return "local"
