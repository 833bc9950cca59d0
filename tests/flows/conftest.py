from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Flaky:
    """A local HTTP endpoint that answers 500 for the first ``failures`` requests, then 200."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.calls += 1
                ok = outer.calls > outer.failures
                body = json.dumps({"ok": ok, "call": outer.calls}).encode()
                self.send_response(200 if ok else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def flaky(monkeypatch):
    """Flaky servers the egress policy lets agents reach: each one's exact address is an allowed host."""
    from cxmpute.settings import reset_settings

    servers = []

    def make(failures: int) -> Flaky:
        servers.append(Flaky(failures))
        allowed = [s.url.removeprefix("http://").rstrip("/") for s in servers]
        monkeypatch.setenv("CXMPUTE_WEB_ALLOWED_HOSTS", json.dumps(allowed))
        reset_settings()
        return servers[-1]

    yield make
    monkeypatch.undo()
    reset_settings()
    for s in servers:
        s.close()
