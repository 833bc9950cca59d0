"""Logging set-up shared by every process the platform starts."""

from __future__ import annotations

import logging

from rich.logging import RichHandler


def configure(level: str = "INFO") -> None:
    root = logging.getLogger("cxmpute")
    if root.handlers:
        return
    handler = RichHandler(rich_tracebacks=False, show_path=False)
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"cxmpute.{name}")
