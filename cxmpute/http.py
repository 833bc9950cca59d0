"""The one HTTP client factory: consistent timeouts, user agent and (optional) base URL."""

from __future__ import annotations

import httpx

from cxmpute import __version__

USER_AGENT = f"cxmpute/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def client(base_url: str = "", timeout: float | httpx.Timeout | None = None, **kwargs) -> httpx.Client:
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(
        base_url=base_url,
        timeout=timeout or DEFAULT_TIMEOUT,
        headers=headers,
        follow_redirects=kwargs.pop("follow_redirects", True),
        **kwargs,
    )


def async_client(base_url: str = "", timeout: float | httpx.Timeout | None = None, **kwargs) -> httpx.AsyncClient:
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout or DEFAULT_TIMEOUT,
        headers=headers,
        follow_redirects=kwargs.pop("follow_redirects", True),
        **kwargs,
    )
