"""Deployed functions and their versions. A deploy stores the package in Stxrage (identical packages are
stored once) and registers a new version, unless the newest one already has the same package and settings."""

from __future__ import annotations

import base64
import re
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from compute.functions import package
from compute.functions.models import FunctionVersion
from compute.functions.pool import FunctionSpec
from compute.models import utcnow
from cxmpute.db import migrate, session_scope
from cxmpute.errors import NotFound
from cxmpute.settings import Settings
from stxrage import open_storage

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class FunctionConfig(BaseModel):
    """How a function runs; every version carries its own."""

    handler: str = Field("handler:handler", max_length=200, description="module:function called with (event, context)")
    memory_mb: int = Field(256, ge=64, le=8192, description="Memory limit of the function's interpreter")
    timeout_s: float = Field(30.0, gt=0, le=900, description="Longest one invocation may run before it is stopped")
    concurrency: int = Field(4, ge=1, le=256, description="Invocations run at once; more wait in a queue")
    price_max_gwei: int | None = Field(
        None,
        gt=0,
        le=10**12,
        description="Run invocations on providers asking at "
        "most this per compute-unit-second; none: on the platform's own pool",
    )


class DeployIn(FunctionConfig):
    package_base64: str = Field(..., min_length=1, description="The package: a zip of the function's folder, base64")


class VersionOut(FunctionConfig):
    name: str
    owner: str
    version: int
    cid: str = Field(description="The package's content address in Stxrage")
    size: int = Field(description="Package size in bytes")
    created_at: datetime


def database(settings: Settings) -> str:
    """The platform database, migrated to the newest revision (functions tables included)."""
    url = settings.resolved_database_url
    migrate(url)
    return url


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise package.PackageError(
            "function names are lower-case letters, digits and '-' (up to 63), starting with a letter or digit",
            field="name",
        )
    return name


def _out(row: FunctionVersion) -> VersionOut:
    return VersionOut.model_validate({name: getattr(row, name) for name in VersionOut.model_fields})


def deploy(settings: Settings, owner: str, name: str, req: DeployIn) -> tuple[VersionOut, bool]:
    """Register ``req`` as ``name``'s next version; returns it and whether it is new."""
    check_name(name)
    try:
        data = base64.b64decode(req.package_base64, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII at all
        raise package.PackageError("package_base64 is not valid base64", field="package_base64") from None
    package.check(data, req.handler, settings.function_max_package_mb * 2**20)
    stored = open_storage(settings).put_bytes(data, owner=owner, name=f"{name}.zip")
    config = FunctionConfig.model_validate(req.model_dump())
    with session_scope(database(settings), immediate=True) as session:
        latest = session.scalar(
            select(FunctionVersion)
            .where(FunctionVersion.owner == owner, FunctionVersion.name == name)
            .order_by(FunctionVersion.version.desc())
            .limit(1)
        )
        if (
            latest is not None
            and latest.cid == stored.file.cid
            and FunctionConfig.model_validate({k: getattr(latest, k) for k in FunctionConfig.model_fields}) == config
        ):
            return _out(latest), False
        row = FunctionVersion(
            owner=owner,
            name=name,
            version=(latest.version + 1) if latest else 1,
            cid=stored.file.cid,
            size=len(data),
            created_at=utcnow(),
            **config.model_dump(),
        )
        session.add(row)
        session.flush()
        return _out(row), True


def version(settings: Settings, owner: str, name: str, number: int | None = None) -> VersionOut:
    """A version of one of ``owner``'s functions; the newest when ``number`` is None."""
    with session_scope(database(settings)) as session:
        stmt = select(FunctionVersion).where(FunctionVersion.owner == owner, FunctionVersion.name == name)
        stmt = (
            stmt.where(FunctionVersion.version == number)
            if number is not None
            else stmt.order_by(FunctionVersion.version.desc()).limit(1)
        )
        row = session.scalar(stmt)
        if row is None:
            what = f"version {number} of function {name!r}" if number is not None else f"function {name!r}"
            raise NotFound(f"no {what}; deploy it first", field="version" if number is not None else "name")
        return _out(row)


def versions(settings: Settings, owner: str, name: str) -> list[VersionOut]:
    with session_scope(database(settings)) as session:
        rows = session.scalars(
            select(FunctionVersion)
            .where(FunctionVersion.owner == owner, FunctionVersion.name == name)
            .order_by(FunctionVersion.version.desc())
        ).all()
        if not rows:
            raise NotFound(f"no function {name!r}", field="name")
        return [_out(row) for row in rows]


def latest_all(settings: Settings, owner: str) -> list[VersionOut]:
    """The newest version of each of ``owner``'s functions, by name."""
    with session_scope(database(settings)) as session:
        newest = (
            select(FunctionVersion.name, func.max(FunctionVersion.version).label("v"))
            .where(FunctionVersion.owner == owner)
            .group_by(FunctionVersion.name)
            .subquery()
        )
        rows = session.scalars(
            select(FunctionVersion)
            .join(newest, (FunctionVersion.name == newest.c.name) & (FunctionVersion.version == newest.c.v))
            .where(FunctionVersion.owner == owner)
            .order_by(FunctionVersion.name)
        ).all()
        return [_out(row) for row in rows]


def spec(v: VersionOut) -> FunctionSpec:
    return FunctionSpec(
        owner=v.owner,
        name=v.name,
        version=v.version,
        cid=v.cid,
        handler=v.handler,
        memory_mb=v.memory_mb,
        timeout_s=v.timeout_s,
        concurrency=v.concurrency,
    )


def package_bytes(settings: Settings, v: VersionOut) -> bytes:
    return open_storage(settings).get_bytes(v.cid, owner=v.owner)
