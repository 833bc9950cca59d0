"""The YouTube digest template in real Prefect runs: transcript, summary, posts to Discord and Telegram,
with the owner's secrets read from the store and absent from run results and run logs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from agxnt.secrets import store_for
from cxmpute.settings import get_settings
from flows.runner import run_workflow
from flows.spec import load_document

from .conftest import DISCORD_CHANNEL, DISCORD_WEBHOOK_TOKEN, SECRET_VALUES, SECRETS, TELEGRAM_TOKEN

TEMPLATE = Path(__file__).resolve().parents[3] / "flows" / "templates" / "youtube_digest.yaml"


@pytest.fixture(scope="module")
def owner(prefect_api, configured) -> str:
    owner = f"0xD16E57{uuid.uuid4().hex[:8]}"
    store = store_for(get_settings())
    for name in ("discord_webhook_url", "telegram_bot_token"):
        store.set(owner, name, SECRETS[name])
    return owner


def run_logs(run_id: str, expect: str | None = None) -> str:
    """The run's log lines in the Prefect API; they are shipped in batches, so wait (bounded) for ``expect``."""
    text = ""
    for _ in range(50):
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])), limit=200)
        text = "\n".join(log.message for log in logs)
        if expect is None or expect in text:
            break
        time.sleep(0.2)
    return text


def without_summary() -> dict:
    """The template posting the transcript itself: langchain-openai binds its cached async client to the
    first event loop that used it, so a second run calling the model from this process fails; one summary
    run per module is what the model server fixture supports."""
    document = load_document(TEMPLATE)
    next(n for n in document["nodes"] if n["id"] == "youtube")["params"]["summarize"] = False
    next(e for e in document["edges"] if e["source_field"] == "summary")["source_field"] = "transcript"
    return document


def assert_no_secret(text: str) -> None:
    assert not [v for v in SECRET_VALUES if v in text]


def test_summarize_and_post_to_discord_and_telegram(owner, youtube, discord, telegram):
    result = run_workflow(
        load_document(TEMPLATE), inputs={"video": "https://youtu.be/dQw4w9WgXcQ", "telegram_chat": "-1001"}, owner=owner
    )
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    text = "Summary: Hello and welcome\n\nhttps://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert result.outputs["summary"] == "Summary: Hello and welcome"
    assert result.outputs["discord_message"]["content"] == text
    assert result.outputs["telegram_message"]["text"] == text
    webhook = [r for r in discord.requests if r.path.endswith(f"/webhooks/998877665544/{DISCORD_WEBHOOK_TOKEN}")]
    assert webhook[0].json()["username"] == "Cxmpute digest"
    sent = [r for r in telegram.requests if r.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"]
    assert sent[0].json() == {"chat_id": "-1001", "text": text}
    assert_no_secret(result.model_dump_json())
    assert_no_secret(run_logs(result.flow_run_id, expect="Finished in state"))


def test_failed_node_reports_the_service_error_without_the_token(owner, telegram):
    telegram.queue(
        *[
            (
                400,
                {},
                {
                    "ok": False,
                    "error_code": 400,
                    "description": f"Bad Request: bot {TELEGRAM_TOKEN} can't initiate conversation",
                },
            )
        ]
        * 4
    )
    result = run_workflow(without_summary(), inputs={"video": "dQw4w9WgXcQ", "telegram_chat": "-1001"}, owner=owner)
    assert result.state == "failed"
    error = result.nodes["telegram"].error
    assert "Telegram refused the request (HTTP 400: Bad Request: bot [redacted]" in error
    assert result.nodes["discord"].state == "completed"
    assert_no_secret(json.dumps(result.model_dump(mode="json")))
    logs = run_logs(result.flow_run_id, expect="[redacted]")
    assert "[redacted]" in logs
    assert_no_secret(logs)


def test_missing_secret_fails_the_node_naming_it(prefect_api, configured):
    result = run_workflow(
        without_summary(), inputs={"video": "dQw4w9WgXcQ", "telegram_chat": "-1001"}, owner="0xno5ecret5"
    )
    assert result.state == "failed"
    assert "secret 'discord_webhook_url' is not set" in result.nodes["discord"].error
    assert "secret 'telegram_bot_token' is not set" in result.nodes["telegram"].error


READERS = {
    "version": 1,
    "name": "social readers",
    "outputs": {
        "videos": {"node": "uploads", "field": "videos"},
        "posts": {"node": "search", "field": "tweets"},
        "messages": {"node": "channel", "field": "messages"},
        "reply": {"node": "reply", "field": "posted"},
    },
    "nodes": [
        {
            "id": "uploads",
            "agent": "social.youtube",
            "params": {"action": "uploads", "channel_id": "UCchannel0000000000000", "max_results": 3},
        },
        {
            "id": "search",
            "agent": "social.twitter",
            "params": {"action": "search", "query": "cxmpute", "max_results": 2},
        },
        {"id": "first", "agent": "io.json", "params": {"path": "0.id"}},
        {"id": "reply", "agent": "social.twitter", "params": {"action": "reply", "text": "thanks!"}},
        {
            "id": "channel",
            "agent": "social.discord",
            "params": {"action": "read", "channel_id": DISCORD_CHANNEL, "limit": 2},
        },
    ],
    "edges": [
        {"source": "search", "source_field": "tweets", "target": "first", "target_field": "data"},
        {"source": "first", "source_field": "value", "target": "reply", "target_field": "reply_to"},
    ],
}


def test_readers_and_a_reply_in_one_run(owner, twitter):
    store = store_for(get_settings())
    for name in ("youtube_api_key", "twitter_token", "discord_bot_token"):
        store.set(owner, name, SECRETS[name])
    result = run_workflow(READERS, owner=owner)
    assert result.state == "completed", {n: r.error for n, r in result.nodes.items()}
    assert [v["id"] for v in result.outputs["videos"]] == ["upl00000000", "upl00000001", "upl00000002"]
    assert len(result.outputs["posts"]) == 2 and len(result.outputs["messages"]) == 2
    assert twitter.requests[-1].json()["reply"] == {"in_reply_to_tweet_id": result.outputs["posts"][0]["id"]}
    assert_no_secret(result.model_dump_json())
