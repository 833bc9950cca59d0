"""The HTTP Request agent goes out through the egress policy like every other agent."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from agxnt.builtins import HttpRequestAgent
from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.web.egress import EgressDenied
from cxmpute.settings import Settings
from tests.support.canary import HttpCanary


@pytest.fixture
def canary() -> Iterator[HttpCanary]:
    server = HttpCanary()
    yield server
    server.close()


def ctx_for(**settings: object) -> AgentContext:
    config = Settings(**settings)
    return AgentContext(settings=config, services=Services(config))


async def test_internal_addresses_are_refused_naming_the_url(canary: HttpCanary) -> None:
    ctx = ctx_for()
    for url in [
        f"{canary.url}/x",
        f"http://localhost:{canary.port}/x",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{canary.port}/_x",
        "ftp://example.com/",
    ]:
        with pytest.raises(EgressDenied) as err:
            await HttpRequestAgent()({"url": url}, ctx)
        assert err.value.field == "url" and err.value.status_code == 403
    assert not canary.hits


async def test_an_allowed_host_works_and_its_redirects_are_checked(canary: HttpCanary) -> None:
    ctx = ctx_for(web_allowed_hosts=[f"127.0.0.1:{canary.port}"])
    out = await HttpRequestAgent()({"url": f"{canary.url}/ok", "method": "POST", "json_body": {"a": 1}}, ctx)
    assert out.status == 200 and out.text == "canary"
    with pytest.raises(EgressDenied) as err:
        await HttpRequestAgent()({"url": f"{canary.url}/redirect?to={quote('http://127.0.0.2:5432/', safe='')}"}, ctx)
    assert err.value.field == "url"


async def test_a_response_larger_than_the_limit_is_refused(canary: HttpCanary) -> None:
    canary.pages["big"] = "x" * 5000
    ctx = ctx_for(web_allowed_hosts=[f"127.0.0.1:{canary.port}"], web_max_page_bytes=4096)
    with pytest.raises(AgentError) as err:
        await HttpRequestAgent()({"url": f"{canary.url}/page/big"}, ctx)
    assert err.value.field == "url" and err.value.status_code == 502
    assert "more than 4096 bytes" in err.value.message
