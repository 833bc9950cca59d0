"""The egress policy: under default settings no web agent reaches a private, loopback, link-local or
metadata address, whether named directly, by a DNS name, through a redirect or from inside a page."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import pytest

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.browser_use import BrowserUseAgent
from agxnt.web.deep import DeepInternetAgent
from agxnt.web.dive import DiveAgent
from agxnt.web.egress import EgressDenied, EgressPolicy, is_internal
from agxnt.web.internet import InternetAgent
from agxnt.web.sequential import SequentialInternetAgent
from tests.agxnt.web.conftest import Site


def _own_hostname() -> list[str]:
    """The machine's own name, where it resolves to a loopback or private address (it does on Debian)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except socket.gaierror:
        return []
    return [socket.gethostname()] if all(is_internal(ipaddress.ip_address(i[4][0])) for i in infos) else []


def internal_targets(site: str) -> list[str]:
    port = urlsplit(site).port
    return [
        "http://10.0.0.1/",
        "http://172.16.0.1/admin",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        f"http://localhost:{port}/about?probe=localhost",  # a DNS name that resolves to loopback
        *(f"http://{name}:{port}/about?probe=hostname" for name in _own_hostname()),
        f"http://127.0.0.2:{port}/",
        f"http://0x7f000001:{port}/about?probe=hex",
        f"http://[::1]:{port}/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        f"{site}/redirect?to=http://169.254.169.254/latest/meta-data/",
        f"{site}/redirect?to=http://localhost:{port}/about%3Fprobe%3Dredirect",
    ]


def test_internal_ranges() -> None:
    for ip in [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
    ]:
        assert is_internal(ipaddress.ip_address(ip)), ip
    for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"]:
        assert not is_internal(ipaddress.ip_address(ip)), ip


@pytest.mark.asyncio(loop_scope="session")
async def test_policy_resolves_public_hosts_and_refuses_internal_ones() -> None:
    policy = EgressPolicy()
    assert (await policy.resolve("https://93.184.216.34/x")).address == "93.184.216.34"
    assert socket.gethostbyname("localhost").startswith("127.")
    for url in [
        "http://localhost/",
        "http://127.1/",
        "http://2130706433/",
        "file:///etc/passwd",
        "gopher://x/",
        "javascript:alert(1)",
        "http:///nohost",
    ]:
        with pytest.raises(EgressDenied) as err:
            await policy.resolve(url, field="target")
        assert err.value.field == "target" and err.value.status_code == 403
    assert await EgressPolicy(allowed_hosts=frozenset({"localhost:8080"})).resolve("http://localhost:8080/")
    with pytest.raises(EgressDenied):
        await EgressPolicy(allowed_hosts=frozenset({"localhost:8080"})).resolve("http://localhost:8081/")


async def _refused(agent, payload: dict, ctx: AgentContext, field: str) -> EgressDenied:
    with pytest.raises(EgressDenied) as err:
        await agent()(payload, ctx)
    assert err.value.field == field, err.value.message
    assert err.value.status_code == 403
    return err.value


@pytest.mark.asyncio(loop_scope="session")
async def test_internet_refuses_internal_targets(guarded_ctx: AgentContext, site: str) -> None:
    for url in internal_targets(site):
        await _refused(InternetAgent, {"url": url}, guarded_ctx, "url")
    assert not [h for h in Site.hits if "probe=" in h]  # nothing reached the site through an alias


@pytest.mark.asyncio(loop_scope="session")
async def test_internet_refuses_internal_search_results(guarded_ctx: AgentContext, site: str) -> None:
    out = await InternetAgent()({"query": "internal addresses", "read_results": 4}, guarded_ctx)
    assert out.pages == [] and len(out.errors) == 4
    assert all("private, loopback or link-local" in e.message for e in out.errors)


@pytest.mark.asyncio(loop_scope="session")
async def test_internet_allows_the_site_itself(guarded_ctx: AgentContext, site: str) -> None:
    assert "1999" in (await InternetAgent()({"url": f"{site}/about"}, guarded_ctx)).page.text


@pytest.mark.asyncio(loop_scope="session")
async def test_dive_refuses_internal_targets(guarded_ctx: AgentContext, site: str) -> None:
    for url in internal_targets(site):
        await _refused(DiveAgent, {"start_url": url}, guarded_ctx, "start_url")


@pytest.mark.asyncio(loop_scope="session")
async def test_deep_reads_no_internal_result(guarded_ctx: AgentContext) -> None:
    with pytest.raises(AgentError) as err:
        await DeepInternetAgent()(
            {"question": "What is on the internal addresses?", "results_per_query": 4}, guarded_ctx
        )
    assert err.value.status_code == 422 and err.value.field == "question"
    assert "private, loopback or link-local" in err.value.message


@pytest.mark.asyncio(loop_scope="session")
async def test_sequential_refuses_internal_targets(guarded_ctx: AgentContext, site: str) -> None:
    err = await _refused(
        SequentialInternetAgent,
        {
            "steps": [
                {"agent": "web.internet", "params": {"url": f"{site}/about"}},
                {"agent": "web.internet", "params": {"url": "http://169.254.169.254/latest/meta-data/"}},
            ]
        },
        guarded_ctx,
        "steps.1.params.url",
    )
    assert "step 2" in err.message


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="session")
async def test_browser_refuses_internal_targets(guarded_ctx: AgentContext, site: str) -> None:
    for url in internal_targets(site):
        await _refused(BrowserUseAgent, {"actions": [{"type": "goto", "url": url}]}, guarded_ctx, "actions.0.url")
        await _refused(InternetAgent, {"url": url, "render": True}, guarded_ctx, "url")
    assert not [h for h in Site.hits if "probe=" in h]


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="session")
async def test_browser_blocks_a_pages_internal_subresources(guarded_ctx: AgentContext, site: str) -> None:
    out = await BrowserUseAgent()({"start_url": f"{site}/leaky", "actions": [{"type": "extract_text"}]}, guarded_ctx)
    assert out.ok and out.extracted == ["Leaky page"]
    assert "/probe-img" not in Site.hits
