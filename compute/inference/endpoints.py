"""Where each inference provision's server listens, registered by its provider, suspended by the gateway.

Registering checks that the server answers and serves every model its provision lists. When the gateway
finds a server failing it suspends the endpoint and pauses the provision, so matching stops sending it
work; registering again (the provider's server does so periodically) reactivates both.
"""

from __future__ import annotations

from datetime import datetime

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import select

from compute import provisions
from compute.errors import ComputeError
from compute.inference.models import Endpoint
from compute.models import Provision, utcnow
from compute.network import Network
from compute.provisions import ProvisionPatch
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound
from cxmpute.http import client


class EndpointIn(BaseModel):
    url: str = Field(
        ...,
        pattern=r"^https?://[^\s/]+(:\d+)?(/[^\s]*)?$",
        max_length=500,
        description="Base URL of the provision's inference server, e.g. http://10.0.0.5:8100",
    )
    api_key: str | None = Field(
        None,
        min_length=8,
        max_length=200,
        description="Bearer key the server requires (its --api-key); sent only by the gateway",
    )


class EndpointOut(BaseModel):
    provision_id: str
    provider: str
    url: str
    models: list[str] = Field(description="Models the server reported serving when registered")
    suspended: bool = Field(description="The gateway found it failing; register again to resume")
    failures: int
    registered_at: datetime


def _out(row: Endpoint) -> EndpointOut:
    return EndpointOut(
        provision_id=row.provision_id,
        provider=row.provider,
        url=row.url,
        models=list(row.models),
        suspended=row.suspended,
        failures=row.failures,
        registered_at=row.registered_at,
    )


def probe(url: str, api_key: str | None) -> list[str]:
    """The model ids the server at ``url`` serves."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with client(url, timeout=10.0, headers=headers) as http:
            resp = http.get("/v1/models")
    except httpx.HTTPError as exc:
        raise Conflict(f"the inference server at {url} does not answer: {exc}", field="url") from exc
    if resp.status_code != 200:
        raise Conflict(f"the inference server at {url} answered /v1/models with {resp.status_code}", field="url")
    try:
        return [m["id"] for m in resp.json()["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise Conflict(f"{url}/v1/models is not an OpenAI model list", field="url") from exc


def register(net: Network, provider: str, provision_id: str, body: EndpointIn) -> EndpointOut:
    with net.store.read() as session:
        provision = session.get(Provision, provision_id)
        if provision is None:
            raise NotFound(f"no provision {provision_id}", field="provision_id")
        if provision.provider != provider:
            raise Forbidden("provision belongs to another provider", field="provision_id")
        if provision.kind != "inference":
            raise ComputeError(f"provision is a {provision.kind} provision, not inference", field="provision_id")
        listed = list(provision.models)
    served = probe(body.url, body.api_key)
    missing = [m for m in listed if m not in served]
    if missing:
        raise Conflict(
            f"the server at {body.url} does not serve {', '.join(missing)} (it serves "
            f"{', '.join(served) or 'nothing'})",
            field="url",
        )
    with net.store.write() as session:
        row = session.get(Endpoint, provision_id, with_for_update=True)
        resume = row is not None and row.paused_provision
        if row is None:
            row = Endpoint(provision_id=provision_id, provider=provider, failures=0)
            session.add(row)
        row.url, row.api_key, row.models = body.url.rstrip("/"), body.api_key, served
        row.suspended, row.paused_provision, row.registered_at = False, False, utcnow()
        session.flush()
        result = _out(row)
    if resume:
        _set_status(net, provider, provision_id, "active")
    return result


def suspend(net: Network, provision_id: str) -> None:
    """Take a failing server out of matching until its provider registers it again."""
    with net.store.write() as session:
        row = session.get(Endpoint, provision_id, with_for_update=True)
        provision = session.get(Provision, provision_id)
        pause = provision is not None and provision.status == "active"
        if row is not None:
            row.failures += 1
            row.suspended = True
            row.paused_provision = row.paused_provision or pause
        provider = provision.provider if provision is not None else None
    if pause and provider:
        _set_status(net, provider, provision_id, "paused")


def _set_status(net: Network, provider: str, provision_id: str, status: str) -> None:
    try:
        provisions.update(net.store, provider, provision_id, ProvisionPatch(status=status))
    except CxmputeError:  # retired meanwhile: nothing to pause or resume
        pass


def list_for(net: Network, provider: str) -> list[EndpointOut]:
    with net.store.read() as session:
        rows = session.scalars(
            select(Endpoint).where(Endpoint.provider == provider).order_by(Endpoint.registered_at)
        ).all()
        return [_out(row) for row in rows]


def available_models(net: Network) -> dict[str, tuple[int, int]]:
    """Each model a working endpoint serves for an active provision: (lowest ask, provisions serving it)."""
    with net.store.read() as session:
        rows = session.execute(
            select(Provision.models, Provision.price_gwei)
            .join(Endpoint, Endpoint.provision_id == Provision.id)
            .where(Provision.kind == "inference", Provision.status == "active", Endpoint.suspended.is_(False))
        ).all()
    found: dict[str, tuple[int, int]] = {}
    for models, price in rows:
        for model in models:
            low, count = found.get(model, (price, 0))
            found[model] = (min(low, price), count + 1)
    return found
