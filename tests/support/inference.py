"""The inference network a test drives with OpenAI's clients: the platform API on uvicorn over a fresh
database, wallets on the in-process chain, providers with staked inference provisions, and their inference
servers started through the CLI (each registering its endpoint with its signed-in wallet)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from compute import receipts
from compute.chain import get_chain
from compute.network import Network, use_network
from compute.providers.hardware import HardwareProfile
from compute.store import Store
from cxmpute.ports import free_port
from tests.support.wallets import Wallet

if TYPE_CHECKING:
    from starlette.types import ASGIApp

STAKE_WEI = 2 * 10**18
SERVER_KEY = "provider-secret-key"  # the bearer key each inference server requires of the gateway


@contextmanager
def platform_api(db: Path) -> Iterator[tuple[httpx.Client, Network]]:
    """The platform API on uvicorn over a fresh network database at ``db``."""
    import uvicorn

    from web.app import create_app

    net = Network(Store(f"sqlite:///{db}"), get_chain())
    use_network(net)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http, net
    finally:
        server.should_exit = True
        thread.join(10)
        use_network(None)


def publish_provider(
    http: httpx.Client, net: Network, models: list[str], kind: str = "inference", price: int = 10, cpu: int = 4
) -> tuple[Wallet, dict[str, str], str]:
    """A new provider, registered and staked, with one provision of ``kind`` at ``price`` gwei per CU-second;
    returns its wallet, its sign-in headers and the provision's id."""
    wallet = Wallet.funded(net.chain)
    auth = wallet.login(http)
    hw = HardwareProfile(cpu_count=8, cpu_model="test", memory_mb=16384, disk_gb=100, benchmark_score=100.0)
    issued = int(time.time())
    typed = {"provider": wallet.address, "name": "p", "region": "local", "profileHash": hw.digest(), "issuedAt": issued}
    resp = http.post(
        "/v1/providers",
        headers=auth,
        json={
            "name": "p",
            "region": "local",
            "profile": hw.model_dump(),
            "issued_at": issued,
            "signature": receipts.sign(net.domain, "ProviderRegistration", typed, account=wallet.account),
        },
    )
    assert resp.status_code == 200, resp.text
    tx = wallet.call_vault("stake", STAKE_WEI)
    assert http.post("/v1/providers/stake", json={"tx_hash": tx}, headers=auth).status_code == 200
    resp = http.post(
        "/v1/provisions",
        headers=auth,
        json={"kind": kind, "resources": {"cpu": cpu, "memory_mb": 8192}, "price_gwei": price, "models": models},
    )
    assert resp.status_code == 201, resp.text
    return wallet, auth, resp.json()["id"]


def user_key(http: httpx.Client, net: Network, deposit_wei: int = 10**18) -> tuple[Wallet, dict[str, str], str]:
    """A user who deposited ``deposit_wei`` (none: nothing to pay with), its sign-in headers and an API key."""
    wallet = Wallet.funded(net.chain)
    auth = wallet.login(http)
    if deposit_wei:
        tx = wallet.call_vault("deposit", deposit_wei)
        assert http.post("/v1/account/deposits", json={"tx_hash": tx}, headers=auth).status_code == 200
    key = http.post("/v1/auth/keys", json={"name": "openai"}, headers=auth).json()["key"]
    return wallet, auth, key


@dataclass
class Server:
    """A provider's inference server process, and what restarting it takes."""

    proc: subprocess.Popen
    port: int
    wallet: Wallet
    home: Path

    def kill(self) -> None:
        """A crash: the process group dies at once, whatever it was serving."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


def serve(models: list[str], home: Path, wallet: Wallet, provision: str, api: str) -> Server:
    """``cxmpute inference serve`` for ``provision``; ``models`` are its ``--model``-style options, e.g.
    ``["--model", "tiny=DIR", "--embedding", "emb=DIR"]``."""
    port = free_port()
    env = {
        **os.environ,
        "CXMPUTE_HOME": str(home),
        "CXMPUTE_WALLET_KEY": wallet.account.key.hex(),
        "CXMPUTE_API_URL": api,
    }
    cmd = [
        sys.executable,
        "-m",
        "cxmpute.cli",
        "inference",
        "serve",
        *models,
        "--port",
        str(port),
        "--device",
        "cpu",
        "--provision",
        provision,
        "--api-key",
        SERVER_KEY,
    ]
    with (home / "server.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(proc, port, wallet, home)


def wait_served(http: httpx.Client, wanted: dict[str, int], servers: list[Server], wait: float = 120) -> None:
    """Until ``/v1/models`` lists each model with the number of provisions ``wanted`` of it."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        served = {m["id"]: m["providers"] for m in http.get("/v1/models").json()["data"]}
        if all(served.get(model) == count for model, count in wanted.items()):
            return
        for server in servers:
            assert server.proc.poll() is None, (server.home / "server.log").read_text(errors="replace")[-4000:]
        time.sleep(0.5)
    raise AssertionError(f"the inference servers did not register their endpoints: {http.get('/v1/models').text}")


def balances(http: httpx.Client, auth: dict[str, str]) -> dict[str, int]:
    """The signed-in account's ``user_gwei``, ``earnings_gwei`` and ``stake_gwei``."""
    resp = http.get("/v1/account/balance", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()


@contextmanager
def in_process_endpoint(http: httpx.Client, auth: dict[str, str], provision: str, app: ASGIApp) -> Iterator[str]:
    """An inference server's ASGI ``app`` on uvicorn in this process, registered with ``auth`` (its provider's
    sign-in) as ``provision``'s endpoint; yields its base URL. For what must share this process with the
    provider's server (e.g. a tiktoken stand-in that both a client and the server tokenize with), and for
    servers of other makes."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        url = f"http://127.0.0.1:{port}"
        resp = http.put(f"/v1/inference/endpoints/{provision}", headers=auth, json={"url": url, "api_key": SERVER_KEY})
        assert resp.status_code == 200, resp.text
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
