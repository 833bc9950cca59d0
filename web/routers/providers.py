"""Providers, their stakes and their provisions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header

from compute import provisions
from compute.identity.tokens import Principal
from compute.ledger import funds
from compute.providers import registry
from compute.provisions import ProvisionOut, ProvisionPatch, ProvisionSpec
from web.deps import NetworkDep, current_principal, job_credential, public, signed_in

router = APIRouter(prefix="/v1", tags=["providers"])
provider = signed_in("provider")


@router.post("/providers", summary="Register (or update) this account as a provider; body signed by its wallet")
def register(
    net: NetworkDep, body: registry.Registration, principal: Principal = Depends(provider)
) -> registry.ProviderOut:
    return registry.register(net.store, net.domain, principal.address, body)


@router.get("/providers/me", summary="This account's provider record")
def me(net: NetworkDep, principal: Principal = Depends(provider)) -> registry.ProviderOut:
    return registry.get(net.store, principal.address)


@router.get("/providers/{address}", dependencies=[Depends(public)], summary="A provider's public record")
def get_provider(net: NetworkDep, address: str) -> registry.ProviderOut:
    return registry.get(net.store, address)


@router.post(
    "/providers/heartbeat",
    dependencies=[Depends(job_credential)],
    summary="A signed heartbeat (the signature is the credential)",
)
def heartbeat(
    net: NetworkDep, body: registry.Heartbeat, authorization: str | None = Header(None)
) -> registry.ProviderOut:
    caller = current_principal(authorization).address if authorization else None
    return registry.heartbeat(net.store, net.domain, body, caller)


@router.post("/providers/stake", summary="Credit a stake from a Staked transaction on the vault")
def stake(net: NetworkDep, body: funds.ChainCredit, principal: Principal = Depends(provider)) -> funds.Credited:
    return funds.stake(net.store, net.chain, principal.address, body)


@router.post("/providers/unstake", summary="Return unlocked stake to the spendable balance")
def unstake(net: NetworkDep, body: funds.Unstake, principal: Principal = Depends(provider)) -> funds.Credited:
    return funds.unstake(net.store, principal.address, body)


@router.post("/provisions", status_code=201, summary="Publish a provision")
def create(net: NetworkDep, body: ProvisionSpec, principal: Principal = Depends(provider)) -> ProvisionOut:
    return provisions.create(net.store, principal.address, body)


@router.get("/provisions", summary="This provider's provisions")
def list_provisions(net: NetworkDep, principal: Principal = Depends(provider)) -> list[ProvisionOut]:
    return provisions.list_for(net.store, principal.address)


@router.get("/provisions/{provision_id}", dependencies=[Depends(public)], summary="A provision")
def get_provision(net: NetworkDep, provision_id: str) -> ProvisionOut:
    return provisions.get(net.store, provision_id)


@router.patch("/provisions/{provision_id}", summary="Change price, status, models, images or availability")
def patch(
    net: NetworkDep, provision_id: str, body: ProvisionPatch, principal: Principal = Depends(provider)
) -> ProvisionOut:
    return provisions.update(net.store, principal.address, provision_id, body)


@router.delete("/provisions/{provision_id}", summary="Retire a provision (running leases continue)")
def retire(net: NetworkDep, provision_id: str, principal: Principal = Depends(provider)) -> ProvisionOut:
    return provisions.retire(net.store, principal.address, provision_id)
