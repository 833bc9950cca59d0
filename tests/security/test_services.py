"""Container services from outside: a service's answer cannot act as the platform's origin (its scripts run in an
opaque origin, the origin-wide headers it sends are dropped), no cookie passes between callers through the
gateway, and a replica — without network, or granted it — reaches neither the host nor a private address.

The replica tests start replicas the way a provider does (:mod:`compute.services.replica`) on the real Docker
engine; the end-to-end test deploys a service on a real platform and provider and drives Chromium at it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from compute.runtimes.network import host_addresses
from compute.services.relay import Relay
from compute.services.replica import (
    ReplicaJob,
    namespace_pid,
    remove,
    start_container,
    start_network,
)
from tests.support.images import service_image
from tests.support.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


_tests = Path(__file__).parents[1]
_services = _load("services_fixtures", _tests / "compute" / "services" / "conftest.py")
_pool = _load("worker_pool_fixtures", _tests / "compute" / "worker" / "conftest.py")
_runtimes = _load("runtimes_fixtures", _tests / "compute" / "runtimes" / "conftest.py")
docker_engine = _services.docker_engine
pool_platform = _pool.pool_platform
Listener = _runtimes.Listener

# A service that answers with origin-wide headers and a page whose script tries the platform origin's storage,
# reports the cookies and credentials it was sent, and tries connections it is told to.
APP = r'''
import http.server, json, os, socket, urllib.parse

PAGE = b"""<!doctype html><html><body><script>
let found;
try { found = "read:" + localStorage.getItem("cxmpute.session"); } catch (e) { found = "denied:" + e.name; }
let cookie;
try { cookie = "read:" + document.cookie; } catch (e) { cookie = "denied:" + e.name; }
document.body.dataset.storage = found;
document.body.dataset.cookie = cookie;
document.body.dataset.origin = window.origin;
</script></body></html>"""
ORIGIN_WIDE = [("Set-Cookie", "tenant=%s; Path=/"), ("Strict-Transport-Security", "max-age=31536000"),
               ("Clear-Site-Data", '"storage", "cookies"'), ("NEL", '{"report_to": "spy", "max_age": 86400}'),
               ("Report-To", '{"group": "spy", "max_age": 86400, "endpoints": [{"url": "http://198.51.100.1/"}]}'),
               ("WWW-Authenticate", 'Basic realm="platform"'), ("Alt-Svc", 'h2="198.51.100.1:443"'),
               ("Service-Worker-Allowed", "/"), ("X-Content-Type-Options", "none"),
               ("Content-Security-Policy", "sandbox allow-same-origin allow-scripts")]


class Probe(http.server.BaseHTTPRequestHandler):
    def _send(self, body, kind="application/json", headers=()):
        self.send_response(200)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path.endswith("/page"):
            who = q.get("who", "anyone")
            self._send(PAGE, "text/html", [(k, v % who if "%s" in v else v) for k, v in ORIGIN_WIDE])
        elif url.path.endswith("/connect"):
            try:
                socket.create_connection((q["host"], int(q["port"])), timeout=3).close()
                out = "connected"
            except OSError as e:
                out = type(e).__name__
            self._send(json.dumps({"outcome": out}).encode())
        else:
            self._send(json.dumps({"cookie": self.headers.get("Cookie"),
                                   "authorization": self.headers.get("Authorization")}).encode())


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe).serve_forever()
'''
PORT = 8080
# What a confined process tries from inside a replica: each must fail (the names of what stopped it).
INSIDE = r"""
import ctypes, errno, json, socket, sys
out = {}
for name, address, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((address, port), timeout=3).close()
        out[name] = "connected"
    except OSError as e:
        out[name] = "DENIED " + type(e).__name__
libc = ctypes.CDLL(None, use_errno=True)
ring = libc.syscall(425, 4, ctypes.create_string_buffer(120))
out["io_uring_setup"] = "DENIED " + errno.errorcode.get(ctypes.get_errno(), "?") if ring < 0 else "ring %d" % ring
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
routes = open("/proc/net/route").read().splitlines()[1:]
out["default_route"] = any(line.split()[1] == "00000000" for line in routes)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe_image(docker_engine, tmp_path_factory) -> tuple[str, Path]:
    """The probe service built on the container runtime's image: its tag and its `docker save` tarball."""
    tag = "cxmpute-test/probe-service:1"
    return tag, service_image(docker_engine, APP, tag, tmp_path_factory.mktemp("probe") / "probe-service.tar")


@pytest.fixture
def listeners():
    """Services on the host: one on its loopback, one on every address (the bridge's gateway included)."""
    local, wide = Listener(), Listener("0.0.0.0")
    yield local, wide
    local.close()
    wide.close()


def _targets(local, wide) -> list[tuple[str, str, int]]:
    found = [
        ("host_loopback", "127.0.0.1", local.port),
        ("host_loopback_wide", "127.0.0.1", wide.port),
        ("bridge_gateway", "172.17.0.1", wide.port),
        ("private_10", "10.0.0.1", 80),
        ("private_192", "192.168.0.1", 80),
        ("link_local_metadata", "169.254.169.254", 80),
    ]
    found += [(f"host_{a}", a, wide.port) for a in host_addresses() if not a.startswith("127.")]
    return found


def _inside(container, targets) -> dict:
    done = container.exec_run(["/usr/bin/python3", "-c", INSIDE, json.dumps(targets)], user="65534:65534")
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


async def _run_replica(engine, tag: str, network: bool, local, wide) -> tuple[dict, dict]:
    """Start a replica as a provider does, call it through its relay, then try every target from inside."""
    job = ReplicaJob(
        replica_id=f"probe-{time.time_ns()}",
        token="t",
        service="probe",
        image="cid",
        port=PORT,
        env={},
        cpu=1,
        memory_mb=128,
        pids=64,
        network=network,
        run_s=60,
    )
    containers = []
    try:
        if network:
            containers.append(await asyncio.to_thread(start_network, engine, job, "owner", "test-provider"))
        mode = f"container:{containers[0].id}" if containers else "none"
        containers.append(await asyncio.to_thread(start_container, engine, job, tag, "owner", "test-provider", mode))
        relay = Relay(await asyncio.to_thread(namespace_pid, containers[0]), PORT)
        port = await relay.start("127.0.0.1")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                for _ in range(200):
                    try:
                        answer = (await http.get("/seen")).json()
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.05)
                else:
                    raise AssertionError(containers[-1].logs().decode())
                for _ in range(3):  # the relay takes connection after connection
                    assert (await http.get("/seen")).status_code == 200
        finally:
            await relay.close()
        return answer, await asyncio.to_thread(_inside, containers[-1], _targets(local, wide))
    finally:
        for container in containers:
            remove(container)


async def test_a_replica_without_network_has_only_its_loopback_and_reaches_nothing(
    docker_engine, probe_image, listeners
):
    local, wide = listeners
    answer, outcome = await _run_replica(docker_engine, probe_image[0], False, local, wide)
    assert answer == {"cookie": None, "authorization": None}
    assert outcome.pop("interfaces") == ["lo"] and outcome.pop("default_route") is False
    assert outcome.pop("io_uring_setup") == "DENIED EPERM"
    for name, result in outcome.items():
        assert result.startswith("DENIED"), (name, result)
    assert local.accepted == wide.accepted == 0


async def test_a_replica_granted_network_still_reaches_no_host_or_private_address(
    docker_engine, probe_image, listeners
):
    local, wide = listeners
    _, outcome = await _run_replica(docker_engine, probe_image[0], True, local, wide)
    assert outcome.pop("default_route") is True and "eth0" in outcome.pop("interfaces")
    assert outcome.pop("io_uring_setup") == "DENIED EPERM"
    for name, result in outcome.items():
        assert result.startswith("DENIED"), (name, result)
    assert local.accepted == wide.accepted == 0


@pytest.mark.browser
def test_a_deployed_service_cannot_act_as_the_platform_origin_nor_pass_cookies_between_callers(
    pool_platform, docker_engine, probe_image, listeners
):
    platform = pool_platform
    local, wide = listeners
    platform.start_provider("svc-sec", price=2, cpu=2, memory_mb=2048)
    wallet, auth = platform.user()
    owner = wallet.address
    try:
        with httpx.Client(base_url=platform.url, headers=auth, timeout=60) as http:
            until(
                lambda: httpx.get(
                    f"{platform.url}/v1/market/provisions", params={"kind": "container", "status": "active"}
                ).json(),
                "a container provision",
                platform,
                90,
            )
            uploaded = http.post("/v1/storage/files", params={"name": "probe.tar"}, content=probe_image[1].read_bytes())
            assert uploaded.status_code == 201, uploaded.text
            cid = uploaded.json()["file"]["cid"]
            for name, network in (("probe", False), ("probe-net", True)):
                made = http.post(
                    "/v1/services",
                    json={
                        "name": name,
                        "image": cid,
                        "port": PORT,
                        "public": True,
                        "network": network,
                        "memory_mb": 128,
                        "price_max_gwei": 5,
                    },
                )
                assert made.status_code == 201, made.text
                assert made.json()["network"] is network
            for name in ("probe", "probe-net"):
                until(
                    lambda name=name: [r for r in http.get(f"/v1/services/{name}").json()["replicas"] if r["live"]],
                    f"a live replica of {name}",
                    platform,
                    90,
                )

            public = f"{platform.url}/v1/public/services/{owner}/probe"
            # The owner's route and the public one: the answer is confined to an opaque origin.
            for url, headers in ((f"{platform.url}/v1/services/probe/proxy/page?who=a", auth), (f"{public}/page", {})):
                page = httpx.get(url, headers=headers, timeout=30)
                assert page.status_code == 200 and page.headers["content-type"] == "text/html", page.text
                policies = page.headers.get_list("content-security-policy")
                ours = [p for p in policies if "allow-same-origin" not in p]
                assert ours and all(p.split()[0] == "sandbox" for p in ours), policies
                assert page.headers.get_list("x-content-type-options") == ["nosniff"]
                for dropped in (
                    "set-cookie",
                    "strict-transport-security",
                    "clear-site-data",
                    "nel",
                    "report-to",
                    "www-authenticate",
                    "alt-svc",
                    "service-worker-allowed",
                ):
                    assert dropped not in page.headers, dropped

            # One caller's answer sets a cookie; the next caller's request carries none, nor its own cookie or token.
            httpx.get(f"{public}/page", params={"who": "first-caller"}, timeout=30)
            seen = httpx.get(
                f"{public}/seen", headers={"Cookie": "session=mine", "Authorization": "Bearer mine"}, timeout=30
            ).json()
            assert seen == {"cookie": None, "authorization": None}
            assert http.get("/v1/services/probe/proxy/seen").json() == {"cookie": None, "authorization": None}

            # From inside the replicas: the platform API, the host's services and private ranges are out of reach.
            api_port = int(platform.url.rsplit(":", 1)[1])
            targets = [
                ("127.0.0.1", api_port),
                ("127.0.0.1", wide.port),
                ("172.17.0.1", wide.port),
                ("10.0.0.1", 80),
                *((a, wide.port) for a in host_addresses() if not a.startswith("127.")),
            ]
            for name in ("probe", "probe-net"):
                for address, port in targets:
                    tried = http.get(f"/v1/services/{name}/proxy/connect", params={"host": address, "port": port})
                    assert tried.status_code == 200, tried.text
                    assert tried.json()["outcome"] != "connected", (name, address, port)
            assert local.accepted == wide.accepted == 0

            _in_browser(platform.url, f"{public}/page")
    finally:
        for name in ("probe", "probe-net"):
            httpx.delete(f"{platform.url}/v1/services/{name}", headers=auth, timeout=30)
        for container in docker_engine.containers.list(
            all=True, filters={"label": [f"cxmpute.owner={owner}"]}, ignore_removed=True
        ):
            remove(container)


def _in_browser(platform_url: str, page_url: str) -> None:
    """The builder keeps its session in the platform origin's localStorage; a service page opened in the same
    browser finds no storage it may read, no cookie, and an opaque origin — and the browser keeps no cookie."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{platform_url}/healthz")
            page.evaluate("localStorage.setItem('cxmpute.session', 'the-builders-token')")
            page.goto(page_url)
            page.wait_for_function("document.body && document.body.dataset.origin !== undefined")
            found = page.evaluate("({...document.body.dataset})")
            assert found["storage"].startswith("denied:"), found
            assert found["cookie"].startswith("denied:") or found["cookie"] == "read:", found
            assert found["origin"] == "null", found
            assert context.cookies() == []
            page.goto(f"{platform_url}/healthz")
            assert page.evaluate("localStorage.getItem('cxmpute.session')") == "the-builders-token"
        finally:
            browser.close()
