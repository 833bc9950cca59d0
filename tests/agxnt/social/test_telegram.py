from __future__ import annotations

import base64

import pytest

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.social.http import RateLimited
from agxnt.social.telegram import TelegramAgent

from .conftest import TELEGRAM_TOKEN, telegram_rate_limited


async def test_send_message_and_reply(ctx, telegram):
    out = await TelegramAgent()({"chat_id": "-1001", "text": "hello", "parse_mode": "HTML"}, ctx)
    req = telegram.requests[-1]
    assert req.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    assert req.json() == {"chat_id": "-1001", "text": "hello", "parse_mode": "HTML"}
    assert out.sent.text == "hello" and out.sent.chat_id == -1001
    out = await TelegramAgent()({"action": "reply", "chat_id": "-1001", "text": "re", "reply_to": 77}, ctx)
    assert telegram.requests[-1].json()["reply_parameters"] == {"message_id": 77}
    assert out.sent.reply_to_message_id == 77


async def test_send_photo_upload_and_document_by_reference(ctx, telegram):
    jpg = base64.b64encode(b"\xff\xd8\xff jpeg").decode()
    out = await TelegramAgent()(
        {
            "action": "send_photo",
            "chat_id": "-1001",
            "text": "look",
            "reply_to": 5,
            "file": {"filename": "p.jpg", "content_base64": jpg, "content_type": "image/jpeg"},
        },
        ctx,
    )
    form = telegram.requests[-1].form()
    assert form["photo"] == ("p.jpg", b"\xff\xd8\xff jpeg")
    assert form["caption"][1] == b"look" and form["reply_parameters"][1] == b'{"message_id": 5}'
    assert out.sent.caption == "look"
    await TelegramAgent()({"action": "send_document", "chat_id": "@cxmpute_news", "file_ref": "BQACAgIAAxk"}, ctx)
    req = telegram.requests[-1]
    assert req.path.endswith("/sendDocument") and req.json() == {"chat_id": "@cxmpute_news", "document": "BQACAgIAAxk"}


async def test_get_updates_long_polls_from_offset(ctx, telegram):
    out = await TelegramAgent()({"action": "get_updates", "offset": 901, "poll_seconds": 1}, ctx)
    assert [u.update_id for u in out.updates] == [901, 902] and out.next_offset == 903
    assert telegram.requests[-1].json() == {"limit": 100, "timeout": 1, "allowed_updates": ["message"], "offset": 901}
    assert out.updates[0].message.text == "hi 901"


async def test_429_retry_after_then_success(ctx, telegram):
    telegram.queue(telegram_rate_limited(1))
    out = await TelegramAgent()({"chat_id": "-1001", "text": "after the wait"}, ctx)
    assert out.sent.text == "after the wait" and len(telegram.requests) == 2


async def test_errors_are_clear_and_free_of_the_token(settings, ctx, telegram):
    with pytest.raises(AgentError, match="chat not found"):
        await TelegramAgent()({"chat_id": "-404", "text": "x"}, ctx)
    wrong = "987654321:AAWrongTokenWrongTokenWrongToken12"
    bad = AgentContext(settings=settings, services=Services(settings), secrets={"telegram_bot_token": wrong})
    with pytest.raises(AgentError, match=r"Telegram rejected the credentials") as err:
        await TelegramAgent()({"chat_id": "-1001", "text": "x"}, bad)
    assert wrong.split(":")[1] not in str(err.value) and err.value.field == "token_secret"
    telegram.queue(telegram_rate_limited(3600))
    with pytest.raises(RateLimited):
        await TelegramAgent()({"chat_id": "-1001", "text": "x"}, ctx)
    with pytest.raises(AgentError) as err:
        await TelegramAgent()({"action": "send_photo", "chat_id": "-1001"}, ctx)
    assert err.value.field == "file"
