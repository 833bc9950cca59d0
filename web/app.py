"""The FastAPI application. Every module in web/routers exposing ``router`` is mounted."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute

from cxmpute import __version__
from cxmpute.db import migrate
from cxmpute.settings import apply_environment_defaults, get_settings
from web import background, errors, limits, mcp, routers
from web.deps import declared_access, public

# Swagger UI's and ReDoc's own files, shipped by a Python package (fastapi-offline: Swagger UI 5, which reads
# the OpenAPI 3.1 FastAPI writes): the docs pages work on a machine with no internet.
DOCS_FILES = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


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
        docs_url=None,  # served by _docs, from this machine
        redoc_url=None,
        lifespan=background.lifespan,
    )
    errors.install(app)
    docs = _docs(app.openapi_url)
    undeclared = _publish_access(docs)
    app.include_router(docs)
    for mod in sorted(pkgutil.iter_modules(routers.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"web.routers.{mod.name}")
        router = getattr(module, "router", None)
        if router is not None:
            undeclared += _publish_access(router)
            app.include_router(router)
    if undeclared:
        raise RuntimeError("routes must declare one access (web.deps): " + "; ".join(undeclared))
    mcp.install(app)  # authenticates on its own (web.mcp): an ASGI endpoint declares no FastAPI dependency
    limits.install(app)
    return app


def _docs(openapi_url: str) -> APIRouter:
    """Swagger UI at /docs and ReDoc at /redoc, their assets under /docs/assets/."""
    router = APIRouter(include_in_schema=False, dependencies=[Depends(public)])

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="Cxmpute API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title="Cxmpute API",
            with_google_fonts=False,
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
        )

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            return JSONResponse({"detail": f"no docs file {name!r}", "field": "name"}, status_code=404)
        return FileResponse(DOCS_FILES / name, headers={"Cache-Control": "public, max-age=86400"})

    return router


def _publish_access(router: APIRouter) -> list[str]:
    """Each route declares exactly one access (web.deps): publish it in OpenAPI and return the routes that
    declare none or several, so that no route is open by omission."""
    wrong = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        access = declared_access(route.dependant) | {
            a for d in router.dependencies if (a := getattr(d.dependency, "access", None))
        }
        if len(access) != 1:
            wrong.append(f"{','.join(sorted(route.methods))} {route.path}: {sorted(access) or 'none'}")
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-cxmpute-access": access.pop()}
    return wrong
