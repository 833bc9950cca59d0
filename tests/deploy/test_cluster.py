"""The docker-compose cluster, built from this checkout and brought up for real: PostgreSQL, the Prefect server
on it, the platform API, storage nodes and provider workers, each in its own container on one bridge network.
A workflow submitted from the host runs its nodes on different provider containers; a stored file lands on
the storage node containers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path

import httpx
import pytest
import yaml
from eth_account import Account
from web3 import Web3

from compute.chain.client import vault_abi, web3_at
from cxmpute.ports import free_port
from tests.support.signin import sign_in

# Building the images (cached after the first run) and starting containers counts against the first test.
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(2400)]

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
PROJECT = "cxmpute-cluster-test"
SERVICES = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
PROVIDERS = {name: svc for name, svc in SERVICES.items() if name.startswith("provider-")}
STORAGE_NODES = [name for name in SERVICES if name.startswith("storage-") and name != "storage-join"]


def compose_tool() -> list[str]:
    """The Compose v2 plugin where the Docker CLI has it, else Debian's docker-compose."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), "docker-compose is missing: bash deploy/system-deps.sh"
    return ["docker-compose"]


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.base = [*compose_tool(), "-p", PROJECT, "-f", str(COMPOSE_FILE)]
        self.url = f"http://127.0.0.1:{env['CXMPUTE_CLUSTER_API_PORT']}"
        self.w3 = Web3(Web3.HTTPProvider(self.url + "/v1/chain/rpc"))
        self.timings: dict[str, float] = {}
        # Nine containers on a small machine: an answer may take a while, which is not what is tested here.
        self.http = httpx.Client(timeout=60)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        self.timings[args[0]] = self.timings.get(args[0], 0) + time.monotonic() - started
        assert not check or done.returncode == 0, (
            f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
        return done

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout

    def exec(self, service: str, *argv: str) -> str:
        return self.compose("exec", "-T", service, *argv).stdout

    def wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"the API did not answer at {self.url}:\n{self.logs()}")

    def wait_provisions(self, count: int, timeout: float = 240) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = self.http.get(f"{self.url}/v1/market/provisions", params={"kind": "agent", "status": "active"})
                if found.status_code == 200 and len(found.json()) >= count:
                    return found.json()
            except httpx.TimeoutException:
                pass
            time.sleep(1)
        raise AssertionError(f"{count} providers did not publish provisions:\n{self.logs()}")

    @cached_property
    def operator_w3(self) -> Web3:
        """web3 with the operator credential of the API container's data dir: funding is a development method."""
        token = self.exec(
            "api",
            "python",
            "-c",
            "from cxmpute.settings import get_settings; print(get_settings().resolved_operator_token())",
        ).strip()
        return web3_at(self.url + "/v1/chain/rpc", token)

    def user(self, deposit_eth: int = 10) -> dict[str, str]:
        """A new wallet with ``deposit_eth`` deposited on the cluster's chain and credited; its auth headers."""
        wallet = Account.create()
        dev = self.operator_w3
        tx = dev.eth.send_transaction(
            {"from": dev.eth.accounts[0], "to": wallet.address, "value": (deposit_eth + 1) * 10**18}
        )
        self.w3.eth.wait_for_transaction_receipt(tx)
        chain = self.http.get(f"{self.url}/v1/account/chain").json()
        vault = self.w3.eth.contract(address=chain["vault_address"], abi=vault_abi())
        deposit = vault.functions.deposit().build_transaction(
            {
                "from": wallet.address,
                "value": deposit_eth * 10**18,
                "chainId": chain["chain_id"],
                "nonce": self.w3.eth.get_transaction_count(wallet.address),
                "gasPrice": self.w3.eth.gas_price,
            }
        )
        sent = self.w3.eth.send_raw_transaction(wallet.sign_transaction(deposit).raw_transaction)
        self.w3.eth.wait_for_transaction_receipt(sent)
        auth = sign_in(self.url, wallet, chain["chain_id"])
        credited = self.http.post(f"{self.url}/v1/account/deposits", json={"tx_hash": sent.to_0x_hex()}, headers=auth)
        assert credited.status_code == 200, credited.text
        return auth


@pytest.fixture(scope="module")
def cluster():
    assert subprocess.run(["docker", "info"], capture_output=True).returncode == 0, (
        "no Docker engine answers: bash deploy/docker-engine.sh"
    )
    # With the vfs storage driver (an engine whose filesystem has no overlay) each container starts from a full
    # copy of its image: Docker answers slowly and the cluster takes tens of GB.
    env = {
        **os.environ,
        "CXMPUTE_CLUSTER_API_PORT": str(free_port()),
        "CXMPUTE_CLUSTER_PREFECT_PORT": str(free_port()),
        "COMPOSE_HTTP_TIMEOUT": "900",
        "PYTHON": sys.executable,
    }
    cluster = Cluster(env)
    cluster.compose("down", "-v", "--remove-orphans")  # what an interrupted run left behind
    started = time.monotonic()
    built = subprocess.run(
        ["bash", str(ROOT / "deploy" / "build-images.sh")], env=env, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, f"{built.stdout[-3000:]}\n{built.stderr[-5000:]}"
    cluster.timings["build"] = time.monotonic() - started
    try:
        up = cluster.compose("up", "-d", "--no-build", timeout=900, check=False)
        assert up.returncode == 0, f"{up.stdout[-2000:]}\n{up.stderr[-3000:]}\n{cluster.logs()}\n{disk_usage()}"
        cluster.wait_healthy()
        cluster.wait_provisions(len(PROVIDERS))
        yield cluster
    finally:
        cluster.compose("down", "-v", "--remove-orphans", check=False)
        print("cluster timings (s):", {k: round(v, 1) for k, v in cluster.timings.items()})


def disk_usage() -> str:
    """What the engine holds and on which storage driver, for a cluster that could not be created."""
    driver = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], capture_output=True, text=True).stdout
    usage = subprocess.run(["docker", "system", "df"], capture_output=True, text=True).stdout
    return f"storage driver: {driver.strip()}\n{usage}"


def chain_doc() -> dict:
    """Three sandboxed code nodes of growing size, each fed by the previous one: no one provider fits all."""

    def node(nid: str, code: str, cpu: int, memory_mb: int) -> dict:
        return {
            "id": nid,
            "agent": "code.exec",
            "params": {"code": code},
            "options": {"resources": {"cpu": cpu, "memory_mb": memory_mb}},
        }

    return {
        "name": "cluster",
        "compute": {"price_max_gwei": 10},
        "nodes": [
            node("small", "result = 6 * 7", 1, 512),
            node("medium", "result = inputs['x'] + 1", 2, 2048),
            node("large", "result = inputs['x'] * 2", 4, 4096),
        ],
        "edges": [
            {"source": "small", "source_field": "result", "target": "medium", "target_field": "inputs.x"},
            {"source": "medium", "source_field": "result", "target": "large", "target_field": "inputs.x"},
        ],
        "outputs": {"value": {"node": "large", "field": "result"}},
    }


@pytest.fixture(scope="module")
def chain_run(cluster) -> tuple[dict, dict]:
    """The three-node workflow run to the end on the cluster: its view and its owner's auth headers."""
    auth = cluster.user()
    resp = cluster.http.post(f"{cluster.url}/v1/runs", json={"document": chain_doc(), "inputs": {}}, headers=auth)
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        view = cluster.http.get(f"{cluster.url}/v1/runs/{run_id}", headers=auth).json()
        if view["state"] in ("completed", "failed", "cancelled") and all(
            n["state"] in ("completed", "failed", "cached", "skipped", "crashed", "cancelled")
            for n in view["nodes"].values()
        ):
            break
        time.sleep(0.5)
    assert view["state"] == "completed", f"{view}\n{cluster.logs()}"
    return view, auth


def test_a_workflow_runs_its_nodes_on_different_provider_containers(cluster, chain_run):
    view, auth = chain_run
    addresses = {
        Account.from_key(cluster.env.get(_key_var(svc)) or _default_key(svc)).address: name
        for name, svc in PROVIDERS.items()
    }
    placed = {nid: addresses[view["nodes"][nid]["placement"]["provider"]] for nid in ("small", "medium", "large")}
    assert placed == {"small": "provider-cheap", "medium": "provider-mid", "large": "provider-big"}
    for nid in placed:  # each node's job was run, and reported, by that container's worker
        job = cluster.http.get(
            f"{cluster.url}/v1/work/{view['nodes'][nid]['placement']['job_id']}", headers=auth
        ).json()
        assert job["status"] == "done", job


def test_the_workflow_output_is_handed_from_container_to_container(chain_run):
    view, _ = chain_run
    for nid in ("small", "medium", "large"):  # the sandbox runs inside a provider container
        output = view["nodes"][nid]["output"]
        assert output["status"] == "ok", (nid, output.get("error"), output.get("stderr"))
    assert view["outputs"] == {"value": 86}  # (6*7 + 1) * 2


def test_stored_files_land_on_the_storage_node_containers(cluster):
    wanted = {f"http://{name}:8700" for name in STORAGE_NODES}
    # The node listing is the operator's: its credential lives in the API container's data directory.
    token = cluster.exec(
        "api",
        "python",
        "-c",
        "from cxmpute.settings import get_settings; print(get_settings().resolved_operator_token())",
    ).strip()
    operator = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 120
    while not wanted <= {
        n["url"] for n in cluster.http.get(f"{cluster.url}/v1/storage/nodes", headers=operator).json()
    }:
        assert time.monotonic() < deadline, f"storage-join did not register {wanted}:\n{cluster.logs()}"
        time.sleep(1)
    data = os.urandom(3 * 1024 * 1024)
    put = cluster.http.post(
        f"{cluster.url}/v1/storage/files",
        params={"name": "blob.bin", "policy": str(len(STORAGE_NODES))},
        content=data,
        timeout=60,
    )
    assert put.status_code == 201, put.text
    cid = put.json()["file"]["cid"]
    count = "import os; print(sum(len(files) for _, _, files in os.walk('/data/blocks')))"
    for name in STORAGE_NODES:
        assert int(cluster.exec(name, "python", "-c", count)) > 0, name
    got = cluster.http.get(f"{cluster.url}/v1/storage/files/{cid}", timeout=60)
    assert got.status_code == 200 and got.content == data


def _key_var(service: dict) -> str:
    """CHEAP_WALLET_KEY for a provider whose key is ``${CHEAP_WALLET_KEY:-0x...}``."""
    return service["environment"]["CXMPUTE_WALLET_KEY"].split(":-")[0].lstrip("${")


def _default_key(service: dict) -> str:
    return service["environment"]["CXMPUTE_WALLET_KEY"].split(":-")[1].rstrip("}")
