"""The one database session factory, and migrations gathered from every package.

Each package that owns tables declares them on :data:`Base` and exposes an Alembic
``versions`` folder through the ``cxmpute.migrations`` entry-point group, so this shell
module never imports a package above it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from cxmpute.settings import get_settings


class Base(DeclarativeBase):
    pass


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _make_engine(url)
            _engines[url] = engine
        return engine


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None, *, immediate: bool = False) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error so state is never half-written.

    ``immediate`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so concurrent writers queue
    on the busy timeout instead of failing on a lock upgrade; other databases ignore it.
    """
    session = session_factory(url)()
    try:
        if immediate and session.get_bind().dialect.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE"))
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migration_locations() -> list[str]:
    locations = []
    for ep in entry_points(group="cxmpute.migrations"):
        module = ep.load()
        locations.append(str(Path(module.__file__).parent / "versions"))
    return sorted(locations)


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def migrate(url: str | None = None) -> None:
    """Bring the database to the newest revision of every package's migrations (idempotent).

    The first call per URL holds a lock through the whole upgrade: two Alembic upgrades of one database
    at once race on its version table (and crashed SQLite in a threaded test)."""
    from alembic import command
    from alembic.config import Config

    url = url or get_settings().resolved_database_url
    if url in _migrated:
        return
    with _migrate_lock:
        if url in _migrated:
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.set_main_option("version_locations", " ".join(migration_locations()))
        cfg.set_main_option("path_separator", "space")
        cfg.attributes["url"] = url
        command.upgrade(cfg, "heads")
        _migrated.add(url)


def reset_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    with _migrate_lock:
        _migrated.clear()
