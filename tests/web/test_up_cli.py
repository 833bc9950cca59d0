"""`cxmpute up` as a newcomer meets it: it refuses a busy port before starting anything, says it is up only
once the API answers, funds the local wallet on its embedded chain, offers the machine's disk, logs a refused
request as one line, and Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
from eth_account import Account

from cxmpute.ports import free_port
from flows.server import healthy
from tests.support.up import UpPlatform


def _env(home, api_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CXMPUTE_"))}
    env.update(
        CXMPUTE_HOME=str(home),
        CXMPUTE_API_PORT=str(api_port),
        CXMPUTE_PREFECT_PORT=str(free_port()),
        CXMPUTE_ALLOW_ANONYMOUS="true",
        CXMPUTE_SIWE_DOMAIN=f"127.0.0.1:{api_port}",
    )
    return env


def test_a_busy_port_is_one_line_and_exit_1_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cxmpute.cli", "up"],
            env=_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, out
    assert len(out.splitlines()) == 1, out
    assert str(port) in out and "--port" in out and "CXMPUTE_API_PORT" in out, out
    assert not (tmp_path / "prefect-server").exists()  # no Prefect server was started for nothing


def test_up_says_so_once_listening_with_a_funded_wallet_and_a_provider_offering_disk(tmp_path):
    api_port = free_port()
    log = tmp_path / "up.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxmpute.cli", "up"],
            env=_env(tmp_path, api_port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    up = UpPlatform(
        url=f"http://127.0.0.1:{api_port}", prefect_url="", home=tmp_path, env={}, proc=proc, anonymous=True, log=log
    )
    try:
        deadline = time.monotonic() + 240
        while "Cxmpute is up" not in up.output():
            assert proc.poll() is None and time.monotonic() < deadline, up.output()
            time.sleep(0.05)
        assert httpx.get(f"{up.url}/healthz", timeout=5).status_code == 200, up.output()

        wallet = Account.from_key((tmp_path / "wallet.key").read_text().strip()).address
        assert wallet in up.output()
        assert up.w3().eth.get_balance(wallet) >= 10 * 10**18  # funded before the banner, on the embedded chain

        offers = []
        while not offers:
            assert proc.poll() is None and time.monotonic() < deadline, up.output()
            body = httpx.get(
                f"{up.url}/v1/market/provisions", params={"kind": "agent", "status": "active"}, timeout=10
            ).json()
            offers = body["items"] if isinstance(body, dict) else body  # a page, or the older bare list
            time.sleep(0.5)
        assert offers[0]["resources"]["disk_gb"] > 0, offers

        # a refused request is one line of the platform's log, naming the route and the field
        assert httpx.get(f"{up.url}/v1/runs/not-a-run", timeout=10).status_code == 404
        refused: list[str] = []
        for _ in range(100):  # the line reaches the log file just after the answer
            refused = [line for line in up.output().splitlines() if "404 GET /v1/runs/{run_id}" in line]
            if refused:
                break
            time.sleep(0.1)
        assert len(refused) == 1 and "run_id" in refused[0] and "Traceback" not in up.output(), up.output()
        assert (tmp_path / "prefect-server").is_dir()  # Prefect's database lives in the data dir
        prefect = re.search(r"Prefect API\s+(\S+)", up.output()).group(1)
        assert healthy(prefect)
    finally:
        returncode = up.stop()
    # Ctrl-C stops everything it started
    assert returncode == 0, up.output()
    assert "stopping the local provider worker" in up.output()
    assert "Traceback" not in (tmp_path / "local-provider" / "worker.log").read_text()
    assert not healthy(prefect, 1.0)
