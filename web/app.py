"""The FastAPI application. Every module in web/routers exposing ``router`` is mounted."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI

from cxmpute import __version__
from cxmpute.db import migrate
from cxmpute.settings import apply_environment_defaults, get_settings
from web import errors, routers


def create_app() -> FastAPI:
    settings = get_settings()
    apply_environment_defaults(settings)
    migrate()
    app = FastAPI(
        title="Cxmpute API",
        version=__version__,
        description="Agents, workflows, the compute market and storage of the Cxmpute network.",
    )
    errors.install(app)
    for mod in sorted(pkgutil.iter_modules(routers.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"web.routers.{mod.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)
    return app
