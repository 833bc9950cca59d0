"""Local HTTP endpoints that agents call in tests: they count the calls, per path too, and can fail the first
few, so a test can tell how often a node really ran."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Flaky:
    """Answers 500 for the first ``failures`` requests, then 200 with ``{"ok", "call"}``."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.calls = 0
        self.paths: Counter[str] = Counter()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with outer._lock:
                    outer.calls += 1
                    outer.paths[self.path] += 1
                    call = outer.calls
                ok = call > outer.failures
                body = json.dumps({"ok": ok, "call": call}).encode()
                self.send_response(200 if ok else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
