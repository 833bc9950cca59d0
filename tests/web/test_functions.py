"""Functions over real HTTP: deployed with the CLI, invoked sync and async, from a workflow, their limits
reported as clear errors, their invocations listed with logs and metrics."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from compute.functions import package

HANDLER = """
import os, time
calls = 0

def handler(event, context):
    global calls
    calls += 1
    event = event or {}
    print("got", event.get("echo"))
    started = time.time()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] * 2**20)
    return {"calls": calls, "echo": event.get("echo"), "started": started, "ended": time.time()}
"""


@pytest.fixture(autouse=True, scope="module")
def _no_warm_sandboxes_left():
    """Warm interpreters hold sandboxes; later tests (and the host) must not inherit them."""
    yield
    from compute.functions.pool import close_all_pools

    close_all_pools()


@pytest.fixture
def http(api_url):
    with httpx.Client(base_url=api_url, timeout=120) as client:
        yield client


def cli(api_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXMPUTE_API_URL": api_url, "COLUMNS": "200"}
    env.pop("CXMPUTE_WALLET_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", "functions", *args], env=env, capture_output=True, text=True, timeout=300
    )


def make_function(tmp_path: Path) -> Path:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    return folder


def deploy(http, tmp_path, **config) -> str:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    data = package.build(make_function(tmp_path))
    r = http.put(f"/v1/functions/{name}", json={"package_base64": base64.b64encode(data).decode(), **config})
    assert r.status_code == 201, r.text
    return name


def test_deployed_from_the_cli_and_invoked_over_http_cold_then_warm(api_url, http, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    folder = make_function(tmp_path)
    done = cli(api_url, "deploy", str(folder), "--name", name, "--timeout", "20", "--memory-mb", "128")
    assert done.returncode == 0, done.stderr
    assert f"deployed {name} version 1" in done.stdout
    again = cli(api_url, "deploy", str(folder), "--name", name, "--timeout", "20", "--memory-mb", "128")
    assert "unchanged" in again.stdout and "version 1" in again.stdout

    listed = cli(api_url, "ls")
    assert listed.returncode == 0 and name in listed.stdout

    cold = http.post(f"/v1/functions/{name}/invoke", json={"event": {"echo": "a"}})
    warm = http.post(f"/v1/functions/{name}/invoke", json={"event": {"echo": "b"}})
    assert cold.status_code == warm.status_code == 200, (cold.text, warm.text)
    cold, warm = cold.json(), warm.json()
    assert cold["cold"] is True and warm["cold"] is False
    assert (cold["result"]["calls"], warm["result"]["calls"]) == (1, 2)
    assert warm["result"]["echo"] == "b" and warm["stdout"] == "got b\n" and warm["where"] == "local"
    assert warm["billed_ms"] >= 1 and warm["billed_ms"] >= warm["duration_ms"] and warm["max_rss_mb"] > 0

    invoked = cli(api_url, "invoke", name, "--event", '{"echo": "c"}')
    assert invoked.returncode == 0, invoked.stderr
    assert '"echo": "c"' in invoked.stdout and "warm" in invoked.stderr

    queued = cli(api_url, "invoke", name, "--async", "--event", '{"echo": "d"}')
    assert queued.returncode == 0 and f"/v1/functions/{name}/invocations/" in queued.stdout
    for _ in range(600):
        if http.get(queued.stdout.strip()).json()["status"] == "ok":
            break
        time.sleep(0.05)

    logs = cli(api_url, "logs", name, "--limit", "2", "--offset", "1")
    assert logs.returncode == 0 and "stdout: got c" in logs.stdout and "stdout: got b" in logs.stdout
    assert "stdout: got a" not in logs.stdout  # the third newest is on the next page


def test_async_invocation_returns_a_result_url(http, tmp_path):
    name = deploy(http, tmp_path)
    r = http.post(f"/v1/functions/{name}/invoke", params={"mode": "async"}, json={"event": {"echo": "later"}})
    assert r.status_code == 202, r.text
    url = r.json()["result_url"]
    assert r.headers["location"] == url and r.json()["invocation"]["status"] in ("queued", "running")
    for _ in range(600):
        view = http.get(url).json()
        if view["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert view["status"] == "ok" and view["result"]["echo"] == "later" and view["mode"] == "async"


def test_a_function_past_its_timeout_is_a_504_naming_the_limit(http, tmp_path):
    name = deploy(http, tmp_path, timeout_s=1)
    r = http.post(f"/v1/functions/{name}/invoke", json={"event": {"sleep": 30, "echo": "slow"}})
    assert r.status_code == 504
    body = r.json()
    assert body["field"] == "timeout_s" and "timeout of 1 s" in body["detail"]
    assert body["status"] == "timeout" and body["stdout"] == "got slow\n"


def test_a_function_past_its_memory_limit_is_a_422_naming_the_limit(http, tmp_path):
    name = deploy(http, tmp_path, memory_mb=128)
    r = http.post(f"/v1/functions/{name}/invoke", json={"event": {"allocate_mb": 512}})
    assert r.status_code == 422
    assert r.json()["field"] == "memory_mb" and "memory limit of 128 MB" in r.json()["detail"]


def test_two_invocations_over_the_concurrency_limit_queue_and_both_succeed(api_url, tmp_path):
    with httpx.Client(base_url=api_url, timeout=120) as http:
        name = deploy(http, tmp_path, concurrency=1)

    def call(_: int) -> dict:
        with httpx.Client(base_url=api_url, timeout=120) as client:
            r = client.post(f"/v1/functions/{name}/invoke", json={"event": {"sleep": 0.5}})
            assert r.status_code == 200, r.text
            return r.json()

    with ThreadPoolExecutor(2) as pool:
        first, second = sorted(pool.map(call, range(2)), key=lambda r: r["result"]["started"])
    assert second["result"]["started"] >= first["result"]["ended"]
    assert second["queued_ms"] > 0 and second["result"]["calls"] == 2  # waited, then reused the interpreter


def test_invocations_are_listed_newest_first_with_pages(http, tmp_path):
    name = deploy(http, tmp_path)
    for i in range(3):
        assert http.post(f"/v1/functions/{name}/invoke", json={"event": {"echo": i}}).status_code == 200
    page = http.get(f"/v1/functions/{name}/invocations", params={"limit": 2}).json()
    rest = http.get(f"/v1/functions/{name}/invocations", params={"limit": 2, "offset": 2}).json()
    assert [i["result"]["echo"] for i in page + rest] == [2, 1, 0]
    assert rest[0]["cold"] is True and not page[0]["cold"]
    one = http.get(f"/v1/functions/{name}/invocations/{page[0]['id']}").json()
    assert one == page[0]


def test_a_workflow_node_invokes_a_function(http, tmp_path):
    name = deploy(http, tmp_path)
    doc = {
        "name": "fn-flow",
        "inputs": {"word": {"type": "string"}},
        "nodes": [
            {"id": "word", "agent": "io.input", "params": {"name": "word"}},
            {"id": "call", "agent": "fn.invoke", "params": {"name": name}},
        ],
        "edges": [{"source": "word", "source_field": "value", "target": "call", "target_field": "event.echo"}],
        "outputs": {"answer": {"node": "call", "field": "result"}},
    }
    started = http.post("/v1/runs", json={"document": doc, "inputs": {"word": "from a workflow"}})
    assert started.status_code == 202, started.text
    for _ in range(600):
        view = http.get(f"/v1/runs/{started.json()['id']}").json()
        if view["state"] in {"completed", "failed", "cancelled"}:
            break
        time.sleep(0.2)
    assert view["state"] == "completed", view
    assert view["outputs"]["answer"]["echo"] == "from a workflow"
    listed = http.get(f"/v1/functions/{name}/invocations").json()
    assert len(listed) == 1 and listed[0]["status"] == "ok"


def test_the_agent_reports_a_failing_function_as_a_clear_error(http, tmp_path):
    name = deploy(http, tmp_path, timeout_s=1)
    ok = http.post("/v1/agents/fn.invoke/invoke", json={"input": {"name": name, "event": {"echo": "direct"}}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["output"]["result"]["echo"] == "direct" and ok.json()["output"]["status"] == "ok"
    slow = http.post("/v1/agents/fn.invoke/invoke", json={"input": {"name": name, "event": {"sleep": 30}}})
    assert slow.status_code == 504 and "timeout of 1 s" in slow.json()["detail"]
    reported = http.post(
        "/v1/agents/fn.invoke/invoke", json={"input": {"name": name, "event": {"sleep": 30}, "fail_on_error": False}}
    )
    assert reported.status_code == 200 and reported.json()["output"]["status"] == "timeout"


@pytest.mark.parametrize(
    "path, body, status, field",
    [
        ("/v1/functions/Bad_Name", {"package_base64": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}, 422, "name"),
        ("/v1/functions/ok-name", {"package_base64": "not base64!"}, 422, "package_base64"),
        ("/v1/functions/ok-name", {"package_base64": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}, 422, "handler"),
        ("/v1/functions/ok-name", {"package_base64": "eA==", "memory_mb": 1}, 422, "memory_mb"),
    ],
)
def test_bad_deploys_are_4xx_naming_the_field(http, path, body, status, field):
    r = http.put(path, json=body)
    assert r.status_code == status, r.text
    found = r.json().get("field") or r.json()["errors"][0]["field"]
    assert found == field and r.json()["detail"]


def test_unknown_functions_and_invocations_are_404(http, tmp_path):
    r = http.post("/v1/functions/never-deployed/invoke", json={"event": 1})
    assert r.status_code == 404 and r.json()["field"] == "name"
    name = deploy(http, tmp_path)
    r = http.get(f"/v1/functions/{name}/invocations/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["field"] == "invocation_id"
    r = http.post(f"/v1/functions/{name}/invoke", json={"version": 9})
    assert r.status_code == 404 and r.json()["field"] == "version"
