"""The API process runs its background loops from one list, started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil

from fastapi.routing import _DefaultLifespan
from fastapi.testclient import TestClient

from cxmpute.settings import get_settings
from web import background, routers
from web.app import create_app


def test_no_router_runs_anything_of_its_own():
    for mod in pkgutil.iter_modules(routers.__path__):
        router = getattr(importlib.import_module(f"web.routers.{mod.name}"), "router", None)
        if router is not None:
            assert isinstance(router.lifespan_context, _DefaultLifespan), f"web.routers.{mod.name} has a lifespan"


async def _loop_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("loop-")]


def test_the_lifespan_runs_every_background_service_and_stops_them():
    wanted = {f"loop-{s.name}" for s in background.services(get_settings())}
    assert {
        "loop-lease-sweeper",
        "loop-vm-meter",
        "loop-training-adopter",
        "loop-service-reconciler",
        "loop-code-session-reaper",
    } <= wanted
    with TestClient(create_app()) as client:
        assert client.portal is not None
        tasks = client.portal.call(_loop_tasks)
        assert {t.get_name() for t in tasks} == wanted
        assert client.get("/healthz").status_code == 200
    assert all(t.done() for t in tasks)  # stopped by the lifespan, not left to die with the loop
