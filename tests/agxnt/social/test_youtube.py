from __future__ import annotations

import pytest

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.social.http import RateLimited
from agxnt.social.youtube import YouTubeAgent, video_id
from cxmpute.errors import NotFound

from .conftest import YOUTUBE_KEY, google_error


async def test_video_details_sends_key_in_header(ctx, youtube):
    out = await YouTubeAgent()({"action": "video", "video": "https://youtu.be/dQw4w9WgXcQ"}, ctx)
    video = out.videos[0]
    assert (video.id, video.title, video.duration, video.view_count) == (
        "dQw4w9WgXcQ",
        "Video dQw4w9WgXcQ",
        "PT4M13S",
        1234,
    )
    req = youtube.requests[-1]
    assert req.path == "/youtube/v3/videos"
    assert req.arg("part") == "snippet,contentDetails,statistics" and req.arg("id") == "dQw4w9WgXcQ"
    assert req.headers["x-goog-api-key"] == YOUTUBE_KEY and "key" not in req.query


async def test_channel_uploads_follow_page_tokens(ctx, youtube):
    out = await YouTubeAgent()({"action": "uploads", "channel_id": "UCchannel0000000000000", "max_results": 75}, ctx)
    assert [v.id for v in out.videos] == list(youtube.uploads[:75])
    pages = [r for r in youtube.requests if r.path == "/youtube/v3/playlistItems"]
    assert [(r.arg("maxResults"), r.arg("pageToken")) for r in pages] == [("50", None), ("25", "50")]


async def test_search_stops_when_results_run_out(ctx, youtube):
    out = await YouTubeAgent()({"action": "search", "query": "cats", "max_results": 20}, ctx)
    assert len(out.videos) == 7
    assert youtube.requests[-1].arg("q") == "cats" and youtube.requests[-1].arg("type") == "video"


async def test_transcript_and_missing_transcript(ctx, youtube):
    out = await YouTubeAgent()({"action": "transcript", "video": "dQw4w9WgXcQ"}, ctx)
    assert out.transcript == "Hello and welcome to the demo."
    assert [s.start for s in out.segments] == [0.0, 3.5]
    req = youtube.requests[-1]
    assert (req.path, req.arg("fmt"), req.arg("lang")) == ("/api/timedtext", "json3", "en")
    with pytest.raises(NotFound, match="has no transcript in language 'en'") as err:
        await YouTubeAgent()({"action": "transcript", "video": "nocaption01"}, ctx)
    assert err.value.field == "video"


async def test_bad_key_and_quota_reported_clearly(settings, youtube):
    ctx = AgentContext(settings=settings, services=Services(settings), secrets={"youtube_api_key": "wrong-key-123"})
    with pytest.raises(AgentError, match="API key not valid"):
        await YouTubeAgent()({"action": "video", "video": "dQw4w9WgXcQ"}, ctx)
    youtube.queue(
        google_error(403, "The request cannot be completed because you have exceeded your quota.", "quotaExceeded")
    )
    good = AgentContext(settings=settings, services=Services(settings), secrets={"youtube_api_key": YOUTUBE_KEY})
    with pytest.raises(AgentError, match="exceeded your quota") as err:
        await YouTubeAgent()({"action": "video", "video": "dQw4w9WgXcQ"}, good)
    assert err.value.status_code == 403 and err.value.field == "api_key_secret"


async def test_transient_errors_are_retried_then_reported(ctx, youtube):
    youtube.queue(google_error(503, "Backend Error", "backendError"), (429, {"Retry-After": "0"}, {}))
    out = await YouTubeAgent()({"action": "video", "video": "dQw4w9WgXcQ"}, ctx)
    assert out.videos and len(youtube.requests) == 3
    youtube.queue(*[(429, {"Retry-After": "0"}, {})] * 4)
    with pytest.raises(RateLimited, match="rate limit"):
        await YouTubeAgent()({"action": "video", "video": "dQw4w9WgXcQ"}, ctx)


async def test_summary_through_the_platform_model(youtube, model_url, settings):
    settings = settings.model_copy(update={"llm_base_url": f"{model_url}/v1", "llm_model": "local"})
    ctx = AgentContext(settings=settings, services=Services(settings))
    out = await YouTubeAgent()({"action": "transcript", "video": "dQw4w9WgXcQ", "summarize": True}, ctx)
    assert out.summary == "Summary: Hello and welcome"


@pytest.mark.parametrize(
    "ref",
    [
        "dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=3",
        "https://youtube.com/shorts/dQw4w9WgXcQ",
        "https://m.youtube.com/embed/dQw4w9WgXcQ",
    ],
)
def test_video_refs(ref):
    assert video_id(ref) == "dQw4w9WgXcQ"


def test_bad_video_ref_names_the_field():
    with pytest.raises(AgentError) as err:
        video_id("https://example.com/watch?v=dQw4w9WgXcQ")
    assert err.value.field == "video" and err.value.status_code == 422
