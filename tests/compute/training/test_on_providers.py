"""Training jobs run PyTorch DDP (gloo) across real provider worker processes matched by the market."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
import yaml
from eth_account import Account
from typer.testing import CliRunner

from compute.training import cli as training_cli
from compute.training.spec import TrainerConfig
from cxmpute.cli import app
from cxmpute.settings import get_settings

from .conftest import single_process_loss

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "worker_pool_fixtures", Path(__file__).parents[1] / "worker" / "conftest.py"
)
_fixtures = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_fixtures)


@pytest.fixture(scope="module")
def pool_platform(prefect_api, tmp_path_factory):
    with _fixtures.running_platform(
        prefect_api, tmp_path_factory.mktemp("training"), CXMPUTE_TRAINING_COORDINATOR_STALE_S=str(STALE_S)
    ) as platform:
        yield platform


TRAINER = TrainerConfig(hidden=[16], batch_size=16, lr=0.05, seed=3)
runner = CliRunner()
STALE_S = 3  # a crashed platform process's training jobs are adopted after this long


@pytest.fixture(scope="module")
def trainer_pool(pool_platform, dataset_csv):
    """Three one-core providers (a rank fills one) and a funded user whose storage holds the dataset: the user's
    client, the dataset's CID and the user's wallet key."""
    for n in range(3):
        pool_platform.start_provider(f"trainer{n}", price=2, cpu=1, memory_mb=2048)
    pool_platform.wait_provisions(3)
    wallet, auth = pool_platform.user()
    http = httpx.Client(base_url=pool_platform.url, headers=auth, timeout=60)
    stored = http.post("/v1/storage/files", params={"name": "data.csv"}, content=dataset_csv)
    assert stored.status_code == 201, stored.text
    yield http, stored.json()["file"]["cid"], wallet.key.to_0x_hex()
    http.close()


def _submit(http: httpx.Client, cid: str, steps: int, every: int) -> str:
    resp = http.post(
        "/v1/training/jobs",
        json={
            "dataset_cid": cid,
            "world_size": 2,
            "steps": steps,
            "checkpoint_every": every,
            "trainer": TRAINER.model_dump(),
            "resources": {"cpu": 1, "memory_mb": 1024},
            "price_max_gwei": 5,
            "timeout_s": 240,
            "collective_timeout_s": 30,
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["state"] in ("queued", "running")
    return resp.json()["id"]


def _wait(
    http: httpx.Client,
    job_id: str,
    logs,
    until=lambda job: job["state"] not in ("queued", "running"),
    timeout: float = 200,
) -> dict:
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        try:
            job = http.get(f"/v1/training/jobs/{job_id}").json()
        except httpx.TransportError:  # the platform is restarting
            time.sleep(0.5)
            continue
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"training job stuck: {job}\n{logs()}")


def test_two_ranks_on_two_providers_reach_the_single_process_loss(trainer_pool, pool_platform, dataset_csv):
    http, cid, _ = trainer_pool
    job_id = _submit(http, cid, steps=200, every=50)
    job = _wait(http, job_id, pool_platform.logs)
    assert job["state"] == "succeeded", f"{job}\n{pool_platform.logs()}"
    assert job["generation"] == 1 and job["step"] == 200
    assert job["final_loss"] == pytest.approx(single_process_loss(dataset_csv, TRAINER, 2, 200), rel=1e-4)

    ranks = job["ranks"]
    assert [(r["generation"], r["rank"], r["status"]) for r in ranks] == [(1, 0, "done"), (1, 1, "done")]
    assert len({r["provider"] for r in ranks}) == 2 and all(r["cost_gwei"] > 0 for r in ranks)
    assert [p["step"] for p in job["losses"]] == list(range(1, 201))
    assert job["losses"][-1]["loss"] < job["losses"][0]["loss"]

    assert [c["step"] for c in job["checkpoints"]] == [50, 100, 150]
    stored = http.get(f"/v1/storage/files/{job['last_checkpoint']['cid']}")
    assert stored.status_code == 200
    state = torch.load(io.BytesIO(stored.content), weights_only=True)
    assert state["step"] == 150 and set(state) >= {"model", "optimizer", "torch_rng"}

    listed = http.get("/v1/training/jobs").json()
    assert [j["id"] for j in listed][:1] == [job_id] and "losses" not in listed[0]
    window = http.get(f"/v1/training/jobs/{job_id}", params={"losses_from": 191, "losses_steps": 5}).json()
    assert [p["step"] for p in window["losses"]] == [191, 192, 193, 194, 195]


def test_the_cli_shows_a_job_and_renders_its_manifest(trainer_pool, pool_platform, monkeypatch):
    http, _, wallet_key = trainer_pool
    job = next(j for j in http.get("/v1/training/jobs").json() if j["state"] == "succeeded")
    monkeypatch.setattr(get_settings(), "api_url", pool_platform.url)
    monkeypatch.setattr(get_settings(), "wallet_key", wallet_key)
    monkeypatch.setattr(training_cli.console, "width", 160)
    shown = runner.invoke(app, ["training", "show", job["id"]])
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.output and "step 200: loss" in shown.output and "step 190:" not in shown.output
    assert f"checkpoint step 150 (generation 1): {job['last_checkpoint']['cid']}" in shown.output
    assert job["id"] in runner.invoke(app, ["training", "ls"]).output
    rendered = runner.invoke(app, ["training", "manifest", job["id"], "--image", "registry.local/cxmpute:2"])
    assert rendered.exit_code == 0, rendered.output
    doc = yaml.safe_load(rendered.stdout)
    assert doc["kind"] == "PyTorchJob" and doc["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    env = doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]
    assert json.loads(next(e["value"] for e in env if e["name"] == "CXMPUTE_RANK_JOB"))["resume_step"] == 150


def test_a_lost_provider_is_replaced_and_training_resumes_from_the_checkpoint(trainer_pool, pool_platform, dataset_csv):
    http, cid, _ = trainer_pool
    steps = 800
    job_id = _submit(http, cid, steps=steps, every=50)
    job = _wait(
        http,
        job_id,
        pool_platform.logs,
        until=lambda j: j["last_checkpoint"] or j["state"] not in ("queued", "running"),
    )
    assert job["state"] == "running" and job["generation"] == 1, job
    victim = next(r for r in job["ranks"] if r["rank"] == 1)
    pool_platform.kill(victim["provider"])

    job = _wait(http, job_id, pool_platform.logs)
    assert job["state"] == "succeeded", f"{job}\n{pool_platform.logs()}"
    assert job["generation"] == 2
    assert job["final_loss"] == pytest.approx(single_process_loss(dataset_csv, TRAINER, 2, steps), rel=1e-4)

    lost = next(r for r in job["ranks"] if r["job_id"] == victim["job_id"])
    assert lost["status"] == "abandoned"
    lease = http.get(f"/v1/leases/{lost['lease_id']}").json()
    assert lease["status"] == "ended" and lease["end_reason"] == "provider-lost"
    second = [r for r in job["ranks"] if r["generation"] == 2]
    assert [r["status"] for r in second] == ["done", "done"]
    assert victim["provider"] not in {r["provider"] for r in second}
    resumed_from = max(c["step"] for c in job["checkpoints"] if c["generation"] == 1)
    assert any(p["generation"] == 2 for p in job["losses"] if p["step"] == resumed_from + 1)
    assert all(p["generation"] == 1 for p in job["losses"] if p["step"] <= resumed_from)


def test_cancelling_stops_the_ranks_and_settles_their_leases(trainer_pool, pool_platform):
    http, cid, _ = trainer_pool
    job_id = _submit(http, cid, steps=100_000, every=1000)
    _wait(http, job_id, pool_platform.logs, until=lambda j: j["step"] > 0 or j["state"] not in ("queued", "running"))
    cancelled = http.delete(f"/v1/training/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    job = _wait(
        http,
        job_id,
        pool_platform.logs,
        until=lambda j: j["ranks"] and all(r["status"] not in ("queued", "running") for r in j["ranks"]),
    )
    assert job["state"] == "cancelled" and job["generation"] == 1 and job["final_loss"] is None
    assert [r["status"] for r in job["ranks"]] == ["failed", "failed"]
    assert all("generation ended" in r["error"] for r in job["ranks"]), job["ranks"]
    for r in job["ranks"]:
        lease = http.get(f"/v1/leases/{r['lease_id']}").json()
        assert lease["status"] == "ended" and lease["end_reason"] == "completed"
        assert lease["metered_s"] >= 1 and r["cost_gwei"] == lease["paid_gwei"]
    assert http.delete(f"/v1/training/jobs/{job_id}").json()["state"] == "cancelled"
    done = next(j for j in http.get("/v1/training/jobs").json() if j["state"] == "succeeded")
    again = http.delete(f"/v1/training/jobs/{done['id']}")
    assert again.status_code == 409 and again.json()["field"] == "job_id"


def test_a_job_survives_a_crash_of_the_platform_process(trainer_pool, pool_platform, dataset_csv):
    http, cid, _ = trainer_pool
    steps = 600
    job_id = _submit(http, cid, steps=steps, every=50)
    job = _wait(
        http,
        job_id,
        pool_platform.logs,
        until=lambda j: j["last_checkpoint"] or j["state"] not in ("queued", "running"),
    )
    assert job["state"] == "running" and job["generation"] == 1, job
    pool_platform.crash_api()
    pool_platform.start_api()

    job = _wait(http, job_id, pool_platform.logs)
    assert job["state"] == "succeeded", f"{job}\n{pool_platform.logs()}"
    assert job["generation"] >= 2
    assert job["final_loss"] == pytest.approx(single_process_loss(dataset_csv, TRAINER, 2, steps), rel=1e-4)
    orphaned = [r for r in job["ranks"] if r["generation"] == 1]
    assert len(orphaned) == 2 and all(r["status"] in ("abandoned", "failed") for r in orphaned), orphaned
    for r in orphaned:  # their capacity was given back, and the providers were not slashed
        lease = http.get(f"/v1/leases/{r['lease_id']}").json()
        assert lease["status"] == "ended" and lease["end_reason"] in ("expired", "completed"), lease
    assert [r["status"] for r in job["ranks"] if r["generation"] == job["generation"]] == ["done", "done"]


def test_ranks_go_to_different_providers_while_they_can(trainer_pool, pool_platform):
    """A cheaper provider with room for both ranks takes one of them: a lost provider then loses one rank."""
    http, cid, _ = trainer_pool
    _, key = pool_platform.start_provider("roomy", price=1, cpu=2, memory_mb=4096)
    roomy = Account.from_key(key).address
    deadline = time.time() + 90
    while roomy not in {p["provider"] for p in pool_platform.wait_provisions(1)}:
        assert time.time() < deadline, f"provider roomy published no provision:\n{pool_platform.logs()}"
        time.sleep(0.5)
    try:
        job = _wait(http, _submit(http, cid, steps=20, every=10), pool_platform.logs)
        assert job["state"] == "succeeded", f"{job}\n{pool_platform.logs()}"
        providers = [r["provider"] for r in job["ranks"]]
        assert len(set(providers)) == 2 and roomy in providers, job["ranks"]
    finally:
        pool_platform.kill(roomy)
