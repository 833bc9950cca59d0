"""The visual workflow builder: its built bundle served at ``/`` with its assets under ``/builder/``."""

from __future__ import annotations

from pathlib import Path

from web.bundles import BUILDER

BUNDLE = BUILDER.built
STAMP = BUILDER.stamp

router = BUILDER.routes("/", "/builder/")


def source_digest(root: Path | None = None) -> str:
    return BUILDER.source_digest(root)
