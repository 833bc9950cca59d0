"""Egress: whatever a user's agent or workflow asks for leaves through one policy, and never reaches the
platform's own services (its API, the Prefect API, databases) or anything else on the provider's network;
a prompt template can neither stall the API nor flood it.

Everything here goes over HTTP to a real `cxmpute up`. Local canaries record whether a refused request
arrived anyway: a 403 proves little if the packet got through.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.support.canary import HttpCanary, TcpCanary, UdpCanary
from tests.support.up import UpPlatform, start_up

REFUSED = (400, 403)
BOMB = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(scope="module")
def canary() -> Iterator[HttpCanary]:
    server = HttpCanary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def udp() -> Iterator[UdpCanary]:
    port = UdpCanary()
    yield port
    port.close()


@pytest.fixture(scope="module")
def tcp() -> Iterator[TcpCanary]:
    port = TcpCanary()
    yield port
    port.close()


@pytest.fixture(scope="module")
def site() -> Iterator[HttpCanary]:
    """The stand-in for a public site: the one 127.0.0.1 host:port the operator exempted (see below)."""
    server = HttpCanary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def exempting(site: HttpCanary, tmp_path_factory) -> Iterator[UpPlatform]:
    """`cxmpute up` (anonymous off) whose operator exempted the site's exact host:port and the name
    ``localhost`` (any port) from the address check: an intranet allowance, which must still not open the
    platform's internal services."""
    env = {"CXMPUTE_WEB_ALLOWED_HOSTS": json.dumps([f"127.0.0.1:{site.port}", "localhost"])}
    up = start_up(tmp_path_factory.mktemp("up-egress"), anonymous=False, env=env)
    yield up
    up.stop()


_auth_cache: dict[str, dict[str, str]] = {}


def auth(platform: UpPlatform) -> dict[str, str]:
    """A signed-in user of ``platform`` (any user's code is the attacker here)."""
    if platform.url not in _auth_cache:
        _auth_cache[platform.url] = platform.new_user()[1]
    return _auth_cache[platform.url]


def invoke(platform: UpPlatform, agent: str, payload: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(
        f"{platform.url}/v1/agents/{agent}/invoke", json={"input": payload}, headers=auth(platform), timeout=timeout
    )


def assert_refused(resp: httpx.Response, field: str = "url") -> None:
    assert resp.status_code in REFUSED, resp.text[:500]
    assert resp.json()["field"] == field, resp.text[:500]


def port_of(url: str) -> int:
    return urlsplit(url).port


def loopback_spellings(port: int, tag: str) -> list[str]:
    """Every way to write "this machine" that resolves or parses to it."""
    spellings = [
        "127.0.0.1",
        "localhost",
        "localhost.",
        "LOCALHOST",
        "127.1",
        "127.0.1",
        "0x7f000001",
        "0x7f.1",
        "2130706433",
        "017700000001",
        "0177.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "0.0.0.0",
        "0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::]",
    ]
    host = socket.gethostname()
    try:
        if all(a[4][0].startswith(("127.", "::1")) or a[4][0] == host for a in socket.getaddrinfo(host, None)):
            spellings.append(host)
    except socket.gaierror:
        pass
    return [f"http://{h}:{port}/{tag}?via={quote(h)}" for h in spellings] + [
        f"http://user:pw@127.0.0.1:{port}/{tag}?via=userinfo",
        f"http://example.com@127.0.0.1:{port}/{tag}?via=at-sign",
        f"HTTP://127.0.0.1:{port}/{tag}?via=upper-scheme",
        f"http://127.0.0.1:{port}#@example.com/{tag}?via=fragment",
    ]


def wait_run(platform: UpPlatform, run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = httpx.get(f"{platform.url}/v1/runs/{run_id}", headers=auth(platform), timeout=30).json()
        if view["state"] in ("completed", "failed", "cancelled") and all(
            n["state"] in ("completed", "failed", "cancelled", "skipped") for n in view["nodes"].values()
        ):
            return view
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {view}")


# The platform's own services, named directly -------------------------------------------------------------


def test_http_request_cannot_reach_the_prefect_api(platform: UpPlatform) -> None:
    for method, path in [
        ("GET", "/health"),
        ("POST", "/flow_runs/filter"),
        ("POST", "/deployments/filter"),
        ("DELETE", "/flow_runs/00000000-0000-0000-0000-000000000000"),
    ]:
        resp = invoke(platform, "http.request", {"url": platform.prefect_url + path, "method": method, "json_body": {}})
        assert_refused(resp)
        assert "text" not in resp.json()


def test_http_request_cannot_reach_the_platform_api(platform: UpPlatform) -> None:
    for path in ["/healthz", "/v1/storage/files", "/v1/chain/rpc", "/v1/agents/http.request/invoke"]:
        assert_refused(
            invoke(
                platform,
                "http.request",
                {"url": platform.url + path, "method": "POST", "headers": platform.operator, "json_body": {}},
            )
        )


def test_http_request_cannot_reach_databases_or_metadata(platform: UpPlatform) -> None:
    for url in [
        "http://127.0.0.1:5432/",
        "http://localhost:6379/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[fe80::1%25lo]/",
        "http://100.64.0.1/",
    ]:
        assert_refused(invoke(platform, "http.request", {"url": url, "timeout": 5}))


def test_every_spelling_of_loopback_is_refused(platform: UpPlatform, canary: HttpCanary) -> None:
    for url in loopback_spellings(canary.port, "direct"):
        resp = invoke(platform, "http.request", {"url": url, "timeout": 5})
        assert resp.status_code in REFUSED, f"{url}: {resp.text[:500]}"
    assert not [h for h in canary.hits if "/direct" in h]


def test_only_http_and_https_leave(platform: UpPlatform, canary: HttpCanary) -> None:
    for url in [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        f"gopher://127.0.0.1:{canary.port}/_GET%20/gopher",
        f"dict://127.0.0.1:{canary.port}/info",
        f"ftp://127.0.0.1:{canary.port}/",
        "data:text/plain,hi",
        "javascript:alert(1)",
        f"//127.0.0.1:{canary.port}/relative",
        f"localhost:{canary.port}/noscheme",
        f"ws://127.0.0.1:{canary.port}/ws",
        "http:///etc/passwd",
        "http://:80/",
    ]:
        assert_refused(invoke(platform, "http.request", {"url": url, "timeout": 5}))
    assert not [h for h in canary.hits if "gopher" in h or "relative" in h or "noscheme" in h or "/ws" in h]


def test_web_agents_cannot_reach_internal_services(platform: UpPlatform) -> None:
    for url in [platform.prefect_url + "/health", platform.url + "/healthz", "http://127.0.0.1:5432/"]:
        assert_refused(invoke(platform, "web.internet", {"url": url}))
        assert_refused(invoke(platform, "web.dive", {"start_url": url}), "start_url")


def test_a_workflow_node_cannot_reach_internal_services(platform: UpPlatform, canary: HttpCanary) -> None:
    targets = {
        "prefect": platform.prefect_url + "/flow_runs/filter",
        "api": platform.url + "/v1/storage/files",
        "pg": "http://127.0.0.1:5432/",
        "loop": f"http://0x7f000001:{canary.port}/workflow",
    }
    doc = {
        "name": "egress",
        "nodes": [
            {
                "id": node,
                "agent": "http.request",
                "params": {"url": url, "method": "POST", "timeout": 5},
                "options": {"cache": False},
            }
            for node, url in targets.items()
        ],
    }
    resp = httpx.post(f"{platform.url}/v1/runs", json={"document": doc}, headers=auth(platform), timeout=60)
    assert resp.status_code == 202, resp.text[:500]
    view = wait_run(platform, resp.json()["id"])
    assert view["state"] == "failed"
    for node in targets:
        assert view["nodes"][node]["state"] == "failed", view["nodes"][node]
        error = view["nodes"][node]["error"]
        assert "internal services" in error or "private, loopback" in error, error
    assert not [h for h in canary.hits if "/workflow" in h]


# An operator's exemptions do not open internal services, and redirects are checked hop by hop ---------


def test_the_exempted_site_is_reachable(exempting: UpPlatform, site: HttpCanary) -> None:
    resp = invoke(exempting, "http.request", {"url": f"{site.url}/hello"})
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["output"]["text"] == "canary"


def test_the_exemption_is_exact(exempting: UpPlatform, site: HttpCanary, canary: HttpCanary) -> None:
    for url in [
        f"http://0x7f000001:{site.port}/inexact",
        f"http://127.1:{site.port}/inexact",
        f"http://[::ffff:127.0.0.1]:{site.port}/inexact",
        f"http://127.0.0.1:{canary.port}/inexact",
    ]:
        assert_refused(invoke(exempting, "http.request", {"url": url, "timeout": 5}))
    assert not [h for h in site.hits + canary.hits if "/inexact" in h]


def test_an_exempted_name_still_cannot_reach_internal_services(exempting: UpPlatform, canary: HttpCanary) -> None:
    # ``localhost`` is exempt on any port: it reaches the canary, so what refuses the rest is the rule that
    # internal services stay closed whatever the exemptions.
    assert invoke(exempting, "http.request", {"url": f"http://localhost:{canary.port}/named"}).status_code == 200
    prefect, api = port_of(exempting.prefect_url), port_of(exempting.url)
    for url in [
        f"http://localhost:{prefect}/api/health",
        f"http://localhost:{api}/healthz",
        f"http://LOCALHOST:{prefect}/api/health",
        f"http://localhost:{api}/v1/storage/files",
    ]:
        resp = invoke(exempting, "http.request", {"url": url, "headers": exempting.operator})
        assert_refused(resp)
        assert "internal services" in resp.json()["detail"], resp.text[:500]


def test_redirects_are_checked_at_every_hop(exempting: UpPlatform, site: HttpCanary, canary: HttpCanary) -> None:
    prefect, api = port_of(exempting.prefect_url), port_of(exempting.url)
    targets = [
        exempting.prefect_url + "/health",
        f"http://localhost:{prefect}/api/health",
        exempting.url + "/healthz",
        f"http://localhost:{api}/v1/storage/files",
        "http://127.0.0.1:5432/",
        "http://169.254.169.254/latest/meta-data/",
        f"http://127.0.0.2:{canary.port}/hop",
        f"http://0x7f000001:{canary.port}/hop",
        f"http://[::1]:{canary.port}/hop",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{canary.port}/_hop",
        # a redirect to the site itself that then redirects inside: the second hop is checked too
        f"{site.url}/redirect?to={quote(f'http://127.0.0.2:{canary.port}/hop')}",
    ]
    for target in targets:
        url = f"{site.url}/redirect?to={quote(target, safe='')}"
        resp = invoke(exempting, "http.request", {"url": url, "timeout": 5})
        assert resp.status_code in REFUSED, f"{target}: {resp.text[:500]}"
        assert resp.json()["field"] == "url"
        assert_refused(invoke(exempting, "web.internet", {"url": url}))
    assert not [h for h in canary.hits if "hop" in h]


def test_the_browser_follows_no_redirect_inside(exempting: UpPlatform, site: HttpCanary, canary: HttpCanary) -> None:
    for target in [
        exempting.prefect_url + "/health",
        exempting.url + "/healthz",
        f"http://localhost:{port_of(exempting.prefect_url)}/api/health",
        f"http://127.0.0.2:{canary.port}/browser-hop",
    ]:
        url = f"{site.url}/redirect?to={quote(target, safe='')}"
        resp = invoke(exempting, "web.browser", {"actions": [{"type": "goto", "url": url}]})
        assert_refused(resp, "actions.0.url")
    assert not [h for h in canary.hits if "browser-hop" in h]


def test_webrtc_sends_nothing_past_the_proxy(
    exempting: UpPlatform, site: HttpCanary, udp: UdpCanary, tcp: TcpCanary
) -> None:
    """STUN and TURN would leave as the browser's own UDP (and TCP) sockets, beside the egress proxy."""
    site.pages["webrtc"] = f"""<!doctype html><title>rtc</title><p id="state">starting</p><script>
const report = s => {{ const p = document.createElement('p'); p.id = 'done'; p.textContent = s;
                      document.body.appendChild(p); }};
const frame = document.createElement('iframe'); document.body.appendChild(frame);
const PC = window.RTCPeerConnection || window.webkitRTCPeerConnection ||
           frame.contentWindow.RTCPeerConnection || frame.contentWindow.webkitRTCPeerConnection;
if (!PC) {{ report('no peer connections'); }} else {{
  const pc = new PC({{iceServers: [{{urls: 'stun:127.0.0.1:{udp.port}'}},
                                   {{urls: 'turn:127.0.0.1:{tcp.port}?transport=tcp', username: 'u', credential: 'p'}},
                                   {{urls: 'turn:127.0.0.1:{udp.port}?transport=udp',
                                     username: 'u', credential: 'p'}}]}});
  pc.createDataChannel('leak');
  pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === 'complete') report('gathered'); }};
  pc.createOffer().then(o => pc.setLocalDescription(o));
  setTimeout(() => report('gathering'), 5000);
}}
</script>"""
    resp = invoke(
        exempting,
        "web.browser",
        {
            "start_url": f"{site.url}/page/webrtc",
            "actions": [
                {"type": "wait_for", "selector": "#done", "timeout_seconds": 30},
                {"type": "extract_text", "selector": "#done"},
            ],
        },
    )
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["output"]["ok"], resp.text[:500]
    assert udp.received() == 0 and tcp.connections == 0


# Prompt templates: no stall, no flood, no escape ----------------------------------------------------------


def test_a_template_bomb_does_not_stall_the_api(platform: UpPlatform) -> None:
    result: dict[str, httpx.Response] = {}
    bomb = threading.Thread(
        target=lambda: result.update(bomb=invoke(platform, "io.template", {"template": BOMB}, timeout=300))
    )
    bomb.start()
    answered_during_bomb = False
    while bomb.is_alive():
        health = httpx.get(f"{platform.url}/healthz", timeout=60)
        assert health.status_code == 200
        answered_during_bomb = answered_during_bomb or bomb.is_alive()
    bomb.join()
    assert answered_during_bomb
    assert result["bomb"].status_code == 422, result["bomb"].text
    assert result["bomb"].json()["field"] == "template"
    assert "longer than" in result["bomb"].json()["detail"]


def test_slow_templates_of_every_shape_are_stopped(platform: UpPlatform) -> None:
    for template in [
        "{{ lipsum(n=1000000) }}",
        ("{% for x in range(100000) %}{% for y in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"),
        (
            "{% macro f(n) %}{% for i in range(100000) %}{{ f(n) if n > 100000 else '' }}{% endfor %}"
            "{% endmacro %}{% for i in range(100000) %}{{ f(i) }}{% endfor %}"
        ),
    ]:
        resp = invoke(platform, "io.template", {"template": template})
        assert resp.status_code == 422, resp.text[:500]
        assert resp.json()["field"] == "template"


def test_oversized_template_output_is_refused(platform: UpPlatform) -> None:
    for template, variables in [
        ("{{ 'x' * 50000000 }}", {}),
        ("{{ s * 100000 }}", {"s": "y" * 1000}),
        ("{% for i in range(100000) %}{{ 'z' * 100 }}{% endfor %}", {}),
        ("{{ 'w' | center(20000000) }}", {}),
        ("{{ '%020000000d' % 1 }}", {}),
        ("{{ '{:>20000000}'.format(1) }}", {}),
        ("{{ 'x' * 1000000000 }}", {}),
    ]:
        resp = invoke(platform, "io.template", {"template": template, "variables": variables})
        assert resp.status_code == 422, f"{template}: {resp.text[:500]}"
        assert resp.json()["field"] == "template"
        assert "output" not in resp.json()


def test_templates_cannot_leave_the_sandbox(platform: UpPlatform) -> None:
    for template in [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__['os'] }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ range.__self__ }}",
        "{{ joiner.__init__.__globals__.__builtins__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{% set x = {}.__class__ %}{{ x.__subclasses__() }}",
        "{{ [].__class__.__base__ }}",
        "{{ 1/0 }}",
        "{% if %}",
        "{{ undefined_name.attr }}",
    ]:
        resp = invoke(platform, "io.template", {"template": template})
        assert resp.status_code in (400, 422), f"{template}: {resp.text[:500]}"
        assert resp.json()["field"] in ("template", "variables"), resp.text[:500]
        assert "uid=" not in resp.text


def test_templates_still_render(platform: UpPlatform) -> None:
    resp = invoke(
        platform,
        "io.template",
        {"template": "Hi {{ who }}: {{ items | join(', ') }}", "variables": {"who": "Ada", "items": [1, 2, 3]}},
    )
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["output"]["text"] == "Hi Ada: 1, 2, 3"


def test_a_template_bomb_in_a_workflow_fails_its_node(platform: UpPlatform) -> None:
    doc = {
        "name": "bomb",
        "nodes": [{"id": "t", "agent": "io.template", "params": {"template": BOMB}, "options": {"cache": False}}],
    }
    resp = httpx.post(f"{platform.url}/v1/runs", json={"document": doc}, headers=auth(platform), timeout=60)
    assert resp.status_code == 202, resp.text[:500]
    view = wait_run(platform, resp.json()["id"])
    assert view["nodes"]["t"]["state"] == "failed"
    assert "longer than" in view["nodes"]["t"]["error"]
    assert httpx.get(f"{platform.url}/healthz", timeout=60).status_code == 200
