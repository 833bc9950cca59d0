"""A Docker engine (started like `make test` starts it) and a small service image saved as a tarball."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

APP = """
import http.server, json, os, time, urllib.parse

REPLICA = os.environ["CXMPUTE_REPLICA"]


class Echo(http.server.BaseHTTPRequestHandler):
    def _answer(self, body=b""):
        out = json.dumps({"replica": REPLICA, "method": self.command, "path": self.path,
                          "greeting": os.environ.get("GREETING"), "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        if self.path.startswith("/sleep"):
            time.sleep(float(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["s"][0]))
        self._answer()

    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Echo).serve_forever()
"""
TAG = "cxmpute-test/echo-service:1"


@pytest.fixture(scope="session")
def docker_engine():
    subprocess.run(["bash", str(Path(__file__).parents[3] / "deploy" / "docker-engine.sh")], check=False)
    import docker

    engine = docker.from_env(timeout=120)
    try:
        engine.ping()
    except Exception as exc:
        pytest.fail(f"container services need a Docker engine and deploy/docker-engine.sh could not start one: {exc}")
    return engine


@pytest.fixture(scope="session")
def image_tarball(docker_engine, tmp_path_factory) -> Path:
    """An HTTP echo server that answers with its replica id, on the container runtime's Python image."""
    from tests.support.images import service_image

    return service_image(docker_engine, APP, TAG, tmp_path_factory.mktemp("image") / "echo-service.tar")
