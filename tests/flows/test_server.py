"""A Prefect server started by the platform never outlives the process that started it, and answers only
callers that send its auth string."""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from pydantic import ValidationError

from cxmpute.settings import Settings, reset_settings
from flows.server import auth_string, client_env, refused


def test_server_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from pathlib import Path
        from flows.server import start_server
        from cxmpute.ports import free_port
        proc = start_server(Path({str(tmp_path / "home")!r}), free_port())
        print(proc.pid, flush=True)
        time.sleep(600)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(300):
        if not _alive(server_pid):
            break
        time.sleep(0.1)
    else:
        os.kill(server_pid, signal.SIGKILL)
        raise AssertionError("the Prefect server outlived its parent")


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the server answers only callers with its auth string ------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def test_the_auth_string_is_made_once_per_data_dir_private_and_shared(tmp_path):
    made: list[str] = []
    threads = [
        threading.Thread(target=lambda: made.append(Settings(home=tmp_path).resolved_prefect_auth_string()))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1  # processes starting together agree on one
    user, _, password = made[0].partition(":")
    assert user == "cxmpute" and len(password) >= 32
    assert stat.S_IMODE((tmp_path / "prefect-api.auth").stat().st_mode) == 0o600
    assert Settings(home=tmp_path / "other").resolved_prefect_auth_string() != made[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "prefect-api.auth"]  # no temporary file left


@pytest.mark.parametrize("weak", ["password-without-user", "u:short", "u:has space in it", ":no-user-at-all-here-x"])
def test_a_weak_auth_string_setting_is_refused_naming_it(weak):
    with pytest.raises(ValidationError) as refused:
        Settings(prefect_auth_string=weak)
    assert refused.value.errors()[0]["loc"] == ("prefect_auth_string",)


def test_a_given_prefect_credential_is_used_as_it_is(monkeypatch, tmp_path):
    """A server the user runs has its own auth string (or, on Prefect Cloud, an API key): the platform sends
    that, not its own."""
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "ops:their-own-server-string")
    assert client_env("http://prefect.example:4200/api") == {
        "PREFECT_API_URL": "http://prefect.example:4200/api",
        "PREFECT_API_AUTH_STRING": "ops:their-own-server-string",
    }
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_their-cloud-key")
    assert client_env("https://api.prefect.example/api") == {"PREFECT_API_URL": "https://api.prefect.example/api"}
    monkeypatch.delenv("PREFECT_API_KEY")
    monkeypatch.setenv("CXMPUTE_HOME", str(tmp_path))
    reset_settings()
    try:
        assert client_env("x")["PREFECT_API_AUTH_STRING"] == (tmp_path / "prefect-api.auth").read_text()
    finally:
        monkeypatch.undo()
        reset_settings()


def test_the_session_server_refuses_callers_without_the_auth_string(prefect_api):
    assert os.environ["PREFECT_API_AUTH_STRING"] == auth_string()  # the whole suite goes the authenticated way
    assert httpx.post(f"{prefect_api}/flow_runs/filter", json={}).status_code == 401
    wrong = base64.b64encode(b"cxmpute:" + b"x" * 43).decode()
    assert (
        httpx.post(f"{prefect_api}/flow_runs/filter", json={}, headers={"Authorization": f"Basic {wrong}"}).status_code
        == 401
    )
    assert httpx.get(f"{prefect_api}/health").json() is True
    assert not refused(prefect_api)
    with get_client(sync_client=True) as client:  # Prefect's own client sends it
        assert client.read_flow_runs(limit=1) is not None


def test_a_temporary_server_requires_the_credential_too(tmp_path):
    """`cxmpute run` with no server to use: Prefect's temporary one is as closed as the platform's."""
    script = tmp_path / "temporary.py"
    script.write_text(
        textwrap.dedent("""
        import base64, httpx
        from prefect import flow
        from prefect.client.orchestration import get_client
        from flows.server import auth_string, guard_temporary_server
        guard_temporary_server()
        @flow
        def hello():
            return 42
        assert hello() == 42
        with get_client(sync_client=True) as client:
            api = str(client.api_url).rstrip("/")
            assert len(client.read_flow_runs()) == 1
        token = base64.b64encode(auth_string().encode()).decode()
        print(httpx.post(api + "/flow_runs/filter", json={}).status_code,
              httpx.post(api + "/flow_runs/filter", json={}, headers={"Authorization": "Basic " + token}).status_code)
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        CXMPUTE_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="240",
    )  # a busy machine starts it slowly
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["401", "200"]


@pytest.mark.parametrize(
    "argv",
    [  # `cxmpute run` is not one: it reaches the platform's API, never Prefect
        ["deployments", "ls"],
        ["serve", "--port", "1"],
        ["up", "--no-provider", "--port", "1"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_client_with_the_wrong_auth_string_stops_naming_it(prefect_api, argv):
    """Pointed at the platform's server with another credential, every entry point says so before it starts."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_API_AUTH_STRING": "cxmpute:" + "0" * 43}
    done = subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PREFECT_API_AUTH_STRING" in done.stderr and "refuses" in done.stderr
