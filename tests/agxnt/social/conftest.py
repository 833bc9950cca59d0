"""Local stand-ins for YouTube, Discord, Twitter (X) and Telegram on 127.0.0.1, speaking each service's
wire format: paths, auth headers, JSON bodies, pagination, rate-limit answers and error bodies."""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import agxnt.context
from agxnt.context import AgentContext, Services
from cxmpute.settings import Settings, reset_settings

YOUTUBE_KEY = "yt-key-7c1f0e5a9b2d4e6f8a0c"
DISCORD_BOT = "discord-bot-3f9a1c7e5b0d2f4a6c8e"
DISCORD_WEBHOOK_TOKEN = "whk_Qm9keVRva2VuLXNlY3JldC0xMjM0NTY3ODkw"
DISCORD_WEBHOOK = f"https://discord.com/api/webhooks/998877665544/{DISCORD_WEBHOOK_TOKEN}"
TWITTER_TOKEN = "AAAAAAAAAAAAAAAAAAAAAtw1tt3rB34r3rT0k3nXYZ"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRETS = {
    "youtube_api_key": YOUTUBE_KEY,
    "discord_bot_token": DISCORD_BOT,
    "discord_webhook_url": DISCORD_WEBHOOK,
    "twitter_token": TWITTER_TOKEN,
    "telegram_bot_token": TELEGRAM_TOKEN,
}
SECRET_VALUES = [
    YOUTUBE_KEY,
    DISCORD_BOT,
    DISCORD_WEBHOOK_TOKEN,
    TWITTER_TOKEN,
    TELEGRAM_TOKEN,
    TELEGRAM_TOKEN.split(":")[1],
]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, tuple[str | None, bytes]]:
        """Multipart form-data parts by field name: (filename, bytes)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        return {
            part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()
        }

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Reply = tuple[int, dict[str, str], Any]


@dataclass
class Fake(ABC):
    """A service stand-in: records every request; answers queued replies first, then its routes."""

    requests: list[Request] = field(default_factory=list)
    queued: list[Reply] = field(default_factory=list)
    url: str = ""

    def queue(self, *replies: Reply) -> None:
        self.queued.extend(replies)

    @abstractmethod
    def answer(self, req: Request) -> Reply:
        """The service's routes."""

    def handle(self, req: Request) -> Reply:
        self.requests.append(req)
        if self.queued:
            return self.queued.pop(0)
        return self.answer(req)


def serve(fake: Fake) -> Iterator[Fake]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            req = Request(
                self.command, url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body
            )
            status, headers, payload = fake.handle(req)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


# --- YouTube Data API v3 and timedtext -----------------------------------------------------------------


def google_error(code: int, message: str, reason: str) -> Reply:
    return (
        code,
        {},
        {
            "error": {
                "code": code,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
    )


class YouTube(Fake):
    uploads = tuple(f"upl{i:08d}" for i in range(120))

    def video(self, vid: str) -> dict[str, Any]:
        return {
            "kind": "youtube#video",
            "id": vid,
            "snippet": {
                "publishedAt": "2026-01-02T03:04:05Z",
                "channelId": "UCchannel0000000000000",
                "title": f"Video {vid}",
                "description": "About the thing",
                "channelTitle": "Channel",
                "thumbnails": {"default": {"url": f"https://i.ytimg.com/vi/{vid}/default.jpg"}},
            },
            "contentDetails": {"duration": "PT4M13S"},
            "statistics": {"viewCount": "1234", "likeCount": "56"},
        }

    def _page(self, req: Request, ids: list[str], item) -> Reply:
        size = min(int(req.arg("maxResults") or 5), 50)
        start = int(req.arg("pageToken") or 0)
        body: dict[str, Any] = {
            "kind": "youtube#listResponse",
            "items": [item(v) for v in ids[start : start + size]],
            "pageInfo": {"totalResults": len(ids), "resultsPerPage": size},
        }
        if start + size < len(ids):
            body["nextPageToken"] = str(start + size)
        return 200, {}, body

    def answer(self, req: Request) -> Reply:
        if req.path == "/api/timedtext":
            if req.arg("v") == "nocaption01":
                return 200, {"Content-Type": "text/html"}, b""
            return (
                200,
                {},
                {
                    "events": [
                        {"tStartMs": 0, "dDurationMs": 2000, "segs": [{"utf8": "Hello and welcome"}]},
                        {"tStartMs": 2000, "dDurationMs": 1500},
                        {"tStartMs": 3500, "dDurationMs": 3000, "segs": [{"utf8": "to the "}, {"utf8": "demo."}]},
                    ]
                },
            )
        if req.headers.get("x-goog-api-key") != YOUTUBE_KEY:
            return google_error(400, "API key not valid. Please pass a valid API key.", "badRequest")
        if req.path == "/youtube/v3/videos":
            ids = [i for i in (req.arg("id") or "").split(",") if i and i != "missing0000"]
            return 200, {}, {"kind": "youtube#videoListResponse", "items": [self.video(i) for i in ids]}
        if req.path == "/youtube/v3/channels":
            return (
                200,
                {},
                {
                    "items": [
                        {
                            "id": req.arg("id"),
                            "contentDetails": {"relatedPlaylists": {"likes": "", "uploads": "UUchannel"}},
                        }
                    ]
                },
            )
        if req.path == "/youtube/v3/playlistItems" and req.arg("playlistId") == "UUchannel":
            return self._page(
                req,
                self.uploads,
                lambda v: {
                    "kind": "youtube#playlistItem",
                    "snippet": self.video(v)["snippet"],
                    "contentDetails": {"videoId": v},
                },
            )
        if req.path == "/youtube/v3/search":
            hits = [f"hit{i:08d}" for i in range(7)]
            return self._page(
                req,
                hits,
                lambda v: {
                    "kind": "youtube#searchResult",
                    "id": {"kind": "youtube#video", "videoId": v},
                    "snippet": self.video(v)["snippet"],
                },
            )
        return google_error(404, "Not Found", "notFound")


# --- Discord REST v10 -----------------------------------------------------------------------------------

DISCORD_CHANNEL = "1100000000000000001"


class Discord(Fake):
    history = tuple(str(2_000_000 - i) for i in range(250))  # newest first, as Discord returns them

    def message(self, mid: str, content: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": mid,
            "type": 0,
            "channel_id": DISCORD_CHANNEL,
            "content": content,
            "author": {"id": "42", "username": "cxbot", "bot": True},
            "timestamp": "2026-01-02T03:04:05+00:00",
            "embeds": [],
            "attachments": [],
            **extra,
        }

    def _posted(self, req: Request) -> dict[str, Any]:
        if req.headers["content-type"].startswith("multipart/form-data"):
            form = req.form()
            payload = json.loads(form.pop("payload_json")[1])
            files = [
                {
                    "id": str(i),
                    "filename": name,
                    "size": len(data),
                    "url": f"https://cdn.discordapp.com/attachments/1/{i}/{name}",
                }
                for i, (name, data) in enumerate(form.values())
            ]
        else:
            payload, files = req.json(), []
        return self.message("3000000", payload.get("content", ""), embeds=payload.get("embeds", []), attachments=files)

    def answer(self, req: Request) -> Reply:
        unauthorized = 401, {}, {"message": "401: Unauthorized", "code": 0}
        if req.path.startswith("/api/v10/webhooks/"):
            if req.path != f"/api/v10/webhooks/998877665544/{DISCORD_WEBHOOK_TOKEN}":
                return 401, {}, {"message": "Invalid Webhook Token", "code": 50027}
            return 200, {}, {**self._posted(req), "webhook_id": "998877665544"}
        if req.headers.get("authorization") != f"Bot {DISCORD_BOT}":
            return unauthorized
        if req.path != f"/api/v10/channels/{DISCORD_CHANNEL}/messages":
            return 404, {}, {"message": "Unknown Channel", "code": 10003}
        if req.method == "POST":
            return 200, {}, self._posted(req)
        limit = int(req.arg("limit") or 50)
        before = req.arg("before")
        older = [m for m in self.history if before is None or int(m) < int(before)]
        return 200, {}, [self.message(m, f"message {m}") for m in older[:limit]]


def discord_rate_limited(after: float) -> Reply:
    return (
        429,
        {
            "Retry-After": str(max(1, round(after))),
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Scope": "user",
        },
        {"message": "You are being rate limited.", "retry_after": after, "global": False},
    )


# --- Twitter (X) API v2 ---------------------------------------------------------------------------------


class Twitter(Fake):
    corpus = tuple(str(1_800_000_000_000_000_000 + i) for i in range(35))

    def tweet(self, tid: str, text: str | None = None) -> dict[str, Any]:
        return {
            "id": tid,
            "text": text or f"post {tid}",
            "author_id": "2244994945",
            "created_at": "2026-01-02T03:04:05.000Z",
            "conversation_id": tid,
            "edit_history_tweet_ids": [tid],
        }

    def answer(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {TWITTER_TOKEN}":
            return 401, {}, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
        if req.path == "/2/media/upload" and req.method == "POST":
            return (
                200,
                {},
                {
                    "data": {
                        "id": "1880028106020515840",
                        "media_key": "3_1880028106020515840",
                        "expires_after_secs": 86400,
                    }
                },
            )
        if req.path == "/2/tweets" and req.method == "POST":
            return (
                201,
                {},
                {
                    "data": {
                        "id": "1900000000000000001",
                        "text": req.json()["text"],
                        "edit_history_tweet_ids": ["1900000000000000001"],
                    }
                },
            )
        if req.path == "/2/users/by/username/nobody":
            return (
                200,
                {},
                {
                    "errors": [
                        {
                            "value": "nobody",
                            "detail": "Could not find user with username: [nobody].",
                            "title": "Not Found Error",
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    ]
                },
            )
        if req.path.startswith("/2/users/by/username/"):
            return 200, {}, {"data": {"id": "2244994945", "name": "X Dev", "username": req.path.rsplit("/", 1)[1]}}
        token_param = {"/2/tweets/search/recent": "next_token", "/2/users/2244994945/tweets": "pagination_token"}
        if req.path in token_param:
            size = int(req.arg("max_results") or 10)
            start = int(req.arg(token_param[req.path]) or 0)
            page = self.corpus[start : start + size]
            meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0], "oldest_id": page[-1]}
            if start + size < len(self.corpus):
                meta["next_token"] = str(start + size)
            return 200, {}, {"data": [self.tweet(t) for t in page], "meta": meta}
        return 404, {}, {"title": "Not Found Error", "detail": f"no route {req.path}", "status": 404}


def twitter_rate_limited(after: float) -> Reply:
    return (
        429,
        {
            "x-rate-limit-limit": "300",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(int(time.time() + after)),
        },
        {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
    )


# --- Telegram Bot API -----------------------------------------------------------------------------------


class Telegram(Fake):
    next_id = 500

    def message(self, chat_id: Any, **extra: Any) -> dict[str, Any]:
        self.next_id += 1
        return {
            "message_id": self.next_id,
            "date": 1767323045,
            "from": {"id": 123456789, "is_bot": True, "first_name": "Cx", "username": "cx_bot"},
            "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else -100777, "type": "group"},
            **extra,
        }

    def answer(self, req: Request) -> Reply:
        prefix = f"/bot{TELEGRAM_TOKEN}/"
        if not req.path.startswith(prefix):
            return 401, {}, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = req.path[len(prefix) :]
        multipart = req.headers.get("content-type", "").startswith("multipart/form-data")
        if multipart:
            form = req.form()
            args: dict[str, Any] = {k: v[1].decode() for k, v in form.items() if v[0] is None}
            files = {k: v for k, v in form.items() if v[0] is not None}
        else:
            args, files = (req.json() if req.body else {}), {}
        if method == "getUpdates":
            offset = int(args.get("offset") or 0)
            updates = [
                {"update_id": u, "message": self.message(-1001, text=f"hi {u}")} for u in range(900, 903) if u >= offset
            ]
            return 200, {}, {"ok": True, "result": updates}
        if "chat_id" not in args:
            return 400, {}, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
        if args["chat_id"] == "-404":
            return 400, {}, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        reply = args.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        extra: dict[str, Any] = {}
        if reply:
            extra["reply_to_message"] = {
                "message_id": reply["message_id"],
                "date": 1767323000,
                "chat": {"id": int(args["chat_id"]), "type": "group"},
            }
        if method == "sendMessage":
            return 200, {}, {"ok": True, "result": self.message(args["chat_id"], text=args["text"], **extra)}
        if method in ("sendPhoto", "sendDocument"):
            kind = "photo" if method == "sendPhoto" else "document"
            upload = files.get(kind)
            ref = {"file_id": f"F{len(upload[1]) if upload else 0}", "file_name": upload[0] if upload else None}
            return (
                200,
                {},
                {
                    "ok": True,
                    "result": self.message(args["chat_id"], caption=args.get("caption"), **{kind: ref}, **extra),
                },
            )
        return 404, {}, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


def telegram_rate_limited(after: int) -> Reply:
    return (
        429,
        {},
        {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {after}",
            "parameters": {"retry_after": after},
        },
    )


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def youtube() -> Iterator[YouTube]:
    yield from serve(YouTube())


@pytest.fixture(scope="session")
def discord() -> Iterator[Discord]:
    yield from serve(Discord())


@pytest.fixture(scope="session")
def twitter() -> Iterator[Twitter]:
    yield from serve(Twitter())


@pytest.fixture(scope="session")
def telegram() -> Iterator[Telegram]:
    yield from serve(Telegram())


@pytest.fixture(autouse=True)
def _fresh(youtube: YouTube, discord: Discord, twitter: Twitter, telegram: Telegram) -> None:
    for fake in (youtube, discord, twitter, telegram):
        fake.requests.clear()
        fake.queued.clear()


def service_urls(youtube: Fake, discord: Fake, twitter: Fake, telegram: Fake) -> dict[str, str]:
    return {
        "youtube_api_url": f"{youtube.url}/youtube/v3",
        "youtube_transcript_url": youtube.url,
        "discord_api_url": f"{discord.url}/api/v10",
        "twitter_api_url": f"{twitter.url}/2",
        "telegram_api_url": telegram.url,
    }


@pytest.fixture
def settings(youtube, discord, twitter, telegram) -> Settings:
    return Settings(**service_urls(youtube, discord, twitter, telegram), social_max_retries=3)


@pytest.fixture
def ctx(settings: Settings) -> AgentContext:
    """A direct context with the secrets injected, as a runner does."""
    return AgentContext(settings=settings, services=Services(settings), secrets=dict(SECRETS))


class ChatModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that summarizes by echoing the first words of the prompt."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        text = body["messages"][-1]["content"]
        data = json.dumps(
            {
                "id": "chatcmpl-local",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "local"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Summary: " + " ".join(text.split()[:3])},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    # one per module: langchain-openai caches an async client per base URL, and modules use different loops
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatModel)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def configured(youtube, discord, twitter, telegram, model_url) -> Iterator[None]:
    """The process's own settings pointed at the local services, as a deployment would: the environment."""
    env = {f"CXMPUTE_{k.upper()}": v for k, v in service_urls(youtube, discord, twitter, telegram).items()}
    env.update(
        {"CXMPUTE_LLM_BASE_URL": f"{model_url}/v1", "CXMPUTE_LLM_MODEL": "local", "CXMPUTE_SOCIAL_MAX_RETRIES": "3"}
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    agxnt.context._default_services = None
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    agxnt.context._default_services = None
