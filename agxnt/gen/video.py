"""Video Gen: frames from a diffusion model, walked smoothly through its noise space, encoded to MP4."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import as_agent_errors
from agxnt.gen.files import GeneratedFile, stem, store
from agxnt.gen.image import DiffusionOptions
from compute.inference import diffusion


def encode_mp4(frames: list, fps: int) -> bytes:
    """H.264 MP4 of RGB frames, through the ffmpeg binary imageio-ffmpeg ships."""
    import imageio.v2 as imageio
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="cxmpute-video-") as tmp:
        target = Path(tmp) / "video.mp4"
        # sizes are multiples of 8, which yuv420p accepts; the default block size of 16 would rescale them
        with imageio.get_writer(
            target,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=8,
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame.convert("RGB")))
        return target.read_bytes()


class VideoGen(Agent):
    """Generate a short video from a text prompt: diffusion frames assembled into an MP4."""

    id = "gen.video"
    name = "Video Gen"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=2.0, memory_mb=8192, gpu=1)

    class Input(DiffusionOptions):
        frames: int = Field(16, ge=1, le=240, description="Number of frames")
        fps: int = Field(8, ge=1, le=60, description="Frames per second")
        keyframes: int = Field(2, ge=2, le=32, description="Points the motion passes through")
        width: int = Field(256, ge=16, le=1024, description="Width in pixels, a multiple of 8")
        height: int = Field(256, ge=16, le=1024, description="Height in pixels, a multiple of 8")
        filename: str = Field("video", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        video: GeneratedFile
        frames: int
        fps: int
        duration_seconds: float
        model: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        model = input.model_for(ctx)
        ctx.progress(0.0, f"generating {input.frames} frames")
        with as_agent_errors():
            frames = await asyncio.to_thread(
                diffusion.generate_frames,
                model,
                input.prompt,
                input.frames,
                size=(input.width, input.height),
                steps=input.steps,
                seed=input.seed,
                keyframes=input.keyframes,
            )
        ctx.progress(0.8, "encoding")
        data = await asyncio.to_thread(encode_mp4, frames, input.fps)
        video = await store(ctx, data, f"{stem(input.filename, 'video')}.mp4", "video/mp4")
        ctx.progress(1.0)
        return self.Output(
            video=video,
            frames=len(frames),
            fps=input.fps,
            duration_seconds=round(len(frames) / input.fps, 3),
            model=model,
        )
