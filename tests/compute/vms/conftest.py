"""A platform API process that runs VMs under software emulation, provider worker processes (one whose
machine has no QEMU), funded users and the tiny guest, all real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from fixtures import tiny_guest

from cxmpute.ports import free_port
from tests.compute.worker.conftest import Platform, operator_web3

PROVIDER_PRICE = 10


@dataclass
class VmPlatform(Platform):
    providers: dict[str, str] = field(default_factory=dict)  # name -> address

    def user(self, deposit_eth: int = 1):
        return super().user(deposit_eth)

    def start_provider(self, name: str, **env: str) -> str:
        """A `cxmpute provider start` process with its own data dir and extra settings; returns its address."""
        account = Account.create()
        self.fund(account.address, 10)
        home = self.home / f"provider-{name}"
        home.mkdir()
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
                str(PROVIDER_PRICE),
                "--cpu",
                "4",
                "--memory-mb",
                "4096",
                "--disk-gb",
                "8",
                "--stake-eth",
                "2",
            ],
            env={
                **self.env,
                "CXMPUTE_HOME": str(home),
                "CXMPUTE_WALLET_KEY": account.key.to_0x_hex(),
                "PREFECT_HOME": str(home / "prefect"),
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.providers[name] = account.address
        return account.address

    def wait_joined(self, timeout: float = 120) -> None:
        """Until every provider has published its provisions (it says it serves them once its join is done)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            logs = [(self.home / f"provider-{name}" / "worker.log").read_text() for name in self.providers]
            if all("serving provision" in log for log in logs):
                return
            for proc in self.procs:
                assert proc.poll() is None, self.logs()
            time.sleep(0.2)
        raise AssertionError(f"providers did not come up:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}"
            for p in sorted(self.home.rglob("*.log"))
            if p.name in ("worker.log", "api.log")
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def vm_guest() -> tuple[bytes, bytes]:
    return tiny_guest.build()


@pytest.fixture(scope="module")
def vm_platform(prefect_api, tmp_path_factory):
    """The platform API as its own process, running VMs under TCG, with two providers: one with QEMU, one without."""
    home = tmp_path_factory.mktemp("vms")
    port = free_port()
    env = {
        **os.environ,
        "CXMPUTE_HOME": str(home / "platform"),
        "PREFECT_API_URL": prefect_api,
        "CXMPUTE_API_URL": f"http://127.0.0.1:{port}",
        "CXMPUTE_ALLOW_ANONYMOUS": "false",
        "CXMPUTE_VM_ACCEL": "tcg",
        "CXMPUTE_VM_STOP_GRACE_S": "0.5",
    }
    env.pop("CXMPUTE_DATABASE_URL", None)
    (home / "platform").mkdir()
    log = open(home / "platform" / "api.log", "wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "cxmpute.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert api.poll() is None, (home / "platform" / "api.log").read_text()
        time.sleep(0.1)
    platform = VmPlatform(url=url, home=home, env=env, w3=operator_web3(url, home / "platform"))
    platform.start_provider("with-qemu")
    platform.start_provider("without-qemu", CXMPUTE_QEMU_BINARY=str(home / "no-such-qemu"))
    try:
        platform.wait_joined()
        yield platform
    finally:
        platform.stop()
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
        _kill_machines(home / "platform" / "vms")


def _kill_machines(root: Path) -> None:
    """Machines a failed test left running (QEMU is daemonized, outside the API's process group)."""
    for pidfile in root.glob("*/qemu.pid"):
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
