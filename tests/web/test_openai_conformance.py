"""The gateway as OpenAI's own clients see it: the official ``openai`` SDK (with its default retries) and
LangChain's ChatOpenAI against the platform API on uvicorn, routing to a provider's inference server (the
CLI's, serving a tiny model) through the market. Errors come in OpenAI's envelope with OpenAI's statuses,
so the SDK raises the matching exception with the message, and nothing retrying cannot fix is retried."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from fixtures.tiny_llm import build_tiny_causal_lm
from langchain_openai import ChatOpenAI

from compute.network import Network
from tests.support.inference import platform_api, publish_provider, serve, user_key, wait_served

pytestmark = pytest.mark.slow

PRICE = 10  # gwei per compute-unit-second
MODELS = ["tiny", "acme/tiny"]  # one served model's id holds a slash, as Hugging Face ids do
HELLO = [{"role": "user", "content": "Hello"}]


class Sent:
    """Every request the SDK sends, counted on its own HTTP client: a retry shows as a second one."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request) -> None:
        self.requests.append(f"{request.method} {request.url.path}")

    def client(self) -> openai.DefaultHttpxClient:
        return openai.DefaultHttpxClient(event_hooks={"request": [self]})


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[tuple[httpx.Client, Network, tuple[int, int]]]:
    """The API, and one provider serving ``MODELS``; with the seconds (Unix) just before and just after its
    provision was published."""
    root = tmp_path_factory.mktemp("net")
    build_tiny_causal_lm(root / "tiny")
    with platform_api(root / "platform.db") as (http, net):
        before = int(time.time())
        wallet, _, provision = publish_provider(http, net, MODELS, price=PRICE)
        published = (before, int(time.time()))
        server = serve(
            [arg for name in MODELS for arg in ("--model", f"{name}={root / 'tiny'}")],
            root,
            wallet,
            provision,
            str(http.base_url),
        )
        try:
            wait_served(http, dict.fromkeys(MODELS, 1), [server])
            yield http, net, published
        finally:
            server.stop()


@pytest.fixture(scope="module")
def key(network) -> str:
    http, net, _ = network
    return user_key(http, net)[2]


def _sdk(http: httpx.Client, api_key: str, sent: Sent) -> openai.OpenAI:
    # the SDK's defaults but for the timeout: two retries, on 408, 409, 429 and 5xx unless told not to
    return openai.OpenAI(
        base_url=f"{str(http.base_url).rstrip('/')}/v1",
        api_key=api_key,
        max_retries=2,
        timeout=120,
        http_client=sent.client(),
    )


def test_an_unknown_model_is_not_found_with_the_message_and_not_retried(network, key):
    http, _, _ = network
    sent = Sent()
    with pytest.raises(openai.NotFoundError) as caught:
        _sdk(http, key, sent).chat.completions.create(model="nope", messages=HELLO, max_tokens=4)
    error = caught.value
    assert error.status_code == 404 and error.code == "model_not_found" and error.type == "invalid_request_error"
    assert error.param == "model" and "'nope' does not exist" in error.body["message"]
    assert sent.requests == ["POST /v1/chat/completions"]


def test_a_bad_parameter_is_a_bad_request_naming_it(network, key):
    http, _, _ = network
    sent = Sent()
    sdk = _sdk(http, key, sent)
    for field, kwargs in [("messages", {"messages": []}), ("temperature", {"temperature": 7})]:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(**{"model": "tiny", "messages": HELLO, **kwargs})
        assert caught.value.param == field and caught.value.type == "invalid_request_error", caught.value.body
        assert field in caught.value.body["message"]
    assert len(sent.requests) == 2

    not_json = http.post(
        "/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and not_json.headers["x-should-retry"] == "false"
    assert set(not_json.json()) == {"error"} and not_json.json()["error"]["param"] is None


def test_a_price_range_below_every_ask_names_the_header(network, key):
    http, _, _ = network
    sent = Sent()
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(http, key, sent).chat.completions.create(
            model="tiny", messages=HELLO, max_tokens=4, extra_headers={"X-Cxmpute-Price-Max": str(PRICE - 1)}
        )
    assert (
        caught.value.param == "x-cxmpute-price-max"
        and f"lowest ask satisfying every other constraint is {PRICE}" in caught.value.body["message"]
    )
    assert len(sent.requests) == 1


def test_no_funds_is_insufficient_quota_and_a_bad_key_is_unauthenticated_neither_retried(network):
    http, net, _ = network
    broke = user_key(http, net, deposit_wei=0)[2]
    sent = Sent()
    with pytest.raises(openai.RateLimitError) as caught:
        _sdk(http, broke, sent).chat.completions.create(model="tiny", messages=HELLO, max_tokens=4)
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    with pytest.raises(openai.AuthenticationError) as caught:
        _sdk(http, "cxk_not-a-key", sent).chat.completions.create(model="tiny", messages=HELLO)
    assert caught.value.code == "invalid_api_key" and caught.value.body["message"]
    assert len(sent.requests) == 2


def test_models_are_retrieved_and_created_is_when_they_were_published(network, key):
    http, _, (before, after) = network
    sdk = _sdk(http, key, Sent())
    listed = {m.id: m for m in sdk.models.list()}
    assert set(listed) == set(MODELS)
    for name in MODELS:
        model = sdk.models.retrieve(name)
        assert (model.id, model.object, model.created) == (name, "model", listed[name].created)
        assert before <= model.created <= after
    second = int(time.time())
    while int(time.time()) == second:  # the next list is in a later second of the clock
        time.sleep(0.05)
    assert {m.id: m.created for m in sdk.models.list()} == {name: m.created for name, m in listed.items()}

    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("nope")
    assert caught.value.code == "model_not_found"
    # the model archive's routes, under the same prefix, are not model ids: this is its list of archives
    assert isinstance(http.get("/v1/models/archive").json(), list)


def test_langchain_chat_openai_on_an_unknown_model_raises_not_found(network, key):
    http, _, _ = network
    sent = Sent()
    chat = ChatOpenAI(
        model="nope",
        base_url=f"{str(http.base_url).rstrip('/')}/v1",
        api_key=key,
        max_retries=2,
        http_client=sent.client(),
    )
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        chat.invoke("Hello")
    assert len(sent.requests) == 1
    assert chat.model_copy(update={"model_name": "tiny"}).invoke("Hello", max_tokens=4).content is not None


def test_only_the_openai_routes_speak_openai(network, key):
    http, _, _ = network
    wrong_method = http.get("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"})
    assert wrong_method.status_code == 405 and set(wrong_method.json()["error"]) == {"message", "type", "param", "code"}
    platform_route = http.get("/v1/inference/requests", params={"limit": 0}, headers={"Authorization": f"Bearer {key}"})
    assert platform_route.status_code == 422 and "detail" in platform_route.json()
    assert "error" not in platform_route.json()
