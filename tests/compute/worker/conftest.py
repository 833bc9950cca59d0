"""A platform API process, provider worker processes and funded wallets, all real, for the worker-pool tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from compute.chain.client import vault_abi, web3_at
from compute.runtimes.scratch import prepare_root
from cxmpute.ports import free_port
from flows.server import client_env
from tests.support.signin import sign_in

HEARTBEAT_S = 1


@dataclass
class Platform:
    url: str
    home: Path
    env: dict[str, str]
    w3: Web3
    procs: list[subprocess.Popen] = field(default_factory=list)
    provider_keys: dict[str, str] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def fund(self, address: str, eth: int = 100) -> None:
        tx = self.w3.eth.send_transaction({"from": self.w3.eth.accounts[0], "to": address, "value": eth * 10**18})
        self.w3.eth.wait_for_transaction_receipt(tx)

    def sign_in(self, wallet) -> dict[str, str]:
        return sign_in(self.url, wallet)

    def user(self, deposit_eth: int = 10):
        """A new wallet with ``deposit_eth`` credited to its platform balance; returns (wallet, auth headers)."""
        wallet = Account.create()
        self.fund(wallet.address, deposit_eth + 1)
        chain = httpx.get(f"{self.url}/v1/account/chain").json()
        vault = self.w3.eth.contract(address=chain["vault_address"], abi=vault_abi())
        tx = vault.functions.deposit().build_transaction(
            {
                "from": wallet.address,
                "value": deposit_eth * 10**18,
                "chainId": chain["chain_id"],
                "nonce": self.w3.eth.get_transaction_count(wallet.address),
                "gasPrice": self.w3.eth.gas_price,
            }
        )
        sent = self.w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)
        self.w3.eth.wait_for_transaction_receipt(sent)
        auth = self.sign_in(wallet)
        resp = httpx.post(f"{self.url}/v1/account/deposits", json={"tx_hash": sent.to_0x_hex()}, headers=auth)
        assert resp.status_code == 200, resp.text
        return wallet, auth

    def start_provider(
        self, name: str, price: int, cpu: int, memory_mb: int, key: str | None = None, concurrency: int = 4
    ) -> tuple[subprocess.Popen, str]:
        """A `cxmpute provider start` process with its own data dir; returns it and its wallet key."""
        if key is None:
            key = Account.create().key.to_0x_hex()
            self.fund(Account.from_key(key).address, 10)
        home = self.home / f"provider-{name}-{len(self.procs)}"
        home.mkdir()
        env = {**self.env, "CXMPUTE_HOME": str(home), "CXMPUTE_WALLET_KEY": key, "PREFECT_HOME": str(home / "prefect")}
        log = open(home / "worker.log", "wb")
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
                str(price),
                "--cpu",
                str(cpu),
                "--memory-mb",
                str(memory_mb),
                "--stake-eth",
                "2",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.workers[Account.from_key(key).address] = proc
        self.provider_keys[Account.from_key(key).address] = key
        return proc, key

    def kill(self, address: str) -> None:
        """SIGKILL a provider's worker and everything it started (its sandboxes included)."""
        proc = self.workers.pop(address)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def wait_provisions(self, count: int, timeout: float = 90) -> list[dict]:
        """Wait until ``count`` agent provisions are active in the market."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = httpx.get(f"{self.url}/v1/market/provisions", params={"kind": "agent", "status": "active"})
            if found.status_code == 200:
                active = found.json()
                if len(active) >= count:
                    return active
            for proc in self.workers.values():
                assert proc.poll() is None, self.logs()
            time.sleep(0.2)
        raise AssertionError(f"providers did not come up:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("provider-*/worker.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for root in self.home.glob("provider-*/**/runtimes/*"):  # the killed ones' sandboxes left their mounts
            prepare_root(root)


@dataclass
class RestartablePlatform(Platform):
    """The platform, whose API process can crash and come back on the same address and data, and its run
    executors, which can be killed and started again."""

    port: int = 0
    api: subprocess.Popen | None = None
    executors: list[subprocess.Popen] = field(default_factory=list)

    def start_executor(self) -> subprocess.Popen:
        log = open(self.home / "executor.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxmpute.cli", "executor", "start"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.executors.append(proc)
        return proc

    def kill_executor(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.executors.remove(proc)

    def start_api(self) -> None:
        log = open(self.home / "api.log", "ab")
        self.api = subprocess.Popen(
            [sys.executable, "-m", "cxmpute.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(1200):
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.api.poll() is None, (self.home / "api.log").read_text()
            time.sleep(0.1)
        raise AssertionError("the platform API did not come up")

    def crash_api(self) -> None:
        os.killpg(self.api.pid, signal.SIGKILL)
        self.api.wait(10)


def operator_web3(url: str, data_dir: Path) -> Web3:
    """web3 on the platform's chain with the operator token of its data dir (funding is a development method)."""
    from cxmpute.settings import Settings

    return web3_at(url + "/v1/chain/rpc", Settings(home=data_dir, operator_token=None).resolved_operator_token())


@contextmanager
def running_platform(prefect_api: str, home: Path, **extra_env: str) -> Iterator[RestartablePlatform]:
    """The platform API as its own process (heartbeats every second, its own database and chain)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CXMPUTE_HOME": str(home / "platform"),
        **client_env(prefect_api),
        "CXMPUTE_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "CXMPUTE_API_URL": url,
        "CXMPUTE_ALLOW_ANONYMOUS": "false",
        **extra_env,
    }
    env.pop("CXMPUTE_DATABASE_URL", None)
    platform = RestartablePlatform(url=url, home=home, env=env, w3=operator_web3(url, home / "platform"), port=port)
    platform.start_api()
    platform.start_executor()
    try:
        yield platform
    finally:
        platform.stop()
        for proc in [platform.api, *platform.executors]:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in [platform.api, *platform.executors]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def pool_platform(prefect_api, tmp_path_factory):
    with running_platform(prefect_api, tmp_path_factory.mktemp("pool")) as platform:
        yield platform


@pytest.fixture(scope="module")
def chaos_platform(prefect_api, tmp_path_factory):
    """A platform whose executors' claims lapse after three seconds, so killed executors' runs move on fast."""
    with running_platform(prefect_api, tmp_path_factory.mktemp("chaos"), CXMPUTE_EXECUTOR_CLAIM_TTL_S="3") as platform:
        yield platform
