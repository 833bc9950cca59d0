"""Telegram Bot API: send messages, photos and documents, reply in a chat, and read updates by long polling."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from agxnt.agent import Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.social.base import SocialAgent
from agxnt.social.files import Attachment
from agxnt.social.http import Service, ServiceFailed, call

POLL_MARGIN_S = 10.0  # the HTTP read timeout outlasts the long poll by this much


class TelegramMessage(BaseModel):
    message_id: int
    chat_id: int | str
    date: int | None = None
    text: str | None = None
    caption: str | None = None
    from_username: str | None = None
    reply_to_message_id: int | None = None


class Update(BaseModel):
    update_id: int
    message: TelegramMessage | None = None


class TelegramInput(BaseModel):
    action: Literal["send_message", "send_photo", "send_document", "reply", "get_updates"] = Field(
        "send_message",
        description="send_message, send_photo, send_document, reply (to `reply_to`), or get_updates (long polling)",
    )
    chat_id: str | None = Field(None, pattern=r"^(-?\d{1,20}|@\w{5,32})$", description="Chat id or @channel")
    text: str = Field("", max_length=4096, description="Message text, or caption of a photo or document")
    parse_mode: Literal["HTML", "MarkdownV2"] | None = None
    reply_to: int | None = Field(None, ge=1, description="Message id to reply to")
    file: Attachment | None = Field(None, description="Photo or document to upload")
    file_ref: str | None = Field(None, max_length=2048, description="Photo or document by URL or Telegram file_id")
    offset: int | None = Field(None, description="First update id to return (get_updates)")
    limit: int = Field(100, ge=1, le=100, description="Most updates to return (get_updates)")
    poll_seconds: int = Field(0, ge=0, le=50, description="Long-poll timeout (get_updates)")
    token_secret: str = Field("telegram_bot_token", description="Name of the secret holding the bot token")


class TelegramOutput(BaseModel):
    sent: TelegramMessage | None = None
    updates: list[Update] = Field(default_factory=list)
    next_offset: int | None = Field(None, description="Offset that acknowledges the updates returned")


def _message(data: dict[str, Any]) -> TelegramMessage:
    reply = data.get("reply_to_message") or {}
    return TelegramMessage(
        message_id=data["message_id"],
        chat_id=data.get("chat", {}).get("id", ""),
        date=data.get("date"),
        text=data.get("text"),
        caption=data.get("caption"),
        from_username=(data.get("from") or {}).get("username"),
        reply_to_message_id=reply.get("message_id"),
    )


class TelegramAgent(SocialAgent):
    id = "social.telegram"
    name = "Telegram"
    description = "Send Telegram messages, photos and documents as a bot, reply in a chat, or read updates."
    Input = TelegramInput
    Output = TelegramOutput
    resources = Resources(network=True, secrets=("telegram_bot_token",))
    actions: ClassVar[dict[str, str]] = {
        "send_message": "send_message",
        "reply": "send_message",
        "send_photo": "send_photo",
        "send_document": "send_document",
        "get_updates": "get_updates",
    }

    async def _method(
        self, input: TelegramInput, ctx: AgentContext, method: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        token = ctx.secret(input.token_secret)
        service = Service("Telegram", f"{ctx.settings.telegram_api_url}/bot{token}", "token_secret", timeout=timeout)
        body = await call(service, ctx, "POST", f"/{method}", not_found_field="chat_id", **kwargs)
        if not body.get("ok"):
            raise ServiceFailed(f"Telegram {method} failed: {body.get('description', 'no result')}")
        return body["result"]

    def _chat(self, input: TelegramInput) -> dict[str, Any]:
        if not input.chat_id:
            raise AgentError(f"chat_id is required for action {input.action!r}", field="chat_id", status_code=422)
        fields: dict[str, Any] = {"chat_id": input.chat_id}
        if input.parse_mode:
            fields["parse_mode"] = input.parse_mode
        if input.action == "reply" and not input.reply_to:
            raise AgentError("reply_to is required for action 'reply'", field="reply_to", status_code=422)
        if input.reply_to:
            fields["reply_parameters"] = {"message_id": input.reply_to}
        return fields

    async def send_message(self, input: TelegramInput, ctx: AgentContext) -> TelegramOutput:
        if not input.text:
            raise AgentError("text is required to send a message", field="text", status_code=422)
        result = await self._method(input, ctx, "sendMessage", json={**self._chat(input), "text": input.text})
        return TelegramOutput(sent=_message(result))

    async def _send_file(self, input: TelegramInput, ctx: AgentContext, method: str, kind: str) -> TelegramOutput:
        if (input.file is None) == (input.file_ref is None):
            raise AgentError(
                f"give exactly one of file or file_ref for action {input.action!r}", field="file", status_code=422
            )
        if len(input.text) > 1024:
            raise AgentError("a caption holds at most 1024 characters", field="text", status_code=422)
        fields = {**self._chat(input), "caption": input.text} if input.text else self._chat(input)
        if input.file_ref is not None:
            result = await self._method(input, ctx, method, json={**fields, kind: input.file_ref})
        else:
            # Multipart form fields are strings: nested objects go as JSON text, as the Bot API expects.
            form = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}
            result = await self._method(input, ctx, method, data=form, files={kind: input.file.upload("file")})
        return TelegramOutput(sent=_message(result))

    async def send_photo(self, input: TelegramInput, ctx: AgentContext) -> TelegramOutput:
        return await self._send_file(input, ctx, "sendPhoto", "photo")

    async def send_document(self, input: TelegramInput, ctx: AgentContext) -> TelegramOutput:
        return await self._send_file(input, ctx, "sendDocument", "document")

    async def get_updates(self, input: TelegramInput, ctx: AgentContext) -> TelegramOutput:
        params: dict[str, Any] = {"limit": input.limit, "timeout": input.poll_seconds, "allowed_updates": ["message"]}
        if input.offset is not None:
            params["offset"] = input.offset
        result = await self._method(input, ctx, "getUpdates", json=params, timeout=input.poll_seconds + POLL_MARGIN_S)
        updates = [
            Update(update_id=u["update_id"], message=_message(u["message"]) if "message" in u else None) for u in result
        ]
        return TelegramOutput(updates=updates, next_offset=updates[-1].update_id + 1 if updates else input.offset)
