"""The FastAPI application. Every module in web/routers exposing ``router`` is mounted."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from cxmpute import __version__
from cxmpute.db import migrate
from cxmpute.settings import apply_environment_defaults, get_settings
from web import errors, limits, routers
from web.deps import declared_access


def create_app() -> FastAPI:
    settings = get_settings()
    apply_environment_defaults(settings)
    migrate()
    settings.resolved_operator_token()  # made now, so the operator's tools find it before any request
    app = FastAPI(
        title="Cxmpute API",
        version=__version__,
        description="Agents, workflows, the compute market and storage of the Cxmpute network.",
        dependencies=[Depends(limits.integer_params)],
    )
    errors.install(app)
    undeclared: list[str] = []
    for mod in sorted(pkgutil.iter_modules(routers.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"web.routers.{mod.name}")
        router = getattr(module, "router", None)
        if router is not None:
            undeclared += _publish_access(router)
            app.include_router(router)
    if undeclared:
        raise RuntimeError("routes must declare one access (web.deps): " + "; ".join(undeclared))
    limits.install(app)
    return app


def _publish_access(router: APIRouter) -> list[str]:
    """Each route declares exactly one access (web.deps): publish it in OpenAPI and return the routes that
    declare none or several, so that no route is open by omission."""
    wrong = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        access = declared_access(route.dependant) | {
            a for d in router.dependencies if (a := getattr(d.dependency, "access", None))}
        if len(access) != 1:
            wrong.append(f"{','.join(sorted(route.methods))} {route.path}: {sorted(access) or 'none'}")
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-cxmpute-access": access.pop()}
    return wrong
