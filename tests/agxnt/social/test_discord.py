from __future__ import annotations

import base64
import json

import pytest

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.social.discord import DiscordAgent
from agxnt.social.http import RateLimited, ServiceFailed
from cxmpute.errors import NotFound

from .conftest import DISCORD_BOT, DISCORD_CHANNEL, DISCORD_WEBHOOK_TOKEN, discord_rate_limited


async def test_webhook_post_with_embed(ctx, discord):
    out = await DiscordAgent()(
        {
            "content": "Deploy done",
            "username": "cx",
            "embeds": [
                {
                    "title": "Build 12",
                    "color": 0x00FF00,
                    "fields": [{"name": "tests", "value": "all green"}],
                    "footer": "ci",
                    "image_url": "https://example.org/a.png",
                }
            ],
        },
        ctx,
    )
    req = discord.requests[-1]
    assert req.method == "POST" and req.path == f"/api/v10/webhooks/998877665544/{DISCORD_WEBHOOK_TOKEN}"
    assert req.arg("wait") == "true" and "authorization" not in req.headers
    body = req.json()
    assert body["content"] == "Deploy done" and body["username"] == "cx"
    assert body["embeds"] == [
        {
            "title": "Build 12",
            "color": 0x00FF00,
            "image": {"url": "https://example.org/a.png"},
            "footer": {"text": "ci"},
            "fields": [{"name": "tests", "value": "all green", "inline": False}],
        }
    ]
    assert out.posted.id == "3000000" and out.posted.embeds[0]["title"] == "Build 12"


async def test_bot_post_with_attachments_and_reply(ctx, discord):
    png = base64.b64encode(b"\x89PNG fake").decode()
    out = await DiscordAgent()(
        {
            "channel_id": DISCORD_CHANNEL,
            "content": "files",
            "reply_to": "1999999",
            "attachments": [
                {"filename": "a.png", "content_base64": png, "content_type": "image/png"},
                {"filename": "notes.txt", "text": "hello"},
            ],
        },
        ctx,
    )
    req = discord.requests[-1]
    assert req.headers["authorization"] == f"Bot {DISCORD_BOT}"
    form = req.form()
    payload = json.loads(form["payload_json"][1])
    assert payload["attachments"] == [{"id": 0, "filename": "a.png"}, {"id": 1, "filename": "notes.txt"}]
    assert payload["message_reference"]["message_id"] == "1999999"
    assert form["files[0]"] == ("a.png", b"\x89PNG fake") and form["files[1]"] == ("notes.txt", b"hello")
    assert [a.filename for a in out.posted.attachments] == ["a.png", "notes.txt"]


async def test_read_pages_back_with_before(ctx, discord):
    out = await DiscordAgent()({"action": "read", "channel_id": DISCORD_CHANNEL, "limit": 230}, ctx)
    assert [m.id for m in out.messages] == list(discord.history[:230])
    pages = [(r.arg("limit"), r.arg("before")) for r in discord.requests]
    assert pages == [("100", None), ("100", discord.history[99]), ("30", discord.history[199])]


async def test_rate_limit_waits_the_reset_after(ctx, discord):
    discord.queue(discord_rate_limited(0.05), discord_rate_limited(0.05))
    out = await DiscordAgent()({"action": "read", "channel_id": DISCORD_CHANNEL, "limit": 5}, ctx)
    assert len(out.messages) == 5 and len(discord.requests) == 3


async def test_rate_limit_longer_than_allowed_is_reported(ctx, discord):
    discord.queue(discord_rate_limited(3600))
    with pytest.raises(RateLimited, match="retry after 3600 s"):
        await DiscordAgent()({"action": "read", "channel_id": DISCORD_CHANNEL}, ctx)
    assert len(discord.requests) == 1


async def test_5xx_retried_until_the_limit(ctx, discord):
    discord.queue(*[(502, {}, {"message": "Bad Gateway", "code": 0})] * 4)
    with pytest.raises(ServiceFailed, match="HTTP 502 after 4 attempts"):
        await DiscordAgent()({"action": "read", "channel_id": DISCORD_CHANNEL}, ctx)


async def test_bad_token_is_a_clear_401(settings, discord):
    ctx = AgentContext(
        settings=settings, services=Services(settings), secrets={"discord_bot_token": "not-the-bot-token"}
    )
    with pytest.raises(AgentError, match=r"Discord rejected the credentials .* \(HTTP 401: 401: Unauthorized\)") as e:
        await DiscordAgent()({"action": "read", "channel_id": DISCORD_CHANNEL}, ctx)
    assert e.value.field == "bot_token_secret" and "not-the-bot-token" not in str(e.value)


async def test_unknown_channel_and_bad_input(ctx):
    with pytest.raises(NotFound, match="Unknown Channel") as err:
        await DiscordAgent()({"action": "read", "channel_id": "1"}, ctx)
    assert err.value.field == "channel_id"
    with pytest.raises(AgentError) as err:
        await DiscordAgent()({"content": ""}, ctx)
    assert err.value.field == "content"
    bad = AgentContext(settings=ctx.settings, services=ctx.services, secrets={"discord_webhook_url": "hello world!"})
    with pytest.raises(AgentError, match="not a Discord webhook URL") as err:
        await DiscordAgent()({"content": "x"}, bad)
    assert "hello world" not in err.value.message
