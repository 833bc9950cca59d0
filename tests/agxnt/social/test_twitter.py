from __future__ import annotations

import base64

import pytest

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.social.twitter import TwitterAgent
from cxmpute.errors import NotFound

from .conftest import TWITTER_TOKEN, twitter_rate_limited


async def test_post_with_media(ctx, twitter):
    img = base64.b64encode(b"GIF89a...").decode()
    out = await TwitterAgent()(
        {"text": "hello", "media": [{"filename": "a.gif", "content_base64": img, "content_type": "image/gif"}]}, ctx
    )
    upload, post = twitter.requests
    assert upload.path == "/2/media/upload" and upload.headers["authorization"] == f"Bearer {TWITTER_TOKEN}"
    form = upload.form()
    assert form["media"] == ("a.gif", b"GIF89a...") and form["media_category"][1] == b"tweet_gif"
    assert post.path == "/2/tweets" and post.json() == {
        "text": "hello",
        "media": {"media_ids": ["1880028106020515840"]},
    }
    assert out.posted.id == "1900000000000000001" and out.media_ids == ["1880028106020515840"]


async def test_reply(ctx, twitter):
    await TwitterAgent()({"action": "reply", "text": "thanks", "reply_to": "1800000000000000000"}, ctx)
    assert twitter.requests[-1].json() == {"text": "thanks", "reply": {"in_reply_to_tweet_id": "1800000000000000000"}}
    with pytest.raises(AgentError) as err:
        await TwitterAgent()({"action": "reply", "text": "thanks"}, ctx)
    assert err.value.field == "reply_to"


async def test_search_recent_pages_with_next_token(ctx, twitter):
    out = await TwitterAgent()({"action": "search", "query": "from:xdevelopers -is:retweet", "max_results": 30}, ctx)
    assert [t.id for t in out.tweets] == list(twitter.corpus[:30])
    req = twitter.requests[0]
    assert req.path == "/2/tweets/search/recent" and req.arg("query") == "from:xdevelopers -is:retweet"
    assert req.arg("tweet.fields") == "created_at,author_id,conversation_id" and req.arg("max_results") == "30"
    few = await TwitterAgent()({"action": "search", "query": "x", "max_results": 3}, ctx)
    assert len(few.tweets) == 3 and twitter.requests[-1].arg("max_results") == "10"  # the endpoint's minimum


async def test_timeline_paginates_with_pagination_token(ctx, twitter):
    out = await TwitterAgent()({"action": "timeline", "username": "@XDevelopers", "max_results": 120}, ctx)
    assert [t.id for t in out.tweets] == list(twitter.corpus)
    lookup, *pages = twitter.requests
    assert lookup.path == "/2/users/by/username/XDevelopers"
    assert all(p.path == "/2/users/2244994945/tweets" for p in pages) and len(pages) == 1
    with pytest.raises(NotFound) as err:
        await TwitterAgent()({"action": "timeline", "username": "nobody"}, ctx)
    assert err.value.field == "username"


async def test_rate_limit_reset_is_honoured(ctx, twitter):
    twitter.queue(twitter_rate_limited(0))
    out = await TwitterAgent()({"action": "search", "query": "x"}, ctx)
    assert len(out.tweets) == 10 and len(twitter.requests) == 2


async def test_401_names_the_secret(settings):
    ctx = AgentContext(settings=settings, services=Services(settings), secrets={"twitter_token": "expired-token-1"})
    with pytest.raises(AgentError, match=r"Twitter rejected the credentials .*'token_secret' \(HTTP 401: Unauth"):
        await TwitterAgent()({"text": "x"}, ctx)
