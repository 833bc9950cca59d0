"""Scopes on every route, read from the real platform's own `/openapi.json` (anonymous use off): each
operation declares its access; a credential without a route's scope is refused (403) before the route does
anything, one with it is not; operator routes refuse every account, even a session holding every scope."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import flows
from compute.identity.tokens import SCOPES
from flows.spec import load_document
from tests.support.up import UpPlatform

ACCESS = {"public", "job", "scope:operator", *(f"scope:{s}" for s in SCOPES)}


@pytest.fixture(scope="module")
def operations(closed_platform: UpPlatform) -> list[tuple[str, str, dict]]:
    spec = httpx.get(f"{closed_platform.url}/openapi.json", timeout=30).json()
    return [(method.upper(), path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


@pytest.fixture(scope="module")
def owner(closed_platform: UpPlatform) -> dict[str, str]:
    return closed_platform.new_user()[1]


@pytest.fixture(scope="module")
def only(closed_platform: UpPlatform, owner) -> dict[str, dict[str, str]]:
    """For each scope, the headers of an API key of ``owner`` holding that scope alone."""
    return {scope: closed_platform.api_key(owner, [scope]) for scope in SCOPES}


def _call(platform: UpPlatform, method: str, path: str, op: dict, headers: dict[str, str]) -> httpx.Response:
    """A syntactically valid request: path parameters filled, required query parameters given, body ``{}``."""
    url = re.sub(r"\{[^}]+\}", "dummy", path)
    params = {
        p["name"]: _sample(p.get("schema", {}))
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    body = {"json": {}} if "application/json" in op.get("requestBody", {}).get("content", {}) else {}
    return httpx.request(method, f"{platform.url}{url}", params=params, headers=headers, timeout=60, **body)


def _sample(schema: dict) -> object:
    return 1 if schema.get("type") == "integer" else "dummy"


def _other(scope: str) -> str:
    return "market" if scope != "market" else "storage"


def test_every_operation_declares_its_access(operations):
    undeclared = [f"{m} {p}" for m, p, op in operations if op.get("x-cxmpute-access") not in ACCESS]
    assert not undeclared, undeclared
    assert len(operations) > 100


def _field(body: dict) -> str | None:
    """The field an error names: the platform's own shape, or OpenAI's on the OpenAI-compatible routes."""
    return body["error"].get("param") if isinstance(body.get("error"), dict) else body.get("field")


def test_a_key_without_the_scope_is_refused_on_every_route(closed_platform, operations, only):
    wrong = []
    for method, path, op in operations:
        access = op["x-cxmpute-access"]
        if not access.startswith("scope:") or access == "scope:operator":
            continue
        scope = access.removeprefix("scope:")
        r = _call(closed_platform, method, path, op, only[_other(scope)])
        if r.status_code != 403 or method != "HEAD" and _field(r.json()) != "authorization":
            wrong.append(f"{method} {path} ({scope}): {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_a_key_with_the_scope_is_let_through_on_every_route(closed_platform, operations, only):
    wrong = []
    for method, path, op in operations:
        access = op["x-cxmpute-access"]
        if not access.startswith("scope:") or access == "scope:operator":
            continue
        r = _call(closed_platform, method, path, op, only[access.removeprefix("scope:")])
        if r.status_code == 403 or r.status_code >= 500:
            wrong.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_operator_routes_refuse_every_account(closed_platform, operations, owner):
    every_scope = closed_platform.api_key(owner, list(SCOPES))
    routes = [(m, p, op) for m, p, op in operations if op["x-cxmpute-access"] == "scope:operator"]
    assert routes
    for method, path, op in routes:
        for who, headers in (("session", owner), ("every-scope key", every_scope)):
            r = _call(closed_platform, method, path, op, headers)
            assert r.status_code == 403, f"{method} {path} as {who}: {r.status_code} {r.text[:200]}"
        r = _call(closed_platform, method, path, op, closed_platform.operator)
        assert r.status_code != 403 and r.status_code < 500, f"{method} {path} as operator: {r.text[:200]}"


def test_a_market_key_cannot_touch_the_owners_files_secrets_code_or_workflows(closed_platform, owner, only):
    url, market = closed_platform.url, only["market"]
    stored = httpx.post(
        f"{url}/v1/storage/files",
        params={"name": "diary.txt", "private": "true"},
        content=b"dear diary",
        headers=owner,
        timeout=60,
    )
    assert stored.status_code == 201, stored.text
    cid = stored.json()["file"]["cid"]
    document = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")
    saved = httpx.post(f"{url}/v1/workflows", json=document, headers=owner, timeout=60)
    assert saved.status_code == 201, saved.text
    workflow = saved.json()["id"]

    attempts = {
        "read a private file": httpx.get(f"{url}/v1/storage/files/{cid}", headers=market, timeout=60),
        "list files": httpx.get(f"{url}/v1/storage/files", headers=market, timeout=60),
        "write a secret": httpx.put(
            f"{url}/v1/secrets/OPENAI_KEY", json={"value": "sk-stolen-1234"}, headers=market, timeout=60
        ),
        "run code.exec": httpx.post(
            f"{url}/v1/agents/code.exec/invoke",
            json={"input": {"code": "print(open('/etc/passwd').read())"}},
            headers=market,
            timeout=60,
        ),
        "delete a workflow": httpx.delete(f"{url}/v1/workflows/{workflow}", headers=market, timeout=60),
        "issue itself a wider key": httpx.post(
            f"{url}/v1/auth/keys", json={"name": "x", "scopes": list(SCOPES)}, headers=market, timeout=60
        ),
    }
    for what, r in attempts.items():
        assert r.status_code == 403 and r.json()["field"] == "authorization", f"{what}: {r.status_code} {r.text}"
    assert httpx.get(f"{url}/v1/workflows/{workflow}", headers=owner, timeout=60).status_code == 200
    assert httpx.get(f"{url}/v1/secrets", headers=owner, timeout=60).json()["total"] == 0
    assert httpx.get(f"{url}/v1/storage/files/{cid}", headers=owner, timeout=60).content == b"dear diary"
