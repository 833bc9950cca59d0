"""`/healthz` says the API process answers; `/readyz` says whether the platform can serve: the database, the
Prefect server, live executors and storage, each checked at once within a bound, 503 naming the one that is
not ready, and nothing in the answer an outsider could use (no address, credential or error text). A read of a
run while the Prefect server is away is a 503 naming it, logged as one WARNING line."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from cxmpute.db import session_scope
from cxmpute.ports import free_port
from cxmpute.settings import get_settings
from flows.server import auth_string
from web import errors
from web.app import create_app
from web.routers import health

NAMES = ["database", "prefect", "executors", "storage"]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


async def _fine(_settings) -> str:
    return "fine"


async def _refuses(_settings) -> str:
    raise health.NotReady("refused")


async def _hangs(_settings) -> str:
    await asyncio.sleep(60)
    return "never"


async def _leaks(_settings) -> str:
    raise ConnectionError("could not reach postgresql://cxmpute:hunter2@db.internal:5432/cxmpute")


def test_a_running_platform_is_ready_and_each_check_says_what_it_found(api_url):
    resp = httpx.get(f"{api_url}/readyz", timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready" and list(body["checks"]) == NAMES
    for check in body["checks"].values():
        assert check["ok"] and check["detail"] and 0 <= check["latency_ms"] < 2000, body
    assert "live" in body["checks"]["executors"]["detail"]  # the session's executor thread beats
    assert resp.headers["cache-control"] == "no-store"
    assert "127.0.0.1" not in resp.text and auth_string() not in resp.text  # Prefect's address, its credential
    assert httpx.get(f"{api_url}/healthz", timeout=10).json()["status"] == "ok"


@pytest.mark.parametrize("failing", NAMES)
def test_one_failing_check_is_a_503_naming_it(client, monkeypatch, failing):
    for name in NAMES:
        monkeypatch.setitem(health.CHECKS, name, _refuses if name == failing else _fine)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not-ready"
    assert {n for n, c in body["checks"].items() if not c["ok"]} == {failing}
    assert body["checks"][failing]["detail"] == "refused"


def test_checks_run_at_once_and_a_hanging_one_is_cut_off_at_its_bound(client, monkeypatch):
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 1.0)
    for name in NAMES:
        monkeypatch.setitem(health.CHECKS, name, _hangs if name in {"database", "prefect"} else _fine)
    started = time.perf_counter()
    resp = client.get("/readyz")
    took = time.perf_counter() - started
    assert resp.status_code == 503 and 1.0 <= took < 1.9, took  # two hangs side by side, not one after the other
    checks = resp.json()["checks"]
    assert checks["database"] == {
        "ok": False,
        "detail": "no answer within 1 s",
        "latency_ms": checks["database"]["latency_ms"],
    }
    assert not checks["prefect"]["ok"] and checks["storage"]["ok"]


def test_readiness_publishes_no_address_credential_or_error_text(client, monkeypatch):
    for name in NAMES:
        monkeypatch.setitem(health.CHECKS, name, _leaks if name == "database" else _fine)
    body = client.get("/readyz").text
    assert "failed (ConnectionError)" in body
    settings = get_settings()
    secrets = [
        "hunter2",
        "postgresql://",
        "db.internal",
        auth_string(),
        settings.resolved_operator_token(),
        settings.resolved_secret_key(),
        str(settings.data_dir),
    ]
    assert not [s for s in secrets if s in body], body


async def test_an_unreachable_prefect_server_is_named_without_its_address_or_credentials():
    port = free_port()  # nothing listens there
    with temporary_settings({PREFECT_API_URL: f"http://operator:hunter2@127.0.0.1:{port}/api"}):
        started = time.perf_counter()
        check = await health._run(health._prefect, get_settings())
    assert time.perf_counter() - started < health.PREFECT_TIMEOUT_S + 0.5
    assert not check.ok and check.detail == "the Prefect server is unreachable (ConnectError)", check
    with temporary_settings({PREFECT_API_URL: None}):
        check = await health._run(health._prefect, get_settings())
    assert not check.ok and "PREFECT_API_URL" in check.detail


async def test_an_unreachable_database_is_named_by_its_error_type_alone(monkeypatch):
    url = f"postgresql+psycopg://cxmpute:hunter2@127.0.0.1:{free_port()}/cxmpute"
    monkeypatch.setattr(health, "session_scope", lambda: session_scope(url))
    check = await health._run(health._database, get_settings())
    assert not check.ok and check.detail == "failed (OperationalError)", check


async def test_no_live_executor_is_not_ready(monkeypatch):
    monkeypatch.setattr(health, "live_executors", lambda session: [])
    check = await health._run(health._executors, get_settings())
    assert not check.ok and "no live executor" in check.detail and "cxmpute executor start" in check.detail


def test_readyz_is_public_and_documented_with_its_model(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/readyz"]["get"]
    assert op["x-cxmpute-access"] == "public"
    for status in ("200", "503"):
        assert op["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Readiness"
        }


# ---- a read while the Prefect server is away ---------------------------------------------------------------


@pytest.fixture
def away(prefect_api):
    """An app whose routes fail as Prefect's client does when its server is gone, and as other calls fail."""
    app = FastAPI()
    errors.install(app)
    dead = httpx.Request("GET", f"{prefect_api}/flow_runs/123")

    @app.get("/refused")
    def refused():
        raise httpx.ConnectError("[Errno 111] Connection refused", request=dead)

    @app.get("/timed-out")
    def timed_out():
        raise httpx.ReadTimeout("timed out", request=dead)

    @app.get("/wrapped")
    def wrapped():
        try:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=dead)
        except httpx.ConnectError as exc:
            raise RuntimeError(f"Failed to reach API at {prefect_api}") from exc

    @app.get("/elsewhere")
    def elsewhere():
        raise httpx.ConnectError("refused", request=httpx.Request("GET", "http://127.0.0.1:9/v1/models"))

    @app.get("/bug")
    def bug():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/refused", "/timed-out", "/wrapped"])
def test_a_read_while_prefect_is_away_is_a_503_naming_it_in_one_warning_line(away, caplog, path):
    caplog.set_level(logging.DEBUG, logger="cxmpute.web.errors")
    resp = away.get(path)
    assert resp.status_code == 503, resp.text
    assert resp.json()["field"] == "PREFECT_API_URL" and "Prefect server" in resp.json()["detail"]
    assert resp.headers["Retry-After"] == str(errors.PREFECT_RETRY_AFTER_S)
    assert "127.0.0.1" not in resp.text
    records = [r for r in caplog.records if r.name == "cxmpute.web.errors"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert "503 GET" in records[0].getMessage() and "Traceback" not in caplog.text


@pytest.mark.parametrize("path", ["/elsewhere", "/bug"])
def test_other_failures_stay_internal_errors(away, path):
    resp = away.get(path)
    assert resp.status_code == 500 and "PREFECT" not in resp.text, resp.text
