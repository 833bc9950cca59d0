"""The market: quotes, requests (matches become leases), metering and ending leases."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from compute import provisions
from compute.identity.tokens import Principal
from compute.market import leases, pricing
from compute.market.demand import MatchRequest
from compute.market.leases import EndIn, LeaseOut, UsageIn, UsageOut
from compute.market.matching import Quote
from compute.provisions import ProvisionOut
from cxmpute.logging import get_logger
from web.deps import NetworkDep, public, signed_in

router = APIRouter(prefix="/v1", tags=["market"])
market = signed_in("market")
log = get_logger(__name__)


@router.post(
    "/market/quote",
    dependencies=[Depends(public)],
    summary="The provision a request would get and its price, or why none matches",
    description=pricing.__doc__,
)
def quote(net: NetworkDep, body: MatchRequest) -> Quote:
    return net.market.quote(body)


@router.get(
    "/market/provisions",
    dependencies=[Depends(public)],
    summary="The offer book: published provisions, cheapest first",
    description="Public; filter by `kind` (vm, container, function, inference, agent) and `status` "
    "(active, paused, down, retired); paginate with `limit` and `offset`.",
)
def offers(
    net: NetworkDep,
    kind: str | None = Query(None, pattern="^(vm|container|function|inference|agent)$"),
    status: str | None = Query(None, pattern="^(active|paused|down|retired)$"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> list[ProvisionOut]:
    return provisions.browse(net.store, kind, status, limit, offset)


@router.post("/market/requests", status_code=201, summary="Match a request and open a lease (escrow held)")
def request(net: NetworkDep, body: MatchRequest, principal: Principal = Depends(market)) -> LeaseOut:
    return net.market.place(principal.address, body)


@router.get("/leases", summary="Leases this account is user or provider of")
def list_leases(
    net: NetworkDep,
    status: str | None = Query(None, pattern="^(active|ended)$"),
    principal: Principal = Depends(market),
) -> list[LeaseOut]:
    return leases.list_for(net.store, principal.address, status)


@router.get("/leases/{lease_id}", summary="A lease (visible to its user and provider)")
def get_lease(net: NetworkDep, lease_id: str, principal: Principal = Depends(market)) -> LeaseOut:
    return leases.get(net.store, lease_id, principal.address)


@router.post("/leases/{lease_id}/usage", summary="Provider reports metered seconds; settled once per key")
def usage(
    net: NetworkDep, lease_id: str, body: UsageIn, principal: Principal = Depends(signed_in("provider"))
) -> UsageOut:
    return leases.meter(net.store, net.domain, lease_id, body, principal.address)


@router.post("/leases/{lease_id}/end", summary="End a lease: user cancels; provider completes or reports loss")
def end(net: NetworkDep, lease_id: str, body: EndIn, principal: Principal = Depends(market)) -> LeaseOut:
    return net.market.end(lease_id, body.reason, principal.address)


@router.post("/leases/{lease_id}/renew", summary="Renew a rental for another term, billed upfront")
def renew(net: NetworkDep, lease_id: str, principal: Principal = Depends(market)) -> LeaseOut:
    return leases.renew(net.store, net.domain, lease_id, principal.address)
