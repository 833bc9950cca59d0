"""Test-wide set-up: every test session gets its own data directory, never the user's ~/.cxmpute."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="cxmpute-test-"))
os.environ.setdefault("CXMPUTE_HOME", str(_home))
os.environ.setdefault("PREFECT_HOME", str(_home / "prefect"))

from cxmpute.settings import apply_environment_defaults  # noqa: E402

apply_environment_defaults()
