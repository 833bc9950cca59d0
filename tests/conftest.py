"""Test-wide set-up: every test session gets its own data directory, never the user's ~/.cxmpute."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="cxmpute-test-"))
os.environ.setdefault("CXMPUTE_HOME", str(_home))
os.environ.setdefault("PREFECT_HOME", str(_home / "prefect"))
# Background upkeep rounds would race the tests that check, audit and repair storage nodes step by step;
# tests/stxrage/test_upkeep.py runs the upkeep itself.
os.environ.setdefault("CXMPUTE_STORAGE_UPKEEP_S", "0")

from cxmpute.settings import apply_environment_defaults  # noqa: E402

apply_environment_defaults()


import threading  # noqa: E402

import pytest  # noqa: E402


def pytest_unconfigure(config):
    """The session's data directory goes with the session: a full run leaves about a GB of storage there, and
    runs on one machine would fill its disk. (Each job's scratch mount ends with its job; the sandbox's binds
    live in its own mount namespace, not under this directory.)"""
    import shutil

    shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect server (SQLite) for the whole test session, requiring the platform's auth string as
    `cxmpute up`'s does; the process (and every child it starts) is pointed at it with that credential."""
    from cxmpute.ports import free_port
    from flows.server import start_server, stop_server, use_api

    port = free_port()
    proc = start_server(_home / "prefect-server", port)
    url = f"http://127.0.0.1:{port}/api"
    use_api(url)
    yield url
    stop_server(proc)


@pytest.fixture(scope="session", autouse=True)
def run_executor(prefect_api):
    """A run executor serving the session's runs from a thread, as `cxmpute executor start` serves a platform's,
    on the session's Prefect server from the start (a run never lands on an ephemeral one)."""
    from tests.support.executor import executor_thread

    with executor_thread() as executor:
        yield executor


@pytest.fixture(scope="session")
def api_url(prefect_api):
    """The platform API served by uvicorn on a free 127.0.0.1 port, over real HTTP."""
    import uvicorn

    from cxmpute.ports import free_port
    from web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    import time

    for _ in range(200):
        if _answers(base):
            break
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(10)


def _answers(base: str) -> bool:
    import httpx

    try:
        return httpx.get(base + "/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform_db_url(request, tmp_path):
    """A fresh platform database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.db'}"
        return
    name = f"cxmpute_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (make test starts it)")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        from cxmpute.db import get_engine

        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
