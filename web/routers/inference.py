"""The OpenAI-compatible inference gateway, provider endpoints and dedicated deployments.

Point any OpenAI client at ``<api>/v1`` with an API key (``Authorization: Bearer cxk_...``). Each request
is routed to a provider serving the model within the caller's price range and billed per second from the
caller's balance (see :mod:`compute.inference.gateway`). Price range per request: headers
``X-Cxmpute-Price-Max`` and ``X-Cxmpute-Price-Min`` in gwei per compute-unit-second; without them the
maximum is the platform's ``CXMPUTE_INFERENCE_PRICE_MAX_GWEI``.

The OpenAI routes (models, completions, embeddings, images, speech) answer errors in OpenAI's envelope
(:class:`web.errors.OpenAIRoute`); the platform's own routes here (endpoints, deployments, requests) keep
the platform's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor

from compute.errors import ComputeError
from compute.identity.tokens import Principal
from compute.inference import endpoints
from compute.inference.catalogue import ServedModel
from compute.inference.endpoints import EndpointIn, EndpointOut
from compute.inference.gateway import Gateway, RequestOut
from compute.inference.refusals import provider_refusal
from compute.inference.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    ModelCard,
    ModelList,
    SpeechRequest,
)
from compute.market import leases
from compute.market.demand import PriceRange
from compute.market.leases import LeaseOut
from web.deps import NetworkDep, SettingsDep, public, signed_in
from web.errors import OpenAIRoute


class ModelIdConvertor(Convertor[str]):
    """A served model's id, slashes allowed (``org/name``), but never the model archive's own routes
    (``/v1/models/archive...``, web.routers.models), which are mounted after these."""

    regex = r"(?!archive(?:/|$)).+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model_id", ModelIdConvertor())


router = APIRouter(prefix="/v1", tags=["inference"])
Handler = TypeVar("Handler", bound=Callable[..., Any])


def openai_route(method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
    """Mount an endpoint on ``router`` as an :class:`OpenAIRoute`. On ``router`` itself, not a router included
    in it, so the app's check that every route declares its access sees it."""

    def mount(endpoint: Handler) -> Handler:
        router.add_api_route(path, endpoint, methods=[method], route_class_override=OpenAIRoute, **options)
        return endpoint

    return mount


caller = signed_in("market")
provider = signed_in("provider")


async def price_range(
    settings: SettingsDep,
    x_cxmpute_price_max: int | None = Header(
        None, gt=0, le=10**12, description=("Highest ask, gwei per compute-unit-second, this request accepts")
    ),
    x_cxmpute_price_min: int = Header(0, ge=0, le=10**12, description="Lowest ask accepted"),
) -> PriceRange:
    high = x_cxmpute_price_max or settings.inference_price_max_gwei
    if high < x_cxmpute_price_min:
        raise ComputeError(
            "X-Cxmpute-Price-Max is below X-Cxmpute-Price-Min", field="x-cxmpute-price-max", status_code=422
        )
    return PriceRange(price_min_gwei=x_cxmpute_price_min, price_max_gwei=high)


async def gateway(settings: SettingsDep, net: NetworkDep) -> Gateway:
    return Gateway(net, settings)


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def _forward(
    gw: Gateway, principal: Principal, operation: str, path: str, body: BaseModel, price: PriceRange
) -> Response:
    payload = body.model_dump(exclude_unset=True, mode="json")
    payload["model"] = body.model
    upstream, content = await gw.forward(principal.address, operation, path, payload, price)
    if upstream.status_code >= 400:
        raise provider_refusal(upstream.status_code, content)
    if isinstance(content, bytes):
        return Response(
            content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "application/json"),
        )
    return StreamingResponse(
        content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


class GatewayModel(ModelCard):
    kind: str = Field("model", description="Not known to the gateway: see the provider's own /v1/models")
    created: int = Field(description="When a provision first published the model (Unix seconds)")
    price_gwei: int = Field(description="Lowest ask per compute-unit-second among the provisions serving it")
    providers: int = Field(description="Provisions serving it")


class GatewayModelList(ModelList):
    data: list[GatewayModel]


def _card(model: ServedModel) -> GatewayModel:
    return GatewayModel(id=model.id, created=model.created, price_gwei=model.price_gwei, providers=model.providers)


@openai_route(
    "GET",
    "/models",
    dependencies=[Depends(public)],
    summary="Models served on the network (OpenAI model list)",
    description="Every model a working inference server of an active provision serves, with the lowest "
    "ask for it (``price_gwei``) and how many provisions serve it (``providers``).",
)
def list_models(gw: GatewayDep) -> GatewayModelList:
    return GatewayModelList(data=[_card(m) for m in gw.models()])


@openai_route(
    "GET",
    "/models/{model:model_id}",
    dependencies=[Depends(public)],
    summary="One model served on the network (OpenAI model object)",
)
def retrieve_model(gw: GatewayDep, model: str) -> GatewayModel:
    return _card(gw.model(model))


@openai_route("POST", "/chat/completions", summary="Chat completion, routed to a provider (stream: true for SSE)")
async def chat_completions(
    gw: GatewayDep,
    body: ChatCompletionRequest,
    principal: Principal = Depends(caller),
    price: PriceRange = Depends(price_range),
) -> Response:
    return await _forward(gw, principal, "chat.completions", "/v1/chat/completions", body, price)


@openai_route("POST", "/completions", summary="Text completion, routed to a provider (stream: true for SSE)")
async def completions(
    gw: GatewayDep,
    body: CompletionRequest,
    principal: Principal = Depends(caller),
    price: PriceRange = Depends(price_range),
) -> Response:
    return await _forward(gw, principal, "completions", "/v1/completions", body, price)


@openai_route("POST", "/embeddings", summary="Embedding vectors, routed to a provider")
async def embeddings(
    gw: GatewayDep,
    body: EmbeddingRequest,
    principal: Principal = Depends(caller),
    price: PriceRange = Depends(price_range),
) -> Response:
    return await _forward(gw, principal, "embeddings", "/v1/embeddings", body, price)


@openai_route("POST", "/images/generations", summary="Images from a prompt, routed to a provider")
async def images(
    gw: GatewayDep,
    body: ImageRequest,
    principal: Principal = Depends(caller),
    price: PriceRange = Depends(price_range),
) -> Response:
    return await _forward(gw, principal, "images.generations", "/v1/images/generations", body, price)


@openai_route("POST", "/audio/speech", summary="Speech audio of a text, routed to a provider", response_class=Response)
async def speech(
    gw: GatewayDep,
    body: SpeechRequest,
    principal: Principal = Depends(caller),
    price: PriceRange = Depends(price_range),
) -> Response:
    return await _forward(gw, principal, "audio.speech", "/v1/audio/speech", body, price)


@router.get("/inference/requests", summary="This account's gateway requests: provider, tokens, seconds, cost")
def list_requests(
    gw: GatewayDep,
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(caller),
) -> list[RequestOut]:
    return gw.requests(principal.address, limit)


@router.put(
    "/inference/endpoints/{provision_id}",
    summary="Publish where a provision's inference server listens",
    description=endpoints.__doc__,
)
def register_endpoint(
    net: NetworkDep, provision_id: str, body: EndpointIn, principal: Principal = Depends(provider)
) -> EndpointOut:
    return endpoints.register(net, principal.address, provision_id, body)


@router.get("/inference/endpoints", summary="This provider's inference endpoints")
def list_endpoints(net: NetworkDep, principal: Principal = Depends(provider)) -> list[EndpointOut]:
    return endpoints.list_for(net, principal.address)


class DeploymentIn(PriceRange):
    model: str = Field(..., min_length=1, max_length=200, description="Model the deployment serves")
    term: Literal["hour", "month"] = Field("hour", description="Rental term, billed upfront")
    auto_renew: bool = Field(False, description="Renew at expiry while funds last")


@router.post(
    "/inference/deployments",
    status_code=201,
    summary="Rent a whole inference provision for yourself",
    description="Rents, for an hour or a month, all of the free capacity of the best provision serving the "
    "model, so no one else is matched to it. While the rental is active, this account's requests "
    "for that model go to it and are not billed per second.",
)
def deploy(gw: GatewayDep, body: DeploymentIn, principal: Principal = Depends(caller)) -> LeaseOut:
    return gw.deploy(
        principal.address,
        body.model,
        body.term,
        body,
        body.auto_renew,
    )


@router.get("/inference/deployments", summary="This account's active dedicated deployments")
def deployments(net: NetworkDep, principal: Principal = Depends(caller)) -> list[LeaseOut]:
    return [
        lease
        for lease in leases.list_for(net.store, principal.address, "active")
        if lease.kind == "inference" and lease.term != "seconds" and lease.user == principal.address
    ]
