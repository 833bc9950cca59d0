"""The CLI as a user runs it: `python -m cxmpute.cli` in its own process, with its own data directory, against
the platform API served by uvicorn. The CLI's process has no chain of its own worth talking to: deposits and
stakes must reach the platform's chain, through the JSON-RPC the platform serves."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from compute.chain.client import web3_at
from cxmpute.ports import free_port
from cxmpute.settings import get_settings

GWEI = 10**9


@pytest.fixture(scope="module")
def platform(chain) -> str:
    """The platform API on a free loopback port (its chain: the embedded one, in this test process)."""
    import uvicorn

    from web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def fund(api_url: str, address: str, eth: int) -> None:
    """ETH from the embedded chain's development account, sent through the platform's RPC (an operator's
    privilege), exactly as `cxmpute up` funds its local wallet."""
    w3 = web3_at(f"{api_url}/v1/chain/rpc", get_settings().resolved_operator_token())
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": eth * 10**18})
    )


def cli_env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXMPUTE_")}
    return {**env, "CXMPUTE_HOME": str(home), "CXMPUTE_API_URL": api_url, **extra}


def cxmpute(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", *args], env=env, capture_output=True, text=True, check=False, timeout=180
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The refusal: the exit code, and a single line on stderr (no traceback anywhere)."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_deposit_and_stake_reach_the_platforms_chain(platform, tmp_path):
    # A user acting as this machine's local wallet (no CXMPUTE_WALLET_KEY): made in its data dir on first use.
    user = cli_env(tmp_path / "user", platform)
    me = json.loads(ok(cxmpute(user, "account", "whoami", "--json")))
    assert me["wallet"] == me["address"] == Account.from_key((tmp_path / "user" / "wallet.key").read_text()).address
    assert me["api_url"] == platform and me["chain_rpc_url"] == f"{platform}/v1/chain/rpc"
    assert me["wallet_eth"] == "0" and me["user_gwei"] == 0
    fund(platform, me["address"], 3)
    credited = json.loads(ok(cxmpute(user, "account", "deposit", "--eth", "1.5")))
    assert credited["amount_gwei"] == credited["balance_gwei"] == 3 * GWEI // 2
    me = json.loads(ok(cxmpute(user, "account", "whoami", "--json")))
    assert me["user_gwei"] == 3 * GWEI // 2 and 1.4 < float(me["wallet_eth"]) < 1.5  # gas paid on the chain

    # A provider with its wallet key in the environment.
    wallet = Account.create()
    fund(platform, wallet.address, 5)
    provider = cli_env(tmp_path / "provider", platform, CXMPUTE_WALLET_KEY=wallet.key.to_0x_hex())
    assert json.loads(ok(cxmpute(provider, "provider", "register", "--name", "rig")))["address"] == wallet.address
    assert json.loads(ok(cxmpute(provider, "provider", "stake", "--eth", "2")))["amount_gwei"] == 2 * GWEI
    assert json.loads(ok(cxmpute(provider, "account", "balance")))["stake_gwei"] == 2 * GWEI


def test_refusals_are_one_line_naming_the_field(platform, tmp_path):
    env = cli_env(tmp_path, platform)
    line = one_line(cxmpute(env, "account", "deposit", "--eth", "1"), 1)  # the local wallet holds nothing
    assert line.startswith("error (--eth):") and "cxmpute account whoami" in line and "cxmpute up" in line

    line = one_line(cxmpute(env, "account", "deposit", "--tx-hash", "0x" + "ab" * 32), 1)
    assert line.startswith("error (tx_hash):") and "not found" in line

    assert one_line(cxmpute(env, "account", "deposit"), 1).startswith("error (--eth): give exactly one")
    assert one_line(cxmpute(env, "account", "keys", "revoke", "0123456789abcdef"), 1).startswith("error (key_id):")


def test_an_unreachable_platform_or_chain_exits_2_with_one_line(platform, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    line = one_line(cxmpute(cli_env(tmp_path, down), "account", "balance"), 2)
    assert down in line and "cxmpute up" in line

    wallet = Account.create()
    env = cli_env(tmp_path, platform, CXMPUTE_WALLET_KEY=wallet.key.to_0x_hex(), CXMPUTE_CHAIN_RPC_URL=down)
    assert down in one_line(cxmpute(env, "account", "deposit", "--eth", "1"), 2)


def test_api_keys_round_trip_and_a_revoked_key_is_refused(platform, tmp_path):
    env = cli_env(tmp_path, platform)
    made = json.loads(ok(cxmpute(env, "account", "keys", "create", "--name", "ci", "--scope", "account", "--json")))
    assert made["key"].startswith("cxk_") and made["scopes"] == ["account"]
    shown = ok(cxmpute(env, "account", "keys", "create", "--name", "laptop"))
    assert "export CXMPUTE_API_KEY=cxk_" in shown

    listed = json.loads(ok(cxmpute(env, "account", "keys", "ls", "--json")))
    assert [k["name"] for k in listed] == ["ci", "laptop"] and all(k["revoked_at"] is None for k in listed)
    # The table folds what does not fit: every id is there whole, however narrow the terminal.
    table = ok(cxmpute({**env, "COLUMNS": "40"}, "account", "keys", "ls"))
    first_column = "".join(line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│"))
    assert all(k["id"] in first_column for k in listed), table

    keyed = {**env, "CXMPUTE_API_KEY": made["key"]}
    me = json.loads(ok(cxmpute(env, "account", "balance")))
    assert json.loads(ok(cxmpute(keyed, "account", "balance")))["address"] == me["address"]
    assert made["id"] in ok(cxmpute(env, "account", "keys", "revoke", made["id"]))
    revoked = {k["id"]: k for k in json.loads(ok(cxmpute(env, "account", "keys", "ls", "--json")))}
    assert revoked[made["id"]]["revoked_at"] is not None

    assert "revoked" in one_line(cxmpute(keyed, "account", "balance"), 1)


def test_the_provider_worker_reaches_the_platform_through_the_client(platform, caplog):
    """The worker's connection: sign-in, registration, the stake sent through the same chain helper as the
    CLI's, heartbeats from the event loop and from their own thread, refusals as the client's PlatformError."""
    from compute.providers.hardware import HardwareProfile
    from compute.worker.platform import Platform
    from cxmpute.client import PlatformError
    from cxmpute.errors import CxmputeError

    wallet = Account.create()
    fund(platform, wallet.address, 3)
    provider = Platform(platform, wallet)

    async def join() -> dict:
        try:
            return await steps()
        finally:
            await provider.close()

    async def steps() -> dict:
        await provider.sign_in()
        await provider.register(
            "rig", "local", HardwareProfile(cpu_count=2, cpu_model="test", memory_mb=2048, disk_gb=10)
        )
        await provider.ensure_stake(2 * GWEI)
        await provider.ensure_stake(GWEI)  # held already: nothing is sent
        with pytest.raises(CxmputeError) as short:
            await provider.ensure_stake(10 * GWEI)
        assert short.value.field == "--stake-eth" and "too little" in short.value.message
        await provider.heartbeat()
        with pytest.raises(PlatformError) as refused:
            await provider.call("PATCH", "/v1/provisions/nothing", {"price_gwei": 1})
        assert refused.value.status_code == 404
        assert "detail" in await provider.call("PATCH", "/v1/provisions/nothing", {"price_gwei": 1}, ok=(404,))
        return await provider.call("GET", "/v1/account/balance")

    assert asyncio.run(join())["stake_gwei"] == 2 * GWEI
    stop = threading.Event()
    beats = threading.Thread(target=provider.beat_forever, args=(0.4, stop))
    beats.start()
    time.sleep(2.5)
    stop.set()
    beats.join(5)
    assert "heartbeat" not in caplog.text  # neither refused nor failed
    assert httpx.get(f"{platform}/v1/providers/{wallet.address}").json()["heartbeats"] >= 3


def test_the_cli_modules_start_without_the_chain_libraries():
    code = "import sys, compute.cli.account, compute.cli.market, compute.cli.provider; print(sorted(m for m in ('web3', 'eth_account', 'compute.receipts') if m in sys.modules))"  # noqa: E501
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
