"""Text-to-image on a tiny pipeline built from configs and loaded by path, as a hub id would be."""

from __future__ import annotations

import io

import pytest
from fixtures.tiny_diffusion import build_tiny_pipeline
from PIL import Image

from compute.errors import ComputeError
from compute.inference import diffusion
from cxmpute.errors import CxmputeError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-diffusion"))


def test_the_fixture_is_a_stable_diffusion_folder(model):
    from pathlib import Path

    parts = {p.name for p in Path(model).iterdir()}
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "model_index.json"} <= parts


def test_images_are_pngs_of_the_asked_size_and_seeded(model):
    images = diffusion.generate_images(model, "a red cat", n=3, size=(48, 32), steps=2, seed=11)
    decoded = [Image.open(io.BytesIO(png)) for png in images]
    assert [(i.format, i.size, i.mode) for i in decoded] == [("PNG", (48, 32), "RGB")] * 3
    assert diffusion.generate_images(model, "a red cat", n=3, size=(48, 32), steps=2, seed=11, device="cpu") == images
    assert diffusion.generate_images(model, "a red cat", n=1, size=(48, 32), steps=2, seed=12)[0] != images[0]


def test_pipelines_are_loaded_once(model):
    assert diffusion.load_pipeline(model) is diffusion.load_pipeline(model)
    assert diffusion.load_pipeline(model, "cpu").device.type == "cpu"


def test_frames_walk_smoothly_between_keyframes(model):
    import numpy as np

    frames = diffusion.generate_frames(model, "a dog", 9, size=(32, 32), steps=1, seed=3, keyframes=3)
    arrays = [np.asarray(f, dtype=float) for f in frames]
    assert len(frames) == 9 and all(a.shape == (32, 32, 3) for a in arrays)
    neighbours = [np.abs(a - b).mean() for a, b in zip(arrays, arrays[1:])]
    assert max(neighbours) < np.abs(arrays[0] - arrays[-1]).mean() + 1e-9  # steps are smaller than the whole walk
    # batching frames through the pipeline changes nothing: frame 4 is the middle keyframe's own image
    alone = diffusion.generate_frames(model, "a dog", 3, size=(32, 32), steps=1, seed=3, keyframes=3)
    assert np.abs(np.asarray(alone[1], dtype=float) - arrays[4]).max() <= 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"size": (30, 32)}, "size"),
        ({"size": (0, 32)}, "size"),
        ({"size": "big"}, "size"),
        ({"n": 0}, "n"),
        ({"steps": 0}, "steps"),
        ({"prompt": "  "}, "prompt"),
    ],
)
def test_bad_arguments_name_their_field(model, kwargs, field):
    args = {"prompt": "x", **kwargs}
    with pytest.raises(ComputeError) as err:
        diffusion.generate_images(model, **args)
    assert err.value.status_code == 422 and err.value.field == field


def test_an_unknown_model_is_a_404(tmp_path):
    with pytest.raises(CxmputeError) as err:
        diffusion.generate_images(str(tmp_path / "missing"), "x")
    assert err.value.status_code == 404 and err.value.field == "model"
