"""Container services: deploy an image as replicas on providers, read their state and logs, delete them, and
reach them through the gateway at ``/v1/services/{name}/proxy/{path}``. Replicas' providers report here."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from compute.services import gateway, registry, reports
from compute.services.registry import ServiceIn, ServiceOut
from compute.services.reports import Beat, BeatReply
from cxmpute.settings import Settings
from web.deps import SettingsDep, job_credential, owner_in

router = APIRouter(prefix="/v1/services", tags=["services"])
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.post(
    "",
    response_model=ServiceOut,
    status_code=201,
    summary="Deploy a container service",
    description="The image is the CID of a `docker save` tarball in your Stxrage files. Replicas run on "
    "providers' `container` provisions asking within [price_min_gwei, price_max_gwei], "
    "between min_replicas and max_replicas by the requests in flight; each replica holds a "
    "lease billed per second. 404 (image) for an image not in your storage, 409 "
    "(price_max_gwei) when no provision matches the price range.",
)
async def deploy(settings: SettingsDep, body: ServiceIn, owner: str = Depends(owner_in("workloads"))) -> ServiceOut:
    return await asyncio.to_thread(registry.deploy, settings, owner, body)


@router.get("", response_model=list[ServiceOut], summary="Your services, with their replicas")
async def list_services(settings: SettingsDep, owner: str = Depends(owner_in("workloads"))) -> list[ServiceOut]:
    return await asyncio.to_thread(registry.list_for, settings, owner)


@router.post(
    "/replicas/{replica_id}/beat",
    dependencies=[Depends(job_credential)],
    response_model=BeatReply,
    summary="A replica's report (its provider)",
    description="Authorized by the replica's token (header X-Replica-Token), which its job carries.",
)
async def replica_beat(
    settings: SettingsDep,
    replica_id: str,
    body: Beat,
    token: str = Header(..., alias="X-Replica-Token", max_length=128),
) -> BeatReply:
    return await asyncio.to_thread(reports.beat, settings, replica_id, token, body)


@router.get(
    "/replicas/{replica_id}/image",
    dependencies=[Depends(job_credential)],
    summary="A replica's image tarball (its provider)",
    response_class=StreamingResponse,
)
async def replica_image(
    settings: SettingsDep, replica_id: str, token: str = Header(..., alias="X-Replica-Token", max_length=128)
):
    size, chunks = await asyncio.to_thread(reports.image_stream, settings, replica_id, token)
    return StreamingResponse(chunks, media_type="application/x-tar", headers={"Content-Length": str(size)})


@router.get("/{name}", response_model=ServiceOut, summary="A service and its replicas")
async def get_service(settings: SettingsDep, name: str, owner: str = Depends(owner_in("workloads"))) -> ServiceOut:
    return await asyncio.to_thread(registry.get, settings, owner, name)


@router.delete(
    "/{name}",
    response_model=ServiceOut,
    summary="Delete a service",
    description="Its replicas stop; each one's lease is metered for the seconds it ran and ended, "
    "and the rest of its escrow is refunded.",
)
async def delete_service(settings: SettingsDep, name: str, owner: str = Depends(owner_in("workloads"))) -> ServiceOut:
    return await asyncio.to_thread(registry.delete, settings, owner, name)


@router.get("/{name}/logs", response_model=dict[str, str], summary="Each replica's newest output, by replica id")
async def service_logs(settings: SettingsDep, name: str, owner: str = Depends(owner_in("workloads"))) -> dict[str, str]:
    return await asyncio.to_thread(registry.logs, settings, owner, name)


async def proxy(
    settings: SettingsDep, name: str, path: str, request: Request, owner: str = Depends(owner_in("workloads"))
) -> StreamingResponse:
    return await forward(settings, owner, name, path, request)


async def forward(
    settings: Settings, owner: str, name: str, path: str, request: Request, public: bool = False
) -> StreamingResponse:
    """Stream ``request`` to a live replica of the owner's service ``name`` and its answer back."""
    service_id, replicas = await asyncio.to_thread(registry.live_replicas, settings, owner, name, public=public)
    body = await request.body()
    gateway.load.enter(service_id)
    try:
        upstream, replica = await gateway.open_upstream(
            service_id, replicas, request.method, path, request.url.query, request.headers.items(), body
        )
    except BaseException:
        gateway.load.leave(service_id)
        raise
    response = StreamingResponse(gateway.stream(service_id, upstream), status_code=upstream.status_code)
    # Raw pairs keep repeated headers as the replica sent them.
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in gateway.response_headers(upstream.headers.multi_items())
    ]
    response.raw_headers.append((b"x-cxmpute-replica", replica.id.encode()))
    return response


# One route per method, so each gets an OpenAPI operation of its own.
for _method in METHODS:
    router.add_api_route(
        "/{name}/proxy/{path:path}",
        proxy,
        methods=[_method],
        summary="Call the service",
        operation_id=f"proxy_service_{_method.lower()}",
        description="Streams the request to a live replica and its answer back; a replica that "
        "cannot be reached is skipped for the next. 503 when none answers. The "
        "answer is served sandboxed (`Content-Security-Policy: sandbox`, an opaque "
        "origin: it reads nothing of this origin's), without cookies or other "
        "origin-wide headers; your credentials and cookies never reach the replica.",
    )
