"""The CLI against the API served for real by uvicorn on 127.0.0.1, on the in-process chain (which the CLI
reaches as any other process would: through the JSON-RPC the platform serves)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from typer.testing import CliRunner

from cxmpute.settings import reset_settings


@pytest.fixture
def live_api(net):
    from web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_cli_walks_provider_and_user_through_real_http(live_api, make_wallet, monkeypatch):
    from cxmpute.cli import app

    runner = CliRunner()

    def cli(wallet, *args: str) -> str:
        monkeypatch.setenv("CXMPUTE_WALLET_KEY", wallet.account.key.hex())
        monkeypatch.setenv("CXMPUTE_API_URL", live_api)
        reset_settings()
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    provider, user = make_wallet(), make_wallet()
    try:
        assert provider.address in cli(provider, "provider", "register", "--name", "rig", "--region", "eu")
        assert json.loads(cli(provider, "provider", "stake", "--eth", "2"))["amount_gwei"] == 2 * 10**9
        added = json.loads(
            cli(
                provider,
                "provider",
                "provision",
                "add",
                "--kind",
                "inference",
                "--price-gwei",
                "40",
                "--cpu",
                "8",
                "--memory-mb",
                "16384",
                "--model",
                "tiny-llm",
                "--region",
                "eu",
            )
        )
        assert "inference" in cli(provider, "provider", "provision", "ls")

        assert json.loads(cli(user, "account", "deposit", "--eth", "1"))["balance_gwei"] == 10**9
        quote = json.loads(
            cli(
                user,
                "market",
                "quote",
                "--kind",
                "inference",
                "--price-max",
                "50",
                "--duration-s",
                "60",
                "--model",
                "tiny-llm",
            )
        )
        assert quote["provision_id"] == added["id"] and quote["price_gwei"] == 40
        lease = json.loads(
            cli(
                user,
                "market",
                "request",
                "--kind",
                "inference",
                "--price-max",
                "50",
                "--duration-s",
                "60",
                "--model",
                "tiny-llm",
                "--provision",
                added["id"],
            )
        )
        assert lease["provision_id"] == added["id"]
        assert lease["provider"] == provider.address and lease["escrow_gwei"] == 40 * 2 * 60
        assert json.loads(cli(user, "account", "balance"))["user_gwei"] == 10**9 - 40 * 2 * 60
        assert "escrow-hold" in cli(user, "account", "history")

        monkeypatch.setenv("CXMPUTE_WALLET_KEY", user.account.key.hex())
        reset_settings()
        refused = runner.invoke(
            app,
            [
                "market",
                "request",
                "--kind",
                "inference",
                "--price-max",
                "10",
                "--duration-s",
                "60",
                "--model",
                "tiny-llm",
            ],
        )
        assert refused.exit_code == 1 and refused.stdout == "" and "Traceback" not in refused.output
        # One line naming the field, and why each provision was passed over (the answer's no_match).
        [line] = refused.stderr.splitlines()
        assert line.startswith("error (price_max_gwei): no provision matches")
        assert "price_above_max" in line and "40 gwei" in line
    finally:
        reset_settings()
