"""YouTube: video details, a channel's uploads and search through the Data API v3; transcripts from the
timedtext endpoint; an optional summary by the platform's language model."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlparse

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from agxnt.agent import Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.llm import complete
from agxnt.social.base import SocialAgent
from agxnt.social.http import Service, call
from cxmpute.errors import NotFound

VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
PAGE_SIZE = 50  # the Data API's largest maxResults
SUMMARY_INPUT_CHARS = 12_000
SUMMARY_PROMPT = "Summarize this video transcript in a few sentences. Answer with the summary only."


def video_id(ref: str) -> str:
    """The 11-character id from an id or any of the usual YouTube URL forms."""
    ref = ref.strip()
    if VIDEO_ID.match(ref):
        return ref
    url = urlparse(ref)
    host = (url.hostname or "").removeprefix("www.").removeprefix("m.")
    candidate = None
    if host == "youtu.be":
        candidate = url.path.lstrip("/").split("/")[0]
    elif host.endswith("youtube.com"):
        if url.path == "/watch":
            candidate = parse_qs(url.query).get("v", [""])[0]
        elif url.path.startswith(("/shorts/", "/embed/", "/live/")):
            candidate = url.path.split("/")[2]
    if candidate and VIDEO_ID.match(candidate):
        return candidate
    raise AgentError("video must be a YouTube video id or URL", field="video", status_code=422)


class Video(BaseModel):
    id: str
    url: str
    title: str = ""
    description: str = ""
    channel_id: str = ""
    channel_title: str = ""
    published_at: str | None = None
    duration: str | None = Field(None, description="ISO 8601 duration, e.g. PT4M13S")
    view_count: int | None = None
    like_count: int | None = None
    thumbnail: str | None = None


class Segment(BaseModel):
    start: float = Field(..., description="Seconds from the start")
    duration: float
    text: str


class YouTubeInput(BaseModel):
    action: Literal["video", "uploads", "search", "transcript"] = Field(
        "video",
        description="video: details of `video`; uploads: a channel's latest uploads; search: videos "
        "matching `query`; transcript: the captions of `video`",
    )
    video: str | None = Field(None, description="Video id or URL (video, transcript)")
    channel_id: str | None = Field(None, max_length=64, description="Channel id, UC... (uploads)")
    query: str | None = Field(None, max_length=500, description="Search terms (search)")
    max_results: int = Field(10, ge=1, le=200, description="Most videos to return (uploads, search)")
    language: str = Field("en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="Transcript language")
    summarize: bool = Field(False, description="Also summarize the transcript with the platform's language model")
    api_key_secret: str = Field("youtube_api_key", description="Name of the secret holding the Data API key")


class YouTubeOutput(BaseModel):
    videos: list[Video] = Field(default_factory=list)
    video_url: str | None = Field(None, description="Watch URL of the video read (video, transcript)")
    transcript: str | None = None
    segments: list[Segment] = Field(default_factory=list)
    summary: str | None = None


def _watch_url(vid: str) -> str:
    return f"https://www.youtube.com/watch?v={vid}"


def _video(item: dict[str, Any], vid: str) -> Video:
    snippet = item.get("snippet", {})
    stats = item.get("statistics", {})
    thumbs = snippet.get("thumbnails", {})
    best = next((thumbs[k]["url"] for k in ("maxres", "high", "medium", "default") if k in thumbs), None)
    return Video(
        id=vid,
        url=_watch_url(vid),
        title=snippet.get("title", ""),
        description=snippet.get("description", ""),
        channel_id=snippet.get("channelId", ""),
        channel_title=snippet.get("channelTitle", ""),
        published_at=snippet.get("publishedAt"),
        duration=item.get("contentDetails", {}).get("duration"),
        view_count=int(stats["viewCount"]) if "viewCount" in stats else None,
        like_count=int(stats["likeCount"]) if "likeCount" in stats else None,
        thumbnail=best,
    )


class YouTubeAgent(SocialAgent):
    id = "social.youtube"
    name = "YouTube"
    description = "Read a YouTube video's details and transcript, a channel's uploads, or search videos."
    Input = YouTubeInput
    Output = YouTubeOutput
    resources = Resources(network=True, secrets=("youtube_api_key",))
    actions: ClassVar[dict[str, str]] = {
        "video": "details",
        "uploads": "uploads",
        "search": "search",
        "transcript": "transcript",
    }

    def _api(self, input: YouTubeInput, ctx: AgentContext) -> Service:
        # The key travels in a header, not the query string, so it never lands in a logged URL.
        return Service(
            "YouTube",
            ctx.settings.youtube_api_url,
            "api_key_secret",
            headers={"X-Goog-Api-Key": ctx.secret(input.api_key_secret)},
        )

    def _video_ref(self, input: YouTubeInput) -> str:
        if not input.video:
            raise AgentError(f"video is required for action {input.action!r}", field="video", status_code=422)
        return video_id(input.video)

    async def details(self, input: YouTubeInput, ctx: AgentContext) -> YouTubeOutput:
        vid = self._video_ref(input)
        body = await call(
            self._api(input, ctx),
            ctx,
            "GET",
            "/videos",
            params={"part": "snippet,contentDetails,statistics", "id": vid},
        )
        items = body.get("items", [])
        if not items:
            raise NotFound(f"no YouTube video with id {vid!r}", field="video")
        video = _video(items[0], vid)
        return YouTubeOutput(videos=[video], video_url=video.url)

    async def _paged(
        self, input: YouTubeInput, ctx: AgentContext, path: str, params: dict[str, Any], field: str
    ) -> list[Video]:
        api = self._api(input, ctx)
        videos: list[Video] = []
        token = None
        for _ in ctx.iterate(-(-input.max_results // PAGE_SIZE)):
            page = {**params, "maxResults": min(PAGE_SIZE, input.max_results - len(videos))}
            if token:
                page["pageToken"] = token
            body = await call(api, ctx, "GET", path, params=page, not_found_field=field)
            for item in body.get("items", []):
                vid = item.get("contentDetails", {}).get("videoId") or item.get("id", {}).get("videoId")
                if vid:
                    videos.append(_video(item, vid))
            token = body.get("nextPageToken")
            if not token or len(videos) >= input.max_results:
                break
        return videos[: input.max_results]

    async def uploads(self, input: YouTubeInput, ctx: AgentContext) -> YouTubeOutput:
        if not input.channel_id:
            raise AgentError("channel_id is required for action 'uploads'", field="channel_id", status_code=422)
        body = await call(
            self._api(input, ctx),
            ctx,
            "GET",
            "/channels",
            params={"part": "contentDetails", "id": input.channel_id},
            not_found_field="channel_id",
        )
        items = body.get("items", [])
        if not items:
            raise NotFound(f"no YouTube channel with id {input.channel_id!r}", field="channel_id")
        playlist = items[0]["contentDetails"]["relatedPlaylists"]["uploads"]
        videos = await self._paged(
            input, ctx, "/playlistItems", {"part": "snippet,contentDetails", "playlistId": playlist}, "channel_id"
        )
        return YouTubeOutput(videos=videos)

    async def search(self, input: YouTubeInput, ctx: AgentContext) -> YouTubeOutput:
        if not input.query:
            raise AgentError("query is required for action 'search'", field="query", status_code=422)
        videos = await self._paged(
            input, ctx, "/search", {"part": "snippet", "q": input.query, "type": "video"}, "query"
        )
        return YouTubeOutput(videos=videos)

    async def transcript(self, input: YouTubeInput, ctx: AgentContext) -> YouTubeOutput:
        vid = self._video_ref(input)
        service = Service("YouTube", ctx.settings.youtube_transcript_url, "video")
        params = {"v": vid, "lang": input.language, "fmt": "json3"}
        body = await call(service, ctx, "GET", "/api/timedtext", params=params, not_found_field="video")
        segments = [
            Segment(
                start=e.get("tStartMs", 0) / 1000,
                duration=e.get("dDurationMs", 0) / 1000,
                text="".join(s.get("utf8", "") for s in e["segs"]).strip(),
            )
            for e in body.get("events", [])
            if e.get("segs")
        ]
        segments = [s for s in segments if s.text]
        if not segments:
            raise NotFound(f"video {vid!r} has no transcript in language {input.language!r}", field="video")
        text = " ".join(s.text for s in segments)
        summary = await self._summarize(text, ctx) if input.summarize else None
        return YouTubeOutput(transcript=text, segments=segments, summary=summary, video_url=_watch_url(vid))

    async def _summarize(self, text: str, ctx: AgentContext) -> str:
        return await complete(
            ctx,
            [SystemMessage(content=SUMMARY_PROMPT), HumanMessage(content=text[:SUMMARY_INPUT_CHARS])],
            field="summarize",
        )
