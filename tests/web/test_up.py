"""`cxmpute up` as a user starts it: Prefect server, API and a local provider answer; Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from flows.server import free_port, healthy


def test_up_serves_health_and_stops_cleanly(tmp_path):
    api_port, prefect_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(CXMPUTE_HOME=str(tmp_path), CXMPUTE_API_PORT=str(api_port), CXMPUTE_PREFECT_PORT=str(prefect_port))
    proc = subprocess.Popen([sys.executable, "-m", "cxmpute.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        body = None
        for _ in range(600):
            try:
                body = httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert body and body["status"] == "ok"
        assert healthy(f"http://127.0.0.1:{prefect_port}/api")
        assert (tmp_path / "prefect-server").is_dir()  # Prefect's database lives in the data dir
        offers = []
        for _ in range(600):  # the local provider worker joins the market, funded from the embedded chain
            offers = httpx.get(f"http://127.0.0.1:{api_port}/v1/market/provisions",
                               params={"kind": "agent", "status": "active"}).json()
            if offers:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        assert len(offers) == 1 and offers[0]["price_gwei"] == 1, offers
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopping the local provider worker" in out
    worker_log = (tmp_path / "local-provider" / "worker.log").read_text()
    assert "Traceback" not in worker_log, worker_log
    assert f"http://127.0.0.1:{api_port}/" in out
    assert not healthy(f"http://127.0.0.1:{prefect_port}/api", 1.0)
