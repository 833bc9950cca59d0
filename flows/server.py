"""Running a Prefect server for the platform: on SQLite in the data dir, or the one PREFECT_API_URL names.

The server the platform starts answers only callers that send its basic-auth string (Prefect's
PREFECT_SERVER_API_AUTH_STRING, on HTTP routes and in the first message of every websocket); its health
probe alone stays open. Every process of the platform, and every child it starts, sends it as
PREFECT_API_AUTH_STRING (see :func:`client_env`).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx


def auth_string() -> str:
    """What a client of the platform's Prefect API sends: PREFECT_API_AUTH_STRING when set (a server the user
    runs, with its own), else the platform's, kept in the data dir."""
    from cxmpute.settings import get_settings

    return os.environ.get("PREFECT_API_AUTH_STRING") or get_settings().resolved_prefect_auth_string()


def client_env(api_url: str) -> dict[str, str]:
    """The environment a process needs to reach the Prefect API at ``api_url``. A PREFECT_API_KEY given alone
    (a Prefect Cloud workspace) is left to speak for itself: Prefect's clients send an auth string instead of
    the key when both are set."""
    if os.environ.get("PREFECT_API_KEY") and not os.environ.get("PREFECT_API_AUTH_STRING"):
        return {"PREFECT_API_URL": api_url}
    return {"PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": auth_string()}


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def refused(api_url: str, timeout: float = 5.0) -> bool:
    """Whether the server at ``api_url`` refuses the credential this process sends it (a server without auth
    never does)."""
    sent = client_env(api_url).get("PREFECT_API_AUTH_STRING")
    header = f"Basic {base64.b64encode(sent.encode()).decode()}" if sent else f"Bearer {os.environ['PREFECT_API_KEY']}"
    try:
        resp = httpx.get(f"{api_url.rstrip('/')}/version", headers={"Authorization": header}, timeout=timeout)
    except httpx.HTTPError:
        return False
    return resp.status_code == 401


def die_with_parent() -> None:
    """In a child (a ``preexec_fn``): receive SIGTERM when the thread that started it ends, or its process dies,
    even by SIGKILL."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(home: Path, port: int, log_path: Path | None = None, wait: float = 120.0) -> subprocess.Popen:
    """Start `prefect server start` with its database in ``home``, on loopback, requiring :func:`auth_string`
    of every caller; return once its API answers."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_SERVER_API_AUTH_STRING": auth_string(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # The platform reads runs, task runs and logs, never the event archive: writing every state change's
        # event there cost about a fifth of a run's CPU (server and executor together). An operator who wants
        # the archive (a Prefect UI of their own) sets it back on in the environment.
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": os.environ.get(
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED", "false"
        ),
        "PREFECT_API_DATABASE_CONNECTION_URL": os.environ.get(
            "PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home / 'prefect.db'}"
        ),
    }
    env.pop("PREFECT_API_URL", None)
    log_path = log_path or home / "server.log"
    with open(log_path, "ab") as log:  # the server holds its own copy; `cxmpute up` may start it many times
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            # Its own session keeps Ctrl-C for the parent, which stops the server after its own work;
            # the death signal keeps a killed parent from leaving the server behind.
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited with {proc.returncode}; see {log_path}")
        if healthy(api, 1.0):
            return proc
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"Prefect server did not answer on {api} within {wait}s; see {log_path}")


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a server this process started, after sending it the run logs still buffered here."""
    try:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    except Exception:  # logs are a courtesy; stopping must not fail over them
        pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def use_api(api_url: str) -> None:
    """Point this process (every thread, and child processes) at a Prefect API, with its credential."""
    from prefect.context import refresh_global_settings_context

    os.environ.update(client_env(api_url))
    refresh_global_settings_context()


def guard_temporary_server() -> None:
    """With no server to use, Prefect starts a temporary one on loopback for this process: make it require the
    same credential as the platform's, since user code on this machine could reach it too."""
    from prefect.context import refresh_global_settings_context

    credential = auth_string()
    os.environ["PREFECT_SERVER_API_AUTH_STRING"] = credential
    os.environ["PREFECT_API_AUTH_STRING"] = credential
    refresh_global_settings_context()


def find_api(default_url: str) -> str | None:
    """The Prefect API to use: PREFECT_API_URL if set, else a server already answering at ``default_url``;
    None means none is running (Prefect then starts a temporary one for the process)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    return default_url if healthy(default_url, 1.0) else None
