"""The gateway between callers and replicas, against real HTTP servers standing in for two tenants' replicas on
one provider: no credential of the caller reaches a replica, nothing a replica answers can act for the platform's
origin, and no cookie is kept between requests (the gateway's client serves every caller and tenant)."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime

import pytest

from compute.services import gateway
from compute.services.registry import ReplicaOut

ORIGIN_WIDE = [
    ("Set-Cookie", "tenant=a; Path=/"),
    ("Set-Cookie", "other=b; Domain=127.0.0.1; Path=/"),
    ("Set-Cookie2", "legacy=1"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("Clear-Site-Data", '"storage"'),
    ("Service-Worker-Allowed", "/"),
    ("WWW-Authenticate", 'Basic realm="platform"'),
    ("NEL", '{"report_to": "spy", "max_age": 9}'),
    ("Report-To", '{"group": "spy"}'),
    ("Reporting-Endpoints", 'spy="http://198.51.100.1/"'),
    ("Alt-Svc", 'h2="198.51.100.1:443"'),
    ("Accept-CH", "Sec-CH-UA-Model"),
    ("X-Content-Type-Options", "none"),
    ("Content-Security-Policy", "sandbox allow-same-origin allow-scripts"),
]


class _Replica(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        for k, v in ORIGIN_WIDE:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/html")
        self.send_header("X-Service", "kept")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def replicas():
    """Two tenants' replicas on one provider's address."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replica) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    now = datetime.now(UTC)
    yield [
        ReplicaOut(
            id=f"r{i}",
            status="live",
            live=True,
            provider=None,
            job_id=None,
            lease_id=None,
            host="127.0.0.1",
            host_port=server.server_address[1],
            restarts=0,
            error=None,
            created_at=now,
            ended_at=None,
        )
        for i, server in enumerate(servers)
    ]
    for server in servers:
        server.shutdown()
        server.server_close()


async def _call(replica: ReplicaOut, headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict]:
    upstream, _ = await gateway.open_upstream("svc", [replica], "GET", "page", "", headers, b"")
    try:
        return gateway.response_headers(upstream.headers.multi_items()), json.loads(await upstream.aread())
    finally:
        await upstream.aclose()


async def test_a_replica_gets_no_credential_or_cookie_of_the_caller_or_of_another_answer(replicas):
    first, second = replicas
    try:
        _, seen = await _call(
            first,
            [
                ("Authorization", "Bearer the-callers-session"),
                ("Cookie", "session=mine"),
                ("Proxy-Authorization", "Basic eA=="),
                ("X-Caller", "kept"),
            ],
        )
        assert {"authorization", "cookie", "proxy-authorization"}.isdisjoint(seen) and seen["x-caller"] == "kept"
        # The first answer set cookies for the provider's address: neither replica ever sees them again.
        for replica in (first, second, first):
            _, seen = await _call(replica, [])
            assert "cookie" not in seen, seen
        assert len(gateway._http().cookies.jar) == 0
    finally:
        await gateway.close()


async def test_an_answer_is_confined_to_an_opaque_origin_and_sets_nothing_for_the_platforms(replicas):
    try:
        headers, _ = await _call(replicas[0], [])
    finally:
        await gateway.close()
    names = [k.lower() for k, _ in headers]
    for dropped in (
        "set-cookie",
        "set-cookie2",
        "strict-transport-security",
        "clear-site-data",
        "service-worker-allowed",
        "www-authenticate",
        "nel",
        "report-to",
        "reporting-endpoints",
        "alt-svc",
        "accept-ch",
    ):
        assert dropped not in names, dropped
    assert [v for k, v in headers if k.lower() == "x-content-type-options"] == ["nosniff"]
    policies = [v for k, v in headers if k.lower() == "content-security-policy"]
    # The replica's own policy may stay (every policy is enforced); the gateway's has no allow-same-origin.
    assert gateway.SANDBOX in policies and "allow-same-origin" not in gateway.SANDBOX
    assert gateway.SANDBOX.split()[0] == "sandbox"
    assert ("X-Service", "kept") in headers or ("x-service", "kept") in headers
