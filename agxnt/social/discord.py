"""Discord (REST API v10): post through a webhook or as a bot, with embeds and attachments; read a
channel's recent messages."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from agxnt.agent import Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.social.base import SocialAgent
from agxnt.social.files import Attachment
from agxnt.social.http import Service, call

WEBHOOK_URL = re.compile(r"/webhooks/(\d+)/([A-Za-z0-9_.-]+)/?$")
SNOWFLAKE = r"^\d{1,20}$"
PAGE_SIZE = 100  # the most messages Discord returns per call


class EmbedField(BaseModel):
    name: str = Field(..., min_length=1, max_length=256)
    value: str = Field(..., min_length=1, max_length=1024)
    inline: bool = False


class Embed(BaseModel):
    title: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)
    url: str | None = None
    color: int | None = Field(None, ge=0, le=0xFFFFFF)
    fields: list[EmbedField] = Field(default_factory=list, max_length=25)
    image_url: str | None = None
    footer: str | None = Field(None, max_length=2048)

    def wire(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(exclude_none=True, exclude={"image_url", "footer", "fields"})
        if self.fields:
            data["fields"] = [f.model_dump() for f in self.fields]
        if self.image_url:
            data["image"] = {"url": self.image_url}
        if self.footer:
            data["footer"] = {"text": self.footer}
        return data


class DiscordAttachment(BaseModel):
    id: str
    filename: str
    url: str | None = None
    size: int | None = None


class Message(BaseModel):
    id: str
    channel_id: str
    content: str = ""
    author: str | None = Field(None, description="Username of the author")
    timestamp: str | None = None
    embeds: list[dict[str, Any]] = Field(default_factory=list)
    attachments: list[DiscordAttachment] = Field(default_factory=list)


class DiscordInput(BaseModel):
    action: Literal["post", "read"] = Field("post", description="post a message, or read a channel's recent ones")
    channel_id: str | None = Field(
        None,
        pattern=SNOWFLAKE,
        description="Channel to post to as the bot, or to read; posting without it goes through the webhook",
    )
    content: str = Field("", max_length=2000, description="Message text")
    embeds: list[Embed] = Field(default_factory=list, max_length=10)
    attachments: list[Attachment] = Field(default_factory=list, max_length=10)
    reply_to: str | None = Field(None, pattern=SNOWFLAKE, description="Message id to reply to (bot posts)")
    username: str | None = Field(None, max_length=80, description="Name the webhook posts under")
    limit: int = Field(50, ge=1, le=1000, description="Most messages to read")
    before: str | None = Field(None, pattern=SNOWFLAKE, description="Read messages older than this id")
    webhook_secret: str = Field("discord_webhook_url", description="Name of the secret holding the webhook URL")
    bot_token_secret: str = Field("discord_bot_token", description="Name of the secret holding the bot token")


class DiscordOutput(BaseModel):
    posted: Message | None = None
    messages: list[Message] = Field(default_factory=list)


def _message(data: dict[str, Any]) -> Message:
    return Message(
        id=str(data["id"]),
        channel_id=str(data.get("channel_id", "")),
        content=data.get("content", ""),
        author=(data.get("author") or {}).get("username"),
        timestamp=data.get("timestamp"),
        embeds=data.get("embeds", []),
        attachments=[
            DiscordAttachment(id=str(a["id"]), filename=a.get("filename", ""), url=a.get("url"), size=a.get("size"))
            for a in data.get("attachments", [])
        ],
    )


class DiscordAgent(SocialAgent):
    id = "social.discord"
    name = "Discord"
    description = "Post to a Discord channel (webhook or bot) with embeds and attachments, or read its messages."
    Input = DiscordInput
    Output = DiscordOutput
    resources = Resources(network=True, secrets=("discord_webhook_url", "discord_bot_token"))
    actions: ClassVar[dict[str, str]] = {"post": "post", "read": "read"}

    def _bot(self, input: DiscordInput, ctx: AgentContext) -> Service:
        return Service(
            "Discord",
            ctx.settings.discord_api_url,
            "bot_token_secret",
            headers={"Authorization": f"Bot {ctx.secret(input.bot_token_secret)}"},
        )

    def _webhook_path(self, input: DiscordInput, ctx: AgentContext) -> str:
        # Only the id and token are taken from the URL: requests always go to the configured API base.
        match = WEBHOOK_URL.search(ctx.secret(input.webhook_secret))
        if match is None:
            raise AgentError(
                f"the secret {input.webhook_secret!r} is not a Discord webhook URL "
                "(https://discord.com/api/webhooks/<id>/<token>)",
                field="webhook_secret",
                status_code=422,
            )
        return f"/webhooks/{match[1]}/{match[2]}"

    def _payload(self, input: DiscordInput) -> dict[str, Any]:
        if not (input.content or input.embeds or input.attachments):
            raise AgentError("a post needs content, embeds or attachments", field="content", status_code=422)
        payload: dict[str, Any] = {
            "content": input.content,
            "embeds": [e.wire() for e in input.embeds],
            "allowed_mentions": {"parse": []},
        }
        if input.attachments:
            payload["attachments"] = [{"id": i, "filename": a.filename} for i, a in enumerate(input.attachments)]
        return payload

    def _body(self, input: DiscordInput, payload: dict[str, Any]) -> dict[str, Any]:
        """JSON, or multipart with ``payload_json`` and ``files[n]`` when there are attachments."""
        if not input.attachments:
            return {"json": payload}
        files = [(f"files[{i}]", a.upload(f"attachments.{i}")) for i, a in enumerate(input.attachments)]
        return {"data": {"payload_json": json.dumps(payload)}, "files": files}

    async def post(self, input: DiscordInput, ctx: AgentContext) -> DiscordOutput:
        payload = self._payload(input)
        if input.channel_id:
            if input.reply_to:
                payload["message_reference"] = {"message_id": input.reply_to, "fail_if_not_exists": False}
            data = await call(
                self._bot(input, ctx),
                ctx,
                "POST",
                f"/channels/{input.channel_id}/messages",
                not_found_field="channel_id",
                **self._body(input, payload),
            )
        else:
            if input.reply_to:
                raise AgentError(
                    "replies need channel_id (a bot post); webhooks cannot reply", field="reply_to", status_code=422
                )
            if input.username:
                payload["username"] = input.username
            service = Service("Discord", ctx.settings.discord_api_url, "webhook_secret")
            data = await call(
                service,
                ctx,
                "POST",
                self._webhook_path(input, ctx),
                params={"wait": "true"},
                not_found_field="webhook_secret",
                **self._body(input, payload),
            )
        return DiscordOutput(posted=_message(data))

    async def read(self, input: DiscordInput, ctx: AgentContext) -> DiscordOutput:
        if not input.channel_id:
            raise AgentError("channel_id is required to read messages", field="channel_id", status_code=422)
        bot = self._bot(input, ctx)
        messages: list[Message] = []
        before = input.before
        for _ in ctx.iterate(-(-input.limit // PAGE_SIZE)):
            params = {"limit": min(PAGE_SIZE, input.limit - len(messages))}
            if before:
                params["before"] = before
            page = await call(
                bot, ctx, "GET", f"/channels/{input.channel_id}/messages", params=params, not_found_field="channel_id"
            )
            messages.extend(_message(m) for m in page)
            if len(page) < params["limit"]:
                break
            before = str(page[-1]["id"])
        return DiscordOutput(messages=messages[: input.limit])
