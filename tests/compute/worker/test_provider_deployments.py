"""Deployments made by `cxmpute deploy` run on a provider: a real `cxmpute provider start --work-pool` process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from eth_account import Account
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from typer.testing import CliRunner

from flows.deploy_cli import app as deploy_app
from flows.deploy_cli import deployments_app

REPO = Path(__file__).resolve().parents[3]


def start_pool_provider(platform, name: str, pool: str) -> str:
    """A provider process that also serves ``pool``; returns the name its flow-run worker registers under."""
    wallet = Account.create()
    platform.fund(wallet.address, 10)
    home = platform.home / f"provider-{name}-{len(platform.procs)}"
    home.mkdir()
    env = {
        **platform.env,
        "CXMPUTE_HOME": str(home),
        "CXMPUTE_WALLET_KEY": wallet.key.to_0x_hex(),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxmpute.cli",
            "provider",
            "start",
            "--name",
            name,
            "--price-gwei",
            "1",
            "--stake-eth",
            "2",
            "--work-pool",
            pool,
        ],
        env=env,
        stdout=open(home / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    platform.procs.append(proc)
    platform.workers[wallet.address] = proc
    return f"{name}-{wallet.address[:10]}"


@pytest.mark.slow
def test_deployments_with_no_queue_run_on_a_provider_by_schedule_and_on_demand(pool_platform, tmp_path):
    pool = f"cx-deploy-{uuid.uuid4().hex[:6]}"
    doc = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    [hello] = [d for d in doc["deployments"] if d["name"] == "hello-hourly"]
    hello.update(
        name=f"hello-{pool}", schedules=[{"interval": 5, "parameters": {"name": "scheduled"}}], work_pool={"name": pool}
    )
    [diamond] = [d for d in doc["deployments"] if d["name"] == "diamond-nightly"]
    diamond.update(name=f"diamond-{pool}", schedules=[], work_pool={"name": pool})
    doc["deployments"] = [hello, diamond]
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(doc))

    worker = start_pool_provider(pool_platform, "deployer", pool)
    deployed = CliRunner().invoke(deploy_app, ["--prefect-file", str(tmp_path / "prefect.yaml"), "--all"])
    assert deployed.exit_code == 0, deployed.output
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(pool).type == "cxmpute"
        deployment = client.read_deployment_by_name(f"cxmpute-hello/hello-{pool}")
        deadline = time.time() + 180
        done = []
        while time.time() < deadline and not done:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            done = [r for r in runs if r.state and r.state.is_final()]
            time.sleep(1)
    assert done, pool_platform.logs()
    run = done[0]
    assert run.state.is_completed(), (run.state, pool_platform.logs())
    assert run.parameters == {"name": "scheduled", "times": 1}
    assert run.auto_scheduled and run.work_queue_name == "default"
    assert run.labels["prefect.worker.name"] == worker and run.labels["prefect.worker.type"] == "cxmpute"

    # Runs keep coming every 5 s: the newest may not carry its worker's label yet, so look until one does.
    for _ in range(30):
        listed = CliRunner().invoke(deployments_app, ["ls", "--json"])
        [row] = [r for r in json.loads(listed.stdout) if r["name"] == f"hello-{pool}"]
        if row["last_run"]["worker"]:
            break
        time.sleep(1)
    assert row["work_pool"] == pool and row["schedules"] == ["every 0:00:05"] and not row["paused"]
    assert row["last_run"]["worker"] == worker
    assert CliRunner().invoke(deployments_app, ["delete", f"hello-{pool}"]).exit_code == 0

    # A workflow template's deployment, run on demand and watched to its end.
    watched = CliRunner().invoke(
        deployments_app,
        ["run", f"diamond-{pool}", "--param", 'inputs={"topic": "watch"}', "--watch", "--timeout", "150"],
    )
    assert watched.exit_code == 0, (watched.output, pool_platform.logs())
    assert f"Completed on {worker}" in watched.stdout
