"""`cxmpute serve` keeps an idle connection open past every Retry-After the API gives, so a client that waits as
told and retries on its kept-alive connection is answered, not reset."""

from __future__ import annotations

import os
import socket
import time

import pytest

from cxmpute.ports import free_port
from flows.server import client_env
from tests.support import processes
from web.errors import PREFECT_RETRY_AFTER_S

pytestmark = pytest.mark.slow


def _get(sock: socket.socket, path: str) -> bytes:
    """One whole response (head and its Content-Length of body) read off a kept-alive connection, so the next
    request's answer starts clean; empty where the server closed the connection."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode())
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_connection_idle_for_a_retry_after_still_answers(prefect_api, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        **client_env(prefect_api),
        "CXMPUTE_HOME": str(tmp_path / "platform"),
        "CXMPUTE_API_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("CXMPUTE_DATABASE_URL", None)
    proc = processes.serve(port, env, tmp_path / "serve.log")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
            time.sleep(PREFECT_RETRY_AFTER_S + 1.5)
            assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
    finally:
        processes.stop([proc])
