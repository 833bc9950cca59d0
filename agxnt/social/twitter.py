"""Twitter (X) API v2: post and reply (with uploaded media), search recent posts, read a user's timeline.
The secret is an OAuth 2 bearer token: app-only for reading, user context for posting."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from agxnt.agent import Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.social.base import SocialAgent
from agxnt.social.files import Attachment
from agxnt.social.http import Service, call
from cxmpute.errors import NotFound

TWEET_FIELDS = "created_at,author_id,conversation_id"
PAGE_BOUNDS = {"search": (10, 100), "timeline": (5, 100)}  # max_results each endpoint accepts
TWEET_ID = r"^\d{1,20}$"


class Tweet(BaseModel):
    id: str
    text: str
    author_id: str | None = None
    created_at: str | None = None
    conversation_id: str | None = None


class TwitterInput(BaseModel):
    action: Literal["post", "reply", "search", "timeline"] = Field(
        "post",
        description="post: a new post; reply: answer `reply_to`; search: recent posts matching `query`; "
        "timeline: latest posts of `username`",
    )
    text: str = Field("", max_length=4000, description="Post text (post, reply)")
    reply_to: str | None = Field(None, pattern=TWEET_ID, description="Post id to answer (reply)")
    media: list[Attachment] = Field(default_factory=list, max_length=4, description="Images or video to attach")
    query: str | None = Field(None, max_length=512, description="Search query, X search syntax (search)")
    username: str | None = Field(None, pattern=r"^@?\w{1,15}$", description="Account handle (timeline)")
    max_results: int = Field(10, ge=1, le=1000, description="Most posts to return (search, timeline)")
    token_secret: str = Field("twitter_token", description="Name of the secret holding the OAuth 2 bearer token")


class TwitterOutput(BaseModel):
    posted: Tweet | None = None
    media_ids: list[str] = Field(default_factory=list)
    tweets: list[Tweet] = Field(default_factory=list)


class TwitterAgent(SocialAgent):
    id = "social.twitter"
    name = "Twitter"
    description = "Post and reply on X (Twitter) with media, search recent posts, or read a user's timeline."
    Input = TwitterInput
    Output = TwitterOutput
    resources = Resources(network=True, secrets=("twitter_token",))
    actions: ClassVar[dict[str, str]] = {"post": "post", "reply": "post", "search": "search", "timeline": "timeline"}

    def _api(self, input: TwitterInput, ctx: AgentContext) -> Service:
        return Service(
            "Twitter",
            ctx.settings.twitter_api_url,
            "token_secret",
            headers={"Authorization": f"Bearer {ctx.secret(input.token_secret)}"},
        )

    async def post(self, input: TwitterInput, ctx: AgentContext) -> TwitterOutput:
        if not (input.text or input.media):
            raise AgentError("a post needs text or media", field="text", status_code=422)
        body: dict[str, Any] = {"text": input.text}
        if input.action == "reply":
            if not input.reply_to:
                raise AgentError("reply_to is required for action 'reply'", field="reply_to", status_code=422)
            body["reply"] = {"in_reply_to_tweet_id": input.reply_to}
        api = self._api(input, ctx)
        media_ids = [await self._upload(api, ctx, m, f"media.{i}") for i, m in enumerate(input.media)]
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        data = await call(api, ctx, "POST", "/tweets", json=body, not_found_field="reply_to")
        return TwitterOutput(posted=Tweet(**data["data"]), media_ids=media_ids)

    async def _upload(self, api: Service, ctx: AgentContext, media: Attachment, field: str) -> str:
        category = (
            "tweet_video"
            if media.content_type.startswith("video/")
            else "tweet_gif"
            if media.content_type == "image/gif"
            else "tweet_image"
        )
        data = await call(
            api,
            ctx,
            "POST",
            "/media/upload",
            files={"media": media.upload(field)},
            data={"media_category": category, "media_type": media.content_type},
        )
        return str(data["data"]["id"])

    async def _paged(
        self, input: TwitterInput, ctx: AgentContext, path: str, params: dict[str, Any], token_param: str, field: str
    ) -> list[Tweet]:
        api = self._api(input, ctx)
        low, high = PAGE_BOUNDS[input.action]
        tweets: list[Tweet] = []
        token = None
        for _ in ctx.iterate(-(-input.max_results // high)):
            page = {
                **params,
                "tweet.fields": TWEET_FIELDS,
                "max_results": max(low, min(high, input.max_results - len(tweets))),
            }
            if token:
                page[token_param] = token
            body = await call(api, ctx, "GET", path, params=page, not_found_field=field)
            tweets.extend(Tweet(**t) for t in body.get("data", []))
            token = body.get("meta", {}).get("next_token")
            if not token or len(tweets) >= input.max_results:
                break
        return tweets[: input.max_results]

    async def search(self, input: TwitterInput, ctx: AgentContext) -> TwitterOutput:
        if not input.query:
            raise AgentError("query is required for action 'search'", field="query", status_code=422)
        tweets = await self._paged(input, ctx, "/tweets/search/recent", {"query": input.query}, "next_token", "query")
        return TwitterOutput(tweets=tweets)

    async def timeline(self, input: TwitterInput, ctx: AgentContext) -> TwitterOutput:
        if not input.username:
            raise AgentError("username is required for action 'timeline'", field="username", status_code=422)
        handle = input.username.lstrip("@")
        user = await call(self._api(input, ctx), ctx, "GET", f"/users/by/username/{handle}", not_found_field="username")
        if "data" not in user:  # X answers 200 with an errors list for an unknown handle
            raise NotFound(f"no X account named {handle!r}", field="username")
        tweets = await self._paged(
            input, ctx, f"/users/{user['data']['id']}/tweets", {}, "pagination_token", "username"
        )
        return TwitterOutput(tweets=tweets)
