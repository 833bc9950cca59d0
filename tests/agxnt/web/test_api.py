"""The web agents through the agent API, served by uvicorn on 127.0.0.1 and called over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cxmpute.settings import reset_settings


@pytest.fixture(scope="module")
def http(api_url: str, configured: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def invoke(http: httpx.Client, agent: str, payload: dict) -> httpx.Response:
    return http.post(f"/v1/agents/{agent}/invoke", json={"input": payload})


def test_catalogue_lists_the_web_agents(http: httpx.Client) -> None:
    items = http.get("/v1/agents", params={"family": "Web"}).json()["items"]
    assert {a["id"] for a in items} == {"web.internet", "web.dive", "web.deep", "web.browser", "web.sequential"}
    browser = next(a for a in items if a["id"] == "web.browser")
    assert browser["resources"]["browser"] and browser["resources"]["network"]


def test_internet_dive_and_deep_over_http(http: httpx.Client, site: str) -> None:
    page = invoke(http, "web.internet", {"url": f"{site}/about"})
    assert page.status_code == 200, page.text
    assert "founded in 1999" in page.json()["output"]["page"]["text"]

    dive = invoke(http, "web.dive", {"start_url": site, "max_depth": 1})
    assert dive.status_code == 200, dive.text
    assert f"{site}/table" in {p["url"] for p in dive.json()["output"]["pages"]}

    deep = invoke(http, "web.deep", {"question": "When was Acme founded?"})
    assert deep.status_code == 200, deep.text
    assert "1999 [1]" in deep.json()["output"]["answer"]


@pytest.mark.browser
def test_browser_and_sequential_over_http(http: httpx.Client, site: str) -> None:
    browse = invoke(
        http,
        "web.browser",
        {
            "start_url": f"{site}/js",
            "screenshots": False,
            "actions": [{"type": "wait_for", "selector": "#secret"}, {"type": "extract_text", "selector": "#secret"}],
        },
    )
    assert browse.status_code == 200, browse.text
    assert "4217" in browse.json()["output"]["extracted"][0]

    chain = invoke(
        http,
        "web.sequential",
        {
            "steps": [
                {"agent": "web.internet", "params": {"query": "sprocket steel"}},
                {"agent": "web.internet", "params": {"url": "{{ prev.results[0].url }}"}},
            ]
        },
    )
    assert chain.status_code == 200, chain.text
    assert "heavy loads" in chain.json()["output"]["last"]["page"]["text"]


@pytest.mark.parametrize(
    "agent,payload,status,field",
    [
        ("web.internet", {"url": "file:///etc/passwd"}, 403, "url"),
        ("web.internet", {}, 400, "url"),
        ("web.internet", {"url": "http://x/", "max_results": 0}, 422, "input.max_results"),
        ("web.dive", {"start_url": "ftp://127.0.0.1/"}, 403, "start_url"),
        ("web.browser", {"actions": [{"type": "fly"}]}, 422, "input.actions.0"),
        ("web.sequential", {"steps": [{"agent": "memory.write", "params": {}}]}, 422, "input.steps.0.agent"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    http: httpx.Client, agent: str, payload: dict, status: int, field: str
) -> None:
    resp = invoke(http, agent, payload)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field


def test_default_settings_refuse_internal_targets_over_http(
    http: httpx.Client, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXMPUTE_WEB_ALLOW_PRIVATE", "false")
    reset_settings()
    try:
        # The site itself is the configured search service, whose exact host:port is exempt; any other
        # spelling of it is not.
        inside = site.replace("127.0.0.1", "localhost")
        for url in [f"{inside}/about", "http://169.254.169.254/latest/meta-data/", "http://192.168.0.1/"]:
            resp = invoke(http, "web.internet", {"url": url})
            assert resp.status_code == 403, resp.text
            assert resp.json()["field"] == "url"
            assert "private, loopback or link-local" in resp.json()["detail"]
    finally:
        monkeypatch.undo()
        reset_settings()
