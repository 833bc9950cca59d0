"""The secret store: encrypted at rest on SQLite and PostgreSQL, bound to its owner and name, injected
into the agent context, and masked from logs, outputs and errors."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.secrets import SecretStore, redact
from agxnt.secrets.crypto import derive_key
from agxnt.social.discord import DiscordAgent
from agxnt.social.telegram import TelegramAgent
from cxmpute.errors import NotFound

from .conftest import DISCORD_CHANNEL, TELEGRAM_TOKEN

VALUE = "sk-live-" + "9f8e7d6c5b4a" * 3


@pytest.fixture
def db_url(platform_db_url):
    return platform_db_url


def test_set_list_resolve_delete_and_ciphertext_at_rest(db_url):
    store = SecretStore(db_url, derive_key("platform-secret-a"))
    store.set("0xA", "openai", VALUE)
    store.set("0xA", "discord_webhook_url", "https://discord.com/api/webhooks/1/abcdefgh")
    store.set("0xB", "openai", "another-value-xyz")
    assert [s.name for s in store.names("0xA")] == ["discord_webhook_url", "openai"]
    assert store.resolve("0xA", ["openai", "absent"]) == {"openai": VALUE}
    assert store.resolve("0xB", ["openai"]) == {"openai": "another-value-xyz"}
    with sa.create_engine(db_url).connect() as conn:
        blobs = [bytes(r[0]) for r in conn.execute(sa.text("SELECT ciphertext FROM account_secrets"))]
    assert len(blobs) == 3 and not any(VALUE.encode() in b for b in blobs)
    store.set("0xA", "openai", VALUE + "-rotated")
    assert store.resolve("0xA", ["openai"])["openai"].endswith("-rotated")
    store.delete("0xA", "openai")
    assert store.resolve("0xA", ["openai"]) == {}
    with pytest.raises(NotFound):
        store.delete("0xA", "openai")


def test_rows_are_bound_to_owner_and_key(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = SecretStore(url, derive_key("platform-secret-a"))
    store.set("0xA", "token", VALUE)
    with sa.create_engine(url).begin() as conn:  # someone with database access moves the row to 0xB
        conn.execute(sa.text("UPDATE account_secrets SET owner = '0xB'"))
    with pytest.raises(AgentError, match="cannot be decrypted") as err:
        store.resolve("0xB", ["token"])
    assert err.value.status_code == 409 and VALUE not in str(err.value)
    other_key = SecretStore(url, derive_key("platform-secret-b"))
    with pytest.raises(AgentError, match="cannot be decrypted"):
        other_key.resolve("0xB", ["token"])


@pytest.mark.parametrize(
    ("name", "value", "field"), [("bad name", VALUE, "name"), ("1x", VALUE, "name"), ("ok", "short", "value")]
)
def test_bad_names_and_values(tmp_path, name, value, field):
    store = SecretStore(f"sqlite:///{tmp_path / 'p.db'}", derive_key("k"))
    with pytest.raises(AgentError) as err:
        store.set("0xA", name, value)
    assert err.value.field == field and err.value.status_code == 422


async def test_context_reads_the_store_for_its_owner(settings):
    from agxnt.secrets import store_for

    owner = f"0x{uuid.uuid4().hex[:8]}"
    store_for(settings).set(owner, "telegram_bot_token", TELEGRAM_TOKEN)
    ctx = AgentContext(owner=owner, settings=settings, services=Services(settings))
    out = await TelegramAgent()({"chat_id": "-1001", "text": "from the store"}, ctx)
    assert out.sent.text == "from the store" and ctx.secrets == {"telegram_bot_token": TELEGRAM_TOKEN}
    stranger = AgentContext(owner="0xsomeoneelse", settings=settings, services=Services(settings))
    with pytest.raises(AgentError, match="secret 'telegram_bot_token' is not set") as err:
        await TelegramAgent()({"chat_id": "-1001", "text": "x"}, stranger)
    assert err.value.field == "telegram_bot_token"


async def test_secret_masked_in_logs_outputs_and_errors(settings, telegram, discord, caplog):
    """httpx logs every request URL, and a Telegram URL carries the bot token; a service may echo a
    credential back. None of it may reach a log record, an output or an exception."""
    caplog.set_level(logging.DEBUG)
    echo = f"your token {TELEGRAM_TOKEN} is fine"
    telegram.queue(
        (200, {}, {"ok": True, "result": {"message_id": 1, "chat": {"id": -1001}, "text": echo}}),
        (400, {}, {"ok": False, "error_code": 400, "description": f"Bad Request: {TELEGRAM_TOKEN}"}),
    )
    ctx = AgentContext(settings=settings, services=Services(settings), secrets={"telegram_bot_token": TELEGRAM_TOKEN})
    out = await TelegramAgent()({"chat_id": "-1001", "text": "hi"}, ctx)
    with pytest.raises(AgentError) as err:
        await TelegramAgent()({"chat_id": "-1001", "text": "hi"}, ctx)
    ctx.logger.info("sending with %s", TELEGRAM_TOKEN)
    token_part = TELEGRAM_TOKEN.split(":")[1]
    assert out.sent.text == "your token [redacted] is fine"
    assert token_part not in str(err.value) and "[redacted]" in err.value.message
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx did log the URLs
    assert token_part not in caplog.text
    assert all(token_part not in r.getMessage() for r in caplog.records)


def test_redact_walks_nested_values_and_token_fragments():
    secret = "https://discord.com/api/webhooks/123/" + "T0k3n" * 8
    data = {"a": [f"url={secret}", {"b": "T0k3n" * 8}], "n": 3}
    assert redact(data, [secret]) == {"a": ["url=[redacted]", {"b": "[redacted]"}], "n": 3}


async def test_discord_output_never_carries_the_webhook_token(ctx, discord):
    from .conftest import DISCORD_WEBHOOK_TOKEN

    discord.queue(
        (
            200,
            {},
            {
                "id": "1",
                "channel_id": DISCORD_CHANNEL,
                "content": DISCORD_WEBHOOK_TOKEN,
                "token": DISCORD_WEBHOOK_TOKEN,
            },
        )
    )
    out = await DiscordAgent()({"content": "x"}, ctx)
    assert DISCORD_WEBHOOK_TOKEN not in out.model_dump_json()
