"""Tiny models built from configs once per session, loaded through the same path as real model ids."""

from __future__ import annotations

import pytest

from fixtures.tiny_embedder import build_tiny_embedder
from fixtures.tiny_llm import build_tiny_causal_lm


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    import torch

    torch.manual_seed(0)  # fixed weights: texts the tests cut at stop strings come out the same every run
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-lm", context=2048)


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory):
    return build_tiny_embedder(tmp_path_factory.mktemp("models") / "tiny-embedder")
