"""The Dxtabase agent: create tables, insert rows, run parameterised SQL and read the schema of the
caller's own database."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.dxtabase.backends import Backend, backend_for
from agxnt.errors import AgentError
from cxmpute.errors import Forbidden, NotFound

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_INSERT_ROWS = 10_000

ColumnType = Literal["integer", "bigint", "real", "numeric", "text", "boolean", "json", "timestamp", "date", "blob"]
_TYPES: dict[str, Any] = {
    "integer": sa.Integer,
    "bigint": sa.BigInteger,
    "real": sa.Float,
    "numeric": sa.Numeric,
    "text": sa.Text,
    "boolean": sa.Boolean,
    "json": sa.JSON,
    "timestamp": sa.DateTime(timezone=True),
    "date": sa.Date,
    "blob": sa.LargeBinary,
}
_DENIED = (
    "not authorized",
    "authorization denied",
    "must be superuser",
    "permission denied",
    "must be owner",
    "insufficient privilege",
)


class ColumnSpec(BaseModel):
    name: str = Field(..., description="Column name (letters, digits, _)")
    type: ColumnType = "text"
    primary_key: bool = False
    nullable: bool = True
    unique: bool = False


class ColumnInfo(BaseModel):
    name: str
    type: str
    nullable: bool
    primary_key: bool


class TableInfo(BaseModel):
    name: str
    columns: list[ColumnInfo]


def _identifier(name: str | None, field: str) -> str:
    if not name or not IDENTIFIER.match(name):
        raise AgentError(
            f"{field} must be 1-63 letters, digits or _ and not start with a digit; got {name!r}", field=field
        )
    return name


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _db_error(exc: SQLAlchemyError, field: str) -> AgentError:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    message = message.split(" (Background on this error")[0]
    if any(marker in message.lower() for marker in _DENIED):
        return Forbidden(
            f"statement refused: {message}. Dxtabase statements may only touch your own tables", field=field
        )
    return AgentError(f"database error: {message}", field=field)


class Dxtabase(Agent):
    """Your own SQL database: create tables, insert rows, run parameterised queries, inspect the schema."""

    id = "db.dxtabase"
    name = "Dxtabase"
    family = "Databases"
    resources = Resources(cpu=0.5, memory_mb=512)

    class Input(BaseModel):
        action: Literal["query", "create_table", "insert", "schema"] = Field(
            "query",
            description="query: run `sql`; create_table: `table` + `columns`; insert: `table` + `rows`; "
            "schema: list your tables and columns",
        )
        sql: str | None = Field(None, description="One SQL statement; use :name placeholders for `params`")
        params: dict[str, Any] = Field(default_factory=dict, description="Values for the :name placeholders")
        table: str | None = Field(None, description="Table name for create_table / insert")
        columns: list[ColumnSpec] = Field(default_factory=list, description="Columns for create_table")
        rows: list[dict[str, Any]] = Field(default_factory=list, description="Rows to insert")
        max_rows: int = Field(1000, ge=1, le=100_000, description="Most rows a query returns")

    class Output(BaseModel):
        table: str | None = Field(None, description="The table acted on (wire it on to order later steps)")
        columns: list[str] = Field(default_factory=list)
        rows: list[dict[str, Any]] = Field(default_factory=list)
        rowcount: int = 0
        truncated: bool = False
        tables: list[TableInfo] = Field(default_factory=list)

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        backend = backend_for(ctx.settings)
        action = getattr(self, f"_{input.action}")
        output = await asyncio.to_thread(action, backend, ctx.owner, input)
        output.table = input.table
        return output

    def _query(self, backend: Backend, owner: str, input: Input) -> Output:
        if not input.sql or not input.sql.strip():
            raise AgentError("sql must not be empty", field="sql")
        statement = sa.text(input.sql)
        missing = sorted(set(statement.compile().params) - set(input.params))
        if missing:
            raise AgentError(f"no value given for parameter(s) {', '.join(':' + m for m in missing)}", field="params")
        try:
            with backend.engine_for(owner).begin() as conn:
                result = conn.execute(statement, input.params)
                if not result.returns_rows:
                    return self.Output(rowcount=max(result.rowcount, 0))
                columns = list(result.keys())
                fetched = result.fetchmany(input.max_rows + 1)
        except sa.exc.ArgumentError as exc:
            raise AgentError(f"bad statement or parameters: {exc}", field="params") from None
        except (DBAPIError, SQLAlchemyError) as exc:
            raise _db_error(exc, "sql") from None
        rows = [{c: _jsonable(v) for c, v in zip(columns, row)} for row in fetched[: input.max_rows]]
        return self.Output(columns=columns, rows=rows, rowcount=len(rows), truncated=len(fetched) > input.max_rows)

    def _create_table(self, backend: Backend, owner: str, input: Input) -> Output:
        name = _identifier(input.table, "table")
        if not input.columns:
            raise AgentError("create_table needs at least one column", field="columns")
        seen: set[str] = set()
        for i, col in enumerate(input.columns):
            _identifier(col.name, f"columns.{i}.name")
            if col.name.lower() in seen:
                raise AgentError(f"column {col.name!r} appears twice", field=f"columns.{i}.name")
            seen.add(col.name.lower())
        table = sa.Table(
            name,
            sa.MetaData(),
            *[
                sa.Column(
                    c.name,
                    _TYPES[c.type],
                    primary_key=c.primary_key,
                    nullable=c.nullable and not c.primary_key,
                    unique=c.unique,
                )
                for c in input.columns
            ],
        )
        try:
            with backend.engine_for(owner).begin() as conn:
                if sa.inspect(conn).has_table(name):
                    raise AgentError(f"table {name!r} already exists", field="table", status_code=409)
                table.create(conn)
        except (DBAPIError, SQLAlchemyError) as exc:
            raise _db_error(exc, "columns") from None
        return self.Output(tables=[_describe(table)])

    def _insert(self, backend: Backend, owner: str, input: Input) -> Output:
        name = _identifier(input.table, "table")
        if not input.rows:
            raise AgentError("insert needs at least one row", field="rows")
        if len(input.rows) > MAX_INSERT_ROWS:
            raise AgentError(f"at most {MAX_INSERT_ROWS} rows per insert", field="rows")
        try:
            with backend.engine_for(owner).begin() as conn:
                try:
                    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                except NoSuchTableError:
                    raise NotFound(f"table {name!r} does not exist", field="table") from None
                known = set(table.columns.keys())
                for i, row in enumerate(input.rows):
                    unknown = set(row) - known
                    if unknown:
                        raise AgentError(
                            f"row {i} has unknown columns {sorted(unknown)}; table {name!r} has {sorted(known)}",
                            field=f"rows.{i}",
                        )
                # rows naming the same columns go together, so omitted columns keep their defaults;
                # all groups share one transaction: every row lands or none does
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for row in input.rows:
                    groups.setdefault(tuple(sorted(row)), []).append(row)
                for rows in groups.values():
                    conn.execute(table.insert(), rows)
        except (DBAPIError, SQLAlchemyError) as exc:
            raise _db_error(exc, "rows") from None
        return self.Output(rowcount=len(input.rows))

    def _schema(self, backend: Backend, owner: str, input: Input) -> Output:
        with backend.engine_for(owner).connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn)
        return self.Output(tables=[_describe(t) for t in sorted(meta.tables.values(), key=lambda t: t.name)])


def _describe(table: sa.Table) -> TableInfo:
    return TableInfo(
        name=table.name,
        columns=[
            ColumnInfo(name=c.name, type=str(c.type).lower(), nullable=bool(c.nullable), primary_key=c.primary_key)
            for c in table.columns
        ],
    )
