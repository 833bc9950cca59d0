"""Every endpoint is documented: a summary or description, and an operation id of its own."""

from __future__ import annotations

import warnings

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
