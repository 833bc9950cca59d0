"""The one way out: ``Services.http`` is the only HTTP client agents get, and every request it sends, every
redirect hop included, passes the egress policy derived from settings."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from agxnt.context import Services
from agxnt.web.egress import EgressDenied, EgressPolicy, GuardedTransport
from cxmpute.ports import free_port
from cxmpute.settings import Settings
from tests.support.canary import HttpCanary, TcpCanary


@pytest.fixture
def canary() -> Iterator[HttpCanary]:
    server = HttpCanary()
    yield server
    server.close()


def test_the_client_and_its_policy_cannot_be_swapped() -> None:
    for name in ("http", "egress"):
        with pytest.raises(TypeError):
            Services(Settings(), **{name: object()})


def test_the_client_sends_everything_through_the_guard() -> None:
    client = Services(Settings()).http()
    assert isinstance(client._transport, GuardedTransport)
    assert not client._mounts  # no proxy or per-scheme transport that would go around it


async def test_loopback_is_refused_in_every_spelling(canary: HttpCanary) -> None:
    async with Services(Settings()).http() as client:
        for host in [
            "127.0.0.1",
            "localhost",
            "127.1",
            "0x7f000001",
            "2130706433",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "127.0.0.2",
        ]:
            with pytest.raises(EgressDenied):
                await client.get(f"http://{host}:{canary.port}/spelled")
    assert not canary.hits


async def test_a_proxy_in_the_environment_is_not_a_way_around(canary: HttpCanary, monkeypatch) -> None:
    proxy = TcpCanary()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        settings = Settings(web_allowed_hosts=[f"127.0.0.1:{canary.port}"])
        async with Services(settings).http() as client:
            assert (await client.get(f"{canary.url}/direct")).text == "canary"
    finally:
        proxy.close()
    assert proxy.connections == 0 and canary.hits == ["/direct"]


async def test_every_redirect_hop_is_checked(canary: HttpCanary) -> None:
    inside = TcpCanary()
    settings = Settings(web_allowed_hosts=[f"127.0.0.1:{canary.port}"])
    try:
        async with Services(settings).http() as client:
            for target in [
                f"http://127.0.0.1:{inside.port}/",
                f"http://localhost:{inside.port}/",
                f"{canary.url}/redirect?to={quote(f'http://127.0.0.2:{inside.port}/', safe='')}",
                "file:///etc/passwd",
                "http://169.254.169.254/latest/meta-data/",
            ]:
                with pytest.raises(EgressDenied):
                    await client.get(f"{canary.url}/redirect?to={quote(target, safe='')}")
    finally:
        inside.close()
    assert inside.connections == 0


async def test_configured_services_are_exempt_by_exact_host_and_port(canary: HttpCanary) -> None:
    base = f"http://127.0.0.1:{canary.port}"
    for name in (
        "search_url",
        "llm_base_url",
        "youtube_api_url",
        "youtube_transcript_url",
        "discord_api_url",
        "twitter_api_url",
        "telegram_api_url",
    ):
        settings = Settings(**{name: f"{base}/api/v1"})
        async with Services(settings).http() as client:
            assert (await client.get(f"{base}/service")).status_code == 200, name
            for other in [
                f"http://localhost:{canary.port}/service",
                f"http://127.0.0.2:{canary.port}/service",
                f"http://127.0.0.1:{canary.port + 1 if canary.port < 65535 else 1}/service",
            ]:
                with pytest.raises(EgressDenied):
                    await client.get(other)
    assert canary.hits == ["/service"] * 7


async def test_internal_services_stay_closed_whatever_the_exemptions(canary: HttpCanary) -> None:
    api, prefect, pg = free_port(), free_port(), free_port()
    settings = Settings(
        web_allow_private=True,
        web_allowed_hosts=["localhost", "127.0.0.1"],
        api_host="0.0.0.0",
        api_port=api,
        prefect_api_url=f"http://localhost:{prefect}/api",
        database_url=f"postgresql+psycopg://u:p@127.0.0.1:{pg}/db",
        search_url=f"http://127.0.0.1:{prefect}",
    )  # an operator's slip does not open it either
    policy = EgressPolicy.from_settings(settings)
    own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for port in (api, prefect, pg):
        for host in [
            "127.0.0.1",
            "localhost",
            "LocalHost",
            "127.1",
            "0x7f000001",
            "127.0.0.2",
            "0.0.0.0",
            "[::1]",
            "[::ffff:127.0.0.1]",
            *own,
        ]:
            with pytest.raises(EgressDenied, match="internal services"):
                await policy.resolve(f"http://{host}:{port}/")
    assert (await policy.resolve(f"{canary.url}/")).address == "127.0.0.1"  # the rest of loopback is allowed


async def test_a_public_internal_service_is_matched_by_name_and_port() -> None:
    policy = EgressPolicy.from_settings(Settings(prefect_api_url="https://93.184.216.34:4200/api"))
    with pytest.raises(EgressDenied, match="internal services"):
        await policy.resolve("https://93.184.216.34:4200/api/health")
    assert (await policy.resolve("https://93.184.216.34/")).address == "93.184.216.34"


def test_no_agent_opens_an_http_client_of_its_own() -> None:
    """Services.http is the one way out; a client built anywhere else in agxnt would skip the policy."""
    import re
    from pathlib import Path

    import agxnt

    root = Path(agxnt.__file__).parent
    opener = re.compile(
        r"httpx\.(Async)?Client\(|(Async)?HTTPTransport\(|async_client\(|cxmpute\.http import|"
        r"urllib\.request|import requests|import aiohttp|urlopen\(|socket\.create_connection"
    )
    found = {
        str(path.relative_to(root)): opener.findall(path.read_text())
        for path in root.rglob("*.py")
        if opener.search(path.read_text())
    }
    # the client, the transport it wraps, and the model client, which talks to the operator's model service
    assert set(found) == {"context.py", "web/egress.py", "llm.py"}, found
