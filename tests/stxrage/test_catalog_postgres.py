"""The catalog on PostgreSQL: the same behaviour as on SQLite, and concurrent puts of shared blocks."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from cxmpute.db import reset_engines
from cxmpute.settings import get_settings
from stxrage.store import Storage

pytestmark = pytest.mark.postgres
PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture
def pg_storage(tmp_path):
    schema = f"stx_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    storage = Storage(get_settings(), database_url=url, root=tmp_path / "pg")
    try:
        yield storage
    finally:
        storage.close()
        reset_engines()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_round_trip_dedup_and_delete_on_postgres(pg_storage):
    data = os.urandom(2 * 1024 * 1024)
    first = pg_storage.put_bytes(data, owner="alice", private=True).file
    assert pg_storage.get_bytes(first.cid, owner="alice") == data
    public = pg_storage.put_bytes(data, owner="alice")
    assert pg_storage.put_bytes(data, owner="bob").new_blocks == 0
    pg_storage.delete(public.file.cid, owner="alice")
    assert pg_storage.get_bytes(public.file.cid, owner="bob") == data
    assert [f.cid for f in pg_storage.ls("alice")] == [first.cid]


def test_concurrent_puts_of_the_same_content_store_it_once(pg_storage):
    data = os.urandom(3 * 1024 * 1024)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda owner: pg_storage.put_bytes(data, owner=owner), ["a", "b", "c", "d"]))
    assert len({r.file.cid for r in results}) == 1
    assert sum(1 for _ in (pg_storage.root / "blocks").glob("*/*")) == results[0].file.chunks + 1
    for owner in "abcd":
        assert pg_storage.get_bytes(results[0].file.cid, owner=owner) == data
