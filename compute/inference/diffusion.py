"""Text-to-image with diffusers: pipelines loaded once per (model, device), images returned as PNG bytes.

A model is a hub id or a local folder; both go through ``DiffusionPipeline.from_pretrained``, so a model
fetched from the Stxrage archive and one named by id load the same way.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from typing import Any

from compute.errors import ComputeError
from cxmpute.errors import NotFound

MAX_IMAGES = 16
MAX_SIDE = 2048
MAX_STEPS = 200
FRAME_BATCH = 8  # frames denoised in one pipeline call: fewer calls, bounded memory


class _Loaded:
    """A pipeline and the lock that serialises calls on it (a pipeline keeps per-call state on its scheduler)."""

    def __init__(self, model: str, device: str):
        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # loading bars would corrupt CLI and log output
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            pipeline = DiffusionPipeline.from_pretrained(model, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise NotFound(f"cannot load diffusion model {model!r}: {exc}", field="model") from None
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline.to(device)
        self.device = device
        self.lock = threading.Lock()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_loading = threading.Lock()


@lru_cache(maxsize=4)
def _cached(model: str, device: str) -> _Loaded:
    return _Loaded(model, device)


def _load(model: str, device: str) -> _Loaded:
    # one load at a time: two first calls for a model would otherwise each hold a copy of its weights
    with _loading:
        return _cached(model, device)


def load_pipeline(model: str, device: str | None = None):
    """The diffusers pipeline for ``model`` (hub id or local path) on ``device``; loaded once, then cached."""
    if not model or not model.strip():
        raise ComputeError("model is required", field="model", status_code=422)
    return _load(model, device or default_device()).pipeline


def _check(prompt: str, n: int, size: tuple[int, int], steps: int) -> tuple[int, int]:
    if not prompt or not prompt.strip():
        raise ComputeError("prompt must not be empty", field="prompt", status_code=422)
    if not 1 <= n <= MAX_IMAGES:
        raise ComputeError(f"n must be between 1 and {MAX_IMAGES}", field="n", status_code=422)
    if not 1 <= steps <= MAX_STEPS:
        raise ComputeError(f"steps must be between 1 and {MAX_STEPS}", field="steps", status_code=422)
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ComputeError("size must be (width, height)", field="size", status_code=422) from None
    # the VAE halves each side per down block, so odd sizes cannot round-trip through the latent space
    if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE and width % 8 == 0 and height % 8 == 0):
        raise ComputeError(
            f"size {width}x{height}: each side must be a multiple of 8 between 8 and {MAX_SIDE}",
            field="size",
            status_code=422,
        )
    return width, height


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _run(model: str, device: str, prompt: str, *, n: int, width: int, height: int, steps: int, **kwargs: Any) -> list:
    loaded = _load(model, device)
    with loaded.lock:
        result = loaded.pipeline(
            prompt,
            num_inference_steps=steps,
            width=width,
            height=height,
            num_images_per_prompt=n,
            output_type="pil",
            **kwargs,
        )
    return list(result.images)


def generate_images(
    model: str,
    prompt: str,
    n: int = 1,
    size: tuple[int, int] = (64, 64),
    steps: int = 2,
    seed: int | None = None,
    *,
    device: str | None = None,
) -> list[bytes]:
    """``n`` images for ``prompt`` as PNG bytes; the same seed gives the same images."""
    import torch

    device = device or default_device()
    load_pipeline(model, device)
    width, height = _check(prompt, n, size, steps)
    generator = torch.Generator("cpu").manual_seed(seed) if seed is not None else None
    return [
        _png(image)
        for image in _run(model, device, prompt, n=n, width=width, height=height, steps=steps, generator=generator)
    ]


def _slerp(t: float, a, b):
    """Spherical interpolation: keeps interpolated noise at the norm the scheduler expects."""
    import torch

    a_flat, b_flat = a.flatten(), b.flatten()
    cos = torch.clamp(torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm()), -1.0, 1.0)
    theta = torch.arccos(cos)
    if theta.abs() < 1e-4:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)


def generate_frames(
    model: str,
    prompt: str,
    frames: int,
    size: tuple[int, int] = (64, 64),
    steps: int = 2,
    seed: int | None = None,
    keyframes: int = 2,
    *,
    device: str | None = None,
) -> list:
    """``frames`` RGB images (PIL) that move smoothly: the starting noise walks between ``keyframes`` seeds."""
    import torch

    device = device or default_device()
    pipeline = load_pipeline(model, device)
    width, height = _check(prompt, 1, size, steps)
    if not 1 <= frames <= 1000:
        raise ComputeError("frames must be between 1 and 1000", field="frames", status_code=422)
    keyframes = max(2, min(keyframes, frames))
    base = seed if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    scale = getattr(pipeline, "vae_scale_factor", 8)
    channels = pipeline.unet.config.in_channels
    shape = (1, channels, height // scale, width // scale)
    anchors = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(base + k)) for k in range(keyframes)]
    latents = []
    for i in range(frames):
        position = i * (keyframes - 1) / max(frames - 1, 1)
        k = min(int(position), keyframes - 2)
        latents.append(_slerp(position - k, anchors[k], anchors[k + 1]))
    images = []
    for start in range(0, frames, FRAME_BATCH):
        batch = torch.cat(latents[start : start + FRAME_BATCH]).to(pipeline.device, pipeline.unet.dtype)
        images += _run(model, device, prompt, n=len(batch), width=width, height=height, steps=steps, latents=batch)
    return images
