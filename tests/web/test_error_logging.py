"""A refused request is the caller's mistake: one INFO line naming status, method, route and field, never a
traceback; only a server error logs its traceback."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from cxmpute.errors import CxmputeError
from web import errors


class Price(BaseModel):
    gwei: int = Field(..., ge=1)


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    errors.install(app)

    @app.get("/things/{thing_id}")
    def missing(thing_id: str):
        raise CxmputeError(f"thing {thing_id} not found", field="thing_id", status_code=404)

    @app.get("/price")
    def price(gwei: int):
        return Price(gwei=gwei)  # a value the platform's own model refuses: a 422

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/things/abc", 404, "thing_id"),  # the platform's own error
        ("/price?gwei=0", 422, "gwei"),  # a platform model refusing the request's value
        ("/price?gwei=x", 422, "query.gwei"),  # the request's own validation
        ("/nowhere", 404, None),
    ],
)
def test_a_refused_request_is_one_info_line_without_traceback(client, caplog, path, status, field):
    caplog.set_level(logging.DEBUG, logger="cxmpute.web.errors")
    assert client.get(path).status_code == status
    records = [r for r in caplog.records if r.name == "cxmpute.web.errors"]
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.levelno == logging.INFO and record.exc_info is None and "Traceback" not in caplog.text
    line = record.getMessage()
    assert line.startswith(f"{status} GET ") and "\n" not in line, line
    assert field is None or field in line, line
    if path.startswith("/things"):
        assert "/things/{thing_id}" in line  # the route, not the caller's values


def test_a_server_error_logs_its_traceback(client, caplog):
    caplog.set_level(logging.DEBUG, logger="cxmpute.web.errors")
    assert client.get("/boom").status_code == 500
    [record] = [r for r in caplog.records if r.name == "cxmpute.web.errors"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "RuntimeError: a bug" in caplog.text
