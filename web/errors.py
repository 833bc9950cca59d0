"""Errors as JSON naming the field or node; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxmpute.errors import CxmputeError
from flows.validate import WorkflowInvalid

log = logging.getLogger("cxmpute.web")


def install(app: FastAPI) -> None:
    @app.exception_handler(CxmputeError)
    async def _platform_error(_: Request, exc: CxmputeError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.body(), headers=exc.headers())

    @app.exception_handler(WorkflowInvalid)
    async def _workflow_invalid(_: Request, exc: WorkflowInvalid) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "detail": f"workflow has {len(exc.problems)} problem(s): {exc}",
            "errors": [p.model_dump() for p in exc.problems],
        })

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": summary, "errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})
