"""Secrets kept in files: made on first use, readable by their owner only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def generated(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path``, made by ``make`` when there is none. It is created 0600 and written whole, then
    linked into place, so processes starting together agree on one and none reads it half written."""
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w") as f:
            f.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a copied or restored file must not stay readable by other users
    return path.read_text().strip()
