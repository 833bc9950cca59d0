"""How a call rides out rate limits and server errors, whichever form the service gives its wait in."""

from __future__ import annotations

import asyncio
import email.utils
import sys
import time

import httpx
import pytest

from agxnt.social.http import ServiceFailed, retry_after
from agxnt.social.twitter import TwitterAgent
from agxnt.social.youtube import YouTubeAgent


def test_retry_after_forms():
    def wait(headers=None, body=None):
        return retry_after(httpx.Response(429, headers=headers or {}, json=body))

    assert wait({"Retry-After": "2", "X-RateLimit-Reset-After": "0.25"}) == 0.25
    assert wait({"Retry-After": "3"}) == 3.0
    assert 50 < wait({"Retry-After": email.utils.formatdate(time.time() + 60, usegmt=True)}) <= 60
    assert 25 < wait({"x-rate-limit-reset": str(int(time.time()) + 30)}) <= 30
    assert wait(body={"ok": False, "parameters": {"retry_after": 7}}) == 7.0
    assert wait(body={"message": "You are being rate limited.", "retry_after": 1.5}) == 1.5
    assert wait({"Retry-After": "soon"}) is None and wait() is None


async def test_server_error_ignores_the_rate_limit_window(ctx, twitter, monkeypatch):
    """Twitter stamps x-rate-limit-reset on every answer; a 503 must be retried soon, not after the window."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        if sys._getframe(1).f_globals["__name__"] == "agxnt.social.http":  # not the event loop's other tasks
            waits.append(seconds)
            seconds = 0
        await real_sleep(seconds)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    reset = str(int(time.time()) + 900)
    twitter.queue(
        (503, {"x-rate-limit-reset": reset}, {"title": "Service Unavailable", "status": 503}),
        (429, {"x-rate-limit-reset": str(int(time.time()) + 20)}, {"title": "Too Many Requests"}),
    )
    out = await TwitterAgent()({"action": "search", "query": "x"}, ctx)
    assert len(out.tweets) == 10
    assert waits[0] < 1 and 15 < waits[1] <= 20


async def test_a_body_that_is_not_json_is_reported(ctx, youtube):
    youtube.queue((200, {"Content-Type": "text/html"}, b"<html>consent page</html>"))
    with pytest.raises(ServiceFailed, match="YouTube answered HTTP 200 with a body that is not JSON"):
        await YouTubeAgent()({"action": "video", "video": "dQw4w9WgXcQ"}, ctx)
