"""Generation agents: video frames batched through the diffusion pipeline against one call per frame, and a
notebook executed in the sandbox against the same notebook run by nbclient in a plain child process.

No weights can be downloaded here, so the diffusion figures use the tiny pipeline the tests build (random
weights, same code path); they measure the per-call overhead batching removes, not a real model's speed.
Runs scale with CXMPUTE_BENCH_GEN_RUNS (default 3).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import table, write_section

RUNS = int(os.environ.get("CXMPUTE_BENCH_GEN_RUNS", "3"))
FRAMES = 16
SIZE = (64, 64)
STEPS = 4
CELLS = ["import math", "total = sum(math.sqrt(i) for i in range(10_000))", "total", "print(total)"]


def _median(fn, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def video_rows(model: str) -> list[list]:
    from compute.inference import diffusion

    diffusion.generate_frames(model, "warm up", 2, size=SIZE, steps=1, seed=0)
    one_by_one = _median(
        lambda: [
            diffusion.generate_frames(model, "a lighthouse", 1, size=SIZE, steps=STEPS, seed=i) for i in range(FRAMES)
        ]
    )
    batched = _median(lambda: diffusion.generate_frames(model, "a lighthouse", FRAMES, size=SIZE, steps=STEPS, seed=0))
    return [
        [
            f"{FRAMES} frames, one pipeline call each (baseline)",
            round(one_by_one * 1000),
            round(FRAMES / one_by_one, 1),
            "1.00",
        ],
        [
            f"{FRAMES} frames, {diffusion.FRAME_BATCH} per call (gen.video)",
            round(batched * 1000),
            round(FRAMES / batched, 1),
            f"{one_by_one / batched:.2f}",
        ],
    ]


def _plain_notebook(path: Path) -> None:
    """nbclient and its kernel in an ordinary child process: what the sandbox adds on top."""
    from agxnt.gen.notebook import RUNNER

    subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), str(path.with_suffix(".json")), "60", "0"],
        check=True,
        capture_output=True,
        cwd=path.parent,
    )


async def _sandboxed_notebook(home: Path) -> None:
    from agxnt.context import AgentContext, Services
    from agxnt.gen.notebook import Notebook
    from cxmpute.settings import get_settings

    # the executed notebooks go to a scratch store, not the operator's
    settings = get_settings().model_copy(update={"home": home})
    ctx = AgentContext(owner="bench", settings=settings, services=Services(settings))
    out = await Notebook()({"cells": [{"source": c} for c in CELLS]}, ctx)
    assert out.status == "ok", out.error


def notebook_rows() -> list[list]:
    import nbformat

    from agxnt.gen.notebook import NotebookCell, build_notebook

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nb.ipynb"

        def plain() -> None:
            nbformat.write(build_notebook([NotebookCell(source=c) for c in CELLS], None), path)
            _plain_notebook(path)

        plain_s = _median(plain)
        sandboxed_s = _median(lambda: asyncio.run(_sandboxed_notebook(Path(tmp) / "home")))
    return [
        [f"{len(CELLS)} cells, nbclient in a plain child process (baseline)", round(plain_s * 1000), "1.00"],
        [
            f"{len(CELLS)} cells, gen.notebook in the sandbox (build, run, store)",
            round(sandboxed_s * 1000),
            f"{sandboxed_s / plain_s:.2f}",
        ],
    ]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures.tiny_diffusion import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        video = video_rows(model)
    notebook = notebook_rows()
    write_section(
        "Generation agents",
        "\n\n".join(
            [
                f"Video frames ({SIZE[0]}x{SIZE[1]}, {STEPS} denoising steps, tiny pipeline on CPU; median of {RUNS}):",
                table(["run", "ms", "frames/s", "speed-up"], video),
                f"Notebook execution (median of {RUNS}):",
                table(["run", "ms", "ratio to baseline"], notebook),
            ]
        ),
    )


if __name__ == "__main__":
    main()
