"""Serverless functions: deploy versions, invoke them (waiting, or in the background with a result URL),
and read each invocation's outcome, logs and metrics."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from compute.functions import invocations, registry
from compute.functions.invocations import FAILURES, InvocationOut, InvokeIn
from compute.functions.registry import DeployIn, VersionOut
from web.deps import SettingsDep, owner_in

router = APIRouter(prefix="/v1/functions", tags=["functions"])


class DeployOut(VersionOut):
    created: bool = Field(description="False when the newest version already had this package and settings")


class Accepted(BaseModel):
    invocation: InvocationOut
    result_url: str = Field(description="GET it for the invocation's status, then its result")


@router.put(
    "/{name}",
    response_model=DeployOut,
    summary="Deploy a function version",
    description="Stores the package (a base64 zip holding the handler module) content-addressed and "
    "registers it as the function's next version. Deploying the same package and settings "
    "again changes nothing (200); a new version answers 201.",
)
async def deploy(
    settings: SettingsDep, name: str, body: DeployIn, owner: str = Depends(owner_in("workloads"))
) -> JSONResponse:
    version, created = await asyncio.to_thread(registry.deploy, settings, owner, name, body)
    out = DeployOut(**version.model_dump(), created=created)
    return JSONResponse(status_code=201 if created else 200, content=out.model_dump(mode="json"))


@router.get(
    "",
    response_model=list[VersionOut],
    summary="Your functions",
    description="The newest version of each of your functions.",
)
async def list_functions(settings: SettingsDep, owner: str = Depends(owner_in("workloads"))) -> list[VersionOut]:
    return await asyncio.to_thread(registry.latest_all, settings, owner)


@router.get("/{name}", response_model=list[VersionOut], summary="A function's versions, newest first")
async def function_versions(
    settings: SettingsDep, name: str, owner: str = Depends(owner_in("workloads"))
) -> list[VersionOut]:
    return await asyncio.to_thread(registry.versions, settings, owner, name)


@router.post(
    "/{name}/invoke",
    response_model=InvocationOut,
    summary="Invoke a function",
    responses={
        202: {"model": Accepted, "description": "mode=async: the invocation was queued"},
        422: {"description": "The handler raised, or went past its memory limit"},
        504: {"description": "The handler ran past its timeout and was stopped"},
    },
    description="mode=sync waits for the outcome: 200 with the result, or the invocation's record "
    "with 422 (handler error, memory limit) or 504 (timeout) and a `detail` naming the limit. "
    "mode=async answers 202 at once with a result URL to poll.",
)
async def invoke(
    settings: SettingsDep,
    name: str,
    body: InvokeIn,
    request: Request,
    owner: str = Depends(owner_in("workloads")),
    mode: Literal["sync", "async"] = Query("sync", description="Wait for the result, or not"),
):
    if mode == "async":
        record = await invocations.submit(settings, owner, name, body)
        url = str(request.url_for("get_invocation", name=name, invocation_id=record.id))
        return JSONResponse(
            status_code=202,
            content=Accepted(invocation=record, result_url=url).model_dump(mode="json"),
            headers={"Location": url},
        )
    record = await invocations.invoke(settings, owner, name, body)
    if record.status == "ok":
        return record
    status, field = FAILURES.get(record.status, (record.error_status or 502, "name"))
    return JSONResponse(
        status_code=record.error_status or status,
        content={**record.model_dump(mode="json"), "detail": record.error, "field": field},
    )


@router.get(
    "/{name}/invocations",
    response_model=list[InvocationOut],
    summary="A function's invocations",
    description="Newest first, with each one's logs (stdout, stderr) and metrics (duration, cold or warm, "
    "memory, milliseconds billed).",
)
async def list_invocations(
    settings: SettingsDep,
    name: str,
    owner: str = Depends(owner_in("workloads")),
    limit: int = Query(50, ge=1, le=500, description="Page size"),
    offset: int = Query(0, ge=0, description="Invocations to skip"),
) -> list[InvocationOut]:
    return await asyncio.to_thread(invocations.list_for, settings, owner, name, limit, offset)


@router.get(
    "/{name}/invocations/{invocation_id}",
    response_model=InvocationOut,
    name="get_invocation",
    summary="One invocation: its status, then its result, logs and metrics",
)
async def get_invocation(
    settings: SettingsDep, name: str, invocation_id: str, owner: str = Depends(owner_in("workloads"))
) -> InvocationOut:
    return await asyncio.to_thread(invocations.get, settings, owner, name, invocation_id)
