"""Running a Prefect server for the platform: on SQLite in the data dir, or the one PREFECT_API_URL names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started the server dies, even by SIGKILL."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(home: Path, port: int, log_path: Path | None = None, wait: float = 120.0) -> subprocess.Popen:
    """Start `prefect server start` with its database in ``home``; return once its API answers."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": os.environ.get(
            "PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home / 'prefect.db'}"),
    }
    env.pop("PREFECT_API_URL", None)
    log = open(log_path or home / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        # Its own session keeps Ctrl-C for the parent, which stops the server after its own work;
        # the death signal keeps a killed parent from leaving the server behind.
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited with {proc.returncode}; see {log.name}")
        if healthy(api, 1.0):
            return proc
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"Prefect server did not answer on {api} within {wait}s; see {log.name}")


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
    """Point this process (every thread, and child processes) at a Prefect API."""
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = api_url
    refresh_global_settings_context()


def find_api(default_url: str) -> str | None:
    """The Prefect API to use: PREFECT_API_URL if set, else a server already answering at ``default_url``;
    None means none is running (Prefect then starts a temporary one for the process)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    return default_url if healthy(default_url, 1.0) else None
