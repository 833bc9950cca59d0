"""A provider's crash is one incident: its inference server dies with several streams in flight, each of
their leases ends ``provider-lost`` unbilled, and its stake is slashed once, not once per stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from fixtures.tiny_llm import build_tiny_causal_lm

from compute.network import Network
from cxmpute.settings import get_settings
from tests.support.inference import (
    STAKE_WEI,
    Server,
    balances,
    platform_api,
    publish_provider,
    serve,
    user_key,
    wait_served,
)

pytestmark = pytest.mark.slow

IN_FLIGHT = 4  # one stream per vCPU of the provision: all of them run at once


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[tuple[httpx.Client, Network, dict[str, str], Server, str]]:
    """The API and one provider serving ``story``: its sign-in headers, server and provision."""
    root = tmp_path_factory.mktemp("net")
    build_tiny_causal_lm(root / "story", context=4096)
    with platform_api(root / "platform.db") as (http, net):
        wallet, auth, provision = publish_provider(http, net, ["story"], cpu=IN_FLIGHT)
        server = serve(["--model", f"story={root / 'story'}"], root, wallet, provision, str(http.base_url))
        try:
            wait_served(http, {"story": 1}, [server])
            yield http, net, auth, server, provision
        finally:
            server.stop()


def _ended(http: httpx.Client, auth: dict[str, str], wait: float = 60) -> list[dict]:
    """The caller's leases, once none is active."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        leases = http.get("/v1/leases", headers=auth).json()
        if all(lease["status"] == "ended" for lease in leases):
            return leases
        time.sleep(0.1)
    raise AssertionError(f"leases still active after {wait} s: {leases}")


class Stream(threading.Thread):
    """One long streamed chat completion: it signals its first chunk, then reads until the stream ends."""

    def __init__(self, sdk: openai.OpenAI):
        super().__init__(daemon=True)
        self.sdk = sdk
        self.started = threading.Event()
        self.error: openai.APIError | None = None

    def run(self) -> None:
        try:
            stream = self.sdk.chat.completions.create(
                model="story",
                messages=[{"role": "user", "content": "Tell a long story"}],
                max_tokens=4000,
                stream=True,
                temperature=0,
            )
            for _ in stream:
                self.started.set()
        except openai.APIError as exc:  # how the stream ended is the test's to check
            self.error = exc
        finally:
            self.started.set()


def test_a_crash_with_streams_in_flight_slashes_the_stake_once(network):
    http, net, provider_auth, server, provision = network
    _, user_auth, key = user_key(http, net)
    stake, paid_in = balances(http, provider_auth)["stake_gwei"], balances(http, user_auth)["user_gwei"]
    assert stake == STAKE_WEI // 10**9
    base_url = f"{str(http.base_url).rstrip('/')}/v1"
    streams = [
        Stream(openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)) for _ in range(IN_FLIGHT)
    ]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(120) and stream.error is None, stream.error
    active = http.get("/v1/leases", params={"status": "active"}, headers=user_auth).json()
    assert [lease["provision_id"] for lease in active] == [provision] * IN_FLIGHT

    server.kill()
    for stream in streams:
        stream.join(120)
        assert isinstance(stream.error, openai.APIError) and "provider failed mid-stream" in str(stream.error)

    # each stream's error event reaches the caller before the gateway has ended its lease
    leases = _ended(http, user_auth)
    assert [(lease["end_reason"], lease["paid_gwei"]) for lease in leases] == [("provider-lost", 0)] * IN_FLIGHT
    slashed = stake * get_settings().slash_bps // 10_000
    assert balances(http, provider_auth)["stake_gwei"] == stake - slashed
    # the one slash went to the caller, and none of the failed streams was billed
    assert balances(http, user_auth)["user_gwei"] == paid_in + slashed
