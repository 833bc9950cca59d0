"""What the platform API process runs besides answering requests: one list, started by the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from compute.inference.upstream import close_provider_client
from compute.ledger.funds import slash_storage
from compute.market.sweeper import LeaseSweeper
from compute.runtimes.reaper import SessionReaper
from compute.services import gateway
from compute.services.reconciler import Reconciler
from compute.store import get_store
from compute.training.coordinator import OrphanAdopter
from compute.vms.metering import VmMeter
from cxmpute import loops
from cxmpute.loops import LoopService
from cxmpute.settings import Settings, get_settings
from stxrage.upkeep import StorageUpkeep


def services(settings: Settings) -> list[LoopService]:
    """Every background loop of the API process, in the order they start (and stop in reverse)."""
    services = [LeaseSweeper(), VmMeter(settings), OrphanAdopter(settings), Reconciler(settings), SessionReaper()]
    if settings.storage_upkeep_s > 0:
        ledger = get_store(settings.resolved_database_url)
        services.append(StorageUpkeep(settings, on_evicted=lambda nodes: slash_storage(ledger, nodes)))
    return services


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Run the background services while the API serves; when it stops, stop them and close the clients that
    keep connections open between requests (the inference gateway's to providers, the services proxy's)."""
    try:
        async with loops.running(services(get_settings())):
            yield
    finally:
        await close_provider_client()
        await gateway.close()
