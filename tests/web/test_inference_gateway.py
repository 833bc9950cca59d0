"""The OpenAI-compatible gateway end to end: the official ``openai`` client against the platform API, two
provider inference servers started through the CLI (each registering its endpoint with a signed-in
wallet), requests matched through the market, billed per second, and failed over when a provider dies."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from fixtures.tiny_diffusion import build_tiny_pipeline
from fixtures.tiny_embedder import build_tiny_embedder
from fixtures.tiny_llm import build_tiny_causal_lm

from compute.network import Network
from cxmpute.settings import get_settings
from tests.support.inference import (
    SERVER_KEY,
    Server,
    Wallet,
    free_port,
    platform_api,
    publish_provider,
    serve,
    user_key,
    wait_served,
)

pytestmark = pytest.mark.slow

PRICE = 10  # gwei per compute-unit-second, both providers
MODELS = ["tiny", "emb", "img", "tts"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The platform API on uvicorn over a fresh network database."""
    with platform_api(tmp_path_factory.mktemp("db") / "platform.db") as api:
        yield api


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_causal_lm(root / "tiny", context=4096)
    build_tiny_embedder(root / "emb")
    build_tiny_pipeline(root / "img")
    return root


def _provider(
    http: httpx.Client, net: Network, models: list[str] = MODELS, kind: str = "inference", price: int = PRICE
) -> tuple[Wallet, dict, str]:
    return publish_provider(http, net, models, kind, price)


def _serve(model_dir: Path, home: Path, wallet: Wallet, provision: str, api: str) -> Server:
    return serve(
        [
            "--model",
            f"tiny={model_dir / 'tiny'}",
            "--embedding",
            f"emb={model_dir / 'emb'}",
            "--image",
            f"img={model_dir / 'img'}",
            "--speech",
            "tts",
        ],
        home,
        wallet,
        provision,
        api,
    )


@pytest.fixture(scope="module")
def providers(platform, model_dir, tmp_path_factory):
    """Two providers, each with an inference provision and its own inference server process."""
    http, net = platform
    procs: dict[str, Server] = {}
    try:
        for i in range(2):
            wallet, _, provision = _provider(http, net)
            procs[provision] = _serve(
                model_dir, tmp_path_factory.mktemp(f"provider{i}"), wallet, provision, str(http.base_url)
            )
        wait_served(http, dict.fromkeys(MODELS, 2), list(procs.values()))
        yield procs
    finally:
        for server in procs.values():
            server.stop()


@pytest.fixture(scope="module")
def user(platform):
    http, net = platform
    _, auth, key = user_key(http, net)
    return auth, key


@pytest.fixture(scope="module")
def client(platform, user, providers) -> openai.OpenAI:
    http, _ = platform
    return openai.OpenAI(base_url=f"{str(http.base_url).rstrip('/')}/v1", api_key=user[1], max_retries=0, timeout=120)


def _balance(http: httpx.Client, auth: dict) -> int:
    return http.get("/v1/account/balance", headers=auth).json()["user_gwei"]


def test_openai_client_lists_models_streams_chat_embeds_and_draws(client, platform, user):
    http, _ = platform
    before = _balance(http, user[0])

    assert {m.id for m in client.models.list()} >= set(MODELS)

    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=12, stream=True, temperature=0
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=12, temperature=0
    )
    # greedy decoding: the streamed pieces make up exactly the non-streamed answer
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0

    vectors = client.embeddings.create(model="emb", input=["memory stores passages", "the lazy dog"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 32

    image = client.images.generate(
        model="img", prompt="a red cat", size="64x64", response_format="b64_json", extra_body={"steps": 2}
    )
    assert base64.b64decode(image.data[0].b64_json).startswith(b"\x89PNG")

    records = http.get("/v1/inference/requests", headers=user[0]).json()
    assert [r["operation"] for r in records[:4]] == [
        "images.generations",
        "embeddings",
        "chat.completions",
        "chat.completions",
    ]
    assert all(r["status"] == "ok" and r["seconds"] >= 1 and r["amount_gwei"] > 0 for r in records[:4])
    assert records[2]["completion_tokens"] == reply.usage.completion_tokens
    assert records[3]["completion_tokens"] > 0  # the stream's usage, asked of the provider by the gateway
    # every escrow was settled: the balance dropped by exactly what the requests were billed
    assert before - _balance(http, user[0]) == sum(r["amount_gwei"] for r in records[:4])
    leases = http.get("/v1/leases", params={"status": "active"}, headers=user[0]).json()
    assert leases == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_speech_through_the_gateway(client):
    audio = client.audio.speech.create(model="tts", input="hello from the network", voice="en", response_format="wav")
    assert audio.content.startswith(b"RIFF")


def test_bad_requests_get_4xx_naming_the_field_and_cost_nothing(client, platform, user):
    http, _ = platform
    before = _balance(http, user[0])

    def refused(error: type[openai.APIStatusError], param: str | None, **kwargs) -> str:
        with pytest.raises(error) as caught:
            client.chat.completions.create(
                **{"model": "tiny", "messages": [{"role": "user", "content": "x"}], **kwargs}
            )
        assert caught.value.param == param, caught.value.body
        return caught.value.body["message"]

    refused(openai.BadRequestError, "messages", messages=[])
    refused(openai.BadRequestError, "temperature", temperature=7)
    assert "'nope' does not exist" in refused(openai.NotFoundError, "model", model="nope")
    assert "within your price range" in refused(
        openai.BadRequestError, "x-cxmpute-price-max", extra_headers={"X-Cxmpute-Price-Max": str(PRICE - 1)}
    )
    # a model the provider has, asked for the wrong kind of work: the provider's 4xx, passed on, not billed
    assert "embedding model" in refused(openai.BadRequestError, "model", model="emb")
    assert _balance(http, user[0]) == before
    resp = http.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code in (401, 403)  # anonymous callers have no balance to pay with


def test_endpoint_registration_is_checked(platform, providers):
    http, net = platform
    provision, server = next(iter(providers.items()))
    url = f"http://127.0.0.1:{server.port}"
    _, auth, own = _provider(http, net, models=["tiny", "not-there"])

    def register(provision_id: str, **body) -> httpx.Response:
        return http.put(
            f"/v1/inference/endpoints/{provision_id}", headers=auth, json={"url": url, "api_key": SERVER_KEY, **body}
        )

    assert register(provision).status_code == 403  # someone else's provision
    assert register("no-such-provision").status_code == 404
    refused = register(own)
    assert refused.status_code == 409 and refused.json()["field"] == "url" and "not-there" in refused.json()["detail"]
    refused = register(own, url=f"http://127.0.0.1:{free_port()}")
    assert refused.status_code == 409 and "does not answer" in refused.json()["detail"]
    assert register(own, url="ftp://somewhere").status_code == 422
    _, auth, container = _provider(http, net, models=[], kind="container")
    resp = http.put(f"/v1/inference/endpoints/{container}", headers=auth, json={"url": url})
    assert resp.status_code == 400 and resp.json()["field"] == "provision_id"
    assert http.get("/v1/inference/endpoints", headers=auth).json() == []


def test_a_dedicated_deployment_serves_its_renter_without_per_second_billing(client, platform, user, providers):
    http, _ = platform
    resp = http.post(
        "/v1/inference/deployments", headers=user[0], json={"model": "tiny", "term": "hour", "price_max_gwei": PRICE}
    )
    assert resp.status_code == 201, resp.text
    deployment = resp.json()
    assert deployment["cpu"] == 4 and deployment["term"] == "hour"  # the whole provision
    assert [d["id"] for d in http.get("/v1/inference/deployments", headers=user[0]).json()] == [deployment["id"]]
    before = _balance(http, user[0])
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    record = http.get("/v1/inference/requests", headers=user[0]).json()[0]
    assert record["provision_id"] == deployment["provision_id"] and record["lease_id"] is None, (record, deployment)
    assert record["status"] == "ok" and record["amount_gwei"] == 0
    assert _balance(http, user[0]) == before
    ended = http.post(f"/v1/leases/{deployment['id']}/end", headers=user[0], json={"reason": "user-cancelled"})
    assert ended.json()["status"] == "ended"


def test_a_request_matched_to_a_dead_server_is_served_by_another(client, platform, user, model_dir):
    import uvicorn

    from compute.inference import backends
    from compute.inference.server import create_app

    http, net = platform
    # the cheapest provision, so matching prefers it; its server answers registration, then goes away
    _, auth, cheap = _provider(http, net, models=["tiny"], price=PRICE - 5)
    port = free_port()
    model = backends.load(backends.ModelSpec.parse("text", f"tiny={model_dir / 'tiny'}"), "cpu")
    server = uvicorn.Server(uvicorn.Config(create_app([model]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    resp = http.put(f"/v1/inference/endpoints/{cheap}", headers=auth, json={"url": f"http://127.0.0.1:{port}"})
    assert resp.status_code == 200, resp.text
    server.should_exit = True
    thread.join(10)

    before = _balance(http, user[0])
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert reply.choices[0].message.content is not None
    record = http.get("/v1/inference/requests", headers=user[0]).json()[0]
    assert record["status"] == "ok" and record["provision_id"] != cheap
    (lost,) = [lease for lease in http.get("/v1/leases", headers=user[0]).json() if lease["provision_id"] == cheap]
    assert lost["end_reason"] == "provider-lost" and lost["paid_gwei"] == 0
    slashed = 2 * 10**9 * get_settings().slash_bps // 10_000
    assert _balance(http, user[0]) - before == slashed - record["amount_gwei"]
    (endpoint,) = http.get("/v1/inference/endpoints", headers=auth).json()
    assert endpoint["suspended"] and endpoint["failures"] == 1
    assert http.get(f"/v1/provisions/{cheap}").json()["status"] == "paused"


def test_killing_a_provider_mid_stream_sends_the_next_request_to_the_other(
    client, platform, user, providers, model_dir
):
    http, _ = platform
    before = _balance(http, user[0])
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Tell a story"}],
        max_tokens=4000,
        stream=True,
        temperature=0,
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    (lease,) = http.get("/v1/leases", params={"status": "active"}, headers=user[0]).json()
    victim = lease["provision_id"]
    dead = providers[victim]
    dead.kill()
    with pytest.raises(openai.APIError, match="provider failed mid-stream"):
        for _ in stream:
            pass

    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=5)
    assert reply.choices[0].message.content is not None

    failed, served = http.get("/v1/inference/requests", headers=user[0]).json()[1::-1]
    assert failed["provision_id"] == victim and failed["status"] == "failed" and failed["amount_gwei"] == 0
    assert served["provision_id"] != victim and served["status"] == "ok"
    ended = http.get(f"/v1/leases/{failed['lease_id']}", headers=user[0]).json()
    assert ended["end_reason"] == "provider-lost" and ended["paid_gwei"] == 0 and ended["escrow_left_gwei"] == 0
    # the failed lease cost nothing; its provider's slashed stake compensated the user
    slashed = 2 * 10**9 * get_settings().slash_bps // 10_000
    assert _balance(http, user[0]) - before == slashed - served["amount_gwei"]
    # the dead server's provision is out of matching: the network lists one provider for the model now
    (tiny,) = [m for m in http.get("/v1/models").json()["data"] if m["id"] == "tiny"]
    assert tiny["providers"] == 1

    # its provider starts a new server: registering it brings the provision back into matching
    providers[victim] = _serve(model_dir, dead.home, dead.wallet, victim, str(http.base_url))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        (tiny,) = [m for m in http.get("/v1/models").json()["data"] if m["id"] == "tiny"]
        if tiny["providers"] == 2:
            break
        time.sleep(0.5)
    assert tiny["providers"] == 2
