"""Errors as JSON naming the field or node; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxmpute.errors import CxmputeError
from flows.validate import WorkflowInvalid
from web.limits import BODY, RequestRefused, out_of_range, oversized_int

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

    @app.exception_handler(RequestRefused)
    async def _refused(_: Request, exc: RequestRefused) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.body())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)

    # A request's values passed on to one of the platform's own models (a match request built from a
    # deployment's price range, say) that it refuses: the caller's input, answered as the request's own.
    @app.exception_handler(ValidationError)
    async def _model_refused(request: Request, exc: ValidationError) -> JSONResponse:
        log.warning("%s %s: a value the platform's %s model refuses", request.method, request.url.path,
                    exc.title, exc_info=exc)
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": summary, "field": errors[0]["field"] or "body",
                                                      "errors": errors})

    # The edge (web.limits) refuses the integers it can see out of the stored range; these catch the rest —
    # a number sent as a string to an integer field, one past what a date or a duration can hold — which
    # fail where the value is used, the database's own refusal (DataError) included.
    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
        log.info("%s %s: a value out of range: %s", request.method, request.url.path, exc)
        field = (next((k for k, v in request.query_params.multi_items() if out_of_range(v)), None)
                 or oversized_int(request.scope.get(BODY, b""), as_text=True) or "body")
        return JSONResponse(status_code=422, content={
            "detail": f"{field}: a value is out of the range this operation accepts", "field": field})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})
