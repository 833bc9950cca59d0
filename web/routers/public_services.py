"""Public services: anyone reaches a service deployed with ``public: true`` through the gateway, without
signing in, at ``/v1/public/services/{owner}/{name}/{path}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from web.deps import SettingsDep, public
from web.routers.services import METHODS, forward

router = APIRouter(prefix="/v1/public/services", tags=["services"], dependencies=[Depends(public)])


async def call_public(settings: SettingsDep, owner: str, name: str, path: str, request: Request) -> StreamingResponse:
    return await forward(settings, owner, name, path, request, public=True)


# One route per method, so each gets an OpenAPI operation of its own.
for _method in METHODS:
    router.add_api_route(
        "/{owner}/{name}/{path:path}",
        call_public,
        methods=[_method],
        summary="Call a public service",
        operation_id=f"call_public_service_{_method.lower()}",
        description="Anyone may call a service deployed with `public: true`: the request is "
        "streamed to a live replica like the owner's own calls, and its answer served "
        "sandboxed in the same way. 404 (name) for a service that is not public, 503 "
        "when no replica answers.",
    )
