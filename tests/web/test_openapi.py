"""Every endpoint is documented: a summary or description, an operation id of its own and the access it declares."""

from __future__ import annotations

import warnings

from compute.identity.tokens import OPERATOR, SCOPES
from web.app import create_app


def test_every_operation_is_documented_once():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns (and clients mis-generate) on a duplicate operation id
        spec = create_app().openapi()
    seen: dict[str, str] = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") or op.get("description"), f"{where} has no docs"
            assert op["operationId"] not in seen, f"{where} reuses the operation id of {seen[op['operationId']]}"
            seen[op["operationId"]] = where
    assert len(seen) > 100


def test_every_operation_publishes_its_access_and_nothing_of_the_edge():
    spec = create_app().openapi()
    scopes = {f"scope:{s}" for s in SCOPES} | {f"scope:{OPERATOR}", "public", "job"}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            assert op.get("x-cxmpute-access") in scopes, f"{where} declares {op.get('x-cxmpute-access')!r}"
            # The app-wide integer check reads the request itself: it adds no parameter of its own.
            assert not any(p["name"] == "request" for p in op.get("parameters", [])), where
