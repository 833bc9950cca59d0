"""Calling a Prefect server from outside, as a process on the same machine would: over plain HTTP and
websockets, with or without the server's basic-auth string."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

AUTH_FILE = "prefect-api.auth"  # where a platform keeps the auth string of the Prefect server it starts


def platform_auth_string(home: Path) -> str:
    return (home / AUTH_FILE).read_text().strip()


def basic(auth_string: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def websocket_outcome(url: str, *, subprotocols: list[str] | None, first: dict | None) -> str:
    """What a websocket client gets from ``url``: "accepted" (a first message from the server, its
    auth_success), "refused <status>" (the upgrade itself refused) or "closed <code>" (closed instead)."""
    try:
        with connect(url, subprotocols=subprotocols, open_timeout=10, close_timeout=2) as ws:
            if first is not None:
                ws.send(json.dumps(first))
            try:
                ws.recv(timeout=10)
            except ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else 'abnormally'}"
            return "accepted"
    except InvalidStatus as refused:
        return f"refused {refused.response.status_code}"
