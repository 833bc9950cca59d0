"""The Prefect server behind `cxmpute up` answers only the platform's own processes.

It listens on loopback, where user code on the same machine could reach it; it must therefore refuse every
caller without its basic-auth string — on every HTTP route and every websocket — so that nobody reads
another owner's runs, logs or variables or answers their approval steps through it. The platform itself
(API, run pool, logs and events) still runs workflows end to end through the authenticated path.
"""

from __future__ import annotations

import base64
import stat
import time
import uuid

import httpx
import pytest

from tests.support.prefect import AUTH_FILE, basic, platform_auth_string, websocket_outcome
from tests.support.workflows import APPROVAL

SOME_ID = str(uuid.uuid4())
# What a curious process on the machine would try first: other owners' runs, task runs, logs, deployments,
# variables and blocks, the server's settings, and writes that forge a run's outcome.
ROUTES = [
    ("POST", "/flow_runs/filter", {}),
    ("POST", "/flow_runs/count", {}),
    ("GET", f"/flow_runs/{SOME_ID}", None),
    ("POST", f"/flow_runs/{SOME_ID}/set_state", {"state": {"type": "COMPLETED"}, "force": True}),
    ("POST", f"/flow_runs/{SOME_ID}/resume", {"run_input": {"approved": True}}),
    ("POST", f"/flow_runs/{SOME_ID}/input", {"key": "approve-review", "value": "{}"}),
    ("DELETE", f"/flow_runs/{SOME_ID}", None),
    ("POST", "/task_runs/filter", {}),
    ("POST", "/deployments/filter", {}),
    ("POST", "/logs/filter", {}),
    ("POST", "/logs/", [{"level": 20, "message": "forged", "name": "x", "timestamp": "2030-01-01T00:00:00Z"}]),
    ("POST", "/variables/filter", {}),
    ("POST", "/variables/", {"name": "planted", "value": "x"}),
    ("POST", "/block_documents/filter", {}),
    ("POST", "/block_types/filter", {}),
    ("POST", "/work_pools/filter", {}),
    ("POST", "/flows/filter", {}),
    ("POST", "/events/filter", {}),
    ("POST", "/artifacts/filter", {}),
    ("GET", "/admin/settings", None),
    ("GET", "/version", None),
    ("GET", "/openapi.json", None),
]
WEBSOCKETS = [
    "/events/in",
    "/events/out",
    "/logs/out",
    "/task_runs/subscriptions/scheduled",
    "/work_pools/cxmpute-network/workers/connect",
]


def _ws(platform) -> str:
    return platform.prefect_url.replace("http://", "ws://", 1)


def test_every_prefect_route_refuses_a_caller_without_the_auth_string(platform):
    answered = {}
    for method, path, body in ROUTES:
        resp = httpx.request(method, platform.prefect_url + path, json=body, timeout=10)
        if resp.status_code != 401:
            answered[f"{method} {path}"] = (resp.status_code, resp.text[:200])
    assert answered == {}
    # the same request with the credential is answered: the refusals above are the credential's doing
    ok = httpx.post(
        platform.prefect_url + "/flow_runs/filter",
        json={},
        timeout=10,
        headers=basic(platform_auth_string(platform.home)),
    )
    assert ok.status_code == 200, ok.text


def test_wrong_credentials_are_refused(platform):
    right = platform_auth_string(platform.home)
    user, _, password = right.partition(":")
    b64 = base64.b64encode(right.encode()).decode()
    session = platform.new_user()[1]
    assert httpx.get(f"{platform.url}/v1/runs", headers=session, timeout=10).status_code == 200  # good for the API
    attempts = {
        "wrong password": basic(f"{user}:not-the-password-at-all"),
        "right password, other user": basic(f"admin:{password}"),
        "password alone": basic(password),
        "a prefix of it": basic(right[:-1]),
        "it with more after": basic(right + "x"),
        "it with a newline": basic(right + "\n"),
        "basic with nothing": {"Authorization": "Basic"},
        "empty user and password": basic(":"),
        "bearer of the string": {"Authorization": f"Bearer {right}"},
        "bearer of its encoding": {"Authorization": f"Bearer {b64}"},
        "basic, not encoded": {"Authorization": f"Basic {right}"},
        "lower-case scheme": {"Authorization": f"basic {b64}"},
        "the operator's token": platform.operator,
        "a user's session": session,
        "credentials in the URL": {},
    }
    answered = {}
    for name, headers in attempts.items():
        url = platform.prefect_url + "/flow_runs/filter"
        if name == "credentials in the URL":
            url = url.replace("http://", f"http://{user}:wrong@", 1)
        resp = httpx.post(url, json={}, headers=headers, timeout=10)
        if resp.status_code != 401:
            answered[name] = resp.status_code
    assert answered == {}


def test_every_websocket_refuses_a_client_without_the_auth_string(platform):
    right = platform_auth_string(platform.home)
    outcomes = {}
    for path in WEBSOCKETS:
        url = _ws(platform) + path
        outcomes[path] = (
            websocket_outcome(url, subprotocols=None, first=None),  # a client of the older, unauthenticated kind
            websocket_outcome(url, subprotocols=["prefect"], first={"type": "auth"}),
            websocket_outcome(url, subprotocols=["prefect"], first={"type": "auth", "token": "cxmpute:guess"}),
            websocket_outcome(url, subprotocols=["prefect"], first={"type": "auth", "token": right[:-1]}),
        )
    assert outcomes == {path: ("refused 403", "closed 1008", "closed 1008", "closed 1008") for path in WEBSOCKETS}
    # a forged state-change event (the way task-run states reach Prefect) in place of the handshake
    forged = {
        "occurred": "2030-01-01T00:00:00Z",
        "event": "prefect.task-run.Completed",
        "resource": {"prefect.resource.id": f"prefect.task-run.{SOME_ID}"},
        "id": str(uuid.uuid4()),
    }
    assert websocket_outcome(_ws(platform) + "/events/in", subprotocols=["prefect"], first=forged) == "closed 1008"
    # and with the credential the same sockets open: the platform's own clients get through
    assert {
        path: websocket_outcome(_ws(platform) + path, subprotocols=["prefect"], first={"type": "auth", "token": right})
        for path in WEBSOCKETS
    } == {path: "accepted" for path in WEBSOCKETS}


def test_the_open_probes_reveal_nothing(platform):
    assert httpx.get(platform.prefect_url + "/health", timeout=10).json() is True
    assert httpx.get(platform.prefect_url + "/ready", timeout=10).json() == {"message": "OK"}
    # only GET on exactly those paths is let through
    tricks = [
        ("POST", "/health"),
        ("GET", "/health/"),
        ("GET", "/HEALTH"),
        ("GET", "//flow_runs/filter"),
        ("GET", "/health/../version"),
        ("GET", "/health%2F..%2Fversion"),
        ("GET", "/ready/../admin/settings"),
    ]
    answered = {}
    base = httpx.URL(platform.prefect_url)
    for method, path in tricks:
        with httpx.Client(timeout=10) as client:  # sent as written: no client-side normalisation of the path
            request = client.build_request(method, base)
            request.url = base.copy_with(raw_path=base.raw_path + path.encode())
            resp = client.send(request)
        if resp.status_code != 401:
            answered[f"{method} {path}"] = (resp.status_code, resp.text[:100])
    assert answered == {}
    spoofed = httpx.post(
        platform.prefect_url + "/flow_runs/filter",
        json={},
        timeout=10,
        headers={"Host": "localhost/api/health", "X-Forwarded-Prefix": "/api/health"},
    )
    assert spoofed.status_code == 401


def test_prefect_listens_on_loopback_only(platform):
    port = int(platform.prefect_url.rsplit(":", 1)[1].split("/")[0])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append((table, local.rsplit(":", 1)[0]))
    assert listening == [("/proc/net/tcp", "0100007F")]  # 127.0.0.1, not 0.0.0.0 and not [::]
    with pytest.raises(httpx.ConnectError):  # another loopback address of this machine is not it either
        httpx.get(f"http://127.0.0.2:{port}/api/health", timeout=5)


def test_the_auth_string_is_a_private_random_file_of_the_data_dir(platform, open_platform, closed_platform):
    path = platform.home / AUTH_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, sep, password = path.read_text().strip().partition(":")
    assert user and sep and len(password) >= 32
    assert platform_auth_string(open_platform.home) != platform_auth_string(closed_platform.home)
    assert path.read_text().strip() not in platform.output()  # `cxmpute up` never prints it


def _poll_run(platform, run_id: str, auth: dict[str, str], until: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{platform.url}/v1/runs/{run_id}", headers=auth, timeout=30)
        assert view.status_code == 200, view.text
        if view.json()["state"] in until:
            return view.json()
        assert time.monotonic() < deadline, view.json()
        time.sleep(0.5)


def test_a_run_cannot_be_answered_through_prefect_and_completes_through_the_platform(platform):
    _, auth = platform.new_user()
    right = platform_auth_string(platform.home)
    started = httpx.post(f"{platform.url}/v1/runs", json={"document": APPROVAL, "inputs": {}}, headers=auth, timeout=60)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    waiting = _poll_run(platform, run_id, auth, {"waiting", "failed", "crashed", "completed"})
    assert waiting["state"] == "waiting" and waiting["waiting_for"] == ["review"]

    # Someone else on the machine, straight at Prefect, tries to answer the approval or forge the outcome.
    forged = [
        ("POST", f"/flow_runs/{run_id}/resume", {"run_input": {"approved": True, "value": "forged"}}),
        ("POST", f"/flow_runs/{run_id}/input", {"key": "approve-review", "value": '{"approved": true}'}),
        ("POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "COMPLETED"}, "force": True}),
        ("PATCH", f"/flow_runs/{run_id}", {"parameters": {"owner": "attacker"}}),
        ("GET", f"/flow_runs/{run_id}", None),
        ("DELETE", f"/flow_runs/{run_id}", None),
    ]
    for method, path, body in forged:
        resp = httpx.request(
            method, platform.prefect_url + path, json=body, timeout=10, headers=basic("cxmpute:" + "0" * 43)
        )
        assert resp.status_code == 401, (method, path, resp.status_code, resp.text)
    assert _poll_run(platform, run_id, auth, {"waiting"})["waiting_for"] == ["review"]

    answered = httpx.post(
        f"{platform.url}/v1/runs/{run_id}/resume",
        headers=auth,
        timeout=30,
        json={"approved": True, "value": "edited text", "comment": "ok"},
    )
    assert answered.status_code == 202, answered.text
    done = _poll_run(platform, run_id, auth, {"completed", "failed", "crashed", "cancelled"})
    assert done["state"] == "completed" and done["outputs"] == {"final": "edited text"}, done

    # Prefect's own record, read with the credential, is the one the platform reported
    record = httpx.get(f"{platform.prefect_url}/flow_runs/{done['flow_run_id']}", headers=basic(right), timeout=10)
    assert record.status_code == 200 and record.json()["state_type"] == "COMPLETED", record.text
    # logs travelled to Prefect over the authenticated path and come back in the run's event stream
    with httpx.stream(
        "GET", f"{platform.url}/v1/runs/{run_id}/events", params={"max_seconds": 30}, headers=auth, timeout=60
    ) as stream:
        events = stream.read().decode()
    assert "event: log" in events and "event: end" in events

    # the credential is in none of what the platform answered
    encoded = base64.b64encode(right.encode()).decode()
    bodies = {
        "run": httpx.get(f"{platform.url}/v1/runs/{run_id}", headers=auth, timeout=30).text,
        "runs": httpx.get(f"{platform.url}/v1/runs", headers=auth, timeout=30).text,
        "events": events,
        "openapi": httpx.get(f"{platform.url}/openapi.json", timeout=30).text,
        "healthz": httpx.get(f"{platform.url}/healthz", timeout=30).text,
    }
    password = right.partition(":")[2]
    assert {name for name, body in bodies.items() if password in body or encoded in body} == set()
