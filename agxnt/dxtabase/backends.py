"""Where each owner's database lives, and the walls around it.

- SQLite (default): one file per owner in the data dir; an authorizer refuses ATTACH/DETACH, pragmas
  other than read-only introspection, and extension loading, so a statement can only see that file.
- PostgreSQL (``CXMPUTE_DXTABASE_URL``): one schema per owner, owned by a login role of the same name
  that is granted nothing else. Statements run connected *as that role*, so the server itself refuses
  any reach into other schemas or the platform's tables, and ``SET ROLE`` has nothing to escalate to.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, create_engine, event, make_url, pool, text

from cxmpute.settings import Settings

SQLITE_MAX_PAGES = 262_144  # 1 GiB at 4 KiB pages: one owner cannot fill the disk
READ_ONLY_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
STATEMENT_TIMEOUT_S = 30
STATEMENT_TIMEOUT = f"{STATEMENT_TIMEOUT_S}s"
SQLITE_PROGRESS_STEPS = 10_000  # virtual-machine steps between deadline checks
ENGINE_CACHE = 32


class Backend(Protocol):
    dialect: str

    def engine_for(self, owner: str) -> Engine: ...


def owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:24]


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA:
        # the allowed pragmas are introspection only; none of them can be assigned
        return sqlite3.SQLITE_OK if (arg1 or "").lower() in READ_ONLY_PRAGMAS else sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, root: Path):
        self.root = root
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def path_for(self, owner: str) -> Path:
        return self.root / f"{owner_key(owner)}.sqlite"

    def engine_for(self, owner: str) -> Engine:
        with self._lock:
            engine = self._engines.get(owner)
            if engine is None:
                self.root.mkdir(parents=True, exist_ok=True)
                engine = create_engine(
                    f"sqlite:///{self.path_for(owner)}", poolclass=pool.NullPool, connect_args={"timeout": 30}
                )
                event.listen(engine, "connect", _sqlite_walls)
                _remember(self._engines, owner, engine)
            return engine


def _sqlite_walls(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA max_page_count={SQLITE_MAX_PAGES}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    dbapi_conn.set_authorizer(_sqlite_authorizer)
    # Connections are not pooled, so one lives for one call: bound the whole call's work in time.
    deadline = time.monotonic() + STATEMENT_TIMEOUT_S
    dbapi_conn.set_progress_handler(lambda: int(time.monotonic() > deadline), SQLITE_PROGRESS_STEPS)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, admin_url: str, secret: str):
        self.admin_url = make_url(admin_url)
        self.admin = create_engine(self.admin_url, poolclass=pool.NullPool)
        self.secret = secret.encode()
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def role_for(self, owner: str) -> str:
        return f"dx_{owner_key(owner)}"

    def _password(self, owner: str) -> str:
        return hmac.new(self.secret, f"dxtabase:{owner}".encode(), hashlib.sha256).hexdigest()

    def _provision(self, owner: str) -> None:
        role, password = self.role_for(owner), self._password(owner)
        with self.admin.begin() as conn:
            # serialise concurrent first uses of the same owner across processes
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:r))"), {"r": role})
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
            if not exists:
                conn.exec_driver_sql(
                    f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '{password}'"
                )
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}")
            conn.exec_driver_sql(f"REVOKE ALL ON SCHEMA {role} FROM PUBLIC")
            conn.exec_driver_sql(f"ALTER ROLE {role} SET search_path = {role}")
            conn.exec_driver_sql(f"ALTER ROLE {role} SET statement_timeout = '{STATEMENT_TIMEOUT}'")

    def engine_for(self, owner: str) -> Engine:
        with self._lock:
            engine = self._engines.get(owner)
            if engine is None:
                self._provision(owner)
                url = self.admin_url.set(username=self.role_for(owner), password=self._password(owner))
                # every statement is sent prepared, and a prepared statement holds exactly one command
                engine = create_engine(url, poolclass=pool.NullPool, connect_args={"prepare_threshold": 0})
                _remember(self._engines, owner, engine)
            return engine

    def drop_owner(self, owner: str) -> None:
        """Remove an owner's schema, tables and role (account deletion)."""
        role = self.role_for(owner)
        with self._lock:
            engine = self._engines.pop(owner, None)
        if engine is not None:
            engine.dispose()
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {role} CASCADE")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")


def _remember(cache: OrderedDict[str, Engine], owner: str, engine: Engine) -> None:
    cache[owner] = engine
    while len(cache) > ENGINE_CACHE:
        _, old = cache.popitem(last=False)
        old.dispose()


_backends: dict[tuple[str, str], Backend] = {}
_backends_lock = threading.Lock()


def backend_for(settings: Settings) -> Backend:
    """The process-wide backend for these settings."""
    key = (settings.dxtabase_url or "", str(settings.home))
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            if settings.dxtabase_url:
                backend = PostgresBackend(settings.dxtabase_url, settings.resolved_secret_key())
            else:
                backend = SqliteBackend(settings.data_dir / "dxtabase")
            _backends[key] = backend
        return backend
