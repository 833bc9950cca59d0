"""Image Gen: text-to-image with a diffusion model; the PNGs go to storage."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError, as_agent_errors
from agxnt.gen.files import GeneratedFile, stem, store
from compute.inference import diffusion


def _is_path(model: str) -> bool:
    return model.startswith(("/", "~", ".")) or "\\" in model or ".." in model or model.count("/") > 1


class SamplingOptions(BaseModel):
    """The model and sampling settings every diffusion agent shares."""

    model: str | None = Field(
        None, max_length=500, description="Diffusion model id (org/name); default: the platform's image_model"
    )
    width: int = Field(512, ge=8, le=diffusion.MAX_SIDE, description="Width in pixels, a multiple of 8")
    height: int = Field(512, ge=8, le=diffusion.MAX_SIDE, description="Height in pixels, a multiple of 8")
    steps: int = Field(25, ge=1, le=diffusion.MAX_STEPS, description="Denoising steps")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Fix for reproducible output")

    def model_for(self, ctx: AgentContext) -> str:
        model = self.model or ctx.settings.image_model
        if self.model and self.model != ctx.settings.image_model and _is_path(self.model):
            # a caller naming server paths could probe the file system through the loader's errors
            raise AgentError(
                "model must be a model id; local paths are set by the operator (CXMPUTE_IMAGE_MODEL)",
                field="model",
                status_code=422,
            )
        if not model:
            raise AgentError("no diffusion model: name one in model or set CXMPUTE_IMAGE_MODEL", field="model")
        return model


class DiffusionOptions(SamplingOptions):
    prompt: str = Field(..., min_length=1, max_length=4000, description="What to draw")


async def generate_pngs(ctx: AgentContext, options: SamplingOptions, prompt: str, n: int) -> list[bytes]:
    with as_agent_errors():
        return await asyncio.to_thread(
            diffusion.generate_images,
            options.model_for(ctx),
            prompt,
            n=n,
            size=(options.width, options.height),
            steps=options.steps,
            seed=options.seed,
        )


class ImageGen(Agent):
    """Generate images from a text prompt with a diffusion model; each image is stored as a PNG."""

    id = "gen.image"
    name = "Image Gen"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=2.0, memory_mb=8192, gpu=1)

    class Input(DiffusionOptions):
        n: int = Field(1, ge=1, le=diffusion.MAX_IMAGES, description="How many images")
        filename: str = Field("image", max_length=200, description="Name stem of the stored files")

    class Output(BaseModel):
        images: list[GeneratedFile]
        model: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        model = input.model_for(ctx)
        ctx.progress(0.0, f"generating {input.n} image(s)")
        pngs = await generate_pngs(ctx, input, input.prompt, input.n)
        name = stem(input.filename, "image")
        images = [
            await store(ctx, png, f"{name}-{i + 1}.png" if len(pngs) > 1 else f"{name}.png", "image/png")
            for i, png in enumerate(pngs)
        ]
        ctx.progress(1.0)
        return self.Output(images=images, model=model)
