"""Local ports: the one way the platform (and its tests) pick a port for a server it is about to start."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` right now. Another process may take it before the caller binds it:
    callers start their server on it and retry or fail clearly, never assume."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
