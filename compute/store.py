"""Transactions for the compute network's services, on the one engine from :mod:`cxmpute.db`.

Writes that move money or capacity run in :func:`write`: on SQLite it takes the write lock up front
(``BEGIN IMMEDIATE``) so two writers queue on the busy timeout instead of failing on a lock upgrade;
on PostgreSQL the conditional ``UPDATE``s row-lock what they change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from cxmpute.db import migrate, session_factory, session_scope


class Store:
    def __init__(self, url: str | None = None):
        self.url = url
        migrate(url)
        self._factory = session_factory(url)

    @contextmanager
    def write(self) -> Iterator[Session]:
        with session_scope(self.url, immediate=True) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
        finally:
            session.close()


_stores: dict[str | None, Store] = {}


def get_store(url: str | None = None) -> Store:
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = Store(url)
    return store
