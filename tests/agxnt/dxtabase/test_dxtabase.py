"""Dxtabase on SQLite (default) and on PostgreSQL (a schema and role per owner)."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from agxnt.context import AgentContext, Services
from agxnt.dxtabase.agent import Dxtabase
from agxnt.dxtabase.backends import PostgresBackend, backend_for
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_up() -> bool:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False


def _contexts(settings: Settings):
    services = Services(settings)
    made: list[str] = []

    def make(name: str) -> AgentContext:
        owner = f"0x{name}{uuid.uuid4().hex[:10]}"
        made.append(owner)
        return AgentContext(owner=owner, settings=settings, services=services)

    yield make
    backend = backend_for(settings)
    if isinstance(backend, PostgresBackend):
        for owner in made:
            backend.drop_owner(owner)


@pytest.fixture
def pg_ctx(tmp_path):
    if not _postgres_up():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    yield from _contexts(Settings(home=tmp_path, dxtabase_url=PG_URL))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_ctx(request, tmp_path):
    if request.param == "postgres":
        yield request.getfixturevalue("pg_ctx")
    else:
        yield from _contexts(Settings(home=tmp_path))


async def db(ctx, **payload):
    return await Dxtabase()(payload, ctx)


NOTES = {
    "action": "create_table",
    "table": "notes",
    "columns": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "body", "type": "text", "nullable": False},
        {"name": "score", "type": "real"},
        {"name": "tags", "type": "json"},
    ],
}


async def _notes(ctx):
    await db(ctx, **NOTES)
    await db(
        ctx,
        action="insert",
        table="notes",
        rows=[
            {"id": 1, "body": "first", "score": 0.5, "tags": ["a"]},
            {"id": 2, "body": "second", "score": 1.5},
            {"id": 3, "body": "third", "score": 2.5, "tags": {"k": "v"}},
        ],
    )


async def test_create_insert_query_and_schema(make_ctx):
    ctx = make_ctx("alice")
    await _notes(ctx)
    out = await db(ctx, sql="SELECT id, body, tags FROM notes WHERE score > :min ORDER BY id", params={"min": 1})
    assert out.columns == ["id", "body", "tags"]
    # SQLite keeps JSON as text, PostgreSQL hands it back decoded
    rows = [{**r, "tags": json.loads(r["tags"]) if isinstance(r["tags"], str) else r["tags"]} for r in out.rows]
    assert rows == [{"id": 2, "body": "second", "tags": None}, {"id": 3, "body": "third", "tags": {"k": "v"}}]
    changed = await db(ctx, sql="UPDATE notes SET score = score + 1 WHERE id = :id", params={"id": 1})
    assert changed.rowcount == 1
    limited = await db(ctx, sql="SELECT * FROM notes", max_rows=2)
    assert limited.truncated and len(limited.rows) == 2
    schema = await db(ctx, action="schema")
    assert [t.name for t in schema.tables] == ["notes"]
    cols = {c.name: c for c in schema.tables[0].columns}
    assert cols["id"].primary_key and not cols["body"].nullable


async def test_parameters_are_bound_not_spliced(make_ctx):
    ctx = make_ctx("alice")
    await _notes(ctx)
    evil = "x'; DROP TABLE notes; --"
    out = await db(ctx, sql="SELECT count(*) AS n FROM notes WHERE body = :b", params={"b": evil})
    assert out.rows == [{"n": 0}]
    assert (await db(ctx, sql="SELECT count(*) AS n FROM notes")).rows == [{"n": 3}]


async def test_owners_are_isolated(make_ctx):
    alice, bob = make_ctx("alice"), make_ctx("bob")
    await _notes(alice)
    assert (await db(bob, action="schema")).tables == []
    with pytest.raises(CxmputeError):
        await db(bob, sql="SELECT * FROM notes")
    with pytest.raises(CxmputeError):
        await db(bob, action="insert", table="notes", rows=[{"id": 9, "body": "bob"}])
    await db(bob, **NOTES)  # bob's own table of the same name is a different table
    assert (await db(bob, sql="SELECT count(*) AS n FROM notes")).rows == [{"n": 0}]
    assert (await db(alice, sql="SELECT count(*) AS n FROM notes")).rows == [{"n": 3}]


async def _rows(ctx):
    return (await db(ctx, sql="SELECT * FROM notes ORDER BY id")).rows


@pytest.mark.parametrize(
    "payload, field, status",
    [
        ({"sql": ""}, "sql", 400),
        ({"sql": "SELEC nonsense"}, "sql", 400),
        ({"sql": "SELECT * FROM missing_table"}, "sql", 400),
        ({"sql": "SELECT * FROM notes WHERE id = :id"}, "params", 400),
        ({"sql": "DELETE FROM notes; DROP TABLE notes"}, "sql", 400),
        (
            {"action": "insert", "table": "notes", "rows": [{"id": 10, "body": "ok"}, {"id": 1, "body": "duplicate"}]},
            "rows",
            400,
        ),
        ({"action": "insert", "table": "notes", "rows": [{"id": 11, "nope": 1}]}, "rows.0", 400),
        ({"action": "insert", "table": "ghost", "rows": [{"id": 1}]}, "table", 404),
        ({"action": "insert", "table": "notes", "rows": []}, "rows", 400),
        ({"action": "create_table", "table": "bad name", "columns": [{"name": "a"}]}, "table", 400),
        ({"action": "create_table", "table": "t", "columns": [{"name": "a;b"}]}, "columns.0.name", 400),
        ({"action": "create_table", "table": "notes", "columns": [{"name": "a"}]}, "table", 409),
        ({"action": "create_table", "table": "t", "columns": []}, "columns", 400),
    ],
)
async def test_bad_input_is_a_named_4xx_and_changes_nothing(make_ctx, payload, field, status):
    ctx = make_ctx("alice")
    await _notes(ctx)
    before = await _rows(ctx)
    with pytest.raises(CxmputeError) as err:
        await db(ctx, **payload)
    assert (err.value.status_code, err.value.field) == (status, field)
    assert await _rows(ctx) == before
    assert [t.name for t in (await db(ctx, action="schema")).tables] == ["notes"]


SQLITE_ESCAPES = [
    "ATTACH DATABASE '{platform}' AS platform",
    "PRAGMA writable_schema = 1",
    "VACUUM INTO '{tmp}/copy.db'",
    "SELECT load_extension('/lib/x.so')",
]


@pytest.mark.parametrize("sql", SQLITE_ESCAPES)
async def test_sqlite_statements_cannot_leave_the_owners_file(tmp_path, sql):
    settings = Settings(home=tmp_path)
    platform = settings.resolved_database_url.removeprefix("sqlite:///")
    ctx = AgentContext(owner="0xEve", settings=settings, services=Services(settings))
    await db(ctx, **NOTES)
    with pytest.raises(CxmputeError) as err:
        await db(ctx, sql=sql.format(platform=platform, tmp=tmp_path))
    assert err.value.status_code in (400, 403) and err.value.field == "sql"
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.postgres
async def test_postgres_statements_cannot_reach_other_schemas_or_platform_tables(pg_ctx):
    alice, eve = pg_ctx("alice"), pg_ctx("eve")
    await _notes(alice)
    await db(eve, action="schema")  # provisions eve
    table = f"platform_secret_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE public.{table} (v text)")
        conn.exec_driver_sql(f"INSERT INTO public.{table} VALUES ('hidden')")
    alice_schema = backend_for(alice.settings).role_for(alice.owner)
    try:
        for sql in [
            f"SELECT * FROM {alice_schema}.notes",
            f"DELETE FROM {alice_schema}.notes",
            f"SELECT * FROM public.{table}",
            f"DROP TABLE public.{table}",
            "CREATE TABLE public.planted (a int)",
            "SET ROLE postgres",
            "SELECT set_config('role', 'postgres', false)",
            "COPY (SELECT 1) TO '/tmp/dx-out.txt'",
        ]:
            with pytest.raises(CxmputeError) as err:
                await db(eve, sql=sql)
            assert err.value.status_code in (400, 403), sql
        assert (await db(eve, sql="SELECT current_user AS u")).rows[0]["u"] != "postgres"
        assert (await db(eve, sql="SHOW statement_timeout")).rows == [{"statement_timeout": "30s"}]
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT v FROM public.{table}").scalar() == "hidden"
        assert len(await _rows(alice)) == 3
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS public.{table}")
        admin.dispose()


async def test_runaway_sqlite_statement_is_stopped(tmp_path, monkeypatch):
    from agxnt.dxtabase import backends

    monkeypatch.setattr(backends, "STATEMENT_TIMEOUT_S", 0.5)
    settings = Settings(home=tmp_path)
    ctx = AgentContext(owner="0xLoop", settings=settings, services=Services(settings))
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(CxmputeError) as err:
        await db(ctx, sql=endless)
    assert err.value.field == "sql" and "interrupted" in err.value.message
